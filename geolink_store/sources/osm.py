"""OSM sources -> entities.

Entities are a GeoDataFrame of ``tags`` (dict of raw OSM key -> value) and ``geometry`` (EPSG:4326).

Readers: OSM PBF through pyrosm (every element carrying one of :data:`FEATURE_KEYS`, with all its tags),
vector files through geopandas (GeoJSON, GPKG, GeoParquet, Shapefile, FlatGeobuf), and the official GeoLink
per-chip example folder (``<name>_{polygon,line,point}.geojson`` + ``<name>.pickle``). :class:`OSMIndex`
answers per-chip lookups from an STRtree in the chip CRS; :func:`iter_osm_pieces` reads a region too large for
memory piece by piece.
"""

from __future__ import annotations

import builtins
import io
import json
import logging
import math
import os
import pickle
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from pyproj import CRS, Transformer

from geolink_store.constants import GEOPARQUET_SUFFIXES, VECTOR_SUFFIXES, WGS84
from geolink_store.errors import EmptySourceError, GeolinkError
from geolink_store.sources.tags import normalise_tags

log = logging.getLogger(__name__)

BBox = tuple[float, float, float, float]
"""(west, south, east, north) in some CRS."""

FEATURE_KEYS: tuple[str, ...] = (
    "aerialway", "aeroway", "amenity", "barrier", "building", "craft", "emergency", "geological", "golf",
    "healthcare", "highway", "historic", "landuse", "leisure", "man_made", "military", "natural", "office",
    "place", "power", "public_transport", "railway", "shop", "sport", "telecom", "tourism", "water",
    "waterway",
)  # fmt: skip
"""OSM primary feature keys read from a PBF (buildings, roads, rails, land use, nature, water, POIs...).
``boundary`` and ``route`` are left out: their relations span whole regions and would sit in every chip."""

EXAMPLE_GEOMETRY_KINDS = ("polygon", "line", "point")
_NOT_TAGS = frozenset(
    {"id", "osm_id", "osm_type", "fid", "lon", "lat", "tags", "visible", "version", "timestamp", "changeset",
     "uid", "user", "nodes", "members", "geometry"}
)  # fmt: skip
_SAFE_BUILTINS = frozenset({"set", "frozenset", "complex", "bytearray"})


def read_osm(
    path: str | os.PathLike, bbox_lonlat: BBox | None = None, *, allow_empty: bool = False
) -> gpd.GeoDataFrame:
    """OSM entities from a PBF, a vector file or an official example folder, optionally within a lon/lat box.

    Invalid geometries are repaired (``shapely.make_valid``) or, when nothing of their kind survives, dropped;
    both are logged with counts.

    Args:
        path: ``*.osm.pbf``; a GeoJSON/GPKG/GeoParquet/Shapefile/FlatGeobuf file whose ``tags`` column holds
            dicts, JSON objects or ``"key:value;key:value"`` strings (else a ``label`` column in that format,
            else every attribute column is a tag); or an official per-chip example folder.
        bbox_lonlat: (west, south, east, north) in degrees; entities intersecting it are kept (not clipped).
        allow_empty: return an empty frame instead of raising when no entity lies in the region (a piece of a
            larger region may have none).

    Returns:
        Columns ``tags`` and ``geometry`` in EPSG:4326, plus ``osm_type``/``osm_id`` from a PBF. Tags are
        dicts of raw OSM key -> value, except ``"key:value;key:value"`` strings read from a file that stores
        them so.

    Raises:
        GeolinkError: the path is missing, unreadable, truncated or of an unknown format, or its coordinates
            are not in the CRS it declares (or, without one, not degrees).
        EmptySourceError: no usable entity lies in the region; the message says why when it can tell
            (geometries that cannot be repaired, features that lie elsewhere).
    """
    path = Path(path)
    entities, unusable = _read(path, bbox_lonlat)
    if entities.empty and not allow_empty:
        raise EmptySourceError(_nothing_usable(path, bbox_lonlat, unusable))
    return entities


