"""A corpus of bad input for every ``geolink`` command: each case fails with one ``error:`` line and no
traceback, and leaves an existing store's content exactly as it was.

The store is the bundled real Kampala sample ingested once per module; bad rasters, regions, OSM files,
checkpoints and label files are written small in each test's tmp_path.
"""

from __future__ import annotations

import hashlib
import json
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import h3
import numpy as np
import pyarrow as pa
import pytest
import rasterio
import torch
from click.testing import CliRunner, Result
from rasterio.transform import from_bounds

from geolink_store.cli import main
from geolink_store.sample import kampala_sample
from geolink_store.store import Store
from geolink_store.store.schema import TABLE_KEYS

SAMPLE = kampala_sample()
WORLD_TIMEOUT_S = 60
PROGRESS_BAR = re.compile(r"encoding:\s+\d+%\|[^\]]*\]|\x1b\[A")
"""tqdm's bar on stderr; the cases ignore it (test_error_is_on_its_own_line checks the error is not glued to
it)."""


class Payload:
    """A class whose instance inside a checkpoint would make ``torch.load`` unpickle code from this module."""


@pytest.fixture(scope="module")
def db(sample_store_copy: Path) -> Path:
    """The store every bad input is tried against (its digest must not change)."""
    return sample_store_copy


@pytest.fixture(scope="module")
def cells(db: Path) -> list[int]:
    return sorted(Store.open(db).table("cells").to_arrow()["h3"].to_pylist())


def store_digest(db: Path, tables: tuple[str, ...] | None = None) -> str:
    """A hash of every table's rows (sorted by key) as Arrow IPC bytes: equal iff the store's content is."""
    store = Store.open(db)
    digest = hashlib.sha256()
    for name in tables or store.table_names():
        table = store.table(name).to_arrow()
        table = table.sort_by([(key, "ascending") for key in TABLE_KEYS[name]])
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        digest.update(name.encode() + sink.getvalue().to_pybytes())
    return digest.hexdigest()


def run(*args: object) -> Result:
    return CliRunner().invoke(main, [str(arg) for arg in args])


def assert_one_error(result: Result, *, contains: str = "", usage: bool = False) -> str:
    """Non-zero exit, one ``error:`` line on stderr (click's ``Error:`` for usage errors), no traceback."""
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == (2 if usage else 1), (result.exit_code, result.output)
    if usage:
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1, result.stderr
    else:
        lines = [line for line in PROGRESS_BAR.sub("", result.stderr).splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        errors = lines
    assert contains.lower() in errors[0].lower(), errors[0]
    return errors[0]


def ingest_args(
    db: Path,
    *,
    region: str = SAMPLE.region,
    imagery: object = SAMPLE.imagery,
    osm: object = SAMPLE.osm,
    extra: tuple[object, ...] = (),
) -> list[object]:
    return [
        "ingest",
        "--db",
        db,
        "--region",
        region,
        "--imagery",
        imagery,
        "--osm",
        osm,
        "--res",
        SAMPLE.res,
        "--fine-res",
        SAMPLE.fine_res,
        *extra,
    ]


def small_region(cells: list[int]) -> str:
    """Three stored cells, comma-separated hex: a region quick to encode."""
    return ",".join(h3.int_to_str(cell) for cell in cells[30:33])


def write_raster(path: Path, data: np.ndarray, *, crs: str | None = "EPSG:4326") -> Path:
    """A GeoTIFF of ``data`` (bands, rows, cols) over the sample bbox."""
    west, south, east, north = SAMPLE.bbox
    bands, height, width = data.shape
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=bands,
        dtype=data.dtype,
        crs=crs,
        transform=from_bounds(west, south, east, north, width, height),
    ) as dst:
        dst.write(data)
    return path


def texture(bands: int, size: int = 128) -> np.ndarray:
    return np.random.default_rng(bands).integers(0, 256, (bands, size, size), dtype=np.uint8)


# ---- ingest: bad imagery (a fresh store each, so resume cannot hide an unreadable chip) ----


