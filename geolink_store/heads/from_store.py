"""Heads trained straight from stored vectors, saved in the ``heads`` table, applied into ``predictions``.

No re-encoding: a head reads the vectors of one model from ``cells`` (or fine-grained ``patches``), joined to
the user's labels by H3 id. Heads remember their model, table, modality and width, and refuse another model's
vectors. Nothing is written until a command has all its rows: :func:`fit_from_store` and
:func:`predictions_for` write nothing, :func:`save_heads` saves several heads in one commit.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from geolink_store.constants import EPOCH_COLUMN, H3_COLUMN, MODEL_COLUMN, RASTER_SUFFIXES, HeadModality
from geolink_store.errors import GeolinkError
from geolink_store.heads.labels import CellLabels, raster_labels, read_labels
from geolink_store.heads.train import (
    Head,
    HeadKind,
    Split,
    SplitKind,
    classification_metrics,
    random_split,
    spatial_split,
    train_head,
)
from geolink_store.store import HEADS_SCHEMA, Store
from geolink_store.store._filters import quote
from geolink_store.store.vector_rows import vector_rows

MIN_SPLIT_CELLS = 10
"""The fewest labelled cells each side of a split (train, test) needs for its metrics to mean anything."""


@dataclass(frozen=True)
class TrainedHead:
    """A head trained from the store, its id and metrics, and its ``heads`` row (saved or to save)."""

    head_id: str
    metrics: dict
    dropped: dict[str, int]
    row: pa.Table = field(repr=False)


def train_from_store(
    store: Store,
    labels_path: str | Path,
    label_column: str,
    *,
    modality: HeadModality = "fused",
    kind: HeadKind = "linear",
    split: SplitKind = "spatial",
    model_id: str | None = None,
    epoch: str | None = None,
    min_share: float = 0.5,
    test_fraction: float = 0.25,
    seed: int = 0,
) -> TrainedHead:
    """Join labels to stored vectors, split (spatially by default), train, evaluate, and save the head.

    A label raster (GeoTIFF, a class per pixel) is joined to the fine-grained ``patches`` by pixel majority
    and trains a segmentation head on patch vectors; other label files label ``cells``. The vectors are those
    of ``epoch`` (default: the latest), recorded in the head's metrics.

    Raises:
        GeolinkError: bad labels, fewer than two classes, or fewer than :data:`MIN_SPLIT_CELLS` labelled
            cells on a side of the split; nothing is saved then.
    """
    trained = fit_from_store(
        store,
        labels_path,
        label_column,
        modality=modality,
        kind=kind,
        split=split,
        model_id=model_id,
        epoch=epoch,
        min_share=min_share,
        test_fraction=test_fraction,
        seed=seed,
    )
    save_heads(store, [trained])
    return trained


def fit_from_store(
    store: Store,
    labels_path: str | Path,
    label_column: str,
    *,
    modality: HeadModality = "fused",
    kind: HeadKind = "linear",
    split: SplitKind = "spatial",
    model_id: str | None = None,
    epoch: str | None = None,
    min_share: float = 0.5,
    test_fraction: float = 0.25,
    seed: int = 0,
) -> TrainedHead:
    """:func:`train_from_store` without saving: the head and its row, for :func:`save_heads`."""
    labels_path = Path(labels_path)
    is_raster = labels_path.suffix.lower() in RASTER_SUFFIXES
    table = "patches" if is_raster else "cells"
    model_id = store.default_model(model_id, table)
    epoch = store.default_epoch(epoch, table, model_id)
    cells, vectors = stored_vectors(store, table, model_id, modality, epoch)
    if is_raster:
        labels = raster_labels(labels_path, cells)
    else:
        labels = read_labels(labels_path, label_column, store.resolution(model_id), min_share=min_share)
    rows, names, dropped = _join(labels, cells)
    usable = ~np.isnan(vectors[rows]).any(axis=1)
    if not usable.all():
        dropped["labelled cells without OSM"] = int((~usable).sum())
    rows, names = rows[usable], names[usable]
    classes = sorted(set(names.tolist()))
    if len(classes) < 2:
        raise GeolinkError(
            f"the labels matched to stored cells hold a single class ({classes}): a head needs two or more"
        )
    y = np.searchsorted(classes, names)
    x = vectors[rows]
    _check_enough(len(rows), test_fraction)
    parts = (
        spatial_split(cells[rows], test_fraction, seed=seed)
        if split == "spatial"
        else random_split(len(rows), test_fraction, seed)
    )
    _check_enough(len(rows), test_fraction, parts)
    head = train_head(x[parts.train], y[parts.train], classes, kind=kind, seed=seed)
    predicted, _ = head.predict(x[parts.test])
    metrics = classification_metrics(y[parts.test], predicted, classes) | {
        "split": split,
        "train": int(parts.train.sum()),
        "test": int(parts.test.sum()),
        "table": table,
        "modality": modality,
        "kind": kind,
        "epoch": epoch,
    }
    weights = head.to_bytes()
    head_id = hashlib.sha256(
        b"|".join(
            [
                model_id.encode(),
                table.encode(),
                modality.encode(),
                kind.encode(),
                f"{labels_path.name}:{label_column}".encode(),
                weights,
            ]
        )
    ).hexdigest()[:12]
    row = {
        "head_id": [head_id],
        MODEL_COLUMN: [model_id],
        "table": [table],
        "modality": [modality],
        "kind": [kind],
        "dim": [x.shape[1]],
        "classes": [json.dumps(classes)],
        "metrics": [json.dumps(metrics)],
        "weights": [weights],
        "labels": [f"{labels_path.name}:{label_column}"],
        "created": [datetime.now(UTC)],
    }
    return TrainedHead(
        head_id=head_id,
        metrics=metrics,
        dropped=dropped | labels.dropped,
        row=pa.Table.from_pydict(row, schema=HEADS_SCHEMA),
    )


def save_heads(store: Store, heads: list[TrainedHead]) -> None:
    """Save trained heads in the ``heads`` table, all in one commit."""
    store.upsert("heads", pa.concat_tables([head.row for head in heads]))


def _check_enough(labelled: int, test_fraction: float, split: Split | None = None) -> None:
    """Refuse fewer than :data:`MIN_SPLIT_CELLS` labelled cells on a side of the split, saying how many.

    Without ``split``, the labelled cells are checked against what a split of ``test_fraction`` needs.
    """
    needed = int(np.ceil(MIN_SPLIT_CELLS / min(test_fraction, 1 - test_fraction)))
    if split is None and labelled < needed:
        what = f"only {labelled} labelled cells match stored vectors"
    elif split is not None and min(split.train.sum(), split.test.sum()) < MIN_SPLIT_CELLS:
        what = f"the split leaves {split.train.sum()} labelled cells to train and {split.test.sum()} to test"
    else:
        return
    raise GeolinkError(
        f"{what}: metrics need at least {MIN_SPLIT_CELLS} on each side of the split, about {needed} labelled "
        f"cells in all (test share {test_fraction:g}): label more cells"
    )


def stored_vectors(
    store: Store, table: str, model_id: str, modality: HeadModality, epoch: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The H3 ids and (N, D) float32 vectors of one model and epoch (default: the latest).

    ``concat`` joins image, OSM and fused vectors.

    Missing OSM vectors are NaN rows for ``osm`` and zeros inside ``concat``. Vectors stored as int8 only
    are read dequantised.
    """
    columns = ["image", "osm", "fused"] if modality == "concat" else [modality]
    if table == "patches" and "osm" in columns:
        raise GeolinkError("patches hold image and fused vectors only: use modality=image or modality=fused")
    epoch = store.default_epoch(epoch, table, model_id)
    data = vector_rows(store, table, store.rows_filter(table, model_id, epoch), [H3_COLUMN], columns)
    blocks = []
    for column in columns:
        values = data[column].combine_chunks()
        matrix = values.values.to_numpy(zero_copy_only=False).reshape(len(values), -1).astype(np.float32)
        matrix[~values.is_valid().to_numpy(zero_copy_only=False)] = 0.0 if modality == "concat" else np.nan
        blocks.append(matrix)
    return data[H3_COLUMN].to_numpy(), np.concatenate(blocks, axis=1)


