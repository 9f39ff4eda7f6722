"""int8 vectors: error bound, scale invariance of cosine, the Arrow columns, refusals."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from geolink_store.store.quantize import dequantize, quantize, quantized_columns
from geolink_store.testing import clustered_vectors, h3_grid


def test_round_trip_is_within_half_a_step_and_keeps_cosine() -> None:
    vectors = clustered_vectors(h3_grid(500), 64)
    codes, scales = quantize(vectors)
    assert codes.dtype == np.int8 and scales.dtype == np.float32 and np.abs(codes).max() == 127
    back = dequantize(codes, scales)
    assert (np.abs(back - vectors) <= scales[:, None] / 2 + 1e-7).all()
    as_is = codes.astype(np.float32)
    cosine = (as_is @ as_is[0]) / (np.linalg.norm(as_is, axis=1) * np.linalg.norm(as_is[0]))
    exact = vectors @ vectors[0]
    assert np.abs(cosine - exact).max() < 0.01


def test_zero_vector_and_arrow_columns() -> None:
    vectors = np.array([[0.0, 0.0, 0.0], [0.5, -1.0, 0.25]], dtype=np.float32)
    codes, scales = quantize(vectors)
    assert codes[0].tolist() == [0, 0, 0] and scales[0] == 0 and codes[1].tolist() == [64, -127, 32]
    column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), 3)
    found = quantized_columns("fused", column)
    assert found["fused_i8"].type == pa.list_(pa.int8(), 3) and found["fused_i8"].to_pylist()[1] == [
        64,
        -127,
        32,
    ]
    assert found["fused_scale"].to_pylist() == pytest.approx([0.0, 1.0 / 127])


@pytest.mark.parametrize(
    ("vectors", "message"),
    [(np.zeros(4), "vectors \\[N, D\\]"), (np.array([[1.0, np.nan]]), "NaN or infinity")],
)
def test_bad_vectors_are_refused(vectors, message) -> None:
    with pytest.raises(ValueError, match=message):
        quantize(vectors)


def test_null_vectors_are_refused() -> None:
    column = pa.array([[1.0, 2.0], None], pa.list_(pa.float32(), 2))
    with pytest.raises(ValueError, match="1 null vectors"):
        quantized_columns("osm", column)
