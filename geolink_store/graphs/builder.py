"""OSM entities of one chip -> the heterogeneous graph GeoLink reads.

A graph has node types ``polygon``, ``line`` and ``point`` (always present, possibly empty) and all nine edge
types ``(src, 'to', dst)``. Per node type, ``x`` (N, D) float32 holds the tag semantics only, ``pos`` (N, P,
2) float32 the node's points in the chip frame (x right, y down, [0, 1] over the chip, as
``chips.ChipSpec.to_chip_frame``):

- polygon, P = 4: three interior points on rays at 0, 120 and 240 degrees from an anchor, then the anchor (the
  centroid, or a point on the surface where the centroid falls outside). The official code draws the ray
  lengths at random; here they are the mean of its range, (min + max vertex distance) / 4, halved until
  inside.
- line, P = 3: centroid, first vertex, last vertex.
- point, P = 1: the point.

With ``geometry=True`` every type also gets ``geo`` (N, 8) float32, shape descriptors of the clipped node
geometry in the chip frame (:func:`geometry_features`; columns named by ``model.graphs.GEOMETRY_FEATURES``).

Edges: every pair of nodes whose clipped geometries intersect (an STRtree query with the ``intersects``
predicate), self-loops on same-type edges, and for points a Delaunay triangulation instead. ``edge_attr``
one-hot encodes the relation (:data:`RELATIONS`) from shapely predicates in a fixed priority; the model
ignores it.

Differences from the official ``OSM2Graph``, on purpose: relations from shapely predicates instead of DE-9IM
regexes (so ``equals`` and crossing lines are classified correctly); 2 or 3 points are triangulated (the
official gives them self-loops only); polygon points are deterministic; an unknown tag key never crashes
(weight below).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Literal

import geopandas as gpd
import numpy as np
import shapely
import torch
from scipy.sparse import csr_matrix
from scipy.spatial import Delaunay, QhullError
from torch_geometric.data import HeteroData

from geolink_store.chips import ChipSpec, to_chip_frame
from geolink_store.errors import GeolinkError
from geolink_store.graphs.text import (
    MiniLMEncoder,
    TagEmbeddingCache,
    TextEncoder,
    default_cache_dir,
)
from geolink_store.sources.osm import BBox, check_bbox
from geolink_store.sources.tags import normalise_tags
from model.graphs import GEOMETRY_DIM
from model.osm import EDGE_TYPES, NODE_TYPES

log = logging.getLogger(__name__)


RELATIONS: tuple[str, ...] = (
    "self", "delaunay", "equals", "touches", "covers", "covered_by", "overlaps", "crosses", "intersects",
)  # fmt: skip
"""The relation vocabulary of ``edge_attr`` (one column each), in priority order: a pair gets the first
relation that holds (shapely's predicates of the same names; ``covers``/``covered_by`` read source ->
destination). A point on a polygon's edge therefore ``touches`` it, as in the official graphs."""

_REVERSED = {"covers": "covered_by", "covered_by": "covers"}
_NODE_TYPE_OF_DIMENSION = {2: "polygon", 1: "line", 0: "point"}
_MULTIPART = 4  # shapely type ids >= 4 are Multi* and GeometryCollection
_RAY_SHRINK = (1.0, 0.5, 0.25, 0.125)
OFFICIAL_TAG_FREQUENCY = "all_tags30_frequency1.json"