def test_truncated_geotiff(tmp_path: Path, cells: list[int]) -> None:
    whole = write_raster(tmp_path / "whole.tif", texture(3)).read_bytes()
    (tmp_path / "cut.tif").write_bytes(whole[: len(whole) // 3])
    assert_one_error(
        run(*ingest_args(tmp_path / "db", region=small_region(cells), imagery=tmp_path / "cut.tif"))
    )


def test_error_is_on_its_own_line(tmp_path: Path, cells: list[int]) -> None:
    whole = write_raster(tmp_path / "whole.tif", texture(3)).read_bytes()
    (tmp_path / "cut.tif").write_bytes(whole[: len(whole) // 3])
    result = run(*ingest_args(tmp_path / "db", region=small_region(cells), imagery=tmp_path / "cut.tif"))
    assert result.exit_code == 1
    errors = [line for line in re.split(r"[\r\n]", result.stderr) if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("error: "), result.stderr


def test_zero_byte_raster(tmp_path: Path, cells: list[int]) -> None:
    (tmp_path / "empty.tif").write_bytes(b"")
    assert_one_error(
        run(*ingest_args(tmp_path / "db", region=small_region(cells), imagery=tmp_path / "empty.tif"))
    )


def test_raster_without_crs(tmp_path: Path, cells: list[int]) -> None:
    raster = write_raster(tmp_path / "nocrs.tif", texture(3), crs=None)
    assert_one_error(
        run(*ingest_args(tmp_path / "db", region=small_region(cells), imagery=raster)), contains="crs"
    )


def test_all_nan_raster(tmp_path: Path, cells: list[int]) -> None:
    raster = write_raster(tmp_path / "nan.tif", np.full((3, 64, 64), np.nan, dtype=np.float32))
    result = run(*ingest_args(tmp_path / "db", region=small_region(cells), imagery=raster))
    if result.exit_code == 0:  # nothing valid to encode: a clean report of zero cells is fine too
        assert "0 cells encoded" in result.stdout, result.output
    else:
        assert_one_error(result)


@pytest.mark.parametrize("bands", [1, 5])
def test_one_and_five_band_rasters_are_read(tmp_path: Path, cells: list[int], bands: int) -> None:
    """A 1-band raster is read as panchromatic, a 5-band one by its bands 1-3: both encode every cell."""
    raster = write_raster(tmp_path / f"b{bands}.tif", texture(bands))
    region = small_region(cells)
    result = run(*ingest_args(tmp_path / "db", region=region, imagery=raster, extra=("--format", "json")))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["cells_encoded"] == 3
    stored = Store.open(tmp_path / "db").table("cells").to_arrow()
    assert sorted(stored["h3"].to_pylist()) == sorted(h3.str_to_int(c) for c in region.split(","))
    image = np.asarray(stored["image"].to_pylist(), dtype=np.float32)
    assert np.isfinite(image).all() and np.abs(image).sum(axis=1).min() > 0


# ---- ingest: bad regions, OSM, resolutions, models (against the module store: it must not change) ----


def test_region_in_the_ocean(db: Path) -> None:
    before = store_digest(db)
    assert_one_error(run(*ingest_args(db, region="-30.001,-20.001,-30,-20")), contains="misses the imagery")
    assert store_digest(db) == before


def test_invalid_geojson_region(db: Path, tmp_path: Path) -> None:
    (tmp_path / "region.geojson").write_text('{"type": "FeatureCollection", "features": [')
    before = store_digest(db)
    assert_one_error(run(*ingest_args(db, region=str(tmp_path / "region.geojson"))))
    assert store_digest(db) == before


def test_self_intersecting_region(db: Path, tmp_path: Path) -> None:
    """A bow-tie polygon over the sample: encodes (resuming, so nothing new) or says one clear line."""
    west, south, east, north = SAMPLE.bbox
    bowtie = [[west, south], [east, north], [east, south], [west, north], [west, south]]
    (tmp_path / "bowtie.geojson").write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {},
                        "geometry": {"type": "Polygon", "coordinates": [bowtie]},
                    }
                ],
            }
        )
    )
    before = store_digest(db)
    result = run(*ingest_args(db, region=str(tmp_path / "bowtie.geojson"), extra=("--format", "json")))
    if result.exit_code == 0:
        report = json.loads(result.stdout)
        assert report["cells_in_region"] > 0 and report["cells_encoded"] == 0
        assert report["cells_already_stored"] == report["cells_in_region"] - report["cells_without_imagery"]
    else:
        assert_one_error(result)
        assert store_digest(db) == before


def test_truncated_pbf(tmp_path: Path, cells: list[int]) -> None:
    (tmp_path / "cut.osm.pbf").write_bytes(b"\x00\x00\x00\x0d\n\tOSMHeader\x18\x90\x01")
    assert_one_error(
        run(*ingest_args(tmp_path / "db", region=small_region(cells), osm=tmp_path / "cut.osm.pbf"))
    )


