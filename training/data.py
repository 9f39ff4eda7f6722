"""The pretraining dataset: shards -> augmented (image, graph) pairs -> mini-batches."""

from __future__ import annotations

import bisect
from pathlib import Path

import torch
from torch.utils.data import Dataset
from torch_geometric.data import Batch, HeteroData

from model import batch_graphs
from model.errors import InputError
from training.augment import JointAugment
from training.shards import ShardReader, shard_paths


class PretrainDataset(Dataset):
    """All samples of a shard directory, augmented on the fly with a per-sample, per-epoch seed.

    Args:
        directory: the shard folder (written by ``write_shards``).
        augment: the joint augmentation (default: ``JointAugment()``).
        seed: seed of the augmentation draws.

    Raises:
        InputError: the folder holds no shards, or no samples.
    """

    def __init__(self, directory: str | Path, augment: JointAugment | None = None, seed: int = 0) -> None:
        paths = shard_paths(directory)
        if not paths:
            raise InputError(f"no pretraining shards in {directory}: write them with training.write_shards")
        self.readers = [ShardReader(p) for p in paths]
        self.starts = [0]
        for reader in self.readers:
            self.starts.append(self.starts[-1] + len(reader))
        if self.starts[-1] == 0:
            raise InputError(f"the pretraining shards in {directory} hold no samples")
        self.augment = augment or JointAugment()
        self.seed = seed
        self.epoch = 0

    @property
    def channels(self) -> int:
        """Width of the tag features stored in the shards."""
        return self[0][1]["polygon"].x.size(1)

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation draws for a new epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.starts[-1]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, HeteroData]:
        """Sample ``index``, augmented: a normalised image (3, 224, 224) and its graph."""
        shard = bisect.bisect_right(self.starts, index) - 1
        sample = self.readers[shard][index - self.starts[shard]]
        generator = torch.Generator().manual_seed(hash((self.seed, self.epoch, index)) & (2**62 - 1))
        return self.augment(sample, generator)


def collate(items: list[tuple[torch.Tensor, HeteroData]]) -> tuple[torch.Tensor, Batch]:
    """Stack the images into (B, 3, H, W) and batch the graphs."""
    images, graphs = zip(*items, strict=True)
    return torch.stack(images), batch_graphs(list(graphs))
