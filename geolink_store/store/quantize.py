"""int8 vectors with one float32 scale per vector: a quarter of the bytes of float32.

AlphaEarth and TESSERA ship their embeddings so. Symmetric per-vector quantisation: ``scale = max|x| / 127``
and ``code = round(x / scale)``, so that ``x ~ code * scale`` within ``scale / 2`` per value. The scale
cancels in a cosine distance, so int8 codes are searched as they are, cast to float32; heads read the
dequantised vectors. A zero vector gets scale 0 and codes 0. Measured against float32 in
``bench/bench_int8.py`` (BENCHMARKS.md "int8 vectors").
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

INT8_MAX = 127
CODES_SUFFIX = "_i8"
SCALE_SUFFIX = "_scale"


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


def quantized_columns(name: str, vectors: pa.FixedSizeListArray | pa.ChunkedArray) -> dict[str, pa.Array]:
    """A float32 vector column as its two int8 columns: ``<name>_i8`` (int8 x D) and ``<name>_scale``.

    Raises:
        ValueError: the column holds a null vector (quantise the rows that have one).
    """
    if vectors.null_count:
        raise ValueError(f"column {name!r} holds {vectors.null_count} null vectors")
    width = vectors.type.list_size
    matrix = np.asarray(pa.chunked_array([vectors]).combine_chunks().flatten()).reshape(-1, width)
    codes, scales = quantize(matrix)
    return {
        name + CODES_SUFFIX: pa.FixedSizeListArray.from_arrays(pa.array(codes.reshape(-1)), width),
        name + SCALE_SUFFIX: pa.array(scales),
    }
