"""Light downstream heads trained on stored vectors: linear probe, small MLP, k-nearest neighbours.

Everything here works on arrays (vectors, labels, H3 ids); reading them from the store and writing heads back
is the job of ``geolink_store.heads.from_store``. Splits are spatial by default: whole blocks of a coarser H3
parent go to one side, so that neighbouring cells never sit on both sides of the split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from safetensors.torch import load, save
from torch import nn

from geolink_store.errors import GeolinkError
from geolink_store.grid import parents, resolution

HeadKind = Literal["linear", "mlp", "knn"]
SplitKind = Literal["spatial", "random"]


@dataclass(frozen=True)
class Split:
    """Boolean masks over the labelled rows."""

    train: np.ndarray
    test: np.ndarray


def spatial_split(
    cells: np.ndarray, test_fraction: float = 0.25, block_levels: int = 2, seed: int = 0
) -> Split:
    """Assign whole blocks (the parent ``block_levels`` resolutions up) to train or test.

    About ``test_fraction`` of the rows go to test: blocks are shuffled with ``seed`` and taken for the test
    side until it holds the wanted share of rows.
    """
    block_res = max(0, resolution(cells[0]) - block_levels)
    blocks = parents(cells, block_res)
    unique, inverse, counts = np.unique(blocks, return_inverse=True, return_counts=True)
    if unique.size < 2:
        raise GeolinkError(
            f"all {cells.size} labelled cells fall in one H3 block at resolution {block_res}: "
            "label a larger area, lower block_levels=, or use split=random"
        )
    order = np.random.default_rng(seed).permutation(unique.size)
    test_blocks = np.zeros(unique.size, dtype=bool)
    wanted, taken = test_fraction * cells.size, 0
    for block in order:
        if taken >= wanted or test_blocks.sum() == unique.size - 1:
            break
        test_blocks[block] = True
        taken += counts[block]
    test = test_blocks[inverse]
    return Split(train=~test, test=test)


def random_split(size: int, test_fraction: float = 0.25, seed: int = 0) -> Split:
    """Rows assigned to test at random (neighbours may leak across the split: use only on request)."""
    test = np.zeros(size, dtype=bool)
    test[np.random.default_rng(seed).permutation(size)[: max(1, round(test_fraction * size))]] = True
    return Split(train=~test, test=test)


class Head(nn.Module):
    """A trained classifier over vectors of one width; ``kind`` is linear, mlp or knn."""

    def __init__(self, kind: HeadKind, dim: int, classes: list[str], hidden: int = 128, k: int = 5) -> None:
        super().__init__()
        self.kind, self.dim, self.classes, self.k = kind, dim, list(classes), k
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))
        if kind == "linear":
            self.net = nn.Linear(dim, len(classes))
        elif kind == "mlp":
            self.net = nn.Sequential(
                nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.1), nn.Linear(hidden, len(classes))
            )
        elif kind == "knn":
            self.register_buffer("memory", torch.zeros(0, dim))
            self.register_buffer("memory_labels", torch.zeros(0, dtype=torch.long))
        else:
            raise GeolinkError(f"unknown head kind {kind!r}: use linear, mlp or knn")

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        """Class probabilities (N, C) for vectors (N, dim)."""
        x = (vectors - self.mean) / self.scale
        if self.kind != "knn":
            return torch.softmax(self.net(x), dim=-1)
        similarity = nn.functional.normalize(x, dim=-1) @ nn.functional.normalize(self.memory, dim=-1).T
        top, index = similarity.topk(min(self.k, self.memory.size(0)), dim=-1)
        votes = torch.zeros(x.size(0), len(self.classes), dtype=x.dtype)
        votes.scatter_add_(1, self.memory_labels[index], (top + 1.0).clamp(min=1e-6))
        return votes / votes.sum(-1, keepdim=True)

    def predict(self, vectors: np.ndarray, batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
        """Predicted class indices and their probabilities for a (N, dim) array."""
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise GeolinkError(f"this head takes {self.dim}-d vectors, got shape {vectors.shape}")
        self.eval()
        outputs = []
        with torch.no_grad():
            for start in range(0, len(vectors), batch_size):
                outputs.append(
                    self(torch.from_numpy(np.ascontiguousarray(vectors[start : start + batch_size])))
                )
        probabilities = (
            torch.cat(outputs).numpy() if outputs else np.zeros((0, len(self.classes)), np.float32)
        )
        return probabilities.argmax(1), probabilities

    def to_bytes(self) -> bytes:
        """The head's tensors as safetensors bytes (no pickle)."""
        return save({k: v.contiguous() for k, v in self.state_dict().items()})

    @classmethod
    def from_bytes(cls, data: bytes, kind: HeadKind, dim: int, classes: list[str]) -> Head:
        """Rebuild a head saved with ``to_bytes``."""
        state = load(data)
        head = cls(kind, dim, classes)
        if kind == "knn":
            head.memory = state["memory"]
            head.memory_labels = state["memory_labels"]
        head.load_state_dict(state)
        return head.eval()