def test_osm_geojson_without_tags(tmp_path: Path, cells: list[int]) -> None:
    """Features with no properties: ingest still encodes every cell; the one cell holding the untagged point
    is counted as having OSM (an untagged node), the others not, and every vector is finite."""
    lon, lat = (float(v) for v in h3.cell_to_latlng(h3.int_to_str(cells[31]))[::-1])
    features = [
        {"type": "Feature", "properties": None, "geometry": {"type": "Point", "coordinates": [lon, lat]}}
    ]
    (tmp_path / "untagged.geojson").write_text(
        json.dumps({"type": "FeatureCollection", "features": features})
    )
    result = run(
        *ingest_args(
            tmp_path / "db",
            region=small_region(cells),
            osm=tmp_path / "untagged.geojson",
            extra=("--format", "json"),
        )
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["cells_encoded"] == 3 and report["cells_with_osm"] == 1, report
    fused = np.asarray(
        Store.open(tmp_path / "db").table("cells").to_arrow()["fused"].to_pylist(), dtype=np.float32
    )
    assert fused.shape[0] == 3 and np.isfinite(fused).all()


def test_missing_osm_file(db: Path, tmp_path: Path) -> None:
    before = store_digest(db, ("cells", "patches"))
    assert_one_error(
        run(*ingest_args(db, osm=tmp_path / "nowhere.osm.pbf", extra=("--overwrite",))), contains="not found"
    )
    assert store_digest(db, ("cells", "patches")) == before


def test_failed_ingest_leaves_models_table_alone(db: Path, tmp_path: Path) -> None:
    before = store_digest(db)
    assert_one_error(run(*ingest_args(db, osm=tmp_path / "nowhere.osm.pbf", extra=("--overwrite",))))
    assert store_digest(db) == before


def _ingest_in_subprocess(region: str, db: Path) -> subprocess.CompletedProcess:
    """Run ``geolink ingest`` of ``region`` at res 12 in a child capped at 12 GiB and WORLD_TIMEOUT_S
    seconds."""
    code = (
        "import sys; from click.testing import CliRunner; from geolink_store.cli import main; "
        "r = CliRunner().invoke(main, sys.argv[1:]); sys.stderr.write(r.stderr); "
        "sys.stderr.write('Traceback ' + repr(r.exception) if r.exception and "
        "not isinstance(r.exception, SystemExit) else ''); sys.exit(r.exit_code)"
    )
    args = [str(a) for a in ingest_args(db, region=region)]
    cap = 12 * 2**30
    try:
        return subprocess.run(
            [sys.executable, "-c", code, *args],
            check=False,
            capture_output=True,
            text=True,
            timeout=WORLD_TIMEOUT_S,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (cap, cap)),
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"ingest of {region} at res 12 still running after {WORLD_TIMEOUT_S} s")


def _assert_one_error_line(done: subprocess.CompletedProcess) -> None:
    lines = [
        line
        for line in done.stderr.splitlines()
        if line.strip() and "Warning" not in line and not line.startswith("  warnings.warn")
    ]
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr


def test_whole_world_region_fails_fast(tmp_path: Path) -> None:
    """The whole world at res 12 is refused in one line that names the real problem (too many cells)."""
    done = _ingest_in_subprocess("-180,-90,180,90", tmp_path / "db")
    _assert_one_error_line(done)
    assert "holds no H3 cell centre" not in done.stderr, done.stderr
    assert "H3 cells at resolution 12 (limit" in done.stderr, done.stderr


def test_continent_region_fails_fast(tmp_path: Path) -> None:
    _assert_one_error_line(_ingest_in_subprocess("0,0,60,40", tmp_path / "db"))


@pytest.mark.parametrize(
    ("resolutions", "expected", "usage"),
    [(("--res", 16), "16", True), (("--res", 12, "--fine-res", 11), "finer", False)],
    ids=["res-out-of-range", "fine-res-not-finer"],
)
def test_bad_resolutions(db: Path, resolutions: tuple, expected: str, usage: bool) -> None:
    before = store_digest(db)
    result = run(
        "ingest",
        "--db",
        db,
        "--region",
        SAMPLE.region,
        "--imagery",
        SAMPLE.imagery,
        "--osm",
        SAMPLE.osm,
        *resolutions,
    )
    assert_one_error(result, contains=expected, usage=usage)
    assert store_digest(db) == before


