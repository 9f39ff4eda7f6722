"""GeoLink pretraining: shards of (chip, graph) pairs, joint augmentation, and the training loop."""

from training.augment import JointAugment, crop_graph, flip_graph, normalise
from training.data import PretrainDataset, collate
from training.loop import PretrainConfig, pretrain
from training.shards import Sample, ShardReader, shard_paths, write_shards

__all__ = [
    "JointAugment",
    "PretrainConfig",
    "PretrainDataset",
    "Sample",
    "ShardReader",
    "collate",
    "crop_graph",
    "flip_graph",
    "normalise",
    "pretrain",
    "shard_paths",
    "write_shards",
]
