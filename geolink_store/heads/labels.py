"""User labels joined to H3 cells.

Points to their cell, polygons to the cells they cover, CSV of ``h3,label``, and label rasters (a class per
pixel) to fine cells by pixel majority. In a label raster every value is a class, 0 included, except the
raster's nodata: its declared nodata value, pixels its mask leaves out, and NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
from rasterio.features import rasterize
from rasterio.warp import transform_geom

from geolink_store.constants import VECTOR_SUFFIXES, WGS84
from geolink_store.errors import GeolinkError
from geolink_store.grid import (
    as_cells,
    cell_geometries,
    check_cell_count,
    estimated_cells,
    hex_id,
    points_to_cells,
    polygon_cells,
    resolution,
)
from geolink_store.regions import split_at_antimeridian


@dataclass(frozen=True)
class CellLabels:
    """One label per cell.

    ``cells`` (int64 H3) and ``labels`` (str), plus how many inputs were dropped and why.
    """

    cells: np.ndarray
    labels: np.ndarray
    dropped: dict[str, int]


def read_labels(path: str | Path, label_column: str, res: int, min_share: float = 0.5) -> CellLabels:
    """Labels of ``path`` at H3 resolution ``res``.

    Points label the cell containing them; polygons label each cell whose area they cover by at least
    ``min_share``; a CSV needs columns ``h3`` (hex or integer) and ``label_column``. A cell claimed by several
    labels takes the one with most points / covered area.
    """
    path = Path(path)
    if not path.is_file():
        raise GeolinkError(f"labels file not found: {path}")
    if path.suffix.lower() == ".csv":
        return _from_csv(path, label_column, res)
    if path.suffix.lower() in VECTOR_SUFFIXES:
        return _from_vector(path, label_column, res, min_share)
    raise GeolinkError(f"{path.name}: labels must be CSV (h3,label), GeoJSON, GPKG or GeoParquet")


def _from_csv(path: Path, label_column: str, res: int) -> CellLabels:
    table = pd.read_csv(path, dtype=str)
    for column in ("h3", label_column):
        if column not in table.columns:
            raise GeolinkError(f"{path.name} has no column {column!r} (columns: {', '.join(table.columns)})")
    table = table.dropna(subset=["h3", label_column])
    cells = as_cells(int(v) if v.isdigit() else v for v in table["h3"])
    wrong = [int(c) for c in cells if resolution(c) != res]
    if wrong:
        raise GeolinkError(
            f"{path.name}: {len(wrong)} cells are not at the store's resolution {res} "
            f"(e.g. {hex_id(wrong[0])})"
        )
    votes = pd.DataFrame({"h3": cells, "label": table[label_column].to_numpy(), "weight": 1.0})
    return _resolve(votes, {"missing label or h3": int(len(pd.read_csv(path)) - len(table))})


def _from_vector(path: Path, label_column: str, res: int, min_share: float) -> CellLabels:
    try:
        frame = (
            gpd.read_parquet(path)
            if path.suffix.lower() in (".parquet", ".geoparquet")
            else gpd.read_file(path)
        )
    except Exception as error:  # fiona/pyogrio raise many driver-specific types
        raise GeolinkError(f"{path.name}: cannot read labels ({str(error).splitlines()[0]})") from None
    if label_column not in frame.columns:
        raise GeolinkError(
            f"{path.name} has no column {label_column!r} (columns: {', '.join(map(str, frame.columns))})"
        )
    if frame.crs is None:
        raise GeolinkError(f"{path.name}: labels without a CRS; write the file with one (e.g. EPSG:4326)")
    frame = frame[frame.geometry.notna() & frame[label_column].notna()].to_crs(WGS84)
    frame["geometry"] = shapely.make_valid(frame.geometry.values)
    parts = frame.explode(index_parts=False)
    points = parts[parts.geom_type == "Point"]
    polygons = parts[parts.geom_type == "Polygon"]
    votes = [
        pd.DataFrame(
            {
                "h3": points_to_cells(points.geometry.x, points.geometry.y, res),
                "label": points[label_column].astype(str).to_numpy(),
                "weight": 1.0,
            }
        )
    ]
    if len(polygons):
        votes.append(_polygon_votes(polygons, label_column, res, min_share))
    return _resolve(pd.concat(votes), {"other geometry types": int(len(parts) - len(points) - len(polygons))})


def _polygon_votes(polygons: gpd.GeoDataFrame, label_column: str, res: int, min_share: float) -> pd.DataFrame:
    """(h3, label, covered share) for every cell a polygon covers enough of.

    A polygon must cover at least ``min_share`` of the cell's area. Polygons are checked, all together,
    against the region size limit before any cell is listed.
    """
    geometries = [split_at_antimeridian(geometry) for geometry in polygons.geometry]
    check_cell_count(sum(estimated_cells(g, res) for g in geometries), res, "the label polygons")
    rows = []
    for geometry, label in zip(geometries, polygons[label_column].astype(str), strict=True):
        for cell in polygon_cells(geometry, res, contain="overlap"):
            rows.append((cell, label, geometry))
    if not rows:
        return pd.DataFrame(
            {"h3": np.empty(0, np.int64), "label": np.empty(0, object), "weight": np.empty(0)}
        )
    cells = np.array([r[0] for r in rows], dtype=np.int64)
    hexagons = gpd.GeoSeries(cell_geometries(cells), crs=WGS84)
    covers = gpd.GeoSeries([r[2] for r in rows], crs=WGS84)
    metric = hexagons.estimate_utm_crs()
    hexagons, covers = hexagons.to_crs(metric), covers.to_crs(metric)
    share = shapely.area(shapely.intersection(hexagons.values, covers.values)) / shapely.area(hexagons.values)
    keep = share >= min_share
    return pd.DataFrame(
        {"h3": cells[keep], "label": np.array([r[1] for r in rows])[keep], "weight": share[keep]}
    )


def coverage_share(cells: np.ndarray, polygons: gpd.GeoDataFrame) -> np.ndarray:
    """The share (0-1) of each cell's area covered by the union of ``polygons`` (any CRS).

    Areas are measured in a local UTM frame.

    Useful to derive presence labels (e.g. a cell is built-up when OSM buildings cover >= 25 % of it).
    """
    hexagons = gpd.GeoSeries(cell_geometries(cells), crs=WGS84)
    metric = hexagons.estimate_utm_crs()
    union = shapely.union_all(shapely.make_valid(polygons.to_crs(metric).geometry.values))
    area = hexagons.to_crs(metric).values
    return shapely.area(shapely.intersection(area, union)) / shapely.area(area)


def _resolve(votes: pd.DataFrame, dropped: dict[str, int]) -> CellLabels:
    """One label per cell: the label with the largest total weight."""
    if votes.empty:
        raise GeolinkError("no labelled cells: the labels cover no cell of the requested resolution")
    totals = votes.groupby(["h3", "label"], as_index=False)["weight"].sum()
    best = totals.sort_values(["h3", "weight"], ascending=[True, False]).drop_duplicates("h3")
    conflicting = int(totals.h3.duplicated().sum())
    dropped = {k: v for k, v in (dropped | {"cells with conflicting labels": conflicting}).items() if v}
    return CellLabels(best["h3"].to_numpy(np.int64), best["label"].astype(str).to_numpy(), dropped)


def raster_labels(path: str | Path, fine_cells: np.ndarray, ignore: tuple[float, ...] = ()) -> CellLabels:
    """The majority class of a label raster's pixels inside each fine cell.

    Every pixel value is a class (0 included) except nodata: the raster's declared nodata value, the pixels
    its mask leaves out, NaN, and any value of ``ignore``. Integral float classes are named as integers.
    """
    path = Path(path)
    try:
        source = rasterio.open(path)
    except rasterio.errors.RasterioIOError as error:
        raise GeolinkError(f"{path.name}: cannot read the label raster ({error})") from None
    with source:
        if source.crs is None:
            raise GeolinkError(f"{path.name}: label raster without a CRS")
        classes = source.read(1)
        labelled = source.read_masks(1) > 0
        shapes = [
            (transform_geom(WGS84, source.crs, shapely.geometry.mapping(g)), i + 1)
            for i, g in enumerate(cell_geometries(fine_cells))
        ]
        owner = rasterize(shapes, out_shape=classes.shape, transform=source.transform, fill=0, dtype="int32")
    if classes.dtype.kind == "f":
        labelled &= ~np.isnan(classes)
    valid = (owner > 0) & labelled & ~np.isin(classes, ignore)
    if not valid.any():
        raise GeolinkError(f"{path.name}: no labelled pixel (nodata aside) falls in the store's fine cells")
    values = classes[valid]
    if values.dtype.kind == "f" and np.all(values == np.round(values)):
        values = values.astype(np.int64)
    votes = pd.DataFrame({"h3": fine_cells[owner[valid] - 1], "label": values.astype(str), "weight": 1.0})
    return _resolve(votes, {})
