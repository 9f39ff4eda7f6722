"""``geolink disagree``: a synthetic store whose map we break in known cells, and the bundled real sample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

from geolink_store.cli.main import main
from geolink_store.errors import InputError
from geolink_store.query.disagree import disagreement
from geolink_store.store import Store
from geolink_store.testing import cells_table, h3_grid


def _set(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, values)


@pytest.fixture
def broken_map(tmp_path: Path) -> tuple[Store, np.ndarray]:
    """600 cells whose map follows their image, but 10 cells whose buildings were taken off the map."""
    cells = h3_grid(600, 10)
    table = cells_table(cells, 16)
    image = np.stack(table["image"].to_numpy(zero_copy_only=False))
    rng = np.random.default_rng(3)
    buildings = np.round(np.exp(1.5 + image @ rng.standard_normal(16))).astype(np.int32)
    osm = image @ rng.standard_normal((16, 16)) + 0.05 * rng.standard_normal((600, 16))
    erased = rng.choice(np.flatnonzero(buildings >= 3), 10, replace=False)
    buildings[erased] = 0
    present = np.ones(600, dtype=bool)
    present[erased] = False
    vectors = pa.array([row.tolist() if keep else None for row, keep in zip(osm, present, strict=True)],
                       type=table.schema.field("osm").type)  # fmt: skip
    table = _set(_set(table, "n_polygon", pa.array(buildings)), "osm", vectors)
    store = Store.create_or_open(tmp_path / "db")
    store.upsert("cells", table, index=False)
    return store, cells[erased]


def test_cells_whose_buildings_left_the_map_rank_first(broken_map) -> None:
    store, erased = broken_map
    ranked = disagreement(store)
    top = set(ranked["h3"][: len(erased)].tolist())
    assert len(top & set(erased.tolist())) >= 8  # random: 10 / 600 of 10
    assert ranked.set_index("h3").loc[erased, "score"].min() > 0  # the image shows more than the map
    assert np.all(np.diff(ranked["score"].to_numpy()) <= 0)
    assert abs(ranked["score"].median()) < 1.0
    opposite = disagreement(store, direction="map")
    assert not set(opposite["h3"][: len(erased)].tolist()) & set(erased.tolist())
    assert len(disagreement(store, k=7)) == 7


def test_disagree_needs_a_map_and_enough_cells(tmp_path: Path) -> None:
    store = Store.create_or_open(tmp_path / "db")
    table = cells_table(h3_grid(10, 9), 8)
    store.upsert("cells", table, index=False)
    with pytest.raises(InputError, match="only 10 cells"):
        disagreement(store)
    with pytest.raises(InputError, match="k must be"):
        disagreement(store, k=0)


def test_disagree_on_the_bundled_real_sample(sample_store: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["disagree", "--db", str(sample_store), "--format", "json", "--map", str(tmp_path / "d.png")]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == Store.open(sample_store).table("cells").count_rows("image IS NOT NULL")
    assert all(isinstance(row["h3_hex"], str) and isinstance(row["score"], float) for row in rows)
    assert [row["score"] for row in rows] == sorted((row["score"] for row in rows), reverse=True)
    assert (tmp_path / "d.png").stat().st_size > 10_000
    bad = CliRunner().invoke(main, ["disagree", "--db", str(sample_store), "--epoch", "1999"])
    assert bad.exit_code == 1 and bad.output.startswith("error: ") and "no epoch '1999'" in bad.output


def test_an_unknown_direction_is_refused(broken_map) -> None:
    store, _ = broken_map
    with pytest.raises(InputError, match="direction must be one of image, map"):
        disagreement(store, direction="sideways")