def iter_osm_pieces(
    path: str | os.PathLike, bbox_lonlat: BBox, piece_deg: float = 0.05, margin_deg: float = 0.01
) -> Iterator[tuple[BBox, gpd.GeoDataFrame]]:
    """Read a large region piece by piece.

    For each ``piece_deg`` square of ``bbox_lonlat`` (row by row from the south-west), yield the piece and the
    entities of the piece grown by ``margin_deg`` on each side.

    Process the chips whose centre lies in a piece with that piece's entities: a margin wider than half a chip
    guarantees that each chip sees all of its entities. Only one piece is in memory at a time (pyrosm reads a
    PBF with a ``bounding_box``). A piece without entities yields an empty frame.
    """
    west, south, east, north = check_bbox(bbox_lonlat)
    if piece_deg <= 0 or margin_deg < 0:
        raise GeolinkError(f"piece_deg must be > 0 and margin_deg >= 0, got {piece_deg}, {margin_deg}")
    for y in np.arange(south, north, piece_deg):
        for x in np.arange(west, east, piece_deg):
            piece = (float(x), float(y), float(min(x + piece_deg, east)), float(min(y + piece_deg, north)))
            grown = (
                piece[0] - margin_deg,
                piece[1] - margin_deg,
                piece[2] + margin_deg,
                piece[3] + margin_deg,
            )
            yield piece, _read(Path(path), grown)[0]


class OSMIndex:
    """Entities reprojected once to a chip CRS, with an STRtree for per-chip lookups.

    Tags are normalised once here (:func:`~geolink_store.sources.tags.normalise_tags`), so that building
    graphs from the query results does no tag parsing.

    Args:
        entities: a GeoDataFrame with ``tags`` and a CRS (such as :func:`read_osm`'s output).
        crs: the chip CRS (e.g. ``chips.local_utm(lon, lat)``).
    """

    def __init__(self, entities: gpd.GeoDataFrame, crs: CRS | str) -> None:
        if entities.crs is None:
            raise GeolinkError("OSM entities have no CRS; set one (lon/lat data is EPSG:4326)")
        self.crs = CRS.from_user_input(crs)
        self.entities = entities.to_crs(self.crs).reset_index(drop=True)
        self.entities["tags"] = pd.Series([normalise_tags(t) for t in self.entities["tags"]], dtype=object)
        self.tree = shapely.STRtree(np.asarray(self.entities.geometry.values, dtype=object))

    def __len__(self) -> int:
        return len(self.entities)

    def query(self, bounds: BBox) -> gpd.GeoDataFrame:
        """The entities intersecting ``bounds`` (west, south, east, north in the index CRS).

        They come in input order.
        """
        hits = np.sort(self.tree.query(shapely.box(*bounds), predicate="intersects"))
        return self.entities.iloc[hits]


@dataclass(frozen=True)
class ExampleChip:
    """One official GeoLink OSM-to-graph example.

    Its entities (EPSG:4326), lon/lat bbox and the rest of its meta.
    """

    name: str
    entities: gpd.GeoDataFrame
    bbox: BBox
    meta: dict = field(default_factory=dict)


def read_example_folder(folder: str | os.PathLike) -> ExampleChip:
    """Read an official GeoLink example folder ``<name>/``.

    The folder holds ``<name>_{polygon,line,point}.<vector>`` (any may be missing: that chip simply has no
    such features) and ``<name>.pickle`` (a dict with ``bbox``).

    Raises:
        GeolinkError: the folder or its pickle is missing, or the pickle is unsafe or has no valid ``bbox``.
    """
    folder = Path(folder)
    name = folder.name
    meta_path = folder / f"{name}.pickle"
    if not meta_path.is_file():
        raise GeolinkError(f"{folder} is not a GeoLink example folder: {meta_path.name} is missing")
    meta = load_pickle_safely(meta_path.read_bytes(), source=str(meta_path))
    if not isinstance(meta, dict) or "bbox" not in meta:
        raise GeolinkError(f"{meta_path} must hold a dict with a 'bbox' (west, south, east, north)")
    bbox = check_bbox(meta["bbox"])
    frames = []
    for kind in EXAMPLE_GEOMETRY_KINDS:
        for candidate in sorted(folder.glob(f"{name}_{kind}.*")):
            if candidate.suffix.lower() in VECTOR_SUFFIXES:
                frames.append(_read_vector(candidate, None))
                break
    entities = _concat(frames)
    return ExampleChip(name, entities, bbox, {k: v for k, v in meta.items() if k != "bbox"})


