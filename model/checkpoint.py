"""Reading and writing GeoLink weights: the official ``.pth`` layouts and our ``.safetensors``, never unpickling code.

Layouts read by ``load_checkpoint``:
- official multimodal: ``{'model_config': {'architecture', ...}, 'model_state_dict': GeoLink.state_dict()}``;
- official unimodal: the same keys, with a plain timm ViT state dict (an image-only model);
- ours: one ``.safetensors`` file whose metadata holds the ``GeoLinkConfig`` as JSON.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from model.config import GeoLinkConfig
from model.errors import CheckpointError
from model.geolink import GeoLink

FORMAT = "geolink-store"
DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "geolink_default.safetensors"
"""The bundled default model (see weights/MODEL_CARD.md; made by ``python -m training.default_recipe``)."""

_TIMM_LAYOUT_KEYS = {"architecture", "num_classes", "global_pool", "pos_embed_requires_grad"}
_ALIAS = ("patch_embed.", "img_encoder.patch_embed.")  # one module registered under two names


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> GeoLink:
    """Load any supported checkpoint (see module docstring) into an eval-mode GeoLink."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        model = _load_ours(path, map_location)
    else:
        model = _load_official(path, map_location)
    return model.eval()


def save_checkpoint(model: GeoLink, path: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Write ``model`` as one ``.safetensors`` file (config in its metadata), atomically.

    ``dtype`` (e.g. ``torch.float16``) stores floating tensors at lower precision to halve the file; loading casts
    them back to the model's parameter dtype.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"our checkpoints are .safetensors files, got {path.name}")
    state = {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in model.state_dict().items()
        if not k.startswith(_ALIAS[0])
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
        tmp_path = Path(tmp.name)
    try:
        save_file(state, str(tmp_path), metadata={"format": FORMAT, "config": model.config.to_json()})
        tmp_path.chmod(0o644)
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)
    return path


def fingerprint(model: GeoLink) -> str:
    """A content hash of config and weights: the store's ``model_id`` (16 hex digits)."""
    digest = hashlib.sha256(model.config.to_json().encode())
    for key, value in sorted(model.state_dict().items()):
        if key.startswith(_ALIAS[0]):
            continue
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def default_model() -> GeoLink:
    """The bundled default model: GeoLink with a ViT-Ti/16 image encoder and 384-d MiniLM tag features, pretrained
    on the real image + OSM pairs of the project's sample data (weights/MODEL_CARD.md). The caller's RNG state is
    left untouched.
    """
    with torch.random.fork_rng(devices=[]):
        return load_checkpoint(DEFAULT_WEIGHTS)


def _load_ours(path: Path, map_location: str | torch.device) -> GeoLink:
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        state = load_file(str(path), device=str(map_location))
    except Exception as error:  # safetensors raises several private error types for damaged files
        raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from None
    if metadata.get("format") != FORMAT or "config" not in metadata:
        raise CheckpointError(f"{path}: safetensors file without a geolink-store config in its metadata")
    try:
        config = GeoLinkConfig.from_json(metadata["config"])
    except (ValueError, TypeError) as error:
        raise CheckpointError(f"{path}: bad geolink-store config ({error})") from None
    state.update({_ALIAS[0] + k[len(_ALIAS[1]) :]: v for k, v in state.items() if k.startswith(_ALIAS[1])})
    return _fill(_build(config, path), state, path)


def _load_official(path: Path, map_location: str | torch.device) -> GeoLink:
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if found:
            raise CheckpointError(
                f"{path}: refused: loading it would unpickle code or objects other than tensors ({found.group(1)})"
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
            f"{path}: unknown checkpoint layout (expected 'model_config' and 'model_state_dict'; found {found})"
        )
    state, model_config = payload["model_state_dict"], payload.get("model_config") or {}
    if "architecture" not in model_config:
        raise CheckpointError(f"{path}: model_config lacks 'architecture' (found {sorted(model_config)})")
    timm_kwargs = {k: v for k, v in model_config.items() if k not in _TIMM_LAYOUT_KEYS}

    if any(k.startswith("osm_encoder.") for k in state):
        in_chans = next(
            v.shape[1] for k, v in state.items() if k.startswith("osm_encoder.") and k.endswith("lin.weight")
        )
        config = GeoLinkConfig(
            architecture=model_config["architecture"], timm_kwargs=timm_kwargs, osm_in_chans=in_chans
        )
        return _fill(_build(config, path), state, path)
    if "pos_embed" in state and "patch_embed.proj.weight" in state:
        config = GeoLinkConfig(
            architecture=model_config["architecture"], timm_kwargs=timm_kwargs, multimodal=False
        )
        model = _build(config, path)
        own = {"cls_token": state.get("cls_token"), "img_pos_embed": state["pos_embed"]}
        own |= {f"img_norm.{k[5:]}": v for k, v in state.items() if k.startswith("norm.")}
        vit = {f"img_encoder.{k}": v for k, v in state.items()}
        aliases = {k[len("img_encoder.") :]: v for k, v in vit.items() if k.startswith(_ALIAS[1])}
        return _fill(model, vit | aliases | {k: v for k, v in own.items() if v is not None}, path)
    raise CheckpointError(f"{path}: unknown checkpoint layout: neither a GeoLink nor a timm ViT state dict")


def _build(config: GeoLinkConfig, path: Path) -> GeoLink:
    try:
        return GeoLink(config)
    except (RuntimeError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"{path}: cannot build {config.architecture} ({str(error).splitlines()[0]})"
        ) from None


def _fill(model: GeoLink, state: dict[str, torch.Tensor], path: Path) -> GeoLink:
    """Load ``state`` strictly, or say in one message which keys are missing, unexpected, or of the wrong shape."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
        for k in sorted(set(state) & set(expected))
        if state[k].shape != expected[k].shape
    ]
    if missing or unexpected or wrong:
        parts = [
            f"{label} ({len(items)}): {', '.join(items[:4])}{' ...' if len(items) > 4 else ''}"
            for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if items
        ]
        raise CheckpointError(f"{path}: weights do not fit {model.config.architecture}: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)
    return model
