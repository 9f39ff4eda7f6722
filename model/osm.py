"""The OSM side of GeoLink: a heterogeneous GAT over polygon/line/point nodes, its per-graph normalisation."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
from torch import nn
from torch_geometric.nn import GATConv, HeteroConv
from torch_geometric.utils import scatter

NODE_TYPES: tuple[str, ...] = ("polygon", "line", "point")
"""The OSM node types, in the slot order of GeoLink's region embedding."""

EDGE_TYPES: tuple[tuple[str, str, str], ...] = tuple((s, "to", d) for s in NODE_TYPES for d in NODE_TYPES)
"""All nine (source, 'to', destination) relations between node types."""

POINTS_PER_NODE: dict[str, int] = {"polygon": 4, "line": 3, "point": 1}
"""How many chip-frame points locate a node of each type (the official positional columns / 2)."""


class OSMHeteroGAT(nn.Module):
    """One HeteroConv layer: a GATConv per relation (one head, no self-loops), mean over relations, ReLU.

    Relation attributes are not used, exactly as in the official model (its GATConvs have no ``edge_dim``).

    Args:
        in_channels: tag-feature width C of the input nodes.
        out_channels: width of the node embeddings.
    """

    def __init__(self, in_channels: int, out_channels: int = 128) -> None:
        super().__init__()
        conv = HeteroConv(
            {edge: GATConv(in_channels, out_channels, add_self_loops=False) for edge in EDGE_TYPES},
            aggr="mean",
        )
        _remove_template_files(GATConv)
        self.convs = nn.ModuleList([conv])

    def forward(
        self, x: dict[str, torch.Tensor], edge_index: dict[tuple[str, str, str], torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Node embeddings (N_t, out_channels) per type from features ``x`` (N_t, in_channels).

        ``edge_index`` holds a (2, E) index per (source, 'to', destination) relation.
        """
        for conv in self.convs:
            x = {t: h.relu() for t, h in conv(x, edge_index).items()}
        return x


def _remove_template_files(conv: type) -> None:
    """Delete the ``.py`` files torch_geometric renders a conv's ``propagate`` templates into.

    It writes them to the system temp folder on a class's first instance and never removes them (two files per
    process); the modules are loaded by then and nothing reads the files again.
    """
    for attribute in ("_jinja_propagate", "_jinja_edge_updater"):
        function = getattr(conv, attribute, None)
        path = getattr(sys.modules.get(getattr(function, "__module__", "")), "__file__", None)
        if path and Path(path).parent == Path(tempfile.gettempdir()):
            Path(path).unlink(missing_ok=True)


def graph_layer_norm(x: torch.Tensor, batch: torch.Tensor, num_graphs: int, norm: nn.Module) -> torch.Tensor:
    """Normalise node features ``x`` (N, C) with one mean and std per graph, then scale and shift.

    This is the official graph-mode LayerNorm, ``(x - mean) / (std + eps)`` over a graph's nodes and channels,
    computed per graph (``batch`` (N,) holds each node's graph) instead of over the whole mini-batch, so a
    sample's embedding no longer depends on its batch partners; for a batch of one graph the two are
    identical. ``norm`` is the torch_geometric LayerNorm holding the affine parameters.
    """
    count = scatter(torch.ones_like(batch, dtype=x.dtype), batch, dim=0, dim_size=num_graphs, reduce="sum")
    count = (count * x.size(-1)).clamp(min=1).unsqueeze(-1)
    mean = scatter(x.sum(-1, keepdim=True), batch, dim=0, dim_size=num_graphs, reduce="sum") / count
    centred = x - mean[batch]
    var = (
        scatter(centred.pow(2).sum(-1, keepdim=True), batch, dim=0, dim_size=num_graphs, reduce="sum") / count
    )
    return centred / (var.sqrt()[batch] + norm.eps) * norm.weight + norm.bias
