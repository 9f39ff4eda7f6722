"""int8 vectors with one float32 scale per vector: a quarter of the bytes of float32.

AlphaEarth and TESSERA ship their embeddings so. Symmetric per-vector quantisation: ``scale = max|x| / 127``
and ``code = round(x / scale)``, so that ``x ~ code * scale`` within ``scale / 2`` per value. The scale
cancels in a cosine distance, so int8 codes are searched as they are, cast to float32; heads read the
dequantised vectors. A zero vector gets scale 0 and codes 0. Measured against float32 in
``bench/bench_int8.py`` (BENCHMARKS.md "int8 vectors").

In a table a vector column ``name`` is stored in one of three layouts (:data:`VectorLayout`): ``float32``
(the column ``name``), ``int8`` (``name_i8``, int8 x D, and ``name_scale``, float32, instead) or ``both``
(all three). A null vector is null in each of its columns.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, cast, get_args

import numpy as np
import pyarrow as pa

from geolink_store.errors import InputError

INT8_MAX = 127
CODES_SUFFIX = "_i8"
SCALE_SUFFIX = "_scale"

VectorLayout = Literal["float32", "int8", "both"]
"""How a table stores its vectors: float32 only, int8 codes and scales only, or both."""
VECTOR_LAYOUTS: tuple[str, ...] = get_args(VectorLayout)


def quantize(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectors [N, D] (float) as int8 codes [N, D] and float32 scales [N].

    Raises:
        ValueError: ``vectors`` is not 2-D or holds a NaN or an infinity.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise ValueError(f"quantize takes vectors [N, D], got shape {vectors.shape}")
    if not np.isfinite(vectors).all():
        raise ValueError("quantize takes finite vectors; these hold NaN or infinity")
    scales = np.abs(vectors).max(axis=1, initial=0.0) / INT8_MAX
    safe = np.where(scales > 0, scales, 1.0)[:, None]
    codes = np.clip(np.rint(vectors / safe), -INT8_MAX, INT8_MAX).astype(np.int8)
    return codes, scales.astype(np.float32)


def dequantize(codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """int8 codes [N, D] and scales [N] back to float32 vectors [N, D]."""
    return np.asarray(codes, dtype=np.float32) * np.asarray(scales, dtype=np.float32)[:, None]


def codes_column(name: str) -> str:
    """The int8 codes column of vector column ``name``."""
    return name + CODES_SUFFIX


def scale_column(name: str) -> str:
    """The per-vector scale column of vector column ``name``."""
    return name + SCALE_SUFFIX


def checked_layout(layout: str) -> VectorLayout:
    """``layout`` if it is a :data:`VectorLayout`.

    Raises:
        InputError: it is not.
    """
    if layout not in VECTOR_LAYOUTS:
        raise InputError(f"vectors={layout!r} is not a vector layout: use one of {', '.join(VECTOR_LAYOUTS)}")
    return cast("VectorLayout", layout)


def layout_of(schema: pa.Schema, names: Iterable[str]) -> VectorLayout:
    """The layout of the vector columns ``names`` in ``schema`` (``float32`` when it has neither kind)."""
    names = list(names)
    floats = any(name in schema.names for name in names)
    codes = any(codes_column(name) in schema.names for name in names)
    if codes:
        return "both" if floats else "int8"
    return "float32"


def stored_columns(schema: pa.Schema, name: str) -> list[str]:
    """The columns to read for vector ``name``: ``name`` itself where stored, else its codes and scales."""
    return [name] if name in schema.names else [codes_column(name), scale_column(name)]


def _matrix(vectors: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """A fixed-size list column as a dense [N, D] matrix (null rows zero) and its validity mask [N]."""
    array = vectors.combine_chunks() if isinstance(vectors, pa.ChunkedArray) else vectors
    valid = array.is_valid().to_numpy(zero_copy_only=False)
    width = array.type.list_size
    matrix = np.zeros((len(array), width), dtype=np.asarray(array.flatten()).dtype)
    matrix[valid] = np.asarray(array.flatten()).reshape(-1, width)  # flatten skips null rows
    return matrix, valid


def _column(matrix: np.ndarray, valid: np.ndarray) -> pa.FixedSizeListArray:
    mask = None if valid.all() else pa.array(~valid)
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1], mask=mask)


def quantized_columns(name: str, vectors: pa.FixedSizeListArray | pa.ChunkedArray) -> dict[str, pa.Array]:
    """A float32 vector column as its two int8 columns: ``<name>_i8`` (int8 x D) and ``<name>_scale``.

    A null vector is null in both.
    """
    matrix, valid = _matrix(vectors)
    codes, scales = quantize(matrix)
    return {
        codes_column(name): _column(codes, valid),
        scale_column(name): pa.array(scales, mask=~valid),
    }


def float_vectors(table: pa.Table, name: str) -> pa.FixedSizeListArray:
    """Vector ``name`` of ``table`` as float32: its float32 column, or else its codes dequantised."""
    if name in table.column_names:
        return table[name].combine_chunks()
    codes, valid = _matrix(table[codes_column(name)])
    scales = table[scale_column(name)].fill_null(0.0).to_numpy()
    return _column(dequantize(codes, scales), valid)


def with_layout(table: pa.Table, names: Iterable[str], layout: VectorLayout) -> pa.Table:
    """``table``, whose vector columns ``names`` are float32, in ``layout``.

    Codes and scales go after each float32 column, which ``int8`` then drops.
    """
    if layout == "float32":
        return table
    for name in names:
        at = table.schema.get_field_index(name) + 1
        for offset, (column, values) in enumerate(quantized_columns(name, table[name]).items()):
            table = table.add_column(at + offset, column, values)
        if layout == "int8":
            table = table.drop_columns([name])
    return table


def cosine_distances(codes: pa.FixedSizeListArray, query: np.ndarray) -> np.ndarray:
    """1 - cosine similarity of each row of an int8 codes column [N] to ``query`` [D] (null rows: NaN).

    The per-vector scale cancels, so codes are compared as they are (a zero vector is at distance 1).
    """
    matrix, valid = _matrix(codes)
    matrix = matrix.astype(np.float32)
    unit = query.astype(np.float32) / max(float(np.linalg.norm(query)), 1e-12)
    norms = np.maximum(np.linalg.norm(matrix, axis=1), 1e-12)
    distances = 1.0 - (matrix @ unit) / norms
    distances[~valid] = np.nan
    return distances