def _official_checkpoint(path: Path, state: dict[str, object], **config: object) -> Path:
    torch.save(
        {
            "model_config": {"architecture": "vit_tiny_patch16_224", "num_classes": 0, "global_pool": ""}
            | config,
            "model_state_dict": state,
        },
        path,
    )
    return path


def test_checkpoint_with_wrong_shapes(db: Path, tmp_path: Path) -> None:
    checkpoint = _official_checkpoint(
        tmp_path / "shapes.pth",
        {"pos_embed": torch.zeros(1, 5, 7), "patch_embed.proj.weight": torch.zeros(3, 3)},
    )
    before = store_digest(db)
    assert_one_error(run(*ingest_args(db, extra=("--model", checkpoint))), contains="shape")
    assert store_digest(db) == before


def test_checkpoint_of_another_architecture(db: Path, tmp_path: Path) -> None:
    from model import GeoLink

    state = GeoLink.default().state_dict()
    checkpoint = _official_checkpoint(tmp_path / "arch.pth", state, architecture="vit_small_patch16_224")
    before = store_digest(db)
    assert_one_error(run(*ingest_args(db, extra=("--model", checkpoint))), contains="vit_small_patch16_224")
    assert store_digest(db) == before


def test_checkpoint_carrying_pickled_code(db: Path, tmp_path: Path) -> None:
    checkpoint = tmp_path / "code.pth"
    torch.save(
        {
            "model_config": {"architecture": "vit_tiny_patch16_224"},
            "model_state_dict": {},
            "extra": Payload(),
        },
        checkpoint,
    )
    before = store_digest(db)
    assert_one_error(run(*ingest_args(db, extra=("--model", checkpoint))), contains="refused")
    assert store_digest(db) == before


def test_model_of_another_width(db: Path, tmp_path: Path) -> None:
    from model import GeoLink, GeoLinkConfig

    other = GeoLink(
        GeoLinkConfig(architecture="vit_small_patch16_224", timm_kwargs={"depth": 1}, osm_in_chans=384)
    )
    checkpoint = other.save(tmp_path / "small.safetensors")
    before = store_digest(db)
    assert_one_error(run(*ingest_args(db, extra=("--model", checkpoint))), contains="use another --db")
    assert store_digest(db) == before


def test_store_path_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a store")
    assert_one_error(run(*ingest_args(tmp_path / "file")), contains="is a file")


# ---- search ----


def test_search_invalid_h3(db: Path) -> None:
    before = store_digest(db)
    assert_one_error(run("search", "--db", db, "--cell", "not-a-cell"))
    assert store_digest(db) == before


def test_search_cell_not_in_store(db: Path, cells: list[int]) -> None:
    far = h3.latlng_to_cell(-20.0, -30.0, SAMPLE.res)
    assert_one_error(run("search", "--db", db, "--cell", far))


def test_search_bad_lonlat(db: Path) -> None:
    assert_one_error(run("search", "--db", db, "--lonlat", "east,north"), contains="--lonlat")


def test_search_missing_store(tmp_path: Path) -> None:
    assert_one_error(
        run("search", "--db", tmp_path / "none", "--lonlat", "32.59,0.35"), contains="does not exist"
    )
    assert not (tmp_path / "none").exists()


def test_search_unknown_model(db: Path, cells: list[int]) -> None:
    assert_one_error(run("search", "--db", db, "--cell", h3.int_to_str(cells[0]), "--model", "nope"))


# ---- sql ----


@pytest.mark.parametrize(
    "query",
    [
        "DELETE FROM cells",
        "DROP TABLE cells",
        "UPDATE cells SET n_point = 0",
        "SELEC h3 FROM cells",
        "SELECT * FROM no_such_table",
        "SELECT no_such_column FROM cells",
    ],
)
def test_sql_bad_statements(db: Path, query: str) -> None:
    before = store_digest(db)
    assert_one_error(run("sql", "--db", db, query))
    assert store_digest(db) == before


def test_sql_missing_store(tmp_path: Path) -> None:
    assert_one_error(run("sql", "--db", tmp_path / "none", "SELECT 1"), contains="does not exist")


def test_sql_bad_file_option(db: Path) -> None:
    assert_one_error(run("sql", "--db", db, "--file", "nameonly", "SELECT 1"), contains="NAME=PATH")


# ---- info, index, export ----


def test_info_missing_store(tmp_path: Path) -> None:
    assert_one_error(run("info", "--db", tmp_path / "none"), contains="does not exist")


