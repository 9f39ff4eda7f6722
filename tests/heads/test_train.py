"""Heads on arrays: spatial split, the three kinds, metrics, and (de)serialisation."""

from __future__ import annotations

import numpy as np
import pytest
from h3.api import basic_int as h3

from geolink_store.errors import GeolinkError
from geolink_store.grid import parents, region_cells
from geolink_store.heads.train import Head, classification_metrics, random_split, spatial_split, train_head


@pytest.fixture(scope="module")
def cells() -> np.ndarray:
    """Real res-9 H3 cells over central Kampala."""
    return region_cells("32.55,0.30,32.62,0.36", 9)


def test_spatial_split_keeps_blocks_whole(cells) -> None:
    split = spatial_split(cells, test_fraction=0.3, block_levels=2, seed=1)
    blocks = parents(cells, 7)
    assert not set(blocks[split.train]) & set(blocks[split.test])
    assert 0.2 < split.test.mean() < 0.45 and (split.train ^ split.test).all()


def test_spatial_split_needs_two_blocks() -> None:
    one_block = np.array(h3.cell_to_children(h3.latlng_to_cell(0.3, 32.6, 7), 9), dtype=np.int64)
    with pytest.raises(GeolinkError, match="one H3 block"):
        spatial_split(one_block, block_levels=2)


def test_random_split_sizes() -> None:
    split = random_split(100, 0.2, seed=3)
    assert split.test.sum() == 20 and split.train.sum() == 80


def test_metrics_by_hand() -> None:
    truth = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 0, 1, 1, 0, 2])
    metrics = classification_metrics(truth, predicted, ["a", "b", "c"])
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["per_class_f1"] == pytest.approx({"a": 2 * 2 / (3 + 3), "b": 2 * 1 / (2 + 2), "c": 1.0})
    assert metrics["per_class_iou"]["a"] == pytest.approx(2 / 4)
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert metrics["majority_baseline"] == {
        "class": "a",
        "accuracy": pytest.approx(0.5),
        "macro_f1": pytest.approx(2 / 9),
    }


@pytest.mark.parametrize("kind", ["linear", "mlp", "knn"])
def test_heads_learn_imbalanced_classes_and_round_trip(kind: str) -> None:
    """Three Gaussian classes, 20:5:1 imbalanced: every kind must beat the majority baseline on macro-F1."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 32)) * 2
    labels = np.repeat([0, 1, 2], [400, 100, 20])
    vectors = (centres[labels] + rng.normal(size=(labels.size, 32))).astype(np.float32)
    split = random_split(labels.size, 0.3, seed=0)
    head = train_head(vectors[split.train], labels[split.train], ["a", "b", "c"], kind=kind)
    predicted, probabilities = head.predict(vectors[split.test])
    metrics = classification_metrics(labels[split.test], predicted, ["a", "b", "c"])
    assert metrics["macro_f1"] > 0.9 > metrics["majority_baseline"]["macro_f1"]
    np.testing.assert_allclose(probabilities.sum(1), 1, rtol=1e-5)
    restored = Head.from_bytes(head.to_bytes(), kind, 32, ["a", "b", "c"])
    np.testing.assert_allclose(restored.predict(vectors[split.test])[1], probabilities, rtol=1e-5, atol=1e-6)
    with pytest.raises(GeolinkError, match="takes 32-d vectors"):
        head.predict(vectors[:, :16])
