"""The GeoLink network: official layout, presets, encode API, fixes to the official defects (method doc 5)."""

from __future__ import annotations

import copy
import importlib
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import timm
import torch
from official_fixture import official_samples
from torch_geometric.data import HeteroData

from model import (
    NODE_TYPES,
    PRESET_NAMES,
    GeoLink,
    GeoLinkConfig,
    batch_graphs,
    empty_graph,
    from_official_graph,
    preset,
)
from model.errors import InputError

TINY = preset("test")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="module")
def tiny() -> GeoLink:
    torch.manual_seed(0)
    return GeoLink(TINY).eval()


@pytest.fixture(scope="module")
def samples() -> tuple[torch.Tensor, list[HeteroData]]:
    """The six real UFZ tiles (images + official OSM graphs converted to our layout)."""
    loaded = official_samples()
    return torch.stack([s.image for s in loaded]), [from_official_graph(s.graph) for s in loaded]


@pytest.mark.parametrize(
    ("name", "architecture"),
    [
        ("vit_l16", "vit_large_patch16_224"),
        ("vit_b16", "vit_base_patch16_224"),
        ("vit_s16", "vit_small_patch16_224"),
        ("vit_ti16", "vit_tiny_patch16_224"),
    ],
)
def test_state_dict_matches_official_keys_shapes_and_size(name: str, architecture: str) -> None:
    reference = json.loads((FIXTURES / "official_state_dict_shapes.json").read_text())[architecture]
    model = GeoLink(preset(name))
    shapes = {key: list(value.shape) for key, value in model.state_dict().items()}
    assert shapes == reference["state_dict"]
    assert sum(p.numel() for p in model.parameters()) == reference["num_parameters"]


def test_public_names_resolve_and_the_error_tree_loads_without_torch() -> None:
    package = importlib.import_module("model")
    assert all(getattr(package, name) is not None for name in package.__all__)
    probe = "import sys, model.errors; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe]).returncode == 0


def test_presets() -> None:
    assert PRESET_NAMES == (
        "vit_l16",
        "vit_b16",
        "vit_s16",
        "vit_ti16",
        "default",
        "test",
        "efficientnet_lite2",
    )
    assert preset("vit_l16") == GeoLinkConfig()
    assert preset("default") == GeoLink.default().config
    config = preset("test")
    config.timm_kwargs["depth"] = 5  # every call gives a new config
    assert preset("test").timm_kwargs == {"depth": 2}
    with pytest.raises(InputError, match="unknown GeoLink preset 'vit_h14' .*vit_l16, vit_b16, vit_s16"):
        preset("vit_h14")


def test_osm_input_width_is_configurable() -> None:
    model = GeoLink(replace(TINY, timm_kwargs={"depth": 1}, osm_in_chans=384))
    state = model.state_dict()
    assert state["osm_encoder.convs.0.convs.<line___to___point>.lin.weight"].shape == (128, 384)
    assert state["osm_mask_token.polygon"].shape == (1, 384)
    assert state["osm_node_pred.weight"].shape == (384, 256)


def test_encode_shapes_and_layers(tiny: GeoLink, samples) -> None:
    images, graphs = samples
    out = tiny.encode(images[:2], graphs[:2], layers=(0, 1))
    assert [t.shape for t in out.image_layers] == [(2, 196, 192)] * 2
    assert out.fused.shape == (2, 196, 256)
    assert out.osm_region.shape == (2, 128)
    assert out.image_global.shape == (2, 192)
    assert out.has_osm.tolist() == [True, True]
    region, present = tiny.encode_osm(graphs[:2])
    torch.testing.assert_close(region, out.osm_region)
    assert present.tolist() == [True, True]
    image_only = tiny.encode(images[:2], None, layers=(1,))
    assert image_only.fused is None and image_only.osm_region is None
    torch.testing.assert_close(image_only.image_layers[0], out.image_layers[1])
    with pytest.raises(ValueError, match="out of range"):
        tiny.encode(images[:1], layers=(2,))
    with pytest.raises(ValueError, match="images must be"):
        tiny.encode(images[:1, :, :112])