def load_pickle_safely(data: bytes, source: str = "pickle") -> object:
    """Unpickle untrusted ``data``, allowing only plain builtins and numpy numeric scalars.

    The builtins are dict, list, tuple, str, numbers and sets; numpy numeric scalars are returned as Python
    numbers; any other class is refused.

    Raises:
        GeolinkError: the data is not a pickle or names a class outside that list.
    """
    try:
        return _SafeUnpickler(io.BytesIO(data)).load()
    except GeolinkError:
        raise
    except Exception as error:
        raise GeolinkError(f"cannot read {source} safely: {error}") from error


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if module == "builtins" and name in _SAFE_BUILTINS:
            return getattr(builtins, name)
        if (module, name) == ("numpy", "dtype"):
            return _numeric_dtype
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "scalar":
            return _numeric_scalar
        raise GeolinkError(f"refusing to unpickle {module}.{name}: only plain data is allowed")


def _numeric_dtype(spec: object, *_: object) -> np.dtype:
    dtype = np.dtype(spec) if isinstance(spec, str) and spec.lstrip("<>|=")[:1] in "biufc" else None
    if dtype is None or dtype.kind not in "biufc":
        raise GeolinkError(f"refusing to unpickle numpy dtype {spec!r}: only numeric dtypes are allowed")
    return dtype


def _numeric_scalar(dtype: object, data: object = b"") -> int | float | complex:
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biufc" or not isinstance(data, bytes):
        raise GeolinkError("refusing to unpickle a non-numeric numpy scalar")
    if len(data) != dtype.itemsize:
        raise GeolinkError(f"corrupt numpy scalar: {len(data)} bytes for {dtype}")
    return np.frombuffer(data, dtype=dtype)[0].item()


def _read(path: Path, bbox_lonlat: BBox | None) -> tuple[gpd.GeoDataFrame, int]:
    """The usable entities (in the box) and how many more there had no geometry that could be repaired."""
    if bbox_lonlat is not None:
        bbox_lonlat = check_bbox(bbox_lonlat)
    if path.is_dir():
        entities = read_example_folder(path).entities
    elif not path.is_file():
        raise GeolinkError(f"OSM source not found: {path}")
    elif path.name.lower().endswith(".pbf"):
        entities = _read_pbf(path, bbox_lonlat)
    elif path.suffix.lower() in VECTOR_SUFFIXES:
        entities = _read_vector(path, bbox_lonlat)
    else:
        raise GeolinkError(
            f"unknown OSM source format {path.name}: expected .osm.pbf, {', '.join(VECTOR_SUFFIXES)}"
        )
    if bbox_lonlat is not None and not entities.empty:
        entities = entities.iloc[entities.sindex.query(shapely.box(*bbox_lonlat), predicate="intersects")]
        entities = entities.sort_index()
    return _repaired(entities.reset_index(drop=True), str(path))


def _read_pbf(path: Path, bbox_lonlat: BBox | None) -> gpd.GeoDataFrame:
    try:
        import pyrosm
    except ImportError as error:
        raise GeolinkError("reading OSM PBF needs `pip install pyrosm`") from error
    try:
        osm = pyrosm.OSM(str(path), bounding_box=list(bbox_lonlat) if bbox_lonlat is not None else None)
        frame = osm.get_data_by_custom_criteria(
            custom_filter={key: True for key in FEATURE_KEYS}, filter_type="keep", tags_as_columns=[]
        )
    except Exception as error:  # pyrosm raises protobuf, OSError and its own errors on bad files
        raise GeolinkError(f"cannot read OSM PBF {path} (truncated or not a PBF?): {error}") from error
    if frame is None or frame.empty:
        return _entities([], [])
    tag_columns = [c for c in frame.columns if c not in _NOT_TAGS]
    column_tags = frame[tag_columns].to_dict("records")
    tags = [
        {**_json_tags(extra), **{k: v for k, v in row.items() if _present(v)}}
        for row, extra in zip(column_tags, frame["tags"], strict=True)
    ]
    entities = _entities(tags, frame.geometry.values, crs=frame.crs or WGS84)
    entities.insert(0, "osm_id", frame["id"].to_numpy(dtype=np.int64))
    entities.insert(0, "osm_type", frame["osm_type"].astype(str).to_numpy())
    return entities