def test_index_unknown_table(db: Path) -> None:
    before = store_digest(db)
    assert_one_error(run("index", "--db", db, "--table", "nope"), contains="nope")
    assert store_digest(db) == before


def test_export_unknown_table(db: Path, tmp_path: Path) -> None:
    before = store_digest(db)
    assert_one_error(
        run("export", "--db", db, "--table", "nope", "--out", tmp_path / "out.parquet"), contains="nope"
    )
    assert not (tmp_path / "out.parquet").exists()
    assert store_digest(db) == before


def test_export_unknown_model(db: Path, tmp_path: Path) -> None:
    result = run("export", "--db", db, "--out", tmp_path / "out.parquet", "--model", "nope")
    assert_one_error(result, contains="nope")


# ---- heads ----


def _labels_csv(path: Path, rows: list[tuple[object, object]], header: str = "h3,label") -> Path:
    path.write_text(header + "\n" + "".join(f"{a},{b}\n" for a, b in rows))
    return path


def test_heads_labels_for_unknown_cells(db: Path, tmp_path: Path) -> None:
    far = [h3.latlng_to_cell(-20.0 + i * 0.01, -30.0, SAMPLE.res) for i in range(20)]
    labels = _labels_csv(tmp_path / "far.csv", [(cell, "ab"[i % 2]) for i, cell in enumerate(far)])
    before = store_digest(db)
    assert_one_error(run("heads", "train", "--db", db, "--labels", labels))
    assert store_digest(db) == before


def test_heads_labels_without_label_column(db: Path, tmp_path: Path, cells: list[int]) -> None:
    labels = _labels_csv(
        tmp_path / "nolabel.csv", [(h3.int_to_str(c), "x") for c in cells[:20]], header="h3,kind"
    )
    before = store_digest(db)
    assert_one_error(run("heads", "train", "--db", db, "--labels", labels), contains="label")
    assert store_digest(db) == before


def test_heads_compare_labels_file_missing(db: Path, tmp_path: Path) -> None:
    assert_one_error(run("heads", "compare", "--db", db, "--labels", tmp_path / "none.csv"))


def test_heads_predict_unknown_head(db: Path) -> None:
    before = store_digest(db)
    assert_one_error(run("heads", "predict", "--db", db, "--head", "nope"), contains="heads")
    assert store_digest(db) == before


def test_heads_list_missing_store(tmp_path: Path) -> None:
    assert_one_error(run("heads", "list", "--db", tmp_path / "none"), contains="does not exist")


# ---- pretrain, demo ----


def test_pretrain_empty_data_folder(tmp_path: Path) -> None:
    (tmp_path / "shards").mkdir()
    assert_one_error(run("pretrain", "--data", tmp_path / "shards", "--out", tmp_path / "run", "--steps", 1))


def test_pretrain_prepare_without_region(tmp_path: Path) -> None:
    assert_one_error(run("pretrain", "--prepare", "--data", tmp_path / "shards"), contains="--region")


def test_pretrain_bad_config_json(tmp_path: Path) -> None:
    (tmp_path / "shards").mkdir()
    (tmp_path / "config.json").write_text("{not json")
    assert_one_error(run("pretrain", "--data", tmp_path / "shards", "--config", tmp_path / "config.json"))


def test_demo_out_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    assert_one_error(run("demo", "--out", tmp_path / "file"), usage=True)


# ---- every region form passes the same size and validity checks, before torch or the model loads ----

COLD = """
import sys, time
from click.testing import CliRunner
from geolink_store.cli import main
started = time.perf_counter()
result = CliRunner().invoke(main, sys.argv[1:])
sys.stderr.write(result.stderr)
print(result.exit_code, time.perf_counter() - started, "torch" in sys.modules)
"""
FAST_S = 2.0
"""The most seconds a command may take to refuse input that needs no data read (the interpreter's own start
excluded)."""