def test_outputs_do_not_depend_on_batch_partners(tiny: GeoLink, samples) -> None:
    """Official bug B5: graph-mode LayerNorm over the whole mini-batch. Ours normalises per graph."""
    images, graphs = samples
    together = tiny.encode(images, graphs)
    for i in range(len(graphs)):
        alone = tiny.encode(images[i : i + 1], graphs[i])
        torch.testing.assert_close(alone.fused[0], together.fused[i], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(alone.osm_region[0], together.osm_region[i], atol=1e-5, rtol=1e-5)


def test_fusion_is_deterministic_and_cap_picks_fixed_nodes(tiny: GeoLink, samples) -> None:
    """Official bug B6: random subsampling above 50 nodes. Ours: every node, or an evenly spaced subset."""
    images, graphs = samples
    big = max(range(len(graphs)), key=lambda i: sum(graphs[i][t].num_nodes for t in NODE_TYPES))
    total = sum(graphs[big][t].num_nodes for t in NODE_TYPES)
    assert total > 50
    runs = [tiny.encode(images[big : big + 1], graphs[big], max_fusion_nodes=50).fused for _ in range(3)]
    assert all(torch.equal(runs[0], run) for run in runs[1:])
    full = tiny.encode(images[big : big + 1], graphs[big]).fused
    assert not torch.allclose(runs[0], full, atol=1e-4)
    torch.testing.assert_close(
        tiny.encode(images[big : big + 1], graphs[big], max_fusion_nodes=total).fused, full
    )
    tokens = tiny._fusion_tokens(
        tiny._osm_nodes({t: graphs[big][t].x for t in NODE_TYPES}, batch_graphs(graphs[big]), 1),
        batch_graphs(graphs[big]),
        1,
        50,
    )
    assert (~tokens.padding).sum() == 50 and tokens.order.unique().numel() == 50


@pytest.mark.parametrize("position", [0, 1, 2])
def test_empty_graph_anywhere_in_batch(tiny: GeoLink, samples, position: int) -> None:
    """Official bug B7: an empty last graph shrinks the batch, an empty one gives NaN. Ours: image only."""
    images, graphs = samples
    batch = [graphs[2], graphs[4], graphs[3]]  # tiles without points / with polygons only
    batch[position] = empty_graph(512)
    out = tiny.encode(images[:3], batch, layers=(1,))
    assert torch.isfinite(out.fused).all() and torch.isfinite(out.osm_region).all()
    assert out.has_osm.tolist() == [i != position for i in range(3)]
    assert torch.count_nonzero(out.osm_region[position]) == 0
    block = tiny.osm_cross_modal_encoder[0]
    image_only = block.norm2(tiny.img_fusion_mlp(tiny.img_norm(out.image_layers[0][position])))
    torch.testing.assert_close(out.fused[position], image_only, atol=1e-5, rtol=1e-5)
    for i in set(range(3)) - {position}:  # partners are unaffected by the empty graph
        torch.testing.assert_close(
            out.fused[i], tiny.encode(images[i : i + 1], batch[i]).fused[0], atol=1e-5, rtol=1e-5
        )


def test_bfloat16_and_float32_agree(tiny: GeoLink, samples) -> None:
    images, graphs = samples
    f32 = tiny.encode(images, graphs)
    bf16 = tiny.encode(images, graphs, dtype=torch.bfloat16)
    assert bf16.fused.dtype == torch.float32
    cosine = torch.nn.functional.cosine_similarity(f32.fused.flatten(1), bf16.fused.flatten(1))
    assert cosine.min() > 0.99


def test_inputs_are_never_modified(tiny: GeoLink, samples) -> None:
    """Official bug B4: positional columns stripped from the input graphs in place."""
    images, graphs = samples
    before_images, before_graphs = images.clone(), copy.deepcopy(graphs)
    tiny.encode(images, graphs)
    tiny.train()
    tiny(images, graphs, generator=torch.Generator().manual_seed(0))
    tiny.eval()
    assert torch.equal(images, before_images)
    for graph, before in zip(graphs, before_graphs, strict=True):
        for t in NODE_TYPES:
            assert torch.equal(graph[t].x, before[t].x) and torch.equal(graph[t].pos, before[t].pos)


def test_type_attention_attends_over_present_types(samples) -> None:
    """Official bug B2: softmax over a size-1 axis makes every weight 1 (a plain sum). The flag fixes it."""
    _, graphs = samples
    torch.manual_seed(0)
    official = GeoLink(TINY).eval()
    fixed = GeoLink(replace(TINY, type_attention=True)).eval()
    fixed.load_state_dict(official.state_dict())
    torch.nn.init.normal_(fixed.type_attention.weight, std=1.0)
    batch = batch_graphs(graphs[0])  # all three types present
    slots = []
    for model in (official, fixed):
        nodes = model._osm_nodes({t: batch[t].x for t in NODE_TYPES}, batch, 1)
        slots.append(model._region(nodes, batch, 1)[0][0])
    per_type = _per_type_slots(official, batch)
    torch.testing.assert_close(slots[0], per_type.sum(0), atol=1e-5, rtol=1e-5)
    weights = torch.softmax(fixed.type_attention(per_type).squeeze(-1), dim=0)
    torch.testing.assert_close(slots[1], (weights.unsqueeze(-1) * per_type).sum(0), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(slots[0], slots[1])


def test_pretraining_losses_backward_and_weights(samples) -> None:
    images, graphs = samples
    torch.manual_seed(0)
    model = GeoLink(TINY).train()
    batch = [graphs[0], empty_graph(512), graphs[1], graphs[5]]
    runs = []
    for _ in range(2):
        torch.manual_seed(2)  # the fusion block's dropout draws from torch's RNG; masking from the generator
        runs.append(model(images[:4], batch, generator=torch.Generator().manual_seed(1)))
    out, again = runs
    assert torch.equal(out.loss, again.loss)  # reproducible, no numpy global RNG (official bug B11)
    for loss in (out.image_loss, out.contrastive_loss, out.node_loss):
        assert torch.isfinite(loss) and loss > 0
    out.loss.backward()
    trainable = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert trainable == []
    image_only = GeoLink(replace(TINY, loss_weights=(1.0, 0.0, 0.0))).train()
    image_only.load_state_dict(model.state_dict())
    weighted = image_only(images[:4], batch, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(weighted.loss, weighted.image_loss)


def test_pretraining_runs_in_float32_and_bf16_autocast(samples) -> None:
    """Official bug B3: bf16 hard-coded in the region readout; float32 crashed."""
    images, graphs = samples
    torch.manual_seed(0)
    model = GeoLink(TINY).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = model(images[:3], graphs[:3], generator=torch.Generator().manual_seed(0))
    f32 = model(images[:3], graphs[:3], generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(bf16.loss) and torch.isfinite(f32.loss)
    assert abs(bf16.loss.item() - f32.loss.item()) < 0.1 * f32.loss.item()


def test_unimodal_model_matches_timm_forward(tmp_path) -> None:
    """The official unimodal layout is a timm ViT whose pos_embed/cls/norm are GeoLink's own."""
    vit = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, num_classes=0, global_pool="", depth=2
    ).eval()
    config = {"architecture": "vit_tiny_patch16_224", "num_classes": 0, "global_pool": "", "depth": 2}
    torch.save({"model_config": config, "model_state_dict": vit.state_dict()}, tmp_path / "vit.pth")
    model = GeoLink.from_checkpoint(tmp_path / "vit.pth")
    assert not model.config.multimodal
    images = torch.randn(2, 3, 224, 224)
    expected = vit.forward_features(images)[:, 1:].mean(1)
    torch.testing.assert_close(model.encode(images).image_global, expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="image-only"):
        model.encode(images, [empty_graph(512)] * 2)


def _per_type_slots(model: GeoLink, batch) -> torch.Tensor:
    nodes = model._osm_nodes({t: batch[t].x for t in NODE_TYPES}, batch, 1)
    return torch.stack(
        [
            model.osm_aggr_mlp[t](model.osm_read_out[t](nodes[t], batch[t].batch, dim_size=1))[0]
            for t in NODE_TYPES
        ]
    )
