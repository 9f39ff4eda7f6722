"""Change between two epochs of the same cells: a score per cell, most changed first.

For each cell stored in both epochs (same model), with ``a`` and ``b`` its unit vectors of the two epochs:

- ``distance``: the plain cosine distance ``1 - a . b`` (0: the same, 1: unrelated, 2: opposite); the
  ``cells_change`` SQL macro gives the same figure per cell.
- ``score``, the ranking: the cosine distance after each epoch's mean vector over the shared cells is taken
  away (a change of the whole scene, such as another season, sun angle or sensor colour balance, moves every
  vector alike and is removed so), divided by the median of that distance over the cell's neighbourhood, its
  parent :data:`CONTEXT_LEVELS` resolutions coarser (about 49 cells). 1 is a typical change for the place; a
  cell scoring 5 changed five times more than the cells around it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from geolink_store import grid
from geolink_store.constants import CELLS, H3_COLUMN, MODALITIES, Modality
from geolink_store.errors import InputError
from geolink_store.query.frames import cells_frame
from geolink_store.query.search import spatial_filter
from geolink_store.store import Store
from geolink_store.store.epochs import chosen_epoch
from geolink_store.store.vector_rows import vector_rows

if TYPE_CHECKING:
    import geopandas as gpd

CONTEXT_LEVELS = 2
"""How many resolutions coarser the parent is whose cells give a cell's typical change."""
_FLOOR = 1e-6


@dataclass(frozen=True)
class EpochVectors:
    """The H3 ids (sorted) and unit vectors of one epoch's cells."""

    cells: np.ndarray
    vectors: np.ndarray


def change_scores(
    store: Store,
    epoch_from: str,
    epoch_to: str,
    *,
    modality: Modality = "image",
    model_id: str | None = None,
    within: str | os.PathLike | None = None,
    k: int | None = None,
) -> gpd.GeoDataFrame:
    """The cells of both epochs, most changed first (see the module docstring for what the scores mean).

    Args:
        store: a store whose ``cells`` hold both epochs.
        epoch_from: the earlier epoch.
        epoch_to: the later epoch.
        modality: which vectors to compare (``osm`` compares the map of the two epochs).
        model_id: whose vectors (default: the store's only model).
        within: ``W,S,E,N`` or a polygon file: only cells whose centre lies inside.
        k: keep the ``k`` most changed cells (default: all).

    Returns:
        A GeoDataFrame (EPSG:4326 hexagons) with ``h3``, ``h3_hex``, ``score``, ``distance``, ``lon``,
        ``lat``, sorted by ``score``, highest first.

    Raises:
        GeolinkError: unknown model, epoch or modality, the same epoch twice, or no cell in both epochs.
    """
    if modality not in MODALITIES:
        raise InputError(f"modality must be one of {', '.join(MODALITIES)}, got {modality!r}")
    if k is not None and k < 1:
        raise InputError(f"k must be at least 1, got {k}")
    model_id = store.default_model(model_id)
    stored = store.epochs(model_id=model_id)
    epochs = [chosen_epoch(stored, epoch, f"model {model_id!r}") for epoch in (epoch_from, epoch_to)]
    if epochs[0] == epochs[1]:
        raise InputError(f"epoch_from= and epoch_to= are both {epochs[0]!r}: compare two epochs")
    res = store.resolution(model_id)
    area = spatial_filter(within, None, res)
    before, after = (_epoch_vectors(store, model_id, epoch, modality, area) for epoch in epochs)
    cells, first, second = np.intersect1d(before.cells, after.cells, assume_unique=True, return_indices=True)
    if not cells.size:
        raise InputError(
            f"no cell has {modality!r} vectors in both epoch {epochs[0]!r} and epoch {epochs[1]!r}"
            + (" inside within=" if within is not None else "")
        )
    a, b = before.vectors[first], after.vectors[second]
    distance = 1.0 - np.einsum("ij,ij->i", a, b)
    score = relative_change(cells, centred_distance(a, b), res)
    order = np.lexsort((cells, -score))[: k or None]
    return cells_frame(cells[order], {"score": score[order], "distance": distance[order]})


def centred_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine distance of paired rows after each side's mean row is taken away (a whole-scene shift)."""
    a = _unit(a - a.mean(axis=0))
    b = _unit(b - b.mean(axis=0))
    return 1.0 - np.einsum("ij,ij->i", a, b)


def relative_change(cells: np.ndarray, change: np.ndarray, res: int) -> np.ndarray:
    """``change`` divided by its median over each cell's parent :data:`CONTEXT_LEVELS` resolutions coarser."""
    groups = grid.parents(cells, max(0, res - CONTEXT_LEVELS))
    order = np.lexsort((change, groups))
    sorted_groups, sorted_change = groups[order], change[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    sizes = np.diff(np.r_[starts, sorted_groups.size])
    low = sorted_change[starts + (sizes - 1) // 2]
    high = sorted_change[starts + sizes // 2]
    medians = np.repeat((low + high) / 2, sizes)
    typical = np.empty_like(change)
    typical[order] = medians
    return change / np.maximum(typical, max(_FLOOR, float(np.median(change)) * 0.05))


def _epoch_vectors(store: Store, model_id: str, epoch: str, modality: str, area: str | None) -> EpochVectors:
    where = " AND ".join(
        part
        for part in (
            store.rows_filter(CELLS, model_id, epoch),
            area and f"({area})",
        )
        if part
    )
    rows = vector_rows(store, CELLS, where, [H3_COLUMN], [modality], non_null=[modality])
    cells = rows[H3_COLUMN].to_numpy()
    column = rows[modality].combine_chunks()
    vectors = column.flatten().to_numpy().astype(np.float32).reshape(len(cells), column.type.list_size)
    order = np.argsort(cells)
    return EpochVectors(cells[order], _unit(vectors[order]))


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
