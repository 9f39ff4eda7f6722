"""The gated fusion (``config.fusion_gate``): OSM moves image tokens in proportion, not by its presence.

Issue #13 item 4: with the official block, one small building moves every image token of its cell by a full
attention output, so fused vectors split into cells with and cells without OSM.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from model import GeoLink, preset
from model.fusion import TwoWayFusionBlock

DIM, HEADS = 32, 4


def _tokens(seed: int) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    img, img_pe = (torch.randn(2, 196, DIM, generator=generator) for _ in range(2))
    osm, osm_pe = (torch.randn(2, 3, DIM, generator=generator) for _ in range(2))
    return img, osm, img_pe, osm_pe


def _block(gated: bool, seed: int = 0) -> TwoWayFusionBlock:
    torch.manual_seed(seed)
    return TwoWayFusionBlock(DIM, HEADS, dropout=0.0, gated=gated).eval()


def test_closed_gate_leaves_image_tokens_on_the_image_only_path() -> None:
    block = _block(gated=True)
    img, osm, img_pe, osm_pe = _tokens(0)
    with torch.no_grad():
        block.image_gate.zero_()
        fused, _ = block(img, osm, img_pe, osm_pe)
        empty, _ = block(img, osm, img_pe, osm_pe, padding=torch.ones(2, 3, dtype=torch.bool))
    torch.testing.assert_close(fused, block.norm2(img))
    torch.testing.assert_close(empty, block.norm2(img))


def test_gated_block_moves_image_tokens_less_than_the_official_one() -> None:
    """Same weights, same tokens: the zero attention slot and the gate shrink what OSM adds."""
    official, gated = _block(gated=False), _block(gated=True)
    gated.load_state_dict(official.state_dict() | {"image_gate": gated.image_gate.data}, strict=True)
    img, osm, img_pe, osm_pe = _tokens(1)
    no_osm = torch.ones(2, 3, dtype=torch.bool)
    with torch.no_grad():
        shift = {
            name: (block(img, osm, img_pe, osm_pe)[0] - block(img, osm, img_pe, osm_pe, no_osm)[0]).norm()
            for name, block in (("official", official), ("gated", gated))
        }
    assert shift["gated"] < 0.6 * shift["official"]
    assert torch.tanh(gated.image_gate).item() == pytest.approx(0.5)


def test_gate_is_ours_alone_and_keeps_older_ids() -> None:
    official = GeoLink(preset("test"), pretrained=False)
    assert not any("image_gate" in name for name in official.state_dict())
    assert "fusion_gate" not in json.loads(preset("test").to_json())
    gated = GeoLink(dataclasses.replace(preset("test"), fusion_gate=True), pretrained=False)
    assert [n for n in gated.state_dict() if "image_gate" in n] == ["osm_cross_modal_encoder.0.image_gate"]
    assert preset("efficientnet_lite2").fusion_gate
