"""Pretraining: shards, joint augmentation, the loop (exact resume, DDP on 2 CPU processes) and its bad input.

Samples are the six real UFZ tiles of the official examples (images and official OSM graphs).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from official_fixture import IMAGENET_MEAN, IMAGENET_STD, official_samples

from geolink_store.cli import main
from geolink_store.cli.pretrain import _model_config
from model import NODE_TYPES, GeoLink, from_official_graph, preset
from model.errors import InputError
from training import (
    JointAugment,
    PretrainConfig,
    Sample,
    ShardReader,
    crop_graph,
    flip_graph,
    pretrain,
    write_shards,
)

TINY = replace(preset("test"), timm_kwargs={"depth": 1})


@pytest.fixture(scope="module")
def samples() -> list[Sample]:
    """Real UFZ chips as uint8 and their graphs in our layout."""
    out = []
    for s in official_samples():
        pixels = ((s.image * IMAGENET_STD + IMAGENET_MEAN) * 255).round().clamp(0, 255).to(torch.uint8)
        out.append(Sample(image=pixels, graph=from_official_graph(s.graph)))
    return out


@pytest.fixture(scope="module")
def shards(samples, tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("shards")
    write_shards(samples * 2, directory, samples_per_shard=5)
    return directory


def test_shards_round_trip(samples, shards) -> None:
    readers = [ShardReader(p) for p in sorted(shards.glob("shard-*.safetensors"))]
    assert [len(r) for r in readers] == [5, 5, 2]
    restored = readers[0][3]
    assert torch.equal(restored.image, samples[3].image)
    for t in NODE_TYPES:
        torch.testing.assert_close(
            restored.graph[t].x, samples[3].graph[t].x, atol=2e-3, rtol=1e-3
        )  # float16
        assert torch.equal(restored.graph[t].pos, samples[3].graph[t].pos)
    edge = ("line", "to", "polygon")
    assert torch.equal(restored.graph[edge].edge_index, samples[3].graph[edge].edge_index)
    with pytest.raises(IndexError):
        readers[2][2]


def test_crop_keeps_nodes_in_the_crop_in_its_frame(samples) -> None:
    graph = samples[5].graph
    box = (0.25, 0.1, 0.75, 0.6)
    cropped = crop_graph(graph, box)
    for t in NODE_TYPES:
        inside = (
            ((graph[t].pos >= torch.tensor(box[:2])) & (graph[t].pos <= torch.tensor(box[2:])))
            .all(-1)
            .any(-1)
        )
        assert cropped[t].num_nodes == int(inside.sum())
        assert cropped[t].pos.min() >= 0 and cropped[t].pos.max() <= 1
        torch.testing.assert_close(cropped[t].x, graph[t].x[inside])
    edge_index = cropped["line", "to", "line"].edge_index
    assert edge_index.numel() == 0 or edge_index.max() < cropped["line"].num_nodes


def test_flip_mirrors_points_and_leaves_input_alone(samples) -> None:
    graph = samples[0].graph
    before = graph["polygon"].pos.clone()
    flipped = flip_graph(graph)
    torch.testing.assert_close(flipped["polygon"].pos[..., 0], 1 - before[..., 0])
    assert torch.equal(graph["polygon"].pos, before)


def test_augment_crop_aspect_in_range_and_reproducible(samples) -> None:
    """Official bug B9 drew the aspect from U(1.5, 2.25)."""
    augment = JointAugment()
    for seed in range(50):
        top, left, h, w = augment._crop_box(224, 224, torch.Generator().manual_seed(seed))
        assert 0.75 * 0.95 <= h / w <= 1.5 * 1.05 and 0.4 * 0.95 <= h * w / 224**2 <= 0.9 * 1.05
    first = augment(samples[1], torch.Generator().manual_seed(7))
    second = augment(samples[1], torch.Generator().manual_seed(7))
    assert first[0].shape == (3, 224, 224) and torch.equal(first[0], second[0])


def _config(shards: Path, out: Path, **changes) -> PretrainConfig:
    values = dict(
        data=str(shards),
        out=str(out),
        model=TINY,
        steps=4,
        batch_size=4,
        warmup_steps=1,
        log_every=2,
        checkpoint_every=2,
        num_workers=0,
    )
    return PretrainConfig(**(values | changes))


def test_pretraining_logs_losses_and_resumes_exactly(shards, tmp_path) -> None:
    straight = _config(shards, tmp_path / "straight")
    metrics = pretrain(straight)
    lines = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [2, 4]
    for key in ("image_loss", "contrastive_loss", "node_loss", "images_per_s"):
        assert all(m[key] > 0 for m in lines)
    assert metrics["step"] == 4 and (tmp_path / "straight" / "model.safetensors").exists()

    interrupted = _config(shards, tmp_path / "resumed", max_steps_per_run=1)
    for _ in range(4):
        pretrain(interrupted)
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    assert a["state"] == b["state"]
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key


def test_bad_pretraining_input(shards, tmp_path) -> None:
    with pytest.raises(ValueError, match="512-d tag features but the model expects osm_in_chans=384"):
        pretrain(_config(shards, tmp_path / "a", model=replace(TINY, osm_in_chans=384)))
    pretrain(_config(shards, tmp_path / "b", steps=1))
    other = replace(TINY, architecture="vit_small_patch16_224")
    with pytest.raises(ValueError, match="cannot resume .* another model config"):
        pretrain(_config(shards, tmp_path / "b", model=other))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no pretraining shards"):
        pretrain(_config(tmp_path / "empty", tmp_path / "c"))


def test_bad_pretraining_config_names_what_is_wrong(shards, tmp_path) -> None:
    init = GeoLink(replace(TINY, type_attention=True)).save(tmp_path / "init.safetensors")
    with pytest.raises(
        InputError, match=r"init=\S+init.safetensors .*model= \(type_attention True != False\)"
    ):
        pretrain(_config(shards, tmp_path / "a", init=str(init)))
    with pytest.raises(InputError, match=r"unknown keys \['stpes'\]; missing keys \['out'\]"):
        PretrainConfig.from_json(json.dumps({"data": str(shards), "stpes": 3}))
    with pytest.raises(InputError, match=r"accumulate=0 \(at least 1\), lr=0.0 \(must be positive\)"):
        _config(shards, tmp_path / "b", accumulate=0, lr=0.0)


def test_cli_architecture_is_a_preset_or_a_timm_vit(shards, tmp_path) -> None:
    assert _model_config("test") == preset("test")
    assert _model_config("vit_small_patch16_224") == replace(
        preset("default"), architecture="vit_small_patch16_224"
    )
    result = CliRunner().invoke(
        main, ["pretrain", "--data", str(shards), "--out", str(tmp_path / "r"), "--architecture", "vit_nope"]
    )
    assert result.exit_code == 1
    assert "unknown GeoLink preset 'vit_nope'" in result.stderr and "vit_ti16, default, test" in result.stderr


def test_cli_init_takes_the_checkpoint_config(shards, tmp_path) -> None:
    """``--init`` alone continues any of our checkpoints with its own config; an ``--architecture`` that
    disagrees is refused with the differing fields named."""
    config = replace(TINY, type_attention=True)
    init = GeoLink(config).save(tmp_path / "init.safetensors")
    args = ["pretrain", "--data", str(shards), "--steps", "1", "--batch-size", "2", "--init", str(init)]
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert GeoLink.from_checkpoint(tmp_path / "r" / "model.safetensors").config == config
    saved = PretrainConfig.from_json((tmp_path / "r" / "config.json").read_text())
    assert saved.model == config and saved.init == str(init)

    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "s"), "--architecture", "test"])
    assert result.exit_code == 1
    assert "type_attention True != False" in result.stderr and "timm_kwargs" in result.stderr
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("entry", ["module", "cli"])
def test_ddp_with_two_cpu_processes(shards, tmp_path, entry: str) -> None:
    """torchrun, 2 processes, gloo, through ``-m training --config`` and through ``geolink pretrain``: both
    ranks train in step, rank 0 alone writes the checkpoint and the metrics (and prints them)."""
    config = _config(shards, tmp_path / "ddp", batch_size=2, steps=2)
    (tmp_path / "run.json").write_text(config.to_json())
    program = (
        ["-m", "training"]
        if entry == "module"
        else [str(Path(sys.executable).parent / "geolink"), "pretrain", "--data", str(shards)]
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            *program,
            "--config",
            str(tmp_path / "run.json"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    if entry == "cli":
        assert len([line for line in result.stdout.splitlines() if line.startswith("{")]) == 1
    saved = torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=True)
    assert saved["state"]["step"] == 2
    lines = (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["step"] == 2


def test_pretraining_a_cnn_backbone_with_frozen_norms_and_a_slower_backbone(shards, tmp_path) -> None:
    # the official UFZ graphs of these shards carry no geometry features
    cnn = replace(preset("efficientnet_lite2"), osm_in_chans=TINY.osm_in_chans, node_geometry=False)
    config = _config(
        shards,
        tmp_path / "cnn",
        model=cnn,
        steps=2,
        batch_size=2,
        freeze_backbone_norm=True,
        backbone_lr_scale=0.1,
    )
    metrics = pretrain(config)
    assert metrics["step"] == 2 and all(
        math.isfinite(metrics[k]) for k in ("loss", "image_loss", "node_loss")
    )
    trained = GeoLink.from_checkpoint(tmp_path / "cnn" / "model.safetensors")
    start = GeoLink(cnn)
    stem = "img_encoder.bn1.running_mean"
    assert torch.equal(trained.state_dict()[stem], start.state_dict()[stem])  # frozen running statistics
    assert not torch.equal(trained.img_encoder.conv_stem.weight, start.img_encoder.conv_stem.weight)
