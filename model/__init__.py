"""The GeoLink network (NeurIPS 2025): imagery + OpenStreetMap, loading official checkpoints."""

from model.checkpoint import CheckpointError, default_model, fingerprint, load_checkpoint, save_checkpoint
from model.config import GeoLinkConfig
from model.geolink import EncodeOutput, GeoLink, PretrainOutput
from model.graphs import batch_graphs, empty_graph, from_official_graph
from model.osm import EDGE_TYPES, NODE_TYPES, POINTS_PER_NODE

__all__ = [
    "EDGE_TYPES",
    "NODE_TYPES",
    "POINTS_PER_NODE",
    "CheckpointError",
    "EncodeOutput",
    "GeoLink",
    "GeoLinkConfig",
    "PretrainOutput",
    "batch_graphs",
    "default_model",
    "empty_graph",
    "fingerprint",
    "from_official_graph",
    "load_checkpoint",
    "save_checkpoint",
]
