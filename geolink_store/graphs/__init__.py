"""OSM features to GeoLink graphs: tag text encoders and the graph builder."""

from geolink_store.graphs.builder import RELATIONS, BuildStats, GraphBuilder, TagWeights
from geolink_store.graphs.text import CLIPTextEncoder, MiniLMEncoder, TagEmbeddingCache, TextEncoder

__all__ = [
    "RELATIONS",
    "BuildStats",
    "CLIPTextEncoder",
    "GraphBuilder",
    "MiniLMEncoder",
    "TagEmbeddingCache",
    "TagWeights",
    "TextEncoder",
]
