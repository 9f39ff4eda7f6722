"""A store holding int8 vectors: the bundled sample ingested with ``--vectors int8``, searched, a head trained
on it, its size, ``geolink check`` and ``info``, against the float32 ``sample_store`` of the same cells."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import geopandas as gpd
import lance
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from click.testing import CliRunner
from shapely import box

from geolink_store.cli.main import main
from geolink_store.constants import CELLS, WGS84
from geolink_store.errors import InputError
from geolink_store.heads.from_store import fit_from_store, stored_vectors
from geolink_store.heads.labels import coverage_share
from geolink_store.pipeline import IngestSettings, ingest
from geolink_store.query.change import change_scores
from geolink_store.query.disagree import disagreement
from geolink_store.query.search import search_hits
from geolink_store.query.sql import run_sql
from geolink_store.query.zonal import zonal_stats
from geolink_store.sample import kampala_sample
from geolink_store.store import Store
from geolink_store.store.locations import size_bytes
from geolink_store.store.quantize import dequantize, quantize, with_layout
from geolink_store.store.schema import VECTOR_COLUMNS

SAMPLE = kampala_sample()


def _ingest(db: Path, vectors: str) -> CliRunner:
    args = ["ingest", "--db", db, "--region", SAMPLE.region, "--imagery", SAMPLE.imagery, "--osm", SAMPLE.osm]
    args += ["--res", SAMPLE.res, "--fine-res", SAMPLE.fine_res, "--vectors", vectors, "--format", "json"]
    return CliRunner().invoke(main, [str(arg) for arg in args])


@pytest.fixture(scope="module")
def int8_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("int8") / "db"
    result = _ingest(db, "int8")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.splitlines()[-1])["cells_encoded"] > 0
    return db


def _cells(store: Path) -> pa.Table:
    return Store.open(store).table(CELLS).to_arrow().sort_by("h3")


def test_int8_ingest_stores_codes_only_and_checks_clean(int8_store: Path, sample_store: Path) -> None:
    int8, plain = _cells(int8_store), _cells(sample_store)
    assert int8["h3"].equals(plain["h3"])
    for name in VECTOR_COLUMNS[CELLS]:
        assert name not in int8.column_names
        assert int8.schema.field(f"{name}_i8").type == pa.list_(
            pa.int8(), plain.schema.field(name).type.list_size
        )
        assert int8[f"{name}_i8"].null_count == int8[f"{name}_scale"].null_count == plain[name].null_count
    assert plain["osm"].null_count > 0  # cells without OSM: null codes and scale
    for name in VECTOR_COLUMNS[CELLS]:  # the same model encodes the same cells alike: codes of its vectors
        cells, back = stored_vectors(Store.open(int8_store), CELLS, _model(int8_store), name)
        order = np.argsort(cells)
        exact = np.asarray(plain[name].combine_chunks().flatten()).reshape(-1, back.shape[1])
        valid = plain[name].is_valid().to_numpy(zero_copy_only=False)
        assert np.isnan(back[order][~valid]).all()
        assert np.array_equal(back[order][valid], dequantize(*quantize(exact)))
    check = CliRunner().invoke(main, ["check", "--db", str(int8_store)])
    assert check.exit_code == 0, check.output
    info = CliRunner().invoke(main, ["info", "--db", str(int8_store)])
    assert info.exit_code == 0 and "(int8)" in info.stdout
    plain_info = json.loads(
        CliRunner().invoke(main, ["info", "--db", str(sample_store), "--format", "json"]).stdout
    )
    assert plain_info["tables"][CELLS]["layout"] == "float32"


def _model(db: Path) -> str:
    return Store.open(db).default_model()


def test_int8_cells_take_under_half_the_bytes(int8_store: Path, sample_store: Path) -> None:
    int8 = size_bytes(str(Store.open(int8_store).table_uri(CELLS)))
    plain = size_bytes(str(Store.open(sample_store).table_uri(CELLS)))
    assert int8 < 0.5 * plain, (int8, plain)


def test_search_on_int8_finds_the_float32_neighbours(int8_store: Path, sample_store: Path) -> None:
    cells = _cells(sample_store)["h3"].to_numpy()[::9]
    recalls, gaps = [], []
    for cell in cells:
        exact = search_hits(sample_store, cells=int(cell), k=10).rows
        found = search_hits(int8_store, cells=int(cell), k=10).rows
        assert found.num_rows == 10 and int(cell) not in found["h3"].to_pylist()
        recalls.append(len(set(exact["h3"].to_pylist()) & set(found["h3"].to_pylist())) / 10)
        gaps.append(np.abs(exact["distance"].to_numpy() - found["distance"].to_numpy()).max())
    assert np.mean(recalls) >= 0.8 and max(gaps) < 0.02, (recalls, gaps)
    hex_id = f"{int(cells[0]):x}"
    result = CliRunner().invoke(
        main, ["search", "--db", str(int8_store), "--cell", hex_id, "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(
        main, ["search", "--db", str(int8_store), "--cell", hex_id, "--modality", "osm", "--k", "3"]
    )
    assert result.exit_code == 0, result.output


def _presence(db: Path, path: Path) -> Path:
    cells = _cells(db)["h3"].to_numpy()
    share = coverage_share(cells, gpd.read_file(SAMPLE.osm))
    labels = np.where(share >= 0.25, "built", "open")
    pd.DataFrame({"h3": [f"{c:x}" for c in cells], "label": labels}).to_csv(path, index=False)
    return path


def test_a_head_on_int8_scores_as_on_float32(int8_store: Path, sample_store: Path, tmp_path: Path) -> None:
    labels = _presence(sample_store, tmp_path / "presence.csv")
    metrics = {
        name: fit_from_store(Store.open(db), labels, "label", kind="linear", split="random").metrics
        for name, db in (("int8", int8_store), ("float32", sample_store))
    }
    assert metrics["int8"]["test"] == metrics["float32"]["test"] > 0
    assert abs(metrics["int8"]["accuracy"] - metrics["float32"]["accuracy"]) <= 2 / metrics["int8"]["test"]


def test_another_layout_is_refused_and_changes_nothing(int8_store: Path) -> None:
    before = Store.open(int8_store).table(CELLS).version
    result = _ingest(int8_store, "float32")
    assert result.exit_code != 0
    assert result.output.startswith("error: ") and "hold int8 vectors" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert Store.open(int8_store).table(CELLS).version == before
    with pytest.raises(InputError, match="vectors='int4' is not a vector layout"):
        ingest(
            str(int8_store),
            SAMPLE.region,
            [str(SAMPLE.imagery)],
            None,
            settings=IngestSettings(vectors="int4"),
        )


def test_upsert_takes_both_layouts_and_adds_later_columns(sample_store: Path, tmp_path: Path) -> None:
    plain = _cells(sample_store)
    both = with_layout(plain, VECTOR_COLUMNS[CELLS], "both")
    store = Store.create_or_open(tmp_path / "db")
    old = both.drop_columns(["epoch", "acquired"]).slice(0, 30)  # as a store of before epochs wrote them
    lance.write_dataset(old, store.table_uri(CELLS))
    assert store.check() == []
    assert store.upsert(CELLS, both).inserted == both.num_rows - 30
    assert store.table_info(CELLS)["layout"] == "both" and store.check() == []
    found = search_hits(store, cells=int(plain["h3"][0].as_py()), k=10).rows
    assert found["h3"].equals(search_hits(sample_store, cells=int(plain["h3"][0].as_py()), k=10).rows["h3"])
    with pytest.raises(InputError, match="hold float32 vectors but the store's table holds both"):
        store.upsert(CELLS, plain)


def test_sql_disagree_and_zonal_read_int8_as_dequantised_float32(
    int8_store: Path, sample_store: Path
) -> None:
    plain = _cells(sample_store)
    exact = np.asarray(plain["fused"].combine_chunks().flatten()).reshape(plain.num_rows, -1)
    found = run_sql(int8_store, "SELECT h3, fused FROM cells ORDER BY h3")
    assert found["h3"].equals(plain["h3"])
    assert np.allclose(np.stack(found["fused"].to_numpy(zero_copy_only=False)), dequantize(*quantize(exact)))
    worst = {
        name: disagreement(Store.open(db), k=10)
        for name, db in (("int8", int8_store), ("plain", sample_store))
    }
    assert len(set(worst["int8"]["h3"]) & set(worst["plain"]["h3"])) >= 7
    west, south, east, north = (float(v) for v in SAMPLE.region.split(","))
    middle = (west + east) / 2
    zones = gpd.GeoDataFrame(
        geometry=[box(west, south, middle, north), box(middle, south, east, north)], crs=WGS84
    )
    means = [np.stack(zonal_stats(Store.open(db), zones)["fused_mean"]) for db in (int8_store, sample_store)]
    assert np.abs(means[0] - means[1]).max() < 0.01


def test_change_between_epochs_of_int8_rows(int8_store: Path, tmp_path: Path) -> None:
    store = Store.open(shutil.copytree(int8_store, tmp_path / "db"))
    rows = store.table(CELLS).to_arrow()
    fused = rows["fused_i8"].combine_chunks()
    flipped = pa.FixedSizeListArray.from_arrays(pc.negate(fused.flatten()), fused.type.list_size)
    later = rows.set_column(rows.schema.get_field_index("epoch"), "epoch", pa.array(["2020"] * rows.num_rows))
    later = later.set_column(later.schema.get_field_index("fused_i8"), "fused_i8", flipped)
    assert store.upsert(CELLS, later).inserted == rows.num_rows
    same = change_scores(store, "default", "2020", modality="image")
    opposite = change_scores(store, "default", "2020", modality="fused")
    assert len(same) == len(opposite) == rows.num_rows
    assert np.abs(same["distance"]).max() < 1e-5, same["distance"].describe()
    assert np.abs(opposite["distance"] - 2).max() < 1e-4, opposite["distance"].describe()
