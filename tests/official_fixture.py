"""Reading tests/fixtures/official_parity.npz: weights, inputs and outputs recorded from the official code.

See tests/fixtures/official_parity.md for how the fixture was produced.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import HeteroData

from model import EDGE_TYPES, NODE_TYPES

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "official_parity.npz"
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


@dataclass(frozen=True)
class OfficialSample:
    """One UFZ tile: the official model's input image and graph, and its recorded outputs."""

    name: str
    image: torch.Tensor  # (3, 224, 224) ImageNet-normalised
    graph: HeteroData  # official layout: positions packed into x
    layer0: torch.Tensor  # (196, D)
    fused: torch.Tensor  # (196, 256)
    osm_region: torch.Tensor  # (128,)
    image_global: torch.Tensor  # (D,)


@cache
def _arrays() -> dict[str, np.ndarray]:
    with np.load(FIXTURE, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def official_checkpoint() -> dict:
    """The fixture's weights in the official multimodal checkpoint layout."""
    arrays = _arrays()
    state = {
        k[len("state/") :]: torch.from_numpy(v.astype(np.float32))
        for k, v in arrays.items()
        if k.startswith("state/")
    }
    return {"model_config": json.loads(str(arrays["model_config"])), "model_state_dict": state}


def official_samples() -> list[OfficialSample]:
    """The six UFZ samples with the official outputs."""
    arrays = _arrays()
    samples = []
    for i, name in enumerate(arrays["names"]):
        pixels = torch.from_numpy(arrays[f"img/{i}"]).permute(2, 0, 1).float().div(255)
        graph = HeteroData()
        for t in NODE_TYPES:
            graph[t].x = torch.from_numpy(arrays[f"graph/{i}/{t}/x"])
        for src, _, dst in EDGE_TYPES:
            graph[src, "to", dst].edge_index = torch.from_numpy(arrays[f"graph/{i}/{src}__{dst}/edge_index"])
        samples.append(
            OfficialSample(
                name=str(name),
                image=(pixels - IMAGENET_MEAN) / IMAGENET_STD,
                graph=graph,
                layer0=torch.from_numpy(arrays[f"out/{i}/layer0"]),
                fused=torch.from_numpy(arrays[f"out/{i}/fused"]),
                osm_region=torch.from_numpy(arrays[f"out/{i}/osm_region"]),
                image_global=torch.from_numpy(arrays[f"out/{i}/image_global"]),
            )
        )
    return samples
