"""The one configuration object of a GeoLink model, and the checked reading of dataclass configs from JSON."""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from model.errors import InputError


@dataclass(frozen=True)
class GeoLinkConfig:
    """Architecture and pretraining settings; the defaults are the official GeoLink (ViT-L/16, CLIP tags).

    ``timm_kwargs`` go to ``timm.create_model`` (e.g. ``{"depth": 4}`` for a shallower ViT).
    ``architecture`` may also be a timm CNN (e.g. ``tf_efficientnet_lite2``): its stride-16 feature map,
    projected to ``token_dim`` channels by a 1x1 conv, gives the image tokens (``token_dim`` is unused for a
    ViT). ``image_init`` names ImageNet weights loaded into the backbone at construction
    (``model.pretrained.IMAGE_INITS``); a checkpoint's weights replace them, and loading one never needs them.
    ``multimodal=False`` builds the image encoder alone (the official unimodal release).
    ``type_attention=True`` attends over the OSM types present in a graph; ``False`` is the official plain
    sum, needed for official checkpoints.
    ``shared_positions=False`` drops the shared sin-cos positions from the fusion block (an ablation).
    ``node_geometry=True`` feeds the GAT ``cat(x, geo)`` per node (width ``osm_in_chans + 8``: the graphs'
    geometry features, ``model.graphs.GEOMETRY_FEATURES``, built with ``GraphBuilder(geometry=True)``); the
    masked-node loss still predicts ``x`` and the mask token replaces ``x`` only. ``count_readout=True`` gives
    each type's region slot ``log1p`` of that type's node count next to its Set2Set readout. Both ``False``
    is the official layout, needed for official checkpoints. ``fusion_gate=True`` makes the fusion's
    OSM -> image step proportionate (a zero attention slot and a learned gate, see
    ``model.fusion.TwoWayFusionBlock``), so fused vectors split less by OSM presence; ``False`` is official.
    Named sizes are in ``model.presets``.
    """

    architecture: str = "vit_large_patch16_224"
    timm_kwargs: dict[str, Any] = field(default_factory=dict)
    token_dim: int = 256
    image_init: str | None = None
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
    node_geometry: bool = False
    count_readout: bool = False
    fusion_gate: bool = False
    img_mask_ratio: float = 0.75
    osm_mask_ratio: float = 0.2
    max_masked_nodes: int = 10
    loss_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def to_json(self) -> str:
        """Serialise to JSON (stored in the metadata of our safetensors weights)."""
        values = {  # later fields at their default are left out: ids of older models unchanged
            name: value
            for name, value in asdict(self).items()
            if name not in _LATER_FIELDS or value != _LATER_FIELDS[name]
        }
        return json.dumps(values, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> GeoLinkConfig:
        """Read a config written by ``to_json``.

        Raises:
            InputError: ``text`` is not a JSON object of config keys (unknown keys are named).
        """
        values = json_kwargs(cls, text)
        if "loss_weights" in values:
            values["loss_weights"] = tuple(values["loss_weights"])
        return cls(**values)


def json_kwargs(cls: type, text: str) -> dict[str, Any]:
    """The keyword arguments of dataclass ``cls`` held by the JSON object ``text``.

    Raises:
        InputError: ``text`` is not a JSON object, has keys that are not fields of ``cls`` or lacks a required
            one; the message names the keys.
    """
    try:
        values = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"{cls.__name__}: not valid JSON ({error})") from None
    if not isinstance(values, dict):
        raise InputError(f"{cls.__name__}: expected a JSON object, got {type(values).__name__}")
    known = {f.name for f in fields(cls)}
    required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
    unknown, missing = sorted(set(values) - known), sorted(required - set(values))
    if unknown or missing:
        problems = [
            f"{label} keys {keys}" for label, keys in (("unknown", unknown), ("missing", missing)) if keys
        ]
        raise InputError(f"{cls.__name__}: {'; '.join(problems)}")
    return values


_LATER_FIELDS = {
    "token_dim": 256,
    "image_init": None,
    "node_geometry": False,
    "count_readout": False,
    "fusion_gate": False,
}
"""Fields added after the first release, left out of ``to_json`` at their default value.

A model's id (``model.checkpoint.fingerprint``) hashes its config JSON: omitting them keeps the ids, and the
stores, of every model made before they existed.
"""