def run_cold(*args: object) -> tuple[int, float, bool, str]:
    """A command in a fresh interpreter: its exit code, seconds, whether torch was imported, and stderr."""
    done = subprocess.run(
        [sys.executable, "-c", COLD, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    code, seconds, torch_loaded = done.stdout.split()
    return int(code), float(seconds), torch_loaded == "True", done.stderr


def _feature_collection(*geometries: dict, properties: dict | None = None) -> str:
    features = [{"type": "Feature", "properties": properties or {}, "geometry": g} for g in geometries]
    return json.dumps({"type": "FeatureCollection", "features": features})


def _polygon(*ring: tuple[float, float]) -> dict:
    return {"type": "Polygon", "coordinates": [[list(point) for point in (*ring, ring[0])]]}


AFRICA = _polygon((-15.0, 10.0), (40.0, 5.0), (30.0, -30.0), (12.0, -20.0))
"""A continent-sized, non-rectangular polygon."""


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("continent-file", "H3 cells at resolution 12 (limit"),
        ("res0-cell", "H3 cells at resolution 12 (limit"),
        ("res3-cells", "H3 cells at resolution 12 (limit"),
        ("id-beyond-64-bits", "not a valid H3 cell id"),
        ("missing-imagery", "does not exist"),
        ("zero-byte-model", "empty (0 bytes)"),
        ("empty-db", "--db is empty"),
    ],
)
def test_ingest_refuses_fast_before_torch_loads(tmp_path: Path, case: str, expected: str) -> None:
    """Each is one error line within FAST_S seconds, torch never imported, and nothing written."""
    (tmp_path / "africa.geojson").write_text(_feature_collection(AFRICA))
    (tmp_path / "empty.pth").write_bytes(b"")
    kampala = h3.latlng_to_cell(0.35, 32.59, 3)
    args = {
        "continent-file": ingest_args(tmp_path / "db", region=str(tmp_path / "africa.geojson")),
        "res0-cell": ingest_args(tmp_path / "db", region=h3.cell_to_parent(kampala, 0)),
        "res3-cells": ingest_args(tmp_path / "db", region=",".join(h3.grid_disk(kampala, 1))),
        "id-beyond-64-bits": ingest_args(tmp_path / "db", region="ffffffffffffffffffff"),
        "missing-imagery": ingest_args(tmp_path / "db", imagery=tmp_path / "nowhere.tif"),
        "zero-byte-model": ingest_args(tmp_path / "db", extra=("--model", tmp_path / "empty.pth")),
        "empty-db": ingest_args(Path("")),
    }[case]
    if case == "empty-db":
        args[2] = ""
    code, seconds, torch_loaded, stderr = run_cold(*args)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert expected.lower() in lines[0].lower(), lines[0]
    assert not torch_loaded and seconds < FAST_S, (torch_loaded, seconds)
    assert not (tmp_path / "db").exists() and not Path("cells.lance").exists()


@pytest.mark.parametrize("form", ["bbox", "file"])
def test_a_small_region_across_the_antimeridian_is_its_real_size(db: Path, tmp_path: Path, form: str) -> None:
    """200 m across +-180 degrees (a bbox with W > E, or a polygon crossing it) is a few hundred cells, not a
    band around the world: the error is the real one (no imagery there)."""
    west, east, south, north = 179.999, -179.999, -16.5, -16.4982
    region = f"{west},{south},{east},{north}"
    if form == "file":
        (tmp_path / "fiji.geojson").write_text(
            _feature_collection(_polygon((west, south), (east, south), (east, north), (west, north)))
        )
        region = str(tmp_path / "fiji.geojson")
    before = store_digest(db)
    message = assert_one_error(run(*ingest_args(db, region=region)), contains="misses the imagery")
    assert "H3 cells at resolution" not in message
    assert store_digest(db) == before


def test_continent_label_polygons_are_refused(db: Path, tmp_path: Path) -> None:
    (tmp_path / "labels.geojson").write_text(_feature_collection(AFRICA, properties={"label": "land"}))
    before = store_digest(db)
    result = run("heads", "train", "--db", db, "--labels", tmp_path / "labels.geojson")
    assert_one_error(result, contains="label polygons would hold about")
    assert store_digest(db) == before


def test_label_csv_with_an_id_beyond_64_bits(db: Path, tmp_path: Path) -> None:
    labels = _labels_csv(tmp_path / "big.csv", [("f" * 20, "a"), ("e" * 20, "b")])
    before = store_digest(db)
    assert_one_error(run("heads", "train", "--db", db, "--labels", labels), contains="not a valid H3 cell id")
    assert store_digest(db) == before


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("within-bbox", "--within region would hold about"),
        ("within-file", "--within region would hold about"),
        ("like-file", "--like-file polygons would hold about"),
        ("cell-beyond-64-bits", "not a valid H3 cell id"),
    ],
)
def test_search_regions_pass_the_size_check(
    db: Path, tmp_path: Path, cells: list[int], case: str, expected: str
) -> None:
    """A continent as --within or --like-file at res 12, or an id beyond 64 bits: one line within FAST_S."""
    africa = tmp_path / "africa.geojson"
    africa.write_text(_feature_collection(AFRICA))
    query = ("--cell", h3.int_to_str(cells[0]))
    args = {
        "within-bbox": (*query, "--within", "-20,-35,50,35"),
        "within-file": (*query, "--within", africa),
        "like-file": ("--like-file", africa),
        "cell-beyond-64-bits": ("--cell", "f" * 20),
    }[case]
    started = time.perf_counter()
    result = run("search", "--db", db, *args)
    seconds = time.perf_counter() - started
    assert_one_error(result, contains=expected)
    assert seconds < FAST_S, seconds


