"""Parity with the official GeoLink implementation, from outputs it recorded (fixtures/official_parity.md).

The official ``GeoLink_Fusion_Embedding`` ran on the six real UFZ tiles, one sample per batch, every OSM node
in the fusion, float32, with a 2-block ViT-Ti and random weights. Our ``encode`` must reproduce its raw block
outputs and hybrid embedding, and the official region embedding, to <= 1e-5 relative error.
"""

from __future__ import annotations

import pytest
import torch
from official_fixture import official_checkpoint, official_samples

from model import GeoLink, from_official_graph


def relative_error(ours: torch.Tensor, official: torch.Tensor) -> float:
    """Max absolute difference relative to the largest official magnitude."""
    return ((ours - official).abs().max() / official.abs().max()).item()


@pytest.fixture(scope="module")
def official_model(tmp_path_factory) -> GeoLink:
    path = tmp_path_factory.mktemp("official") / "geolink_multimodal.pth"
    torch.save(official_checkpoint(), path)
    return GeoLink.from_checkpoint(path)


@pytest.mark.parametrize("index", range(6))
def test_encode_equals_official_outputs(official_model: GeoLink, index: int) -> None:
    sample = official_samples()[index]
    out = official_model.encode(sample.image[None], from_official_graph(sample.graph), layers=(0,))
    assert relative_error(out.image_layers[0][0], sample.layer0) <= 1e-5
    assert relative_error(out.fused[0], sample.fused) <= 1e-5
    assert relative_error(out.osm_region[0], sample.osm_region) <= 1e-5
    assert relative_error(out.image_global[0], sample.image_global) <= 1e-5