def _read_vector(path: Path, bbox_lonlat: BBox | None) -> gpd.GeoDataFrame:
    try:
        if path.suffix.lower() in (".parquet", ".geoparquet"):
            frame = gpd.read_parquet(path)
        else:
            region = (
                gpd.GeoSeries([shapely.box(*bbox_lonlat)], crs=WGS84) if bbox_lonlat is not None else None
            )
            try:
                frame = gpd.read_file(path, bbox=region)
            except UnicodeDecodeError:
                log.warning("%s is not valid UTF-8; reading its text as Latin-1", path)
                frame = gpd.read_file(path, bbox=region, encoding="latin-1")
    except Exception as error:
        raise GeolinkError(f"cannot read OSM vector file {path}: {error}") from error
    if frame.crs is None:
        extent = frame.total_bounds if len(frame) else _file_extent(path)[0]
        if extent is not None:
            _check_degrees(path, extent, None)
        log.warning("%s has no CRS; assuming EPSG:4326 lon/lat", path)
        frame = frame.set_crs(WGS84)
    if "tags" in frame.columns:
        tags = [_parse_tags(value) for value in frame["tags"]]
    elif "label" in frame.columns:
        tags = [_parse_tags(value) for value in frame["label"]]
    else:
        columns = [c for c in frame.columns if c != frame.geometry.name and c not in _NOT_TAGS]
        tags = [{k: v for k, v in row.items() if _present(v)} for row in frame[columns].to_dict("records")]
    return _entities(tags, frame.geometry.values, crs=frame.crs).to_crs(WGS84)


def _entities(tags: Sequence[dict], geometry: Sequence, crs: CRS | str = WGS84) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"tags": pd.Series(list(tags), dtype=object)}, geometry=list(geometry), crs=crs)


def _concat(frames: list[gpd.GeoDataFrame]) -> gpd.GeoDataFrame:
    if not frames:
        return _entities([], [])
    return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=WGS84)


def _repaired(entities: gpd.GeoDataFrame, source: str) -> tuple[gpd.GeoDataFrame, int]:
    """The entities with invalid geometries repaired, and how many were dropped (empty or unrepairable)."""
    geoms = np.asarray(entities.geometry.values, dtype=object)
    usable = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    invalid = usable & ~shapely.is_valid(geoms)
    if invalid.any():
        fixed = shapely.make_valid(geoms[invalid], method="structure", keep_collapsed=False)
        ok = ~shapely.is_empty(fixed) & (
            shapely.get_dimensions(fixed) == shapely.get_dimensions(geoms[invalid])
        )
        geoms = geoms.copy()
        geoms[np.flatnonzero(invalid)[ok]] = fixed[ok]
        usable[np.flatnonzero(invalid)[~ok]] = False
        log.info("%s: repaired %d invalid geometries, dropped %d", source, int(ok.sum()), int((~ok).sum()))
    dropped = int((~usable).sum())
    if dropped:
        log.info("%s: dropped %d empty or unrepairable geometries", source, dropped)
    out = entities.iloc[np.flatnonzero(usable)].copy()
    out.geometry = gpd.GeoSeries(geoms[usable], crs=entities.crs, index=out.index)
    return out.reset_index(drop=True), dropped


