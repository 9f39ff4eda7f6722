"""Geometry node features and the count readout (``config.node_geometry``, ``config.count_readout``).

Issue #13 item 3: with tag text as the only node feature, chips whose features all carry ``building=yes``
get one and the same ``osm`` vector whatever their number, size or place.
"""

from __future__ import annotations

import dataclasses
import json

import geopandas as gpd
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from shapely.geometry import box

from geolink_store.graphs.builder import GraphBuilder
from model import GeoLink, GeoLinkConfig, empty_graph, preset
from model.errors import InputError
from model.graphs import GEOMETRY_DIM

CHIP = (0.0, 0.0, 100.0, 100.0)
CHANNELS = 16


class ConstantEncoder:
    """Every tag string embeds to one fixed vector (the tags do not matter here)."""

    name = "constant-16"
    dim = CHANNELS

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.tile(np.linspace(-1.0, 1.0, CHANNELS, dtype=np.float32), (len(texts), 1))


def _config(**changes: object) -> GeoLinkConfig:
    return dataclasses.replace(preset("test"), osm_in_chans=CHANNELS, **changes)


def _model(**changes: object) -> GeoLink:
    torch.manual_seed(0)
    return GeoLink(_config(**changes)).eval()


LAYOUTS = {
    "one_small": [box(10, 10, 20, 20)],
    "one_small_elsewhere": [box(70, 60, 80, 70)],
    "three_large": [box(5, 5, 35, 45), box(50, 10, 90, 40), box(20, 60, 60, 95)],
    "three_small": [box(10, 10, 20, 20), box(40, 40, 50, 50), box(70, 70, 80, 80)],
}


def _graphs(geometry: bool) -> list:
    builder = GraphBuilder(ConstantEncoder(), cache_dir=False, geometry=geometry)
    frames = [
        gpd.GeoDataFrame({"tags": [{"building": "yes"}] * len(shapes)}, geometry=shapes)
        for shapes in LAYOUTS.values()
    ]
    return builder.build_many([(frame, CHIP) for frame in frames])


def _pairwise_cosine(vectors: torch.Tensor) -> torch.Tensor:
    unit = F.normalize(vectors, dim=-1)
    similarity = unit @ unit.T
    return similarity[~torch.eye(len(vectors), dtype=torch.bool)]


def test_official_layout_cannot_tell_same_tag_layouts_apart() -> None:
    """Today's defect, documented: same tags give one vector, whatever the count, size or position."""
    region, present = _model().encode_osm(_graphs(geometry=False))
    assert present.all()
    assert torch.allclose(region, region[:1].expand_as(region), atol=1e-5)
    assert _pairwise_cosine(region).min() > 0.9999


def test_geometry_and_count_readout_tell_same_tag_layouts_apart() -> None:
    region, present = _model(node_geometry=True, count_readout=True).encode_osm(_graphs(geometry=True))
    assert present.all()
    cosine = _pairwise_cosine(region)
    assert cosine.max() < 0.999, cosine
    assert not torch.allclose(region[0], region[1], atol=1e-3)  # same shape, another place
    assert not torch.allclose(region[2], region[3], atol=1e-3)  # same count, other sizes


def test_each_option_alone_separates_what_it_sees() -> None:
    graphs_geo = _graphs(geometry=True)
    counts, _ = _model(count_readout=True).encode_osm(_graphs(geometry=False))
    assert torch.allclose(counts[0], counts[1], atol=1e-5)  # one node each: counts cannot differ
    assert not torch.allclose(counts[0], counts[3], atol=1e-3)  # one node vs three
    geometry, _ = _model(node_geometry=True).encode_osm(graphs_geo)
    assert not torch.allclose(geometry[0], geometry[1], atol=1e-3)


def test_layer_shapes_and_official_layout_unchanged() -> None:
    plain, both = _model(), _model(node_geometry=True, count_readout=True)
    gat = "osm_encoder.convs.0.convs.<polygon___to___line>.lin.weight"
    shapes = {k: v.shape for k, v in plain.state_dict().items()}
    assert set(shapes) == set(both.state_dict())
    assert both.state_dict()[gat].shape[1] == CHANNELS + GEOMETRY_DIM and shapes[gat][1] == CHANNELS
    assert both.state_dict()["osm_aggr_mlp.point.weight"].shape[1] == 2 * 128 + 1
    assert shapes["osm_aggr_mlp.point.weight"][1] == 2 * 128
    assert both.state_dict()["osm_mask_token.line"].shape == (1, CHANNELS)  # replaces x only
    assert both.state_dict()["osm_node_pred.weight"].shape[0] == CHANNELS  # predicts x only
    assert "node_geometry" not in json.loads(GeoLinkConfig().to_json())  # model ids unchanged
    config = _config(node_geometry=True, count_readout=True)
    assert GeoLinkConfig.from_json(config.to_json()) == config


def test_graphs_without_geo_are_refused_clearly() -> None:
    model = _model(node_geometry=True)
    with pytest.raises(InputError, match=r"lack geometry features.*GraphBuilder\(geometry=True\)"):
        model.encode_osm(_graphs(geometry=False))
    with pytest.raises(InputError, match="lack geometry features"):
        model.encode(torch.zeros(1, 3, 224, 224), _graphs(geometry=False)[:1])


def test_empty_graphs_and_absent_types_give_zero_slots() -> None:
    model = _model(node_geometry=True, count_readout=True)
    graphs = [empty_graph(CHANNELS, geometry=True), *_graphs(geometry=True)[:1]]
    region, present = model.encode_osm(graphs)
    assert present.tolist() == [False, True]
    assert torch.count_nonzero(region[0]) == 0 and torch.isfinite(region).all()
    out = model.encode(torch.zeros(2, 3, 224, 224), graphs)
    assert torch.allclose(out.osm_region, region, atol=1e-5)


def test_pretraining_with_geometry_runs_and_checkpoints_round_trip(tmp_path) -> None:
    model = _model(node_geometry=True, count_readout=True).train()
    graphs = _graphs(geometry=True)
    images = torch.randn(len(graphs), 3, 224, 224)
    out = model(images, graphs, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out.loss) and out.node_loss > 0
    out.loss.backward()
    gat = model.osm_encoder.convs[0].convs[("polygon", "to", "polygon")].lin.weight
    assert gat.grad is not None and gat.grad[:, CHANNELS:].abs().sum() > 0  # geometry columns learn
    path = model.save(tmp_path / "geo.safetensors")
    loaded = GeoLink.from_checkpoint(path)
    assert loaded.config.node_geometry and loaded.config.count_readout
    assert torch.allclose(loaded.encode_osm(graphs)[0], model.eval().encode_osm(graphs)[0], atol=1e-5)
