"""Pretraining samples (an image chip and its OSM graph) written once as safetensors shards, read back fast.

A shard holds N samples as a few concatenated tensors plus offsets, so reading a sample is a handful of slices
of a memory-mapped file, with no unpickling:

- ``image``: (N, 3, H, W) uint8 chips (before normalisation, so augmentation works on pixels);
- ``{type}.x`` (sum of nodes, C) float16 tag features, ``{type}.pos`` (sum of nodes, P, 2) float32 chip-frame
  points, ``{type}.ptr`` (N + 1,) int64 node offsets, for type in polygon, line, point;
- ``{type}.geo`` (sum of nodes, 8) float32 geometry features, only when every sample's graph has them
  (``model.graphs.has_geometry``); shards without them (older ones too) read back without ``geo``;
- ``{src}__{dst}.edge_index`` (2, sum of edges) int64 (node indices local to each sample) and
  ``{src}__{dst}.ptr``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch_geometric.data import HeteroData

from model import EDGE_TYPES, NODE_TYPES, POINTS_PER_NODE
from model.errors import InputError
from model.graphs import has_geometry

_SHARD_GLOB = "shard-*.safetensors"


@dataclass(frozen=True)
class Sample:
    """One pretraining pair: a uint8 chip (3, H, W) and its graph (our layout, ``x`` and ``pos`` per type)."""

    image: torch.Tensor
    graph: HeteroData


def write_shards(
    samples: Iterable[Sample], directory: str | Path, samples_per_shard: int = 256
) -> list[Path]:
    """Write ``samples`` as numbered shards in ``directory`` (each written atomically); return their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths, pending = [], []
    for sample in samples:
        pending.append(sample)
        if len(pending) == samples_per_shard:
            paths.append(_write_shard(pending, directory / f"shard-{len(paths):05d}.safetensors"))
            pending = []
    if pending:
        paths.append(_write_shard(pending, directory / f"shard-{len(paths):05d}.safetensors"))
    return paths


def _write_shard(samples: list[Sample], path: Path) -> Path:
    """Write one shard.

    Raises:
        InputError: some samples' graphs have geometry features and others lack them.
    """
    tensors = {"image": torch.stack([s.image.to(torch.uint8) for s in samples])}
    with_geometry = [has_geometry(s.graph) for s in samples]
    if any(with_geometry) and not all(with_geometry):
        raise InputError(
            f"{path.name}: {with_geometry.count(False)} of {len(samples)} samples lack the geometry features "
            "(graph[type].geo) the others have: build all graphs with one GraphBuilder"
        )
    for t in NODE_TYPES:
        tensors[f"{t}.x"] = torch.cat([s.graph[t].x for s in samples]).to(torch.float16)
        tensors[f"{t}.pos"] = torch.cat([s.graph[t].pos for s in samples]).float()
        tensors[f"{t}.ptr"] = _offsets([s.graph[t].num_nodes for s in samples])
        if all(with_geometry):
            tensors[f"{t}.geo"] = torch.cat([s.graph[t].geo for s in samples]).float()
    for src, _, dst in EDGE_TYPES:
        edges = [s.graph[src, "to", dst].edge_index for s in samples]
        tensors[f"{src}__{dst}.edge_index"] = torch.cat(edges, dim=1).long()
        tensors[f"{src}__{dst}.ptr"] = _offsets([e.size(1) for e in edges])
    metadata = {"samples": str(len(samples)), "channels": json.dumps(samples[0].graph["polygon"].x.size(1))}
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
        tmp_path = Path(tmp.name)
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp_path), metadata=metadata)
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)
    return path


def _offsets(counts: list[int]) -> torch.Tensor:
    return torch.from_numpy(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))


class ShardReader:
    """Random access to the samples of one shard (memory-mapped).

    Args:
        path: a shard written by ``write_shards``.

    Raises:
        InputError: the file is not a readable shard.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._file = safe_open(str(self.path), framework="pt")
            self.length = int(self._file.metadata()["samples"])
        except Exception as error:  # safetensors raises several private error types for damaged files
            raise InputError(f"{self.path}: not a readable pretraining shard ({error!r})") from None
        self._ptr = {k: self._file.get_tensor(k) for k in self._file.keys() if k.endswith(".ptr")}
        self.geometry = all(f"{t}.geo" in self._file.keys() for t in NODE_TYPES)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < self.length:
            raise IndexError(f"sample {index} out of range for {self.path.name} ({self.length} samples)")
        image = self._file.get_slice("image")[index]
        graph = HeteroData()
        for t in NODE_TYPES:
            start, stop = self._span(f"{t}.ptr", index)
            graph[t].x = self._file.get_slice(f"{t}.x")[start:stop].float()
            graph[t].pos = self._file.get_slice(f"{t}.pos")[start:stop].reshape(-1, POINTS_PER_NODE[t], 2)
            if self.geometry:
                graph[t].geo = self._file.get_slice(f"{t}.geo")[start:stop]
        for src, _, dst in EDGE_TYPES:
            start, stop = self._span(f"{src}__{dst}.ptr", index)
            graph[src, "to", dst].edge_index = self._file.get_slice(f"{src}__{dst}.edge_index")[:, start:stop]
        return Sample(image=image, graph=graph)

    def _span(self, key: str, index: int) -> tuple[int, int]:
        ptr = self._ptr[key]
        return int(ptr[index]), int(ptr[index + 1])

    def __iter__(self) -> Iterator[Sample]:
        return (self[i] for i in range(self.length))


def shard_paths(directory: str | Path) -> list[Path]:
    """The shards of a pretraining dataset directory, in order."""
    return sorted(Path(directory).glob(_SHARD_GLOB))
