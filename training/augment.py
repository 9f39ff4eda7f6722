"""Joint image + graph augmentation for pretraining, with the official defects fixed.

The official crop drew the aspect from U(1.5, 2.25) instead of U(0.75, 1.5), then grew the crop to every point
of the kept nodes (often the whole image). Here the crop keeps its size and aspect, node points are clipped to
it, and a horizontal flip mirrors the points with the pixels. All randomness comes from a torch generator.

Geometry features (``graph[t].geo``, ``model.graphs.GEOMETRY_FEATURES``) follow the same maps; the source
geometry is gone by then, so they are transformed, not recomputed:

- flip (x := 1 - x): an axis at angle θ goes to π - θ, so ``cos 2θ`` stays, ``sin 2θ`` changes sign, and
  ``centre_x`` := 1 - ``centre_x``; area, length, compactness and elongation are unchanged. This is exact:
  it equals the features recomputed from the mirrored geometry.
- crop to a box of width ``sx`` and height ``sy`` (then stretched to the unit square): the centre maps as the
  points do (and is clipped to the box likewise); area is divided by ``sx * sy`` (at most 1), length and
  perimeter by ``sqrt(sx * sy)``; the axis angle maps as a direction does, θ' = atan2(sin θ / sy, cos θ / sx),
  keeping its magnitude; compactness and elongation are kept. Exact for a node wholly inside a crop with
  ``sx == sy`` (a similarity); otherwise an approximation (the aspect-changing stretch alters compactness,
  elongation and lengths by direction, and a node cut by the crop keeps its uncut measures).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torch_geometric.data import HeteroData

from geolink_store.constants import IMAGENET_MEAN, IMAGENET_STD
from geolink_store.graphs.builder import scale_measure, unscale_measure
from model import EDGE_TYPES, NODE_TYPES
from training.shards import Sample


def normalise(image: torch.Tensor) -> torch.Tensor:
    """uint8 (3, H, W) -> ImageNet-normalised float32, as the official model expects."""
    return TF.normalize(image.float() / 255.0, IMAGENET_MEAN, IMAGENET_STD)


@dataclass(frozen=True)
class JointAugment:
    """Random resized crop (area ``scale``, aspect h/w ``ratio``), flip, colour jitter, resize to ``size``.

    ``flip_p`` and ``jitter_p`` are the probabilities of a horizontal flip and of a colour jitter of
    (brightness, contrast, saturation, hue) strengths ``jitter``.
    """

    scale: tuple[float, float] = (0.4, 0.9)
    ratio: tuple[float, float] = (0.75, 1.5)
    flip_p: float = 0.5
    jitter_p: float = 0.5
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)
    size: int = 224

    def __call__(self, sample: Sample, generator: torch.Generator) -> tuple[torch.Tensor, HeteroData]:
        """Return the normalised image (3, size, size) and the graph in the crop's frame."""
        _, height, width = sample.image.shape
        top, left, crop_h, crop_w = self._crop_box(height, width, generator)
        image = TF.resized_crop(
            sample.image, top, left, crop_h, crop_w, [self.size, self.size], antialias=True
        )
        box = (left / width, top / height, (left + crop_w) / width, (top + crop_h) / height)
        graph = crop_graph(sample.graph, box)
        if _draw(generator) < self.flip_p:
            image = image.flip(-1)
            graph = flip_graph(graph)
        if _draw(generator) < self.jitter_p:
            image = self._colour_jitter(image, generator)
        return normalise(image), graph

    def _crop_box(self, height: int, width: int, generator: torch.Generator) -> tuple[int, int, int, int]:
        area = height * width * _uniform(generator, *self.scale)
        aspect = _uniform(generator, *self.ratio)
        crop_h = min(height, max(1, round(math.sqrt(area * aspect))))
        crop_w = min(width, max(1, round(math.sqrt(area / aspect))))
        top = int(_draw(generator) * (height - crop_h + 1))
        left = int(_draw(generator) * (width - crop_w + 1))
        return top, left, crop_h, crop_w

    def _colour_jitter(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        brightness, contrast, saturation, hue = self.jitter
        image = TF.adjust_brightness(image, _uniform(generator, 1 - brightness, 1 + brightness))
        image = TF.adjust_contrast(image, _uniform(generator, 1 - contrast, 1 + contrast))
        image = TF.adjust_saturation(image, _uniform(generator, 1 - saturation, 1 + saturation))
        return TF.adjust_hue(image, _uniform(generator, -hue, hue))


def crop_graph(graph: HeteroData, box: tuple[float, float, float, float]) -> HeteroData:
    """The sub-graph of nodes with a point inside ``box`` (x0, y0, x1, y1 in the chip frame), in its frame.

    Points outside the box are clipped to its edge; edges between kept nodes are kept and re-indexed.
    Geometry features ``geo``, where present, are mapped with :func:`crop_geometry`.
    """
    x0, y0, x1, y1 = box
    lower, upper = torch.tensor([x0, y0]), torch.tensor([x1, y1])
    out, index_maps = HeteroData(), {}
    for t in NODE_TYPES:
        pos = graph[t].pos
        inside = ((pos >= lower) & (pos <= upper)).all(dim=-1).any(dim=-1)
        index_maps[t] = torch.full((pos.size(0),), -1, dtype=torch.long)
        index_maps[t][inside] = torch.arange(int(inside.sum()))
        out[t].x = graph[t].x[inside]
        out[t].pos = (torch.minimum(torch.maximum(pos[inside], lower), upper) - lower) / (upper - lower)
        if "geo" in graph[t]:
            out[t].geo = crop_geometry(graph[t].geo[inside], box)
    for src, _, dst in EDGE_TYPES:
        src_new, dst_new = (
            index_maps[src][graph[src, "to", dst].edge_index[0]],
            index_maps[dst][graph[src, "to", dst].edge_index[1]],
        )
        keep = (src_new >= 0) & (dst_new >= 0)
        out[src, "to", dst].edge_index = torch.stack([src_new[keep], dst_new[keep]])
    return out


def flip_graph(graph: HeteroData) -> HeteroData:
    """Mirror node points left-right (x := 1 - x), as a horizontal image flip does to pixels.

    Geometry features ``geo``, where present, are mirrored with :func:`flip_geometry`.
    """
    out = graph.clone()
    for t in NODE_TYPES:
        pos = graph[t].pos.clone()
        pos[..., 0] = 1.0 - pos[..., 0]
        out[t].pos = pos
        if "geo" in graph[t]:
            out[t].geo = flip_geometry(graph[t].geo)
    return out


_SIN, _COS, _CX, _CY = 4, 3, 6, 7  # columns of GEOMETRY_FEATURES


def flip_geometry(geo: torch.Tensor) -> torch.Tensor:
    """Geometry features (N, 8) of the left-right mirrored geometries (exact; see the module docstring)."""
    out = geo.clone()
    out[:, _SIN] = -geo[:, _SIN]
    out[:, _CX] = 1.0 - geo[:, _CX]
    return out


def crop_geometry(geo: torch.Tensor, box: tuple[float, float, float, float]) -> torch.Tensor:
    """Geometry features (N, 8) in the frame of the crop ``box`` (x0, y0, x1, y1); see the module doc."""
    x0, y0, x1, y1 = box
    sx, sy = x1 - x0, y1 - y0
    g = geo.detach().double().numpy()
    out = g.copy()
    out[:, 0] = scale_measure(np.minimum(unscale_measure(g[:, 0]) / (sx * sy), 1.0))
    out[:, 1] = scale_measure(unscale_measure(g[:, 1]) / math.sqrt(sx * sy))
    magnitude = np.hypot(g[:, _COS], g[:, _SIN])
    half = np.arctan2(g[:, _SIN], g[:, _COS]) / 2
    angle = np.arctan2(np.sin(half) / sy, np.cos(half) / sx)
    out[:, _COS], out[:, _SIN] = np.cos(2 * angle) * magnitude, np.sin(2 * angle) * magnitude
    out[:, _CX] = np.clip((g[:, _CX] - x0) / sx, 0.0, 1.0)
    out[:, _CY] = np.clip((g[:, _CY] - y0) / sy, 0.0, 1.0)
    return torch.from_numpy(out).to(geo.dtype)


def _draw(generator: torch.Generator) -> float:
    return float(torch.rand((), generator=generator))


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * _draw(generator)