class TagWeights:
    """Weight of a tag: ``log(count[key])`` from a key-frequency table, as the official GeoLink weights tags.

    Args:
        counts: occurrences per normalised key. unknown_count: the count assumed for a key missing from the
        table. The default 1 gives it weight 0, the
            official behaviour: the tag is ignored unless every tag of the node weighs 0, in which case the
            node takes the plain mean of its tags.
    """

    def __init__(self, counts: Mapping[str, float], unknown_count: float = 1.0) -> None:
        self._log = {key: math.log(max(float(count), 1.0)) for key, count in counts.items()}
        self._unknown = math.log(max(float(unknown_count), 1.0))

    @classmethod
    def official(cls, unknown_count: float = 1.0) -> TagWeights:
        """The frequency table GeoLink was pretrained with (2,790 keys; see ``data/ATTRIBUTION-tags.md``)."""
        counts = json.loads(files("geolink_store.data").joinpath(OFFICIAL_TAG_FREQUENCY).read_text("utf-8"))
        return cls(counts, unknown_count)

    def __call__(self, tag: str) -> float:
        """The weight of a ``"key:value"`` tag string."""
        return self._log.get(tag.partition(":")[0], self._unknown)


@dataclass
class BuildStats:
    """What the builder did to its input, summed over all chips."""

    chips: int = 0
    nodes: Counter = field(default_factory=Counter)
    repaired: int = 0  # invalid geometries made valid (shapely.make_valid)
    skipped: int = 0  # geometries dropped: empty, missing, or nothing left after repair


@dataclass
class _Layout:
    """A chip's graph without its tag features: node tags, positions and edges."""

    tags: dict[str, list[tuple[str, ...]]]
    pos: dict[str, np.ndarray]
    edges: dict[tuple[str, str, str], tuple[np.ndarray, np.ndarray]]  # (2, E) index, (E,) relation ids
    geo: dict[str, np.ndarray] | None = None  # (N, GEOMETRY_DIM) per type, with geometry=True


