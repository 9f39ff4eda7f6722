"""OSM graphs as the model reads them, and conversion from the official ``.pt`` layout.

Our layout: a torch_geometric ``HeteroData`` with node types polygon/line/point, each holding ``x`` (N, C)
semantic tag features and ``pos`` (N, P, 2) chip-frame points (x right, y down, in [0, 1]; P = 4, 3, 1), and
all nine edge types with ``edge_index`` (2, E). The official layout packs the points into extra columns of
``x``. Graphs built with geometry also hold ``geo`` (N, 8) float32 per type: shape descriptors of the node's
clipped geometry in the chip frame, one column meaning for every type (:data:`GEOMETRY_FEATURES`); a model
with ``config.node_geometry`` reads them next to ``x``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch_geometric.data import Batch, HeteroData

from model.errors import InputError
from model.osm import EDGE_TYPES, NODE_TYPES, POINTS_PER_NODE

GEOMETRY_FEATURES: tuple[str, ...] = (
    "area", "length", "compactness", "orientation_cos", "orientation_sin", "elongation",
    "centre_x", "centre_y",
)  # fmt: skip
"""The columns of ``graph[t].geo``, the same for every node type (zero where a column does not apply).

All measures are in the chip frame (x right, y down, [0, 1] over the chip); angles θ are measured there from
the x axis (so positive θ turns clockwise on the image).

- ``area``: polygons, ``log1p(1000 a) / log(1001)`` of the area ``a`` (1 for the whole chip).
- ``length``: lines their length, polygons their perimeter (holes included), scaled as ``area``.
- ``compactness``: polygons, ``4 π A / P²`` (1 for a disc, π/4 for a square).
- ``orientation_cos``, ``orientation_sin``: ``(cos 2θ, sin 2θ)`` times ``elongation`` (an axis, so θ and
  θ + π agree): polygons, θ of the long axis of the rectangle with the polygon's second moments of area
  (for a rectangle, its long side); lines, the start-to-end bearing.
- ``elongation``: polygons ``1 - short / long`` side of that rectangle; lines their straightness,
  end-to-end distance / length (0 for a closed line).
- ``centre_x``, ``centre_y``: the centroid (polygons, lines) or the point itself.
"""

GEOMETRY_DIM = len(GEOMETRY_FEATURES)
"""Width of ``graph[t].geo``."""


def from_official_graph(graph: HeteroData, in_channels: int | None = None) -> HeteroData:
    """Convert an official graph (positions packed after the tag features in ``x``) to our layout.

    The input is not modified. Missing node or edge types become empty. ``in_channels`` (the tag-feature
    width) is inferred from the graph when it holds any node; give it for a graph without nodes.

    Raises:
        InputError: the node types disagree on the tag-feature width, or a graph without nodes lacks
            ``in_channels``.
    """
    widths = {
        t: graph[t].x.size(1) - 2 * POINTS_PER_NODE[t]
        for t in NODE_TYPES
        if t in graph.node_types and "x" in graph[t] and graph[t].x.numel()
    }
    if len(set(widths.values())) > 1:
        raise InputError(f"official graph has inconsistent tag-feature widths per node type: {widths}")
    channels = next(iter(widths.values()), in_channels)
    if channels is None:
        raise InputError("an official graph without nodes needs in_channels= to be given")

    out = HeteroData()
    for t in NODE_TYPES:
        points = POINTS_PER_NODE[t]
        x = graph[t].x if t in graph.node_types and "x" in graph[t] else torch.zeros(0, channels + 2 * points)
        if x.size(1) != channels + 2 * points:
            raise InputError(
                f"official {t} nodes have {x.size(1)} columns, expected {channels} + {2 * points} positional"
            )
        out[t].x = x[:, :channels].float().clone()
        out[t].pos = x[:, channels:].float().reshape(-1, points, 2).clone()
    for edge in EDGE_TYPES:
        store = graph[edge] if edge in graph.edge_types else None
        out[edge].edge_index = (
            store.edge_index.long().clone() if store is not None else torch.zeros(2, 0, dtype=torch.long)
        )
        if store is not None and "edge_attr" in store:
            out[edge].edge_attr = store.edge_attr.float().clone()
    return out


def empty_graph(in_channels: int, geometry: bool = False) -> HeteroData:
    """A graph without any OSM node (a chip with no OSM features); with ``geometry``, empty ``geo`` too."""
    graph = HeteroData()
    for t in NODE_TYPES:
        graph[t].x = torch.zeros(0, in_channels)
        graph[t].pos = torch.zeros(0, POINTS_PER_NODE[t], 2)
        if geometry:
            graph[t].geo = torch.zeros(0, GEOMETRY_DIM)
    for edge in EDGE_TYPES:
        graph[edge].edge_index = torch.zeros(2, 0, dtype=torch.long)
    return graph


def has_geometry(graph: HeteroData) -> bool:
    """Whether every node type of ``graph`` holds geometry features ``geo`` (N, GEOMETRY_DIM)."""
    return all(
        t in graph.node_types and "geo" in graph[t] and graph[t].geo.size(-1) == GEOMETRY_DIM
        for t in NODE_TYPES
    )


def batch_graphs(graphs: HeteroData | Sequence[HeteroData] | Batch, geometry: bool | None = None) -> Batch:
    """A mini-batch of what the model reads (``x``, ``pos``, ``edge_index``) from a list of graphs or one.

    An existing batch is returned as it is. Other attributes (such as relation one-hots) are left out, so
    graphs from different builders batch together. Tensors are shared, not copied. The geometry features
    ``geo`` are kept with ``geometry=True``, dropped with ``False`` and, by default, kept when every graph has
    them.

    Raises:
        InputError: a graph lacks a node type or its ``pos``, or, with ``geometry=True``, its ``geo``.
    """
    if isinstance(graphs, Batch):
        return graphs
    if isinstance(graphs, HeteroData):
        graphs = [graphs]
    if geometry is None:
        geometry = bool(graphs) and all(has_geometry(graph) for graph in graphs)
    elif geometry:
        lacking = [i for i, graph in enumerate(graphs) if not has_geometry(graph)]
        if lacking:
            raise InputError(
                f"graphs {lacking[:5]}{' ...' if len(lacking) > 5 else ''} lack geometry features "
                f"(graph[type].geo, {GEOMETRY_DIM} wide): the model has config.node_geometry=True; build the "
                "graphs with GraphBuilder(geometry=True)"
            )
    return Batch.from_data_list([_model_view(i, graph, geometry) for i, graph in enumerate(graphs)])


def _model_view(index: int, graph: HeteroData, geometry: bool) -> HeteroData:
    missing = [t for t in NODE_TYPES if t not in graph.node_types or "pos" not in graph[t]]
    if missing:
        raise InputError(
            f"graph {index} lacks node types or positions {missing}: build graphs with GraphBuilder or "
            "convert official graphs with from_official_graph"
        )
    view = HeteroData()
    for t in NODE_TYPES:
        view[t].x, view[t].pos = graph[t].x, graph[t].pos
        if geometry:
            view[t].geo = graph[t].geo
    for edge in EDGE_TYPES:
        view[edge].edge_index = (
            graph[edge].edge_index if edge in graph.edge_types else torch.zeros(2, 0, dtype=torch.long)
        )
    return view