def _nothing_usable(path: Path, bbox_lonlat: BBox | None, unusable: int) -> str:
    """Why ``path`` gave no entity in the box: geometries beyond repair, or features elsewhere."""
    where = f" within lon/lat {_rounded(bbox_lonlat)}" if bbox_lonlat is not None else ""
    reasons = []
    if unusable:
        reasons.append(
            f"{unusable} feature(s) there have no usable geometry (empty, or a ring of fewer than 3 "
            "distinct points)"
        )
    extent, crs = _file_extent(path)
    if extent is not None:
        lonlat = _check_degrees(path, extent, crs)
        if bbox_lonlat is not None and not shapely.box(*lonlat).intersects(shapely.box(*bbox_lonlat)):
            reasons.append(f"its features lie within lon/lat {_rounded(lonlat)}: OSM of another place?")
    why = "; ".join(reasons) or "check the file and the region"
    return f"no OSM entities in {path}{where}: {why}"


def _file_extent(path: Path) -> tuple[BBox | None, CRS | None]:
    """A vector file's feature extent in its own CRS and that CRS (None, None for other sources)."""
    suffix = path.suffix.lower()
    if not path.is_file() or suffix not in VECTOR_SUFFIXES or suffix in GEOPARQUET_SUFFIXES:
        return None, None
    try:
        info = pyogrio.read_info(path, force_total_bounds=True)
    except Exception:  # noqa: BLE001 - the extent only improves an error message
        return None, None
    extent = info.get("total_bounds")
    if extent is None or not np.isfinite(extent).all():
        return None, None
    return tuple(float(v) for v in extent), CRS.from_user_input(info["crs"]) if info.get("crs") else None


def _check_degrees(path: Path, extent: Sequence[float], crs: CRS | None) -> BBox:
    """``extent`` (in ``crs``, else taken as degrees) in lon/lat degrees, or an error naming the CRS mistake.

    Raises:
        GeolinkError: the coordinates are not degrees once converted: a CRS missing or wrong in the file.
    """
    lonlat = extent
    if crs is not None:
        lonlat = Transformer.from_crs(crs, WGS84, always_xy=True).transform_bounds(*extent)
    west, south, east, north = lonlat
    if np.isfinite(lonlat).all() and -180 <= west <= east <= 180 and -90 <= south <= north <= 90:
        return west, south, east, north
    declared = f"its CRS is {crs.to_string()}" if crs is not None else "without a CRS EPSG:4326 is assumed"
    raise GeolinkError(
        f"CRS mistake in {path}: its coordinates {_rounded(extent)} are not lon/lat degrees, yet {declared} "
        '(a GeoJSON without a "crs" member is EPSG:4326 by definition); they look like metres of a '
        "projected CRS: save the file with that CRS (a UTM zone, for instance) or reproject it to EPSG:4326"
    )


def _rounded(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{float(v):.6g}" for v in values) + ")"


def _parse_tags(value: object) -> dict[str, str] | str:
    """Tags from a file cell: a dict or JSON object (-> dict) or a ``"key:value;key:value"`` string (kept)."""
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items() if _present(v)}
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return {}
    text = value.strip()
    return _json_tags(text) if text.startswith("{") else text


def _json_tags(text: object) -> dict[str, str]:
    if not isinstance(text, str) or not text:
        return {}
    try:
        tags = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return {str(k): v for k, v in tags.items() if _present(v)} if isinstance(tags, dict) else {}


def _present(value: object) -> bool:
    if value is None:
        return False
    if isinstance(value, float):
        return not math.isnan(value)
    return not (isinstance(value, str) and not value.strip())


def check_bbox(bbox: Sequence[float]) -> BBox:
    """``bbox`` as four floats (west, south, east, north), or GeolinkError if it is not a proper box."""
    try:
        west, south, east, north = (float(v) for v in bbox)
    except (TypeError, ValueError) as error:
        raise GeolinkError(f"a bbox must be (west, south, east, north), got {bbox!r}") from error
    if not (math.isfinite(west + south + east + north) and west < east and south < north):
        raise GeolinkError(f"a bbox must be finite with west < east and south < north, got {bbox!r}")
    return west, south, east, north
