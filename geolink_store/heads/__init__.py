"""Light heads trained from stored vectors: labels for cells, splits, training, prediction."""

from geolink_store.heads.from_store import (
    TrainedHead,
    fit_from_store,
    list_heads,
    predict_from_store,
    predictions_for,
    save_heads,
    train_from_store,
)
from geolink_store.heads.labels import CellLabels, read_labels
from geolink_store.heads.train import Head, random_split, spatial_split, train_head

__all__ = [
    "CellLabels",
    "Head",
    "TrainedHead",
    "fit_from_store",
    "list_heads",
    "predict_from_store",
    "predictions_for",
    "random_split",
    "read_labels",
    "save_heads",
    "spatial_split",
    "train_from_store",
    "train_head",
]
