"""Heads trained straight from a real store (the bundled Kampala sample) and the ``geolink heads``
commands."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from h3.api import basic_int as h3

from geolink_store.cli import main
from geolink_store.errors import GeolinkError
from geolink_store.heads.from_store import list_heads, predict_from_store, train_from_store
from geolink_store.heads.labels import coverage_share
from geolink_store.sample import kampala_sample
from geolink_store.store.store import Store

SAMPLE = kampala_sample()


@pytest.fixture(scope="module")
def presence_csv(sample_store_copy: Path, tmp_path_factory) -> Path:
    """Building presence per stored cell from the real OSM buildings: 'built' if buildings cover >= 25 %."""
    cells = np.array(Store.open(sample_store_copy).table("cells").to_arrow()["h3"].to_pylist())
    share = coverage_share(cells, gpd.read_file(SAMPLE.osm))
    assert 0 < share.mean() < 1 and share.min() >= 0 and share.max() <= 1 + 1e-9
    path = tmp_path_factory.mktemp("labels") / "presence.csv"
    pd.DataFrame({"h3": [f"{c:x}" for c in cells], "label": np.where(share >= 0.25, "built", "open")}).to_csv(
        path, index=False
    )
    return path


def test_train_predict_and_list(sample_store_copy: Path, presence_csv: Path) -> None:
    store = Store.open(sample_store_copy)
    trained = train_from_store(store, presence_csv, "label", modality="fused", kind="linear", split="random")
    metrics = trained.metrics
    assert metrics["test"] > 0 and metrics["train"] + metrics["test"] == store.table("cells").count_rows()
    assert set(metrics["per_class_f1"]) == {"built", "open"} and 0 <= metrics["macro_f1"] <= 1
    assert "majority_baseline" in metrics
    predictions = predict_from_store(store, trained.head_id)
    assert predictions.num_rows == store.table("cells").count_rows()
    assert set(predictions["label"].to_pylist()) <= {"built", "open"}
    assert store.table("predictions").count_rows() == predictions.num_rows
    predict_from_store(store, trained.head_id)  # idempotent
    assert store.table("predictions").count_rows() == predictions.num_rows
    assert trained.head_id in [h["head_id"] for h in list_heads(store)]
    with pytest.raises(GeolinkError, match="cannot read model other"):
        predict_from_store(store, trained.head_id, model_id="other")


def test_labels_outside_the_store_are_counted(
    sample_store_copy: Path, presence_csv: Path, tmp_path: Path
) -> None:
    labels = pd.read_csv(presence_csv)
    elsewhere = [
        h3.latlng_to_cell(48.85, 2.35, SAMPLE.res),
        h3.latlng_to_cell(0.40, 32.60, SAMPLE.res),
    ]  # Paris, Kampala
    outside = pd.DataFrame({"h3": [f"{c:x}" for c in elsewhere], "label": ["built", "open"]})
    path = tmp_path / "more.csv"
    pd.concat([labels, outside]).to_csv(path, index=False)
    trained = train_from_store(Store.open(sample_store_copy), path, "label", split="random")
    assert trained.dropped["labels outside the store's cells"] == 2


def test_bad_labels(sample_store_copy: Path, tmp_path: Path) -> None:
    store = Store.open(sample_store_copy)
    with pytest.raises(GeolinkError, match="single class"):
        train_from_store(store, SAMPLE.osm, "building", split="random", min_share=0.01)
    with pytest.raises(GeolinkError, match="no column 'nope'"):
        train_from_store(store, SAMPLE.osm, "nope")


def test_cli_train_compare_predict(sample_store_copy: Path, presence_csv: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "heads",
            "train",
            "--db",
            str(sample_store_copy),
            "--labels",
            str(presence_csv),
            "--split",
            "random",
            "--kind",
            "mlp",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert "macro_f1" in payload["metrics"] and payload["head_id"]
    compared = runner.invoke(
        main,
        [
            "heads",
            "compare",
            "--db",
            str(sample_store_copy),
            "--labels",
            str(presence_csv),
            "--split",
            "random",
            "--format",
            "json",
        ],
    )
    assert compared.exit_code == 0, compared.output
    assert [row["modality"] for row in json.loads(compared.stdout)] == ["image", "osm", "fused", "concat"]
    png = tmp_path / "predictions.png"
    predicted = runner.invoke(
        main,
        ["heads", "predict", "--db", str(sample_store_copy), "--head", payload["head_id"], "--map", str(png)],
    )
    assert predicted.exit_code == 0, predicted.output
    assert png.stat().st_size > 10_000
    missing = runner.invoke(main, ["heads", "predict", "--db", str(sample_store_copy), "--head", "nope"])
    assert missing.exit_code == 1 and missing.stderr.startswith("error: no head 'nope'")


def test_label_raster_trains_a_segmentation_head_on_patches(sample_store_copy: Path, tmp_path: Path) -> None:
    """A class-per-pixel GeoTIFF (OSM buildings rasterised at ~0.5 m: 1 building, 2 ground) labels the fine
    patches."""
    import rasterio
    from rasterio.features import rasterize
    from rasterio.transform import from_bounds

    buildings = gpd.read_file(SAMPLE.osm).to_crs(32636)
    west, south, east, north = buildings.total_bounds
    width, height = int((east - west) / 0.5), int((north - south) / 0.5)
    transform = from_bounds(west, south, east, north, width, height)
    classes = rasterize(
        ((g, 1) for g in buildings.geometry),
        out_shape=(height, width),
        transform=transform,
        fill=2,
        dtype="uint8",
    )
    path = tmp_path / "classes.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=1,
        dtype="uint8",
        crs="EPSG:32636",
        transform=transform,
    ) as target:
        target.write(classes, 1)
    trained = train_from_store(Store.open(sample_store_copy), path, "class", modality="image", split="random")
    assert trained.metrics["table"] == "patches"
    assert set(trained.metrics["per_class_iou"]) == {"1", "2"} and 0 <= trained.metrics["miou"] <= 1
    assert trained.metrics["train"] + trained.metrics["test"] > 300


@pytest.mark.parametrize("nodata", ["declared-99", "nan", "declared-nan"])
def test_raster_nodata_is_never_a_class_and_0_is_one(sample_store: Path, tmp_path: Path, nodata: str) -> None:
    """Buildings 1, ground 0, and a nodata stripe over the western third: labels are exactly {0, 1}."""
    import rasterio
    from rasterio.features import rasterize
    from rasterio.transform import from_bounds

    from geolink_store.heads.labels import raster_labels

    buildings = gpd.read_file(SAMPLE.osm).to_crs(32636)
    west, south, east, north = buildings.total_bounds
    width, height = int((east - west) / 0.5), int((north - south) / 0.5)
    transform = from_bounds(west, south, east, north, width, height)
    classes = rasterize(((g, 1) for g in buildings.geometry), (height, width), transform=transform, fill=0)
    dtype, value, declared = {
        "declared-99": ("uint8", 99, 99),
        "nan": ("float32", np.nan, None),
        "declared-nan": ("float32", np.nan, np.nan),
    }[nodata]
    classes = classes.astype(dtype)
    classes[:, : width // 3] = value
    path = tmp_path / "classes.tif"
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 1, "dtype": dtype}
    with rasterio.open(path, "w", crs="EPSG:32636", transform=transform, nodata=declared, **profile) as out:
        out.write(classes, 1)
    fine = np.array(Store.open(sample_store).table("patches").to_arrow()["h3"].to_pylist())
    assert set(raster_labels(path, fine).labels) == {"0", "1"}
