"""Named GeoLink sizes, each a new ``GeoLinkConfig``.

- ``vit_l16``, ``vit_b16``, ``vit_s16``, ``vit_ti16``: the official GeoLink (512-d CLIP tag features, plain
  sum over OSM types) with a timm ViT-L/16, B/16, S/16 or Ti/16; they fit official checkpoints of that ViT.
  ``vit_l16`` is the ``GeoLinkConfig`` defaults.
- ``default``: the bundled default model's config, read from its checkpoint (ViT-Ti/16, 384-d MiniLM tag
  features, type attention, a narrower MAE decoder).
- ``test``: the official GeoLink with a 2-block ViT-Ti/16 (fast tests; the official-parity fixture's size).
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