def train_head(
    vectors: np.ndarray,
    labels: np.ndarray,
    classes: list[str],
    kind: HeadKind = "linear",
    steps: int = 300,
    batch_size: int = 4096,
    lr: float = 1e-2,
    weight_decay: float = 1e-4,
    seed: int = 0,
) -> Head:
    """Fit a head on (N, dim) float32 vectors and integer labels, with class weights against imbalance.

    AdamW on shuffled mini-batches for a fixed number of ``steps`` (full batch when N <= ``batch_size``), so
    the cost does not grow with the number of labelled cells beyond reading them.
    """
    torch.manual_seed(seed)
    x = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
    y = torch.from_numpy(labels.astype(np.int64))
    head = Head(kind, x.size(1), classes)
    head.mean = x.mean(0)
    head.scale = x.std(0).clamp(min=1e-6)
    if kind == "knn":
        head.memory, head.memory_labels = x.clone(), y.clone()
        return head.eval()
    counts = torch.bincount(y, minlength=len(classes)).float()
    weights = counts.sum() / (len(classes) * counts.clamp(min=1))
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss(weight=weights)
    normalised = (x - head.mean) / head.scale
    generator = torch.Generator().manual_seed(seed)
    head.train()
    for _ in range(steps):
        rows = (
            torch.randint(len(y), (batch_size,), generator=generator) if len(y) > batch_size else slice(None)
        )
        optimizer.zero_grad()
        loss_fn(head.net(normalised[rows]), y[rows]).backward()
        optimizer.step()
    return head.eval()


def classification_metrics(truth: np.ndarray, predicted: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, macro-F1, per-class F1 and IoU (and their mean, mIoU).

    The majority-class baseline's scores sit beside them.
    """
    scores = _scores(truth, predicted, len(classes))
    majority = np.bincount(truth, minlength=len(classes)).argmax() if truth.size else 0
    baseline = _scores(truth, np.full_like(truth, majority), len(classes))
    return {
        "n": int(truth.size),
        "accuracy": scores["accuracy"],
        "macro_f1": scores["macro_f1"],
        "miou": scores["miou"],
        "per_class_f1": dict(zip(classes, scores["f1"], strict=True)),
        "per_class_iou": dict(zip(classes, scores["iou"], strict=True)),
        "majority_baseline": {
            "class": classes[majority],
            "accuracy": baseline["accuracy"],
            "macro_f1": baseline["macro_f1"],
        },
    }


def _scores(truth: np.ndarray, predicted: np.ndarray, num_classes: int) -> dict:
    confusion = np.bincount(truth * num_classes + predicted, minlength=num_classes**2).reshape(
        num_classes, num_classes
    )
    tp = np.diag(confusion).astype(float)
    support, claimed = confusion.sum(1), confusion.sum(0)
    present = support > 0
    f1 = np.divide(2 * tp, support + claimed, out=np.zeros(num_classes), where=(support + claimed) > 0)
    iou = np.divide(tp, support + claimed - tp, out=np.zeros(num_classes), where=(support + claimed - tp) > 0)
    return {
        "accuracy": float(tp.sum() / max(1, truth.size)),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "miou": float(iou[present].mean()) if present.any() else 0.0,
        "f1": [float(v) for v in f1],
        "iou": [float(v) for v in iou],
    }
