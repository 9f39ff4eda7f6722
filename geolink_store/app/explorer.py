"""One store as the explorer sees it: its cells by area, similarity search, heads trained on clicks, SQL.

Every method returns plain JSON-ready values (GeoJSON for cells), so :mod:`geolink_store.app.server` only
routes. The cells' ids and centres are read once and kept in memory (24 bytes a cell), so a map view is a
numpy filter, not a table scan; a column is read the first time it is asked for.
"""

from __future__ import annotations

import json
import math
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import h3.api.basic_int as h3
import numpy as np
import pyarrow as pa

from geolink_store import grid
from geolink_store.app.imagery import StoreImagery
from geolink_store.constants import (
    CELLS,
    EPOCH_COLUMN,
    H3_COLUMN,
    IMAGERY,
    MODALITIES,
    HeadModality,
    Modality,
)
from geolink_store.errors import GeolinkError, InputError
from geolink_store.heads import Head, list_heads, read_labels, train_head
from geolink_store.heads.from_store import stored_vectors
from geolink_store.heads.train import HeadKind
from geolink_store.query.search import parse_cells, search
from geolink_store.query.sql import SqlSession
from geolink_store.store import Store

MAX_CELLS = 5_000
"""The most cells one ``cells`` answer draws (the map asks again, per view, as it moves)."""
MAX_SQL_ROWS = 1_000
HEAD_PREFIX = "head:"
"""A colour column naming an explorer head's scores: ``head:<id>``."""
CHANGE_PREFIX = "change:"
"""A colour column naming the change score (``geolink change``) between another epoch and the shown one."""
LABEL_COLUMN = "label"
POSITIVE, NEGATIVE = "positive", "negative"
_SAFE_INT = 2**53  # larger integers lose digits as JSON numbers in a browser


@dataclass(frozen=True)
class ExplorerHead:
    """A head trained in the explorer from marked cells, with its score for every stored cell."""

    head_id: str
    modality: HeadModality
    kind: HeadKind
    positive: int
    negative: int
    scores: np.ndarray  # (N,) float32 probability of "positive", NaN where the cell has no vector