# ---- OSM without a usable feature in the region is refused (unless --allow-empty-osm) ----

MONACO_BUILDING = _polygon((7.4200, 43.7300), (7.4202, 43.7300), (7.4202, 43.7302))


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("another-place", "OSM of another place"),
        ("metres-without-crs", "CRS mistake"),
        ("two-point-ring", "no usable geometry"),
        ("pbf-of-another-place", "no OSM entities"),
    ],
)
def test_osm_without_a_usable_feature(db: Path, tmp_path: Path, case: str, expected: str) -> None:
    import pyrosm

    lon, lat = (SAMPLE.bbox[0] + SAMPLE.bbox[2]) / 2, (SAMPLE.bbox[1] + SAMPLE.bbox[3]) / 2
    geometry = {
        "another-place": MONACO_BUILDING,
        "metres-without-crs": {"type": "Point", "coordinates": [454_000.0, 38_700.0]},
        "two-point-ring": {"type": "Polygon", "coordinates": [[[lon, lat], [lon + 1e-4, lat], [lon, lat]]]},
    }.get(case)
    osm = Path(pyrosm.get_data("test_pbf"))
    if geometry is not None:
        osm = tmp_path / f"{case}.geojson"
        osm.write_text(_feature_collection(geometry, properties={"building": "yes"}))
    before = store_digest(db)
    line = assert_one_error(run(*ingest_args(db, osm=osm, extra=("--overwrite",))), contains=expected)
    assert "--allow-empty-osm" in line or case == "metres-without-crs", line
    assert store_digest(db) == before


