"""The one configuration object of a GeoLink model."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class GeoLinkConfig:
    """Architecture and pretraining settings. Defaults reproduce the official GeoLink (ViT-L, CLIP tag features).

    ``timm_kwargs`` go to ``timm.create_model`` (e.g. ``{"depth": 4}`` for a shallower ViT). ``multimodal=False``
    builds the image encoder alone (the official unimodal release). ``type_attention=True`` attends over the OSM
    types present in a graph; ``False`` reproduces the official plain sum, needed for official checkpoints.
    ``shared_positions=False`` drops the shared sin-cos positions from the fusion block (the spatial-correlation
    ablation).
    """

    architecture: str = "vit_large_patch16_224"
    timm_kwargs: dict[str, Any] = field(default_factory=dict)
    multimodal: bool = True
    osm_in_chans: int = 512
    osm_embed_dim: int = 128
    region_dim: int = 128
    fusion_dim: int = 256
    fusion_depth: int = 1
    fusion_heads: int = 16
    fusion_dropout: float = 0.1
    decoder_dim: int = 512
    decoder_depth: int = 2
    decoder_heads: int = 16
    contrast_dim: int = 64
    temperature: float = 0.2
    norm_pix_loss: bool = True
    type_attention: bool = False
    shared_positions: bool = True
    img_mask_ratio: float = 0.75
    osm_mask_ratio: float = 0.2
    max_masked_nodes: int = 10
    loss_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def to_json(self) -> str:
        """Serialise to JSON (stored beside our safetensors weights)."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> GeoLinkConfig:
        """Read a config written by ``to_json``; unknown keys are an error."""
        values = json.loads(text)
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown GeoLink config keys: {sorted(unknown)}")
        if "loss_weights" in values:
            values["loss_weights"] = tuple(values["loss_weights"])
        return cls(**values)
