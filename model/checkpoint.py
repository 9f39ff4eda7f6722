"""GeoLink checkpoints as ``(GeoLinkConfig, state_dict)``: read, written and converted, never unpickling code.

Nothing here builds a model: ``GeoLink.from_checkpoint`` does. Layouts read by ``read_checkpoint``:

- official multimodal: ``{'model_config': {'architecture', ...}, 'model_state_dict': GeoLink.state_dict()}``;
- official unimodal: the same keys around a plain timm ViT state dict (converted to an image-only GeoLink's);
- ours: one ``.safetensors`` file whose metadata holds the ``GeoLinkConfig`` as JSON.

State dicts have GeoLink's keys, in which the patch embedding appears twice (``img_encoder.patch_embed.*`` and
its alias ``patch_embed.*``, one module); our files and fingerprints take it once.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from model.config import GeoLinkConfig
from model.errors import CheckpointError

DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "geolink_default.safetensors"
"""The bundled default model (see weights/MODEL_CARD.md; made by ``python -m training.default_recipe``)."""

_FORMAT = "geolink-store"
_TIMM_LAYOUT_KEYS = {"architecture", "num_classes", "global_pool", "pos_embed_requires_grad"}
_PATCH_EMBED = "img_encoder.patch_embed."
_PATCH_ALIAS = "patch_embed."


def read_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[GeoLinkConfig, dict[str, torch.Tensor]]:
    """The config and state dict (GeoLink's keys) of any supported checkpoint (see the module docstring).

    Raises:
        CheckpointError: the file is missing, unreadable, of unknown layout, or refused (it would unpickle
            code).
    """
    path = _existing(path)
    if path.suffix == ".safetensors":
        return _read_ours(path, map_location)
    return _read_official(path, map_location)


def read_config(path: str | Path) -> GeoLinkConfig:
    """The config in the metadata of one of our ``.safetensors`` checkpoints, without reading its weights.

    Raises:
        CheckpointError: the file is missing, not a safetensors file, or holds no valid geolink-store config.
    """
    path = _existing(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception as error:  # safetensors raises several private error types for damaged files
        raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from None
    if metadata.get("format") != _FORMAT or "config" not in metadata:
        raise CheckpointError(f"{path}: safetensors file without a geolink-store config in its metadata")
    try:
        return GeoLinkConfig.from_json(metadata["config"])
    except (ValueError, TypeError) as error:
        raise CheckpointError(f"{path}: bad geolink-store config ({error})") from None


def write_checkpoint(
    path: str | Path,
    config: GeoLinkConfig,
    state_dict: Mapping[str, torch.Tensor],
    dtype: torch.dtype | None = None,
) -> Path:
    """Write ``config`` and ``state_dict`` as one ``.safetensors`` file (config in its metadata), atomically.

    ``dtype`` (e.g. ``torch.float16``) stores floating tensors at lower precision; loading into a model casts
    them back to its parameter dtype.

    Raises:
        CheckpointError: ``path`` does not end in ``.safetensors``.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"our checkpoints are .safetensors files, got {path.name}")
    tensors = {
        key: (value.to(dtype) if dtype is not None and value.is_floating_point() else value)
        .detach()
        .cpu()
        .contiguous()
        for key, value in _without_alias(state_dict).items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
        tmp_path = Path(tmp.name)
    try:
        save_file(tensors, str(tmp_path), metadata={"format": _FORMAT, "config": config.to_json()})
        tmp_path.chmod(0o644)
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)
    return path


def fingerprint(config: GeoLinkConfig, state_dict: Mapping[str, torch.Tensor]) -> str:
    """A content hash of a config and its weights: the store's ``model_id`` (16 hex digits)."""
    digest = hashlib.sha256(config.to_json().encode())
    for key, value in sorted(_without_alias(state_dict).items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())  # 0-d too
    return digest.hexdigest()[:16]


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes)")
    return path


def _without_alias(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state_dict.items() if not k.startswith(_PATCH_ALIAS)}


def _with_alias(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    aliases = {
        _PATCH_ALIAS + k[len(_PATCH_EMBED) :]: v for k, v in state_dict.items() if k.startswith(_PATCH_EMBED)
    }
    return state_dict | aliases


def _read_ours(path: Path, map_location: str | torch.device) -> tuple[GeoLinkConfig, dict[str, torch.Tensor]]:
    config = read_config(path)
    try:
        state = load_file(str(path), device=str(map_location))
    except Exception as error:  # as in read_config
        raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from None
    return config, _with_alias(state)


def _read_official(
    path: Path, map_location: str | torch.device
) -> tuple[GeoLinkConfig, dict[str, torch.Tensor]]:
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if found:
            raise CheckpointError(
                f"{path}: refused: loading it would unpickle code or objects other than tensors "
                f"({found.group(1)})"
            ) from None
        raise CheckpointError(
            f"{path}: not a readable torch checkpoint (damaged or not a checkpoint)"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise CheckpointError(
            f"{path}: not a readable torch checkpoint ({str(error).splitlines()[0]})"
        ) from None
    if not isinstance(payload, dict) or not isinstance(payload.get("model_state_dict"), dict):
        found = sorted(payload)[:8] if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(
            f"{path}: unknown checkpoint layout (expected 'model_config' and 'model_state_dict'; "
            f"found {found})"
        )
    state, model_config = payload["model_state_dict"], payload.get("model_config") or {}
    if "architecture" not in model_config:
        raise CheckpointError(f"{path}: model_config lacks 'architecture' (found {sorted(model_config)})")
    architecture = model_config["architecture"]
    timm_kwargs = {k: v for k, v in model_config.items() if k not in _TIMM_LAYOUT_KEYS}

    if any(k.startswith("osm_encoder.") for k in state):
        in_chans = next(
            (
                v.shape[1]
                for k, v in state.items()
                if k.startswith("osm_encoder.") and k.endswith("lin.weight")
            ),
            GeoLinkConfig.osm_in_chans,  # no GAT weights: the strict load names them as missing
        )
        return GeoLinkConfig(architecture=architecture, timm_kwargs=timm_kwargs, osm_in_chans=in_chans), state
    if "pos_embed" in state and "patch_embed.proj.weight" in state:
        own = {"cls_token": state.get("cls_token"), "img_pos_embed": state["pos_embed"]}
        own |= {f"img_norm.{k[len('norm.') :]}": v for k, v in state.items() if k.startswith("norm.")}
        vit = _with_alias({f"img_encoder.{k}": v for k, v in state.items()})
        config = GeoLinkConfig(architecture=architecture, timm_kwargs=timm_kwargs, multimodal=False)
        return config, vit | {k: v for k, v in own.items() if v is not None}
    raise CheckpointError(f"{path}: unknown checkpoint layout: neither a GeoLink nor a timm ViT state dict")
