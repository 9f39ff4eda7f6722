"""``geolink change``: synthetic epochs with known changes, and the real NAIP scenes of 2010 and 2020."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

from geolink_store.cli.main import main
from geolink_store.errors import InputError
from geolink_store.query.change import change_scores
from geolink_store.query.sql import run_sql
from geolink_store.store import Store
from geolink_store.testing import cells_table, h3_grid

NAIP = ("m_4709963_se_14_1_20100629.tif", "m_4709963_se_14_1_20200831.tif")
NAIP_BOX = "-99.170,47.012,-99.150,47.024"


def _with_image(table: pa.Table, image: np.ndarray) -> pa.Table:
    column = pa.FixedSizeListArray.from_arrays(pa.array(image.astype(np.float32).ravel()), image.shape[1])
    return table.set_column(table.schema.get_field_index("image"), "image", column)


@pytest.fixture
def two_epochs(tmp_path: Path) -> tuple[Store, np.ndarray]:
    """400 cells whose 2020 vectors are the 2010 ones shifted all alike, 8 of them replaced."""
    cells = h3_grid(400, 9)
    before = cells_table(cells, 16, epoch="2010")
    image = np.stack(before["image"].to_numpy(zero_copy_only=False))
    rng = np.random.default_rng(1)
    after = image + 0.8 * rng.standard_normal(16)  # another season: every vector moves alike
    after += 0.05 * rng.standard_normal(after.shape)
    changed = rng.choice(len(cells), 8, replace=False)
    after[changed] = rng.standard_normal((8, 16))
    store = Store.create_or_open(tmp_path / "db")
    store.upsert("cells", before, index=False)
    store.upsert("cells", _with_image(cells_table(cells, 16, epoch="2020"), after), index=False)
    return store, cells[changed]


def test_the_changed_cells_rank_first_despite_a_whole_scene_shift(two_epochs, tmp_path: Path) -> None:
    store, changed = two_epochs
    ranked = change_scores(store, "2010", "2020")
    assert len(ranked) == 400
    assert set(ranked["h3"][:8]) == set(changed.tolist())
    assert np.all(np.diff(ranked["score"].to_numpy()) <= 0)
    assert ranked["score"].iloc[8:].median() == pytest.approx(1.0, abs=0.25)  # typical change is 1
    plain = ranked.sort_values("distance", ascending=False)["h3"][:8]
    assert len(set(plain) & set(changed.tolist())) < 8  # the shift hides some from the plain distance
    sql = run_sql(tmp_path / "db", "SELECT h3, image_distance FROM cells_change('2010', '2020')").to_pandas()
    joined = ranked.merge(sql, on="h3")
    assert len(joined) == 400
    assert np.allclose(joined["distance"], joined["image_distance"], atol=1e-5)
    assert len(change_scores(store, "2010", "2020", k=5)) == 5


def test_change_refuses_bad_requests(two_epochs) -> None:
    store, _ = two_epochs
    with pytest.raises(InputError, match="both '2010'"):
        change_scores(store, "2010", "2010")
    with pytest.raises(Exception, match="no epoch '1999'"):
        change_scores(store, "1999", "2020")
    with pytest.raises(InputError, match="modality"):
        change_scores(store, "2010", "2020", modality="pixels")
    with pytest.raises(InputError, match="no cell has 'image' vectors in both"):
        change_scores(store, "2010", "2020", within="10,10,10.01,10.01")


@pytest.fixture(scope="module")
def naip_store(shared_data: Path, tmp_path_factory) -> Path:
    """The two NAIP scenes of one quarter-quad ingested image-only (no --osm) as epochs 2010 and 2020."""
    db = tmp_path_factory.mktemp("naip") / "db"
    for scene, epoch in zip(NAIP, ("2010", "2020"), strict=True):
        result = CliRunner().invoke(
            main,
            ["ingest", "--db", str(db), "--region", NAIP_BOX, "--res", "9", "--epoch", epoch,
             "--imagery", str(shared_data / "naip_north_dakota" / scene)],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
    return db


def test_image_only_epochs_of_real_naip_record_their_dates(naip_store: Path) -> None:
    store = Store.open(naip_store)
    assert store.epochs() == ["2010", "2020"]
    cells = store.table("cells").to_arrow()
    assert cells["osm"].null_count == cells.num_rows  # no --osm: no OSM vector anywhere
    assert cells["image"].null_count == 0 and cells["fused"].null_count == 0
    acquired = dict(zip(cells["epoch"].to_pylist(), cells["acquired"].to_pylist(), strict=True))
    assert acquired == {"2010": date(2010, 6, 29), "2020": date(2020, 8, 31)}
    imagery = store.table("imagery").to_arrow().to_pylist()
    assert {(row["epoch"], row["acquired"]) for row in imagery} == {
        ("2010", date(2010, 6, 29)),
        ("2020", date(2020, 8, 31)),
    }
    assert all(Path(row["uri"]).is_file() for row in imagery)


def test_change_on_real_naip_through_the_cli(naip_store: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        main, ["change", "--db", str(naip_store), "--from", "2010", "--to", "2020", "--format", "json",
               "--map", str(tmp_path / "change.png")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert (
        len(rows)
        == Store.open(naip_store).existing_cells(Store.open(naip_store).default_model(), epoch="2010").size
    )
    assert all(isinstance(row["h3_hex"], str) and row["score"] > 0 for row in rows)
    assert [row["score"] for row in rows] == sorted((row["score"] for row in rows), reverse=True)
    assert (tmp_path / "change.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    geojson = runner.invoke(main, ["change", "--db", str(naip_store), "--from", "2010", "--to", "2020",
                                   "--k", "3", "--format", "geojson"])  # fmt: skip
    assert len(json.loads(geojson.stdout)["features"]) == 3
    search = runner.invoke(main, ["search", "--db", str(naip_store), "--cell", rows[0]["h3_hex"],
                                  "--modality", "image", "--epoch", "2010", "--format", "json"])  # fmt: skip
    assert search.exit_code == 0, search.output
    assert len(json.loads(search.stdout)) == 10


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--from", "2010", "--to", "2030"], "no epoch '2030'"),
        (["--from", "2010", "--to", "2010"], "both '2010'"),
        (["--from", "2010", "--to", "2020", "--map", "x.jpg"], "must end in .png"),
        (["--from", "2010", "--to", "2020", "--modality", "osm"], "no cell has 'osm' vectors"),
    ],
)
def test_bad_change_requests_are_one_error_line(naip_store: Path, arguments: list[str], message: str) -> None:
    before = sorted(p.name for p in naip_store.rglob("*"))
    result = CliRunner().invoke(main, ["change", "--db", str(naip_store), *arguments])
    assert result.exit_code == 1
    assert result.output.startswith("error: ") and message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert sorted(p.name for p in naip_store.rglob("*")) == before


def test_the_explorer_colours_cells_by_change_from_another_epoch(naip_store: Path) -> None:
    from geolink_store.app.explorer import Explorer

    explorer = Explorer(str(naip_store))
    assert explorer.epoch == "2020" and "change:2010" in explorer.info()["columns"]
    values = dict(zip(explorer.cells.tolist(), explorer.values("change:2010"), strict=True))
    ranked = change_scores(Store.open(naip_store), "2010", "2020")
    assert all(
        values[int(h3)] == pytest.approx(score)
        for h3, score in zip(ranked["h3"], ranked["score"], strict=True)
    )
    explorer.close()
