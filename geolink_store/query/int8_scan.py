"""Exact nearest rows by int8 codes: the search of a table that stores its vectors as int8 only.

Lance searches float vectors only (an int8 column is refused), so the codes of the filtered rows are read in
batches and scored in numpy (cosine, the per-vector scale cancels: the same order as the dequantised vectors),
keeping the best ``k`` of each batch. A table that also stores float32 (layout ``both``) is searched on those
by Lance, through its ANN index.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from geolink_store.store.quantize import codes_column, cosine_distances

if TYPE_CHECKING:
    from lance import LanceDataset

BATCH_ROWS = 65_536


def nearest_codes(
    dataset: LanceDataset, query: np.ndarray, column: str, where: str | None, k: int, columns: Sequence[str]
) -> pa.Table:
    """The ``k`` rows nearest ``query`` [D] by the int8 codes of vector ``column``, with ``_distance``.

    ``_distance`` is 1 - cosine, as Lance's cosine metric; ``where`` is applied first; rows without the
    vector are left out.
    """
    codes = codes_column(column)
    best: list[pa.Table] = []
    batches = dataset.to_batches(columns=[*columns, codes], filter=where, batch_size=BATCH_ROWS)
    for batch in batches:
        distances = cosine_distances(batch[codes], query)
        keep = np.flatnonzero(~np.isnan(distances))
        keep = keep[np.argsort(distances[keep], kind="stable")[:k]]
        rows = pa.Table.from_batches([batch.select(list(columns))]).take(keep)
        best.append(rows.append_column("_distance", pa.array(distances[keep], type=pa.float32())))
    if not best:
        schema = dataset.schema
        empty = pa.schema([schema.field(name) for name in columns])
        return empty.append(pa.field("_distance", pa.float32())).empty_table()
    return pa.concat_tables(best).sort_by("_distance").slice(0, k)