class GraphBuilder:
    """Builds GeoLink graphs from OSM entities, one chip at a time or many at once.

    Args:
        text_encoder: embeds tag strings (any object with ``encode(list[str]) -> (N, D) array``); default
            :class:`~geolink_store.graphs.text.MiniLMEncoder` (384-d). Use ``CLIPTextEncoder`` for the
            official 512-d features.
        cache_dir: where tag embeddings persist (per encoder name); ``None`` for
            :func:`~geolink_store.graphs.text.default_cache_dir` ``/tag-embeddings``, ``False`` to keep them
            in memory only.
        tag_weights: per-tag weights; default :meth:`TagWeights.official`. relation_attrs: also store
        ``edge_attr`` one-hots over :data:`RELATIONS`, as the official graphs do. Off
            by default: GeoLink ignores ``edge_attr``, and the DE-9IM test per pair halves the speed on dense
            chips.
        geometry: also store ``geo`` (N, 8) geometry features per node type (:func:`geometry_features`), as a
            model with ``config.node_geometry`` needs. Off by default: the graphs are then exactly the
            official layout.

    Example:
        >>> builder = GraphBuilder()                       # doctest: +SKIP
        >>> graph = builder.build(entities, chip.bounds)   # doctest: +SKIP
    """

    def __init__(
        self,
        text_encoder: TextEncoder | None = None,
        *,
        cache_dir: str | os.PathLike | Literal[False] | None = None,
        tag_weights: TagWeights | None = None,
        relation_attrs: bool = False,
        geometry: bool = False,
    ) -> None:
        encoder = text_encoder if text_encoder is not None else MiniLMEncoder()
        if not callable(getattr(encoder, "encode", None)):
            raise GeolinkError(
                f"text_encoder must have an encode(list[str]) method, got {type(encoder).__name__}"
            )
        directory = None if cache_dir is False else (cache_dir or default_cache_dir() / "tag-embeddings")
        self.cache = TagEmbeddingCache(encoder, directory)
        self.tag_weights = tag_weights or TagWeights.official()
        self.relation_attrs = relation_attrs
        self.geometry = geometry
        self.stats = BuildStats()
        self._weight_memo: dict[tuple[str, ...], tuple[tuple[str, ...], np.ndarray]] = {}

    @property
    def text_dim(self) -> int:
        """Width of ``x`` for every node type."""
        return self.cache.dim

    def build(self, entities: gpd.GeoDataFrame, bounds: BBox | ChipSpec) -> HeteroData:
        """The graph of the entities inside ``bounds`` (west, south, east, north, in the entities' CRS).

        Geometries are repaired if invalid, clipped to the chip and split into single parts; a part keeps its
        feature's tags and becomes a node of the type of its dimension (parts of a lower dimension than their
        feature, such as a polygon touching the chip edge, are dropped). A chip without entities gives a valid
        graph with no nodes.

        Raises:
            GeolinkError: no ``tags`` column, or bounds that are not a proper box.
        """
        return self.build_many([(entities, bounds)])[0]

    def build_many(self, chips: Iterable[tuple[gpd.GeoDataFrame, BBox | ChipSpec]]) -> list[HeteroData]:
        """Graphs of many chips.

        Tag strings new to the cache are embedded in one encoder call for all of them.
        """
        layouts = [self._layout(entities, bounds) for entities, bounds in chips]
        node_tags = [tags for layout in layouts for t in NODE_TYPES for tags in layout.tags[t]]
        features = self._features(node_tags)
        graphs, start = [], 0
        for layout in layouts:
            sizes = [len(layout.tags[t]) for t in NODE_TYPES]
            offsets = np.cumsum([start, *sizes])
            graphs.append(
                self._graph(
                    layout, {t: features[offsets[i] : offsets[i + 1]] for i, t in enumerate(NODE_TYPES)}
                )
            )
            start = offsets[-1]
        return graphs

    def _layout(self, entities: gpd.GeoDataFrame, bounds: BBox | ChipSpec) -> _Layout:
        bounds = check_bbox(bounds.bounds if isinstance(bounds, ChipSpec) else bounds)
        if not isinstance(entities, gpd.GeoDataFrame) or "tags" not in entities.columns:
            raise GeolinkError(
                "OSM entities must be a GeoDataFrame with a 'tags' column and a geometry column"
            )
        geoms = np.asarray(entities.geometry.values, dtype=object)
        tags = entities["tags"].to_numpy()
        geoms, keep = self._repaired(geoms)
        parts, source = _clip_to_parts(geoms, bounds)
        parts = to_chip_frame(parts, bounds)
        node_type = np.array(
            [_NODE_TYPE_OF_DIMENSION[d] for d in shapely.get_dimensions(parts)], dtype=object
        )
        self.stats.chips += 1

        geoms_of, tags_of, pos = {}, {}, {}
        for t in NODE_TYPES:
            mine = node_type == t
            geoms_of[t] = parts[mine]
            shapely.prepare(geoms_of[t])
            tags_of[t] = [normalise_tags(tag) for tag in tags[keep][source[mine]]]
            pos[t] = _POSITIONS[t](geoms_of[t]).astype(np.float32)
            self.stats.nodes[t] += len(geoms_of[t])
        extent = np.array([bounds[2] - bounds[0], bounds[3] - bounds[1]])
        geo = {t: geometry_features(geoms_of[t]) for t in NODE_TYPES} if self.geometry else None
        return _Layout(tags_of, pos, self._edges(geoms_of, pos["point"][:, 0] * extent), geo)

    def _repaired(self, geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Valid, non-empty geometries and the mask of input rows they come from."""
        present = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
        geoms = geoms[present]
        invalid = ~shapely.is_valid(geoms)
        if invalid.any():
            fixed = shapely.make_valid(geoms[invalid], method="structure", keep_collapsed=False)
            same_kind = shapely.get_dimensions(fixed) == shapely.get_dimensions(geoms[invalid])
            geoms = geoms.copy()
            geoms[invalid] = np.where(same_kind & ~shapely.is_empty(fixed), fixed, None)
            self.stats.repaired += int((same_kind & ~shapely.is_empty(fixed)).sum())
        usable = ~shapely.is_missing(geoms)
        self.stats.skipped += int((~present).sum() + (~usable).sum())
        keep = np.flatnonzero(present)[usable]
        mask = np.zeros(len(present), dtype=bool)
        mask[keep] = True
        return geoms[usable], mask

    def _edges(self, geoms: dict[str, np.ndarray], points_xy: np.ndarray) -> dict:
        edges = {}
        for i, src in enumerate(NODE_TYPES):
            for dst in NODE_TYPES[i:]:
                if src == dst == "point":
                    edges[(src, "to", dst)] = _delaunay_edges(points_xy)
                    continue
                index = shapely.STRtree(geoms[dst]).query(geoms[src], predicate="intersects")
                index = index[:, _row_major(index, len(geoms[dst]))]
                relation = self._relations(geoms[src][index[0]], geoms[dst][index[1]])
                if src == dst:
                    relation[index[0] == index[1]] = RELATIONS.index("self")
                else:
                    edges[(dst, "to", src)] = (index[::-1].copy(), _reverse_relations(relation))
                edges[(src, "to", dst)] = (index, relation)
        return edges

    def _relations(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if not self.relation_attrs:
            return np.full(len(a), RELATIONS.index("intersects"), dtype=np.int64)
        return classify_relations(shapely.relate(a, b), shapely.get_dimensions(a), shapely.get_dimensions(b))

    def _features(self, node_tags: list[tuple[str, ...]]) -> np.ndarray:
        """(N, D) tag features.

        Per node, the weighted mean of its tags' embeddings (zeros for a node without tags).
        """
        weighted = [self._weighted_tags(tags) for tags in node_tags]
        vocabulary = list(dict.fromkeys(tag for used, _ in weighted for tag in used))
        embeddings = self.cache.embed(vocabulary) if vocabulary else np.zeros((0, self.text_dim), np.float32)
        column = {tag: i for i, tag in enumerate(vocabulary)}
        rows = np.repeat(np.arange(len(weighted)), [len(used) for used, _ in weighted])
        cols = [column[tag] for used, _ in weighted for tag in used]
        values = np.concatenate([w for _, w in weighted]) if weighted else np.zeros(0)
        mix = csr_matrix((values, (rows, cols)), shape=(len(weighted), len(vocabulary)))
        return np.asarray(mix @ embeddings, dtype=np.float32).reshape(len(weighted), self.text_dim)

    def _weighted_tags(self, tags: tuple[str, ...]) -> tuple[tuple[str, ...], np.ndarray]:
        if tags not in self._weight_memo:
            self._weight_memo[tags] = _weighted_tags(tags, self.tag_weights)
        return self._weight_memo[tags]

    def _graph(self, layout: _Layout, features: dict[str, np.ndarray]) -> HeteroData:
        graph = HeteroData()
        for t in NODE_TYPES:
            graph[t].x = torch.from_numpy(np.ascontiguousarray(features[t]))
            graph[t].pos = torch.from_numpy(layout.pos[t])
            if layout.geo is not None:
                graph[t].geo = torch.from_numpy(layout.geo[t])
        eye = np.eye(len(RELATIONS), dtype=np.float32)
        for edge in EDGE_TYPES:
            index, relation = layout.edges[edge]
            graph[edge].edge_index = torch.from_numpy(index.astype(np.int64).reshape(2, -1))
            if self.relation_attrs:
                graph[edge].edge_attr = torch.from_numpy(eye[relation])
        return graph


def _clip_to_parts(geoms: np.ndarray, bounds: BBox) -> tuple[np.ndarray, np.ndarray]:
    """Single-part pieces of ``geoms`` inside ``bounds``, and their source rows.

    Each piece keeps the dimension of its source.
    """
    xmin, ymin, xmax, ymax = shapely.bounds(geoms).T if len(geoms) else np.zeros((4, 0))
    crossing = (xmin < bounds[0]) | (ymin < bounds[1]) | (xmax > bounds[2]) | (ymax > bounds[3])
    clipped = geoms.copy()
    clipped[crossing] = shapely.intersection(geoms[crossing], shapely.box(*bounds))
    parts, source = clipped, np.arange(len(clipped))
    while len(parts) and (shapely.get_type_id(parts) >= _MULTIPART).any():
        parts, index = shapely.get_parts(parts, return_index=True)
        source = source[index]
    dimension = shapely.get_dimensions(parts)
    measure = np.where(
        dimension == 2, shapely.area(parts), np.where(dimension == 1, shapely.length(parts), 1.0)
    )
    keep = (dimension == shapely.get_dimensions(geoms)[source]) & ~shapely.is_empty(parts) & (measure > 0)
    return parts[keep], source[keep]


def _xy(points: np.ndarray) -> np.ndarray:
    return shapely.get_coordinates(points).reshape(len(points), 2)


def _polygon_points(polygons: np.ndarray) -> np.ndarray:
    """(N, 4, 2): three interior points at 0/120/240 degrees around the anchor, then the anchor."""
    if not len(polygons):
        return np.zeros((0, 4, 2))
    anchor = _xy(shapely.centroid(polygons))
    outside = ~shapely.contains_xy(polygons, anchor[:, 0], anchor[:, 1])
    if outside.any():
        anchor[outside] = _xy(shapely.point_on_surface(polygons[outside]))
    vertices, owner = shapely.get_coordinates(shapely.get_exterior_ring(polygons), return_index=True)
    distance = np.linalg.norm(vertices - anchor[owner], axis=1)
    starts = np.searchsorted(owner, np.arange(len(polygons)))
    radius = (np.minimum.reduceat(distance, starts) + np.maximum.reduceat(distance, starts)) / 4
    angles = np.deg2rad([0.0, 120.0, 240.0])
    direction = np.stack([np.cos(angles), np.sin(angles)], axis=1)  # (3, 2)
    points = np.repeat(anchor[:, None, :], 3, axis=1)  # (N, 3, 2), the fallback
    placed = np.zeros((len(polygons), 3), dtype=bool)
    for shrink in _RAY_SHRINK:
        candidate = anchor[:, None, :] + (radius * shrink)[:, None, None] * direction[None]
        inside = shapely.contains_xy(polygons[:, None], candidate[..., 0], candidate[..., 1]) & ~placed
        points[inside] = candidate[inside]
        placed |= inside
    return np.concatenate([points, anchor[:, None, :]], axis=1)


def _line_points(lines: np.ndarray) -> np.ndarray:
    """(N, 3, 2): centroid, first vertex, last vertex."""
    ends = [shapely.centroid(lines), shapely.get_point(lines, 0), shapely.get_point(lines, -1)]
    return np.stack([_xy(p) for p in ends], axis=1)


def _point_points(points: np.ndarray) -> np.ndarray:
    """(N, 1, 2): the point."""
    return _xy(points)[:, None, :]


_POSITIONS = {"polygon": _polygon_points, "line": _line_points, "point": _point_points}


_MEASURE_SCALE = 1000.0


def scale_measure(value: np.ndarray) -> np.ndarray:
    """``log1p(1000 v) / log(1001)``: an area or length in the chip frame to a feature (1 at v = 1)."""
    return np.log1p(_MEASURE_SCALE * np.asarray(value, dtype=np.float64)) / math.log1p(_MEASURE_SCALE)


def unscale_measure(feature: np.ndarray) -> np.ndarray:
    """The inverse of :func:`scale_measure`."""
    return np.expm1(np.asarray(feature, dtype=np.float64) * math.log1p(_MEASURE_SCALE)) / _MEASURE_SCALE


def geometry_features(geoms: np.ndarray) -> np.ndarray:
    """(N, 8) float32 shape descriptors of single-part chip-frame geometries (``GEOMETRY_FEATURES``).

    Polygons fill area, perimeter, compactness, orientation, elongation and centroid; lines length,
    orientation (start-to-end bearing), straightness and centroid; points their position. Vectorised over the
    array (geometries of mixed types are allowed); empty input gives (0, 8).
    """
    geoms = np.asarray(geoms, dtype=object)
    out = np.zeros((len(geoms), GEOMETRY_DIM), dtype=np.float64)
    if not len(geoms):
        return out.astype(np.float32)
    dimension = shapely.get_dimensions(geoms)
    out[:, 6:8] = _xy(shapely.centroid(geoms))

    polygon = np.flatnonzero(dimension == 2)
    if polygon.size:
        shapes = geoms[polygon]
        area, perimeter = shapely.area(shapes), shapely.length(shapes)
        out[polygon, 0] = scale_measure(area)
        out[polygon, 1] = scale_measure(perimeter)
        out[polygon, 2] = np.clip(4 * math.pi * area / np.maximum(perimeter, 1e-300) ** 2, 0.0, 1.0)
        angle, elongation = _principal_axis(shapes, out[polygon, 6:8])
        out[polygon, 3], out[polygon, 4] = np.cos(2 * angle) * elongation, np.sin(2 * angle) * elongation
        out[polygon, 5] = elongation

    line = np.flatnonzero(dimension == 1)
    if line.size:
        lines = geoms[line]
        length = shapely.length(lines)
        chord = _xy(shapely.get_point(lines, -1)) - _xy(shapely.get_point(lines, 0))
        straightness = np.clip(np.hypot(chord[:, 0], chord[:, 1]) / np.maximum(length, 1e-300), 0.0, 1.0)
        angle = np.arctan2(chord[:, 1], chord[:, 0])
        out[line, 1] = scale_measure(length)
        out[line, 3], out[line, 4] = np.cos(2 * angle) * straightness, np.sin(2 * angle) * straightness
        out[line, 5] = straightness
    return out.astype(np.float32)


def _principal_axis(polygons: np.ndarray, centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Angle of each polygon's long axis and its elongation ``1 - short / long``, from second moments of area.

    The axes are those of the rectangle with the polygon's second moments (its inertia ellipse): for a
    rectangle, its sides, so ``1 - short / long`` is exact there (0.75 for 4 x 1). Unlike the minimum rotated
    rectangle, which ties for triangles and regular polygons (any flush side gives the same area, and GEOS
    picks by vertex order), it is unique and follows rotations and mirror images exactly. Holes subtract.
    ``centre`` (N, 2) is the polygons' centroid; moments are taken about it.
    """
    rings, owner = shapely.get_rings(polygons, return_index=True)
    coords, ring_of = shapely.get_coordinates(rings, return_index=True)
    coords = coords - centre[owner[ring_of]]
    same = ring_of[:-1] == ring_of[1:]
    (x0, y0), (x1, y1), ring = coords[:-1][same].T, coords[1:][same].T, ring_of[:-1][same]
    cross = x0 * y1 - x1 * y0
    moments = [
        (x0 * x0 + x0 * x1 + x1 * x1) * cross / 12,
        (y0 * y0 + y0 * y1 + y1 * y1) * cross / 12,
        (x0 * y1 + 2 * x0 * y0 + 2 * x1 * y1 + x1 * y0) * cross / 24,
    ]
    per_ring = [np.bincount(ring, weights=m, minlength=len(rings)) for m in (cross / 2, *moments)]
    exterior = np.r_[True, owner[1:] != owner[:-1]]
    sign = np.sign(per_ring[0]) * np.where(exterior, 1.0, -1.0)  # whatever the ring orientation
    xx, yy, xy = (np.bincount(owner, weights=sign * m, minlength=len(polygons)) for m in per_ring[1:])
    angle = 0.5 * np.arctan2(2 * xy, xx - yy)
    spread = np.hypot((xx - yy) / 2, xy)
    major, minor = (xx + yy) / 2 + spread, np.maximum((xx + yy) / 2 - spread, 0.0)
    elongation = 1.0 - np.sqrt(minor / np.maximum(major, 1e-300))
    round_ = spread <= 1e-9 * np.maximum(major, 1e-300)  # a square or disc: no axis
    return np.where(round_, 0.0, angle), np.clip(np.where(round_, 0.0, elongation), 0.0, 1.0)


def _delaunay_edges(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Self-loops plus both directions of every Delaunay edge of points ``xy`` (N, 2).

    Where the points are collinear, the edges form a path.
    """
    n = len(xy)
    pairs = np.zeros((0, 2), dtype=np.int64)
    if n == 2:
        pairs = np.array([[0, 1]])
    elif n > 2:
        try:
            simplices = Delaunay(xy).simplices
            pairs = np.concatenate([simplices[:, [0, 1]], simplices[:, [1, 2]], simplices[:, [0, 2]]])
        except QhullError:  # collinear (or coincident) points: their triangulation is the path along the line
            order = np.argsort((xy - xy.mean(0)) @ np.linalg.svd(xy - xy.mean(0))[2][0], kind="stable")
            pairs = np.stack([order[:-1], order[1:]], axis=1)
    pairs = np.sort(pairs, axis=1)
    pairs = pairs[np.unique(pairs[:, 0] * n + pairs[:, 1], return_index=True)[1]]
    loops = np.arange(n)
    index = np.concatenate([np.stack([loops, loops]), pairs.T, pairs.T[::-1]], axis=1)
    relation = np.repeat([RELATIONS.index("self"), RELATIONS.index("delaunay")], [n, 2 * len(pairs)])
    order = _row_major(index, n)
    return index[:, order], relation[order]


def _row_major(index: np.ndarray, columns: int) -> np.ndarray:
    """The order that sorts edges (2, E) by source, then destination."""
    return np.argsort(index[0] * columns + index[1], kind="stable")


def classify_relations(de9im: np.ndarray, dim_a: np.ndarray, dim_b: np.ndarray) -> np.ndarray:
    """Relation ids (into :data:`RELATIONS`) of intersecting pairs from their DE-9IM matrices.

    The matrices come from ``shapely.relate``. The OGC definitions that shapely's
    ``equals``/``touches``/``covers``/``covered_by``/``overlaps``/``crosses`` evaluate, applied to one matrix
    per pair instead of one GEOS call per predicate.
    """
    m = np.asarray(de9im, dtype="U9").view("U1").reshape(-1, 9)  # rows I, B, E of a x columns I, B, E of b
    hit = m != "F"
    inner = hit[:, 0]
    covers = ~hit[:, 6] & ~hit[:, 7]
    covered_by = ~hit[:, 2] & ~hit[:, 5]
    same = dim_a == dim_b
    overlaps = same & hit[:, 2] & hit[:, 6] & np.where(dim_a == 1, m[:, 0] == "1", inner)
    crosses = np.where(
        same, (dim_a == 1) & (m[:, 0] == "0"), inner & np.where(dim_a < dim_b, hit[:, 2], hit[:, 6])
    )
    relation = np.full(len(m), RELATIONS.index("intersects"), dtype=np.int64)
    for name, holds in reversed(
        [("equals", covers & covered_by), ("touches", ~inner), ("covers", covers),
         ("covered_by", covered_by), ("overlaps", overlaps), ("crosses", crosses)]
    ):  # fmt: skip
        relation[holds] = RELATIONS.index(name)
    return relation


def _reverse_relations(relation: np.ndarray) -> np.ndarray:
    swap = np.arange(len(RELATIONS))
    for a, b in _REVERSED.items():
        swap[RELATIONS.index(a)] = RELATIONS.index(b)
    return swap[relation]


def _weighted_tags(tags: tuple[str, ...], weights: TagWeights) -> tuple[tuple[str, ...], np.ndarray]:
    """The tags that count for a node and their normalised weights.

    Zero-weight tags drop out of a weighted mean.
    """
    w = np.array([weights(tag) for tag in tags], dtype=np.float64)
    if not len(tags):
        return (), w
    if w.sum() <= 0:
        return tags, np.full(len(tags), 1.0 / len(tags))
    used = w > 0
    return tuple(t for t, u in zip(tags, used, strict=True) if u), w[used] / w[used].sum()