def test_allow_empty_osm_encodes_without_osm(tmp_path: Path, cells: list[int]) -> None:
    (tmp_path / "monaco.geojson").write_text(
        _feature_collection(MONACO_BUILDING, properties={"building": "y"})
    )
    args = ingest_args(tmp_path / "db", region=small_region(cells), osm=tmp_path / "monaco.geojson")
    result = run(*args, "--allow-empty-osm", "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["cells_encoded"] == 3 and report["cells_with_osm"] == 0, report


# ---- --db: empty, or a folder that is no store ----

READERS = [
    ("info",),
    ("search", "--lonlat", "32.59,0.35"),
    ("sql", "SELECT 1"),
    ("export", "--out", "out.parquet"),
    ("heads", "list"),
    ("heads", "predict", "--head", "x"),
    ("index",),
]


@pytest.mark.parametrize("command", READERS, ids=[" ".join(c[:2]) for c in READERS])
def test_readers_refuse_a_folder_that_is_no_store(tmp_path: Path, command: tuple[str, ...]) -> None:
    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a store")
    group, rest = (command[:2], command[2:]) if command[0] == "heads" else (command[:1], command[1:])
    assert_one_error(run(*group, "--db", folder, *rest), contains="is not a geolink store")
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("command", READERS[:3], ids=[c[0] for c in READERS[:3]])
def test_readers_refuse_an_empty_db(tmp_path: Path, command: tuple[str, ...]) -> None:
    assert_one_error(run(command[0], "--db", "", *command[1:]), contains="--db is empty")


# ---- heads: enough labelled cells, nothing written by a command that fails ----


def test_too_few_labelled_cells_says_how_many_are_needed(db: Path, tmp_path: Path, cells: list[int]) -> None:
    labels = _labels_csv(
        tmp_path / "two.csv", [(h3.int_to_str(cells[0]), "a"), (h3.int_to_str(cells[40]), "b")]
    )
    before = store_digest(db)
    result = run("heads", "train", "--db", db, "--labels", labels, "--split", "random")
    assert_one_error(result, contains="at least 10 on each side of the split, about 40 labelled cells")
    assert store_digest(db) == before


@pytest.fixture(scope="module")
def head_id(db: Path, cells: list[int], tmp_path_factory) -> str:
    """A head trained once on the module store (tests take their digest after it exists)."""
    path = tmp_path_factory.mktemp("head") / "labels.csv"
    labels = _labels_csv(path, [(h3.int_to_str(c), "ab"[i % 2]) for i, c in enumerate(cells)])
    result = run("heads", "train", "--db", db, "--labels", labels, "--split", "random", "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["head_id"]


@pytest.mark.parametrize("where", ["missing-folder", "no-map-suffix"])
def test_predict_with_a_bad_map_writes_no_predictions(
    db: Path, tmp_path: Path, head_id: str, where: str
) -> None:
    target = tmp_path / "nowhere" / "map.png" if where == "missing-folder" else tmp_path / "map.jpg"
    before = store_digest(db)
    assert_one_error(
        run("heads", "predict", "--db", db, "--head", head_id, "--map", target), contains="--map"
    )
    assert store_digest(db) == before and not target.exists()


def test_failed_compare_leaves_no_new_head(db: Path, tmp_path: Path, cells: list[int]) -> None:
    """39 labelled cells with OSM and every one without: the image head trains (40 or more cells), the OSM
    one has only 39 and fails, and no head of the comparison is saved."""
    stored = Store.open(db).table("cells").to_arrow()
    no_osm = [
        c for c, v in zip(stored["h3"].to_pylist(), stored["osm"].to_pylist(), strict=True) if v is None
    ]
    assert no_osm, "the sample has cells without OSM"
    chosen = no_osm + [c for c in cells if c not in no_osm][:39]
    labels = _labels_csv(
        tmp_path / "mixed.csv", [(h3.int_to_str(c), "ab"[i % 2]) for i, c in enumerate(chosen)]
    )
    before = store_digest(db)
    result = run("heads", "compare", "--db", db, "--labels", labels, "--split", "random")
    assert_one_error(result, contains="labelled cells match stored vectors")
    assert store_digest(db) == before


# ---- a re-ingest at other resolutions is refused before anything is written ----


@pytest.mark.parametrize(
    ("resolutions", "expected"),
    [(("--res", 11, "--fine-res", 13), "resolution 12"), (("--res", 12, "--fine-res", 14), "resolution 13")],
    ids=["other-res", "other-fine-res"],
)
def test_reingest_at_other_resolutions_writes_nothing(db: Path, resolutions: tuple, expected: str) -> None:
    args = ingest_args(db, extra=("--overwrite",))
    args = args[: args.index("--res")] + [*resolutions, "--overwrite"]
    before = store_digest(db)
    assert_one_error(run(*args), contains=expected)
    assert store_digest(db) == before


# ---- pretrain ----


def test_pretrain_unknown_architecture(tmp_path: Path) -> None:
    (tmp_path / "shards").mkdir()
    result = run(
        "pretrain",
        "--data",
        tmp_path / "shards",
        "--out",
        tmp_path / "run",
        "--architecture",
        "vit_huge_nope",
    )
    assert_one_error(result, contains="vit_huge_nope")
    assert not (tmp_path / "run").exists()


def test_pretrain_unknown_config_key(tmp_path: Path) -> None:
    (tmp_path / "shards").mkdir()
    (tmp_path / "config.json").write_text(json.dumps({"data": "shards", "out": "run", "learning_rate": 1}))
    result = run("pretrain", "--data", tmp_path / "shards", "--config", tmp_path / "config.json")
    assert_one_error(result, contains="learning_rate")


def test_pretrain_truncated_shard(tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    prepared = run(
        "pretrain", "--prepare", "--region", SAMPLE.region, "--imagery", SAMPLE.imagery, "--osm", SAMPLE.osm,
        "--res", SAMPLE.res, "--data", shards,
    )  # fmt: skip
    assert prepared.exit_code == 0, prepared.output
    shard = sorted(shards.glob("*.safetensors"))[0]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    result = run("pretrain", "--data", shards, "--out", tmp_path / "run", "--steps", 1, "--batch-size", 2)
    assert_one_error(result, contains=shard.name)


def test_pretrain_prepare_refuses_a_continent(tmp_path: Path) -> None:
    (tmp_path / "africa.geojson").write_text(_feature_collection(AFRICA))
    result = run(
        "pretrain", "--prepare", "--region", tmp_path / "africa.geojson", "--imagery", SAMPLE.imagery,
        "--res", 12, "--data", tmp_path / "shards",
    )  # fmt: skip
    assert_one_error(result, contains="H3 cells at resolution 12 (limit")
    assert not (tmp_path / "shards").exists()