class Explorer:
    """The explorer's view of one store (thread-safe).

    Args:
        location: a store directory or an ``s3://`` (``gs://``, ``az://``) URI.
        model_id: whose vectors to use; default: the store's only model.
        epoch: which epoch's cells (and imagery, where it records that epoch); default: the latest.

    Raises:
        StoreError: no store there, several models and none named, or no such epoch.
    """

    def __init__(self, location: str, model_id: str | None = None, epoch: str | None = None) -> None:
        self.location = location
        self.store = Store.open(location)
        self.model_id = self.store.default_model(model_id)
        self.epoch = self.store.default_epoch(epoch, CELLS, self.model_id)
        self.res = self.store.resolution(self.model_id)
        self.imagery = StoreImagery(
            self.store, self.epoch if self.epoch in _imagery_epochs(self.store) else None
        )
        self._lock = threading.Lock()
        self._sql_lock = threading.Lock()
        self._sql: SqlSession | None = None
        rows = self._read_columns([H3_COLUMN, "lon", "lat"])
        self.cells = rows[H3_COLUMN]
        self.lon, self.lat = rows["lon"], rows["lat"]
        self._order = np.argsort(self.cells)
        self._columns: dict[str, np.ndarray] = {}
        self._vectors: dict[str, np.ndarray] = {}
        self.heads: dict[str, ExplorerHead] = {}
        schema = self.store.table(CELLS).schema
        self.colour_columns = [
            f.name
            for f in schema
            if (pa.types.is_integer(f.type) or pa.types.is_floating(f.type))
            and f.name != H3_COLUMN
            and not f.name.startswith("h3_r")
        ]
        others = [epoch for epoch in self.store.epochs(CELLS, self.model_id) if epoch != self.epoch]
        self.colour_columns += [CHANGE_PREFIX + epoch for epoch in others]

    def close(self) -> None:
        """Close the SQL session, if one was opened."""
        if self._sql is not None:
            self._sql.close()

    def info(self) -> dict[str, Any]:
        """What the page needs to start: the store, its extent, colour columns, imagery and heads."""
        imagery = self.imagery
        return {
            "store": self.location,
            "model_id": self.model_id,
            "epoch": self.epoch,
            "epochs": self.store.epochs(CELLS, self.model_id),
            "res": self.res,
            "cells": int(self.cells.size),
            "bounds": _bounds(self.lon, self.lat),
            "columns": self.colour_columns,
            "modalities": list(MODALITIES),
            "imagery": {
                "available": imagery.source is not None,
                "bounds": imagery.bounds,
                "epochs": imagery.epochs,
                "missing": imagery.missing,
            },
            "stored_heads": [
                {"head_id": h["head_id"], "classes": h["classes"], "modality": h["modality"]}
                for h in list_heads(self.store)
            ],
        }

    def cells_in(
        self, bbox: tuple[float, float, float, float], column: str | None = None, limit: int = MAX_CELLS
    ) -> dict[str, Any]:
        """The stored cells whose centre lies in ``bbox`` (W, S, E, N degrees) as a GeoJSON FeatureCollection.

        Each feature has ``properties.h3`` (hex) and, with ``column``, ``properties.value``: a stored numeric
        column or ``head:<id>`` (an explorer head's score). ``truncated`` says when ``limit`` cut the answer.

        Raises:
            InputError: an unknown column or head, or a limit out of range.
        """
        if not 1 <= limit <= MAX_CELLS:
            raise InputError(f"limit must be between 1 and {MAX_CELLS}, got {limit}")
        west, south, east, north = bbox
        inside = np.flatnonzero(
            (self.lon >= west) & (self.lon <= east) & (self.lat >= south) & (self.lat <= north)
        )
        truncated = inside.size > limit
        inside = inside[:limit]
        values = self.values(column)[inside] if column else None
        features = [
            _feature(int(self.cells[row]), {"value": _number(values[i])} if values is not None else {})
            for i, row in enumerate(inside)
        ]
        return {
            "type": "FeatureCollection",
            "features": features,
            "column": column,
            "range": _range(self.values(column)) if column else None,
            "truncated": bool(truncated),
        }

    def values(self, column: str) -> np.ndarray:
        """One value per stored cell (in :attr:`cells` order) of a colour column or an explorer head's score.

        Raises:
            InputError: neither a numeric ``cells`` column nor ``head:<id>`` of a head trained here.
        """
        if column.startswith(HEAD_PREFIX):
            head = self.heads.get(column[len(HEAD_PREFIX) :])
            if head is None:
                raise InputError(f"no head {column[len(HEAD_PREFIX) :]!r} trained in this explorer session")
            return head.scores
        if column.startswith(CHANGE_PREFIX) and column in self.colour_columns:
            with self._lock:
                if column not in self._columns:
                    self._columns[column] = self._change(column[len(CHANGE_PREFIX) :])
                return self._columns[column]
        if column not in self.colour_columns:
            raise InputError(
                f"column {column!r} is not a numeric cells column; "
                f"choose one of {', '.join(self.colour_columns)} or head:<id>"
            )
        with self._lock:
            if column not in self._columns:
                self._columns[column] = self._read_columns([column])[column].astype(np.float64)
            return self._columns[column]

    def similar(
        self,
        *,
        lonlat: tuple[float, float] | None = None,
        cell: str | None = None,
        k: int = 10,
        modality: Modality = "fused",
        bbox: tuple[float, float, float, float] | None = None,
    ) -> dict[str, Any]:
        """The ``k`` cells most like the one at ``lonlat`` (or ``cell``), found by ``query.search.search``.

        Returns:
            A GeoJSON FeatureCollection, nearest first, whose features carry ``properties.h3`` (hex),
            ``distance`` and ``rank``; ``query`` lists the query cell(s) (hex).
        """
        within = ",".join(map(repr, bbox)) if bbox else None
        found = search(
            self.store,
            cells=cell,
            lonlat=lonlat,
            k=k,
            modality=modality,
            within=within,
            model_id=self.model_id,
            epoch=self.epoch,
        )
        features = [
            _feature(int(h), {"distance": float(d), "rank": rank})
            for rank, (h, d) in enumerate(zip(found[H3_COLUMN], found["distance"], strict=True), start=1)
        ]
        query = [grid.hex_id(c) for c in found.attrs["query_cells"]]
        return {"type": "FeatureCollection", "features": features, "query": query, "modality": modality}

    def train(
        self,
        positive: Sequence[str],
        negative: Sequence[str],
        *,
        modality: HeadModality = "fused",
        kind: HeadKind = "linear",
    ) -> dict[str, Any]:
        """Train a head (:func:`~geolink_store.heads.train_head`) on marked cells and score every stored cell.

        The head stays in this explorer session (``head:<id>`` colours the map by its score); the labels can
        be saved as GeoJSON and trained into the store with ``geolink heads train``.

        Raises:
            InputError: no positive or no negative cell, a cell marked both ways, an unknown modality or kind.
            GeolinkError: a marked cell that is not stored, or whose ``modality`` vector is missing.
        """
        if not positive or not negative:
            raise InputError("mark at least one positive and one negative cell before training")
        if kind not in ("linear", "mlp", "knn"):
            raise InputError(f"kind must be linear, mlp or knn, got {kind!r}")
        pos, neg = parse_cells(list(positive)), parse_cells(list(negative))
        both = set(pos.tolist()) & set(neg.tolist())
        if both:
            raise InputError(f"cell {grid.hex_id(both.pop())} is marked both positive and negative")
        vectors = self._modality_vectors(modality)
        rows = self._rows(np.concatenate([pos, neg]))
        y = np.r_[np.ones(pos.size, np.int64), np.zeros(neg.size, np.int64)]
        usable = ~np.isnan(vectors[rows]).any(axis=1)
        if not usable[: pos.size].any() or not usable[pos.size :].any():
            raise GeolinkError(
                f"the marked cells have no {modality!r} vector on one side: use another modality"
            )
        head = train_head(vectors[rows[usable]], y[usable], [NEGATIVE, POSITIVE], kind=kind)
        scores = _positive_scores(head, vectors)
        with self._lock:
            head_id = f"x{len(self.heads) + 1}"
            self.heads[head_id] = ExplorerHead(head_id, modality, kind, int(pos.size), int(neg.size), scores)
        return {
            "head_id": head_id,
            "column": HEAD_PREFIX + head_id,
            "modality": modality,
            "kind": kind,
            "positive": int(pos.size),
            "negative": int(neg.size),
            "predicted_positive": int(np.nansum(scores >= 0.5)),
            "range": _range(scores),
        }

    def labels_from(self, geojson: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """H3 hex -> ``{label, lon, lat}`` (cell centre) of a labels GeoJSON, read as the heads read labels.

        Points label their cell and polygons the cells they cover; each feature needs a ``label`` property.

        Raises:
            InputError: not a FeatureCollection; GeolinkError: what :func:`~geolink_store.heads.read_labels`
            refuses.
        """
        if not isinstance(geojson, dict) or geojson.get("type") != "FeatureCollection":
            raise InputError("labels must be a GeoJSON FeatureCollection with a 'label' property")
        with tempfile.TemporaryDirectory(prefix="geolink-labels-") as folder:
            path = Path(folder) / "labels.geojson"
            path.write_text(json.dumps(geojson))
            labels = read_labels(path, LABEL_COLUMN, self.res)
        lon, lat = grid.cell_lonlat(labels.cells)
        return {
            grid.hex_id(c): {"label": str(label), "lon": float(x), "lat": float(y)}
            for c, label, x, y in zip(labels.cells, labels.labels, lon, lat, strict=True)
        }

    def sql(self, query: str, limit: int = MAX_SQL_ROWS) -> dict[str, Any]:
        """Run read-only SQL in the session ``geolink sql`` uses; at most ``limit`` rows, JSON-safe.

        H3 ids (and any integer beyond 2**53) come back as hex / decimal strings, so a page keeps every digit;
        ``h3_columns`` names the columns holding H3 hex ids, which the page links to the map.
        """
        with self._sql_lock:
            if self._sql is None:
                self._sql = SqlSession(self.location)
            relation = self._sql.relation(query)
            if relation is None:
                return {"columns": [], "rows": [], "h3_columns": [], "truncated": False}
            columns = list(relation.columns)
            try:
                rows = relation.limit(limit + 1).fetchall()
            except duckdb.Error as error:
                raise GeolinkError(" ".join(str(error).split())) from error
        values = [[_json_value(v) for v in row] for row in rows[:limit]]
        h3_columns = [
            name
            for i, name in enumerate(columns)
            if values and all(_is_hex_cell(r[i]) for r in values if r[i] is not None)
        ]
        return {"columns": columns, "rows": values, "h3_columns": h3_columns, "truncated": len(rows) > limit}

    def _change(self, other: str) -> np.ndarray:
        """Each shown cell's image change score between epoch ``other`` and this one (NaN: not in both)."""
        from geolink_store.query.change import change_scores
        from geolink_store.store.epochs import sort_key

        earlier, later = sorted([other, self.epoch], key=sort_key)
        ranked = change_scores(self.store, earlier, later, model_id=self.model_id)
        ranked_cells = ranked[H3_COLUMN].to_numpy()
        values = np.full(self.cells.size, np.nan)
        found = np.isin(self.cells, ranked_cells)
        values[found] = ranked["score"].to_numpy()[_aligned(ranked_cells, self.cells[found])]
        return values

    def _read_columns(self, columns: list[str]) -> dict[str, np.ndarray]:
        """Columns of this model's cells, in the order of :attr:`cells` once that is known."""
        table = (
            self.store.table(CELLS)
            .search()
            .where(self.store.rows_filter(CELLS, self.model_id, self.epoch))
            .select(list(dict.fromkeys([H3_COLUMN, *columns])))
            .limit(None)
            .to_arrow()
        )
        if hasattr(self, "cells"):
            table = table.take(_aligned(table[H3_COLUMN].to_numpy(), self.cells))
        return {name: table[name].to_numpy(zero_copy_only=False) for name in columns}

    def _modality_vectors(self, modality: HeadModality) -> np.ndarray:
        with self._lock:
            if modality not in self._vectors:
                cells, vectors = stored_vectors(self.store, CELLS, self.model_id, modality, self.epoch)
                self._vectors[modality] = vectors[_aligned(cells, self.cells)]
            return self._vectors[modality]

    def _rows(self, cells: np.ndarray) -> np.ndarray:
        """The positions in :attr:`cells` of stored cells.

        Raises:
            GeolinkError: a cell that is not stored for this model and epoch.
        """
        sorted_cells = self.cells[self._order]
        at = np.searchsorted(sorted_cells, cells).clip(max=max(0, sorted_cells.size - 1))
        missing = cells[sorted_cells[at] != cells] if sorted_cells.size else cells
        if missing.size:
            raise GeolinkError(
                f"H3 cell {grid.hex_id(missing[0])} is not in the store for model {self.model_id!r} "
                f"and epoch {self.epoch!r}"
            )
        return self._order[at]


def _imagery_epochs(store: Store) -> set[str]:
    """The epochs the ``imagery`` table records (none in a store written before it existed)."""
    if IMAGERY not in store.table_names():
        return set()
    rows = store.table(IMAGERY).search().select([EPOCH_COLUMN]).limit(None).to_arrow()
    return set(rows[EPOCH_COLUMN].to_pylist())


def _aligned(ids: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The positions in ``ids`` of each id of ``target`` (both hold the same ids, in any order)."""
    order = np.argsort(ids)
    return order[np.searchsorted(ids[order], target)]


def _positive_scores(head: Head, vectors: np.ndarray) -> np.ndarray:
    scores = np.full(len(vectors), np.nan, dtype=np.float32)
    usable = ~np.isnan(vectors).any(axis=1)
    _, probabilities = head.predict(vectors[usable])
    scores[usable] = probabilities[:, 1]
    return scores


def _feature(cell: int, properties: dict[str, Any]) -> dict[str, Any]:
    ring = [[lng, lat] for lat, lng in h3.cell_to_boundary(cell)]
    ring.append(ring[0])
    return {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {"h3": f"{cell:x}", **properties},
    }


def _is_hex_cell(value: Any) -> bool:  # noqa: ANN401 (any JSON value)
    try:
        return isinstance(value, str) and h3.is_valid_cell(int(value, 16))
    except ValueError:
        return False


def _number(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _range(values: np.ndarray) -> list[float] | None:
    finite = values[np.isfinite(values)]
    return [float(finite.min()), float(finite.max())] if finite.size else None


def _bounds(lon: np.ndarray, lat: np.ndarray) -> list[float] | None:
    return [float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max())] if lon.size else None


def _json_value(value: Any) -> Any:  # noqa: ANN401 (any DuckDB value)
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        if 0 < value < 2**64 and h3.is_valid_cell(value):
            return f"{value:x}"
        return value if abs(value) < _SAFE_INT else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list | tuple):
        return f"[{len(value)} values]" if len(value) > 8 else [_json_value(v) for v in value]
    return str(value)


__all__ = ["Explorer", "ExplorerHead"]
