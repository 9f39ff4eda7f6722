"""Where the imagery and the map disagree: cells whose OSM is not what their image vector predicts.

A cross-modal predictor is fitted on the store itself: ridge regression from each cell's image vector (its
leading principal components) to what the map says of the cell, the log counts of its OSM points, lines and
polygons. Every cell is predicted by a model fitted without it and without its neighbours (spatial folds:
whole parents :data:`FOLD_LEVELS` resolutions coarser), so a cell cannot explain itself away. The score is the
prediction's error in the chosen direction, in standard deviations summed over the three kinds:
``direction="image"`` ranks the cells where the image predicts more mapped features than the map has (unmapped
or newly built), ``"map"`` those where the map has more than the image shows (demolished, or not visible from
above). 0 is a cell the image explains; negative scores disagree the other way.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Literal

import numpy as np

from geolink_store import grid
from geolink_store.constants import CELLS, H3_COLUMN, NODE_COUNT_COLUMNS
from geolink_store.errors import InputError
from geolink_store.query.frames import cells_frame
from geolink_store.query.search import spatial_filter
from geolink_store.store import Store
from geolink_store.store.vector_rows import vector_rows

if TYPE_CHECKING:
    import geopandas as gpd
    import pyarrow as pa

FOLDS = 5
FOLD_LEVELS = 2
"""Cells are held out together with every cell of their parent this many resolutions coarser."""
COMPONENTS = 32
"""Principal components of the image vectors the predictor reads (fewer when there are few cells)."""
PENALTIES = (0.01, 0.1, 1.0, 10.0)
"""Ridge penalties tried, per cell and component; the one with the lowest held-out error is used."""
MIN_CELLS = 4 * FOLDS
Direction = Literal["image", "map"]
DIRECTIONS: tuple[Direction, ...] = ("image", "map")


def disagreement(
    store: Store,
    *,
    direction: Direction = "image",
    epoch: str | None = None,
    model_id: str | None = None,
    within: str | os.PathLike | None = None,
    k: int | None = None,
) -> gpd.GeoDataFrame:
    """The cells with an image vector, the most disagreeing first (see the module docstring).

    Args:
        store: a store whose ``cells`` were ingested with imagery and OSM.
        direction: ``image`` (the image shows more than the map) or ``map`` (the map shows more).
        epoch: which epoch (default: the latest).
        model_id: whose vectors (default: the store's only model).
        within: ``W,S,E,N`` or a polygon file: fit and rank only the cells whose centre lies inside.
        k: keep the ``k`` highest scores (default: all).

    Returns:
        A GeoDataFrame (EPSG:4326 hexagons): ``h3``, ``h3_hex``, ``score``, the ``n_point``/``n_line``/
        ``n_polygon`` counts and those predicted from the image (``n_*_predicted``), ``lon``, ``lat``; sorted
        by ``score``, highest first.

    Raises:
        GeolinkError: unknown model, epoch or direction; fewer than :data:`MIN_CELLS` imaged cells; no OSM in
            any cell.
    """
    if direction not in DIRECTIONS:
        raise InputError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    if k is not None and k < 1:
        raise InputError(f"k must be at least 1, got {k}")
    model_id = store.default_model(model_id)
    epoch = store.default_epoch(epoch, model_id=model_id)
    res = store.resolution(model_id)
    rows = _cells(store, store.rows_filter(CELLS, model_id, epoch), spatial_filter(within, None, res))
    if rows.num_rows < MIN_CELLS:
        raise InputError(
            f"only {rows.num_rows} cells have an image vector: the predictor needs at least {MIN_CELLS}"
        )
    cells = rows[H3_COLUMN].to_numpy()
    counts = np.log1p(
        np.column_stack([rows[name].to_numpy() for name in NODE_COUNT_COLUMNS]).astype(np.float64)
    )
    if not np.any(counts):
        raise InputError(
            "no cell of this epoch has OSM: disagreement compares the image with the map; ingest with osm="
        )
    features = _components(_matrix(rows["image"]), min(COMPONENTS, rows.num_rows // 5))
    predicted = held_out_predictions(features, counts, _spatial_folds(cells, res))
    spread = counts.std(axis=0)
    varies = spread > 1e-9  # a kind no cell has (or all have alike) says nothing
    score = ((predicted - counts)[:, varies] / spread[varies]).sum(axis=1)
    score = score if direction == "image" else -score
    order = np.lexsort((cells, -score))[: k or None]
    shown = np.maximum(np.expm1(predicted[order]), 0.0)
    return cells_frame(
        cells[order],
        {
            "score": score[order],
            **{name: rows[name].to_numpy()[order] for name in NODE_COUNT_COLUMNS},
            **{f"{name}_predicted": shown[:, i] for i, name in enumerate(NODE_COUNT_COLUMNS)},
        },
    )


def _cells(store: Store, rows_filter: str, area: str | None) -> pa.Table:
    where = " AND ".join(part for part in (rows_filter, area and f"({area})") if part)
    columns = [H3_COLUMN, *NODE_COUNT_COLUMNS]
    return vector_rows(store, CELLS, where, columns, ["image"], non_null=["image"])


def _matrix(column: pa.ChunkedArray) -> np.ndarray:
    """A fixed-width vector column as a float64 matrix, null rows as zeros."""
    values = column.combine_chunks()
    width = values.type.list_size
    matrix = values.flatten().to_numpy(zero_copy_only=False)
    full = np.zeros((len(values), width))
    full[values.is_valid().to_numpy(zero_copy_only=False)] = matrix.reshape(-1, width)
    return full


def _components(vectors: np.ndarray, count: int) -> np.ndarray:
    """The leading ``count`` principal components of the unit vectors, each scaled to unit variance."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    centred = unit - unit.mean(axis=0)
    left, singular, _ = np.linalg.svd(centred, full_matrices=False)
    keep = max(1, min(count, int((singular > singular[0] * 1e-6).sum())))
    return left[:, :keep] * np.sqrt(len(vectors))


def _spatial_folds(cells: np.ndarray, res: int) -> np.ndarray:
    """A fold per cell: whole parents :data:`FOLD_LEVELS` coarser go together, spread over the folds."""
    _, group = np.unique(grid.parents(cells, max(0, res - FOLD_LEVELS)), return_inverse=True)
    order = np.random.default_rng(0).permutation(group.max() + 1)
    return order[group] % FOLDS


def held_out_predictions(features: np.ndarray, targets: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Each row's targets predicted by a ridge regression fitted on the other folds.

    The penalty is the one of :data:`PENALTIES` with the lowest total held-out squared error (targets scaled
    to unit variance).
    """
    spread = np.maximum(targets.std(axis=0), 1e-9)
    best, best_error = targets, np.inf
    for penalty in PENALTIES:
        predicted = np.repeat(targets.mean(axis=0, keepdims=True), len(targets), axis=0)
        for fold in np.unique(folds):
            train, test = folds != fold, folds == fold
            x, y = features[train], targets[train]
            mean_x, mean_y = x.mean(axis=0), y.mean(axis=0)
            gram = (x - mean_x).T @ (x - mean_x) + penalty * train.sum() * np.eye(x.shape[1])
            weights = np.linalg.solve(gram, (x - mean_x).T @ (y - mean_y))
            predicted[test] = (features[test] - mean_x) @ weights + mean_y
        error = float((((predicted - targets) / spread) ** 2).sum())
        if error < best_error:
            best, best_error = predicted, error
    return best
