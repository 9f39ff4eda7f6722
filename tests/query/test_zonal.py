"""Zonal statistics: area-weighted mean/std per zone from the API, the CLI (GeoParquet) and SQL, against a
brute-force overlay of the stored hexagons; bad input as one error line.

Rows are for REAL H3 cells (a res-9 grid around Kampala) with SYNTHETIC vectors (geolink_store.testing).
"""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from click.testing import CliRunner

import geolink_store as gs
from geolink_store import grid
from geolink_store.cli import main
from geolink_store.errors import GeolinkError
from geolink_store.query.sql import run_sql
from geolink_store.testing import synthetic_store


@pytest.fixture(scope="module")
def store_and_rows(tmp_path_factory: pytest.TempPathFactory):
    return synthetic_store(tmp_path_factory.mktemp("zonal") / "db", n=1500)


@pytest.fixture(scope="module")
def zones(store_and_rows, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three zones: a box and a disc over the cells, and one far away (no cells)."""
    rows = store_and_rows[1]
    lon, lat = rows["lon"].to_numpy(), rows["lat"].to_numpy()
    shapes = {
        "box": shapely.box(
            *np.quantile(lon, [0.2]),
            *np.quantile(lat, [0.2]),
            *np.quantile(lon, [0.5]),
            *np.quantile(lat, [0.5]),
        ),
        "disc": shapely.Point(np.median(lon), np.median(lat)).buffer(0.012),
        "far": shapely.box(10, 10, 10.1, 10.1),
    }
    features = [
        {
            "type": "Feature",
            "properties": {"name": name, "rank": i},
            "geometry": shapely.geometry.mapping(shape),
        }
        for i, (name, shape) in enumerate(shapes.items())
    ]
    path = tmp_path_factory.mktemp("zones") / "zones.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def brute_force(
    rows, zone: shapely.Geometry, column: str = "fused"
) -> tuple[int, float, np.ndarray, np.ndarray]:
    """Count, weight, mean and std by intersecting every stored hexagon with the zone."""
    hexagons = shapely.from_wkb(rows["geometry"].to_numpy(zero_copy_only=False))
    weights = shapely.area(shapely.intersection(hexagons, zone)) / shapely.area(hexagons)
    keep = weights > 1e-12
    vectors = np.stack(rows[column].to_numpy(zero_copy_only=False))[keep]
    w = weights[keep]
    mean = (w[:, None] * vectors).sum(0) / w.sum()
    std = np.sqrt((w[:, None] * (vectors - mean) ** 2).sum(0) / w.sum())
    return int(keep.sum()), float(w.sum()), mean, std


def test_api_equals_a_brute_force_overlay(store_and_rows, zones: Path) -> None:
    store, rows = store_and_rows
    result = gs.zonal_stats(store, zones, modality="image")
    assert list(result["name"]) == ["box", "disc", "far"] and result.crs.to_epsg() == 4326
    for _, zone in result.iloc[:2].iterrows():
        n, weight, mean, std = brute_force(rows, zone.geometry, "image")
        assert zone["n_cells"] == n and zone["weight"] == pytest.approx(weight, rel=1e-6)
        assert np.allclose(zone["image_mean"], mean, atol=1e-5) and np.allclose(
            zone["image_std"], std, atol=1e-5
        )
    far = result.iloc[2]
    assert far["n_cells"] == 0 and far["weight"] == 0 and far["image_mean"] is None


def test_sql_macro_equals_the_api(store_and_rows, zones: Path) -> None:
    store = store_and_rows[0]
    api = gs.zonal_stats(store, zones)
    sql = run_sql(
        store.path, "SELECT * FROM cells_zonal('zones') ORDER BY rank", files={"zones": zones}
    ).to_pylist()
    assert [row["name"] for row in sql] == ["box", "disc", "far"]
    for row, (_, zone) in zip(sql[:2], api.iloc[:2].iterrows(), strict=True):
        assert row["n_cells"] == zone["n_cells"] and row["weight"] == pytest.approx(zone["weight"], rel=1e-6)
        assert np.allclose(row["fused_mean"], zone["fused_mean"], atol=1e-5)
        assert np.allclose(row["fused_std"], zone["fused_std"], atol=1e-5)
    assert sql[2]["n_cells"] == 0 and sql[2]["fused_mean"] is None
    with pytest.raises(GeolinkError, match="modality must be"):
        run_sql(store.path, "SELECT * FROM cells_zonal('zones', modality := 'x')", files={"zones": zones})


def test_coarser_res_weighs_cells_by_their_parents_share(store_and_rows, zones: Path) -> None:
    store, rows = store_and_rows
    result = gs.zonal_stats(store, zones, res=7, stats=["mean"])
    assert "fused_std" not in result.columns
    disc = result.iloc[1]
    parents = rows["h3_r7"].to_numpy()
    unique = np.unique(parents)
    hexagons = grid.cell_geometries(unique)
    covered = shapely.area(shapely.intersection(hexagons, disc.geometry)) / shapely.area(hexagons)
    shares = dict(zip(unique, covered, strict=True))
    w = np.array([shares[p] for p in parents])
    vectors = np.stack(rows["fused"].to_numpy(zero_copy_only=False))
    keep = w > 1e-12
    assert disc["n_cells"] == keep.sum()
    assert np.allclose(disc["fused_mean"], (w[keep, None] * vectors[keep]).sum(0) / w[keep].sum(), atol=1e-5)


def test_cli_writes_geoparquet(store_and_rows, zones: Path, tmp_path: Path) -> None:
    out = tmp_path / "zonal.parquet"
    result = CliRunner().invoke(
        main,
        [
            "zonal",
            "--db",
            str(store_and_rows[0].path),
            "--zones",
            str(zones),
            "--stats",
            "mean",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.stderr
    frame = gpd.read_parquet(out)
    assert frame.crs.to_epsg() == 4326 and len(frame) == 3 and frame.geometry.iloc[0].geom_type == "Polygon"
    assert list(frame.columns) == [
        "name",
        "rank",
        "geometry",
        "model_id",
        "epoch",
        "n_cells",
        "weight",
        "fused_mean",
    ]
    assert len(frame["fused_mean"].iloc[0]) == 16


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--zones", "{tmp}/missing.geojson"], "does not exist"),
        (["--zones", "{points}"], "no polygon"),
        (["--zones", "{zones}", "--stats", "median"], "stats must be"),
        (["--zones", "{zones}", "--res", "11"], "coarser than or equal"),
        (["--zones", "{clash}"], "rename them"),
        (["--zones", "{zones}", "--out", "{tmp}/no/such/dir/z.parquet"], "does not exist"),
    ],
)
def test_bad_input_is_one_error_line(store_and_rows, zones: Path, tmp_path: Path, args, message: str) -> None:
    points = tmp_path / "points.geojson"
    gpd.GeoDataFrame(geometry=[shapely.Point(32.5, 0.3)], crs=4326).to_file(points)
    clash = tmp_path / "clash.geojson"
    gpd.read_file(zones).assign(weight=1.0).to_file(clash)
    filled = [a.format(tmp=tmp_path, points=points, zones=zones, clash=clash) for a in args]
    if "--out" not in filled:
        filled += ["--out", str(tmp_path / "z.parquet")]
    result = CliRunner().invoke(main, ["zonal", "--db", str(store_and_rows[0].path), *filled])
    assert result.exit_code == 1 and result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "z.parquet").exists()
