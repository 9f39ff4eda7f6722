"""Coarse-to-fine search: the stored cells holding the patches (fine H3 cells) nearest a query, and where.

A cell's vector sums up its whole chip, so a small object (a pool, a kiln, a boat) that covers one patch of
dozens barely moves it. :func:`search_patches` compares the ``patches`` table's fine-cell vectors instead and
returns, per hit cell, its best-matching patch: each row is a cell as
:func:`~geolink_store.query.search.search` gives it (``h3``, ``h3_hex``, centre, hexagon) plus ``patch``,
``patch_hex``, ``patch_lon`` and ``patch_lat`` (where inside the cell the match is), ``distance`` being that
patch's. The query is made of patches: the one under a point, those of a file's features, or the patches
given (hex or int ids at the patches' resolution; an id at the cells' resolution stands for all its patches).
The cells holding query patches are left out of the results, as the query cells are in a cell search.

Patches carry no ANN index (:mod:`geolink_store.store.indexes`), so the search is exact: a flat scan of the
model's (and epoch's) patches after the spatial prefilter, reading :data:`OVERFETCH` patches per wanted cell
and more while fewer than ``k`` distinct cells come back.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import shapely

from geolink_store import grid
from geolink_store.constants import CELLS, H3_COLUMN, MODEL_COLUMN, PATCHES, Modality
from geolink_store.errors import GeolinkError
from geolink_store.query.reader import TableReader, all_of
from geolink_store.query.search import (
    SearchHits,
    check_query,
    nearest,
    parse_cells,
    query_cells_at,
    query_vector,
    spatial_filter,
    with_hex_ids,
)
from geolink_store.store._filters import model_filter
from geolink_store.store.schema import PARENT_COLUMN, VECTOR_COLUMNS

if TYPE_CHECKING:
    from geolink_store.store import Store

OVERFETCH = 8
"""Patches read per wanted cell before grouping them by cell (doubled while too few cells come back)."""


def search_patches(
    store: Store | str | os.PathLike,
    *,
    cells: str | int | Sequence[str | int] | None = None,
    lonlat: tuple[float, float] | None = None,
    like_file: str | os.PathLike | None = None,
    modality: Modality = "fused",
    k: int = 10,
    within: str | os.PathLike | None = None,
    parent: str | int | None = None,
    model_id: str | None = None,
    epoch: str | None = None,
) -> SearchHits:
    """The ``k`` cells whose best patch is nearest (cosine) to the mean vector of the query patches.

    Args:
        store: an open store with ``cells`` and ``patches`` tables, or its path or URI.
        cells: patch ids (hex or int) at the patches' resolution, or cell ids standing for all their patches.
        lonlat: a point (degrees); the query is the patch containing it.
        like_file: a vector file whose features' patches are averaged.
        modality: ``fused`` or ``image`` (patches hold no OSM vector of their own).
        k: number of cells returned.
        within: ``W,S,E,N`` bbox (degrees) or a polygon file: keep cells whose centre lies inside.
        parent: keep cells descending from this coarser H3 cell.
        model_id: whose vectors to use; defaults to the table's only model.
        epoch: whose vectors to compare (default: the model's latest epoch).

    Returns:
        The hits, nearest first: the cell columns of :class:`~geolink_store.query.search.SearchHits` plus
        ``patch``, ``patch_hex``, ``patch_lon``, ``patch_lat``; ``query_cells`` are the query's patches.

    Raises:
        GeolinkError: what :func:`~geolink_store.query.search.search` raises, a modality patches lack, or
        query ids at neither the cells' nor the patches' resolution.
    """
    check_query(cells, lonlat, like_file, modality, k)
    if modality not in VECTOR_COLUMNS[PATCHES]:
        raise GeolinkError(
            f"patches hold {' and '.join(VECTOR_COLUMNS[PATCHES])} vectors, not {modality!r}; "
            "search cells for that"
        )
    patches = TableReader(store, PATCHES)
    model_id = patches.default_model(model_id)
    fine_res = patches.resolution(model_id)
    res = TableReader(store, CELLS).resolution(model_id)
    rows = patches.rows_filter(model_id, patches.default_epoch(model_id, epoch))
    if cells is not None:
        query_patches = _given_patches(patches, rows, parse_cells(cells), res, fine_res)
    else:
        query_patches = query_cells_at(fine_res, cells=None, lonlat=lonlat, like_file=like_file)
    found = patches.rows(all_of(rows, f"{H3_COLUMN} IN ({_ids(query_patches)})"), [H3_COLUMN, modality])
    query = query_vector(found, query_patches, modality, model_id, required=like_file is None)
    own_cells = np.unique(grid.parents(query_patches, res))
    where = all_of(rows, f"{PARENT_COLUMN} NOT IN ({_ids(own_cells)})")
    area = spatial_filter(within, parent, res)
    if area:
        kept = TableReader(store, CELLS).rows(all_of(model_filter(model_id), area), [H3_COLUMN])
        kept_ids = kept[H3_COLUMN].to_numpy()
        where = all_of(where, f"{PARENT_COLUMN} IN ({_ids(kept_ids)})" if len(kept_ids) else "FALSE")
    best = _best_patch_per_cell(patches, query, modality, where, k)
    return SearchHits(_hit_rows(best, res, model_id), query_patches)


def _ids(cells: np.ndarray) -> str:
    return ", ".join(str(int(cell)) for cell in cells)


def _given_patches(
    patches: TableReader, rows: str | None, given: np.ndarray, res: int, fine_res: int
) -> np.ndarray:
    """The query patches: those given at ``fine_res``, and the stored patches of those given at ``res``."""
    levels = grid.resolutions(given)
    odd = given[(levels != res) & (levels != fine_res)]
    if len(odd):
        raise GeolinkError(
            f"H3 cell {grid.hex_id(odd[0])} has resolution {grid.resolution(odd[0])}; a patch query takes "
            f"patches (resolution {fine_res}) or cells (resolution {res})"
        )
    coarse = given[levels == res]
    if not len(coarse):
        return given
    stored = patches.rows(all_of(rows, f"{PARENT_COLUMN} IN ({_ids(coarse)})"), [H3_COLUMN, PARENT_COLUMN])
    without = np.setdiff1d(coarse, stored[PARENT_COLUMN].to_numpy())
    if len(without):
        raise GeolinkError(f"H3 cell {grid.hex_id(without[0])} ({without[0]}) has no stored patches")
    return np.unique(np.concatenate([given[levels == fine_res], stored[H3_COLUMN].to_numpy()]))


def _best_patch_per_cell(
    patches: TableReader, query: np.ndarray, modality: str, where: str, k: int
) -> pa.Table:
    """Per cell, its nearest patch (``h3``, ``parent``, ``_distance``), for the ``k`` nearest cells."""
    limit = k * OVERFETCH
    while True:
        found = nearest(
            patches, query, modality, where, limit, exact=True, columns=(H3_COLUMN, PARENT_COLUMN)
        ).sort_by("_distance")
        _, first = np.unique(found[PARENT_COLUMN].to_numpy(), return_index=True)
        if len(first) >= k or found.num_rows < limit:
            return found.take(np.sort(first)[:k])
        limit *= 4


def _hit_rows(best: pa.Table, res: int, model_id: str) -> pa.Table:
    """The hit cells (centre, hexagon) with their best patch (id, centre) and its distance."""
    cells = best[PARENT_COLUMN].to_numpy()
    lon, lat = grid.cell_lonlat(cells)
    patch_lon, patch_lat = grid.cell_lonlat(best[H3_COLUMN].to_numpy())
    hits = pa.table(
        {
            H3_COLUMN: pa.array(cells, pa.int64()),
            "lon": lon,
            "lat": lat,
            "res": pa.array(np.full(len(cells), res), pa.int8()),
            MODEL_COLUMN: pa.array([model_id] * len(cells), pa.string()),
            "geometry": pa.array(shapely.to_wkb(grid.boundary_polygons(cells)), pa.binary()),
            "_distance": best["_distance"],
            "patch": best[H3_COLUMN],
            "patch_hex": grid.hex_id_array(best[H3_COLUMN].to_numpy()),
            "patch_lon": patch_lon,
            "patch_lat": patch_lat,
        }
    )
    return with_hex_ids(hits)
