"""int8 vectors: error bound, scale invariance of cosine, the Arrow columns and layouts, nulls, refusals."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from geolink_store.errors import InputError
from geolink_store.store.quantize import (
    checked_layout,
    cosine_distances,
    dequantize,
    float_vectors,
    layout_of,
    quantize,
    quantized_columns,
    stored_columns,
    with_layout,
)
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


def test_null_vectors_stay_null_in_codes_scales_and_back() -> None:
    column = pa.array([[1.0, 2.0], None, [0.0, -0.5]], pa.list_(pa.float32(), 2))
    found = quantized_columns("osm", column)
    assert found["osm_i8"].to_pylist() == [[64, 127], None, [0, -127]]
    assert found["osm_scale"].is_valid().to_pylist() == [True, False, True]
    back = float_vectors(pa.table(found), "osm")
    assert back.type == pa.list_(pa.float32(), 2) and back.is_valid().to_pylist() == [True, False, True]
    assert (
        np.allclose(back[0].as_py(), [2 * 64 / 127, 2.0])
        and float_vectors(pa.table({"osm": column}), "osm") == column
    )


def test_layouts_and_code_distances() -> None:
    table = pa.table(
        {"h3": [1, 2, 3], "v": pa.array([[3.0, 4.0], [-1.0, 0.0], None], pa.list_(pa.float32(), 2))}
    )
    both, int8 = with_layout(table, ["v"], "both"), with_layout(table, ["v"], "int8")
    assert both.column_names == ["h3", "v", "v_i8", "v_scale"] and int8.column_names == [
        "h3",
        "v_i8",
        "v_scale",
    ]
    assert [layout_of(t.schema, ["v"]) for t in (table, both, int8)] == ["float32", "both", "int8"]
    assert stored_columns(int8.schema, "v") == ["v_i8", "v_scale"] and stored_columns(both.schema, "v") == [
        "v"
    ]
    distances = cosine_distances(int8["v_i8"].combine_chunks(), np.array([3.0, 4.0]))
    assert distances[0] == pytest.approx(0, abs=1e-4) and distances[1] == pytest.approx(1.6, abs=1e-2)
    assert np.isnan(distances[2])
    with pytest.raises(InputError, match="not a vector layout"):
        checked_layout("int4")