def _join(labels: CellLabels, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Rows of ``cells`` for each labelled cell found there, their label, and how many labels fell outside."""
    order = np.argsort(cells)
    position = np.searchsorted(cells[order], labels.cells).clip(max=max(0, cells.size - 1))
    found = cells[order][position] == labels.cells if cells.size else np.zeros(labels.cells.size, dtype=bool)
    outside = int((~found).sum())
    if not found.any():
        raise GeolinkError(f"none of the {labels.cells.size} labelled cells is in the store for this model")
    return (
        order[position[found]],
        labels.labels[found],
        {"labels outside the store's cells": outside} if outside else {},
    )


def load_head(store: Store, head_id: str) -> tuple[dict, Head]:
    """A saved head's row (without weights) and the head itself."""
    found = store.table("heads").search().where(f"head_id = {quote(head_id)}").limit(1).to_arrow().to_pylist()
    if not found:
        raise GeolinkError(f"no head {head_id!r} in {store.location} (see `geolink heads list`)")
    row = found[0]
    classes = json.loads(row["classes"])
    head = Head.from_bytes(row.pop("weights"), row["kind"], row["dim"], classes)
    return row | {"classes": classes, "metrics": json.loads(row["metrics"])}, head


def predict_from_store(
    store: Store, head_id: str, model_id: str | None = None, epoch: str | None = None
) -> pa.Table:
    """Apply a head to its model's stored cells (or patches) of ``epoch`` (default: the latest), saved."""
    table = predictions_for(store, head_id, model_id, epoch)
    store.upsert("predictions", table)
    return table


def predictions_for(
    store: Store, head_id: str, model_id: str | None = None, epoch: str | None = None
) -> pa.Table:
    """A head's ``predictions`` rows (unsaved) for its model's cells (or patches) of ``epoch`` (or latest)."""
    row, head = load_head(store, head_id)
    if model_id is not None and model_id != row[MODEL_COLUMN]:
        raise GeolinkError(
            f"head {head_id} was trained on model {row[MODEL_COLUMN]}'s vectors "
            f"and cannot read model {model_id}'s"
        )
    store.default_model(row[MODEL_COLUMN], row["table"])
    epoch = store.default_epoch(epoch, row["table"], row[MODEL_COLUMN])
    cells, vectors = stored_vectors(store, row["table"], row[MODEL_COLUMN], row["modality"], epoch)
    if vectors.shape[1] != head.dim:
        raise GeolinkError(
            f"head {head_id} takes {head.dim}-d vectors but the store's are {vectors.shape[1]}-d"
        )
    usable = ~np.isnan(vectors).any(axis=1)
    predicted, probabilities = head.predict(vectors[usable])
    classes = np.array(row["classes"])
    return pa.Table.from_pydict(
        {
            "head_id": [head_id] * int(usable.sum()),
            H3_COLUMN: cells[usable],
            "label": classes[predicted].tolist(),
            "score": probabilities.max(axis=1).astype(np.float32),
            "probabilities": pa.FixedSizeListArray.from_arrays(
                pa.array(probabilities.astype(np.float32).ravel()), len(classes)
            ),
            MODEL_COLUMN: [row[MODEL_COLUMN]] * int(usable.sum()),
            EPOCH_COLUMN: [epoch] * int(usable.sum()),
        }
    )


def list_heads(store: Store) -> list[dict]:
    """Every saved head (metrics parsed, weights left out)."""
    if "heads" not in store.table_names():
        return []
    rows = store.table("heads").search().select([f for f in HEADS_SCHEMA.names if f != "weights"]).limit(None)
    return [
        r | {"classes": json.loads(r["classes"]), "metrics": json.loads(r["metrics"])}
        for r in rows.to_arrow().to_pylist()
    ]
