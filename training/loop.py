"""The GeoLink pretraining loop.

AdamW, warm-up then cosine, bf16 autocast on GPU, gradient accumulation, DDP through torchrun, checkpoints
with exact resume, and logging of the three losses, images/s and (on GPU) MFU.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader, DistributedSampler
from torch.utils.flop_counter import FlopCounterMode
from torch_geometric.data import Batch
from tqdm import tqdm

from model import GeoLink, GeoLinkConfig, preset
from model.checkpoint import read_config
from model.config import json_kwargs
from model.errors import InputError
from training.data import PretrainDataset, collate

_CHECKPOINT = "checkpoint.pt"
_METRICS = "metrics.jsonl"
_AT_LEAST = {"steps": 1, "batch_size": 1, "accumulate": 1, "warmup_steps": 0, "num_workers": 0}
_AT_LEAST |= {"log_every": 1, "checkpoint_every": 1, "max_steps_per_run": 1}


@dataclass(frozen=True)
class PretrainConfig:
    """Everything a pretraining run needs; written beside its checkpoints.

    ``data`` is the shard folder, ``out`` the run folder (a second run there resumes), ``init`` an optional
    checkpoint to start from, ``model`` the architecture: by default the config of ``init``, else the
    ``default`` preset; given beside ``init``, it must equal the checkpoint's (the error names the fields that
    differ). ``max_steps_per_run`` stops a run early (to resume later).

    To keep what an ImageNet-initialised backbone learnt: ``backbone_lr_scale`` trains the image backbone
    (``img_encoder``) at ``lr * backbone_lr_scale`` (1.0: one learning rate for all), and
    ``freeze_backbone_norm`` keeps its BatchNorm layers in eval mode (running statistics frozen, affine
    parameters still trained), which small CPU batches need. The warm-up lasts at most half of ``steps``.

    Raises:
        InputError: a count below its minimum (named with its value), or ``lr`` or ``backbone_lr_scale`` not
            positive.
        CheckpointError: ``init`` cannot be read when its config is needed.
    """

    data: str
    out: str
    model: GeoLinkConfig | None = None
    steps: int = 1000
    batch_size: int = 32
    accumulate: int = 1
    lr: float = 1.5e-4
    min_lr: float = 1e-6
    weight_decay: float = 0.05
    warmup_steps: int = 50
    seed: int = 0
    num_workers: int = 2
    log_every: int = 10
    checkpoint_every: int = 100
    max_steps_per_run: int | None = None
    init: str | None = None
    backbone_lr_scale: float = 1.0
    freeze_backbone_norm: bool = False

    def __post_init__(self) -> None:
        if self.model is None:
            object.__setattr__(self, "model", read_config(self.init) if self.init else preset("default"))
        low = [
            f"{name}={getattr(self, name)} (at least {least})"
            for name, least in _AT_LEAST.items()
            if getattr(self, name) is not None and getattr(self, name) < least
        ]
        if not self.lr > 0:
            low.append(f"lr={self.lr} (must be positive)")
        if not self.backbone_lr_scale > 0:
            low.append(f"backbone_lr_scale={self.backbone_lr_scale} (must be positive)")
        if low:
            raise InputError(f"pretraining config: {', '.join(low)}")

    def to_json(self) -> str:
        """Serialise to JSON, the model config nested (``config.json`` of a run)."""
        values = asdict(self)
        values["model"] = json.loads(self.model.to_json())
        return json.dumps(values, sort_keys=True, indent=1)

    @classmethod
    def from_json(cls, text: str) -> PretrainConfig:
        """Read a config written by ``to_json``.

        Raises:
            InputError: ``text`` is not a JSON object of config keys (unknown and missing keys are named).
        """
        values = json_kwargs(cls, text)
        if "model" in values:
            values["model"] = GeoLinkConfig.from_json(json.dumps(values["model"]))
        return cls(**values)


@dataclass
class _Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def pretrain(config: PretrainConfig) -> dict[str, float]:
    """Run (or resume) pretraining; return the last logged metrics. torchrun launches several processes.

    Raises:
        InputError: no shards in ``data``, shards of another tag-feature width than the model's, or a
            checkpoint (``init``, or the one in ``out`` to resume) of another model config than ``model``.
    """
    ddp = _init_distributed()
    device = torch.device(f"cuda:{ddp.local_rank}" if torch.cuda.is_available() else "cpu")
    out = Path(config.out)
    dataset = PretrainDataset(config.data, seed=config.seed)
    if dataset.channels != config.model.osm_in_chans:
        raise InputError(
            f"the shards hold {dataset.channels}-d tag features but the model expects osm_in_chans="
            f"{config.model.osm_in_chans}: build the shards with the matching text encoder or change model="
        )
    torch.manual_seed(config.seed)
    model = GeoLink.from_checkpoint(config.init) if config.init else GeoLink(config.model)
    if model.config != config.model:
        raise InputError(
            f"init={config.init} holds another model config than model= "
            f"({_differences(model.config, config.model)})"
        )
    out.mkdir(parents=True, exist_ok=True)
    model.to(device).train()
    if config.freeze_backbone_norm:
        freeze_batch_norms(model.img_encoder)
    optimizer = torch.optim.AdamW(
        _param_groups(model, config.weight_decay, config.lr, config.backbone_lr_scale),
        lr=config.lr,
        betas=(0.9, 0.95),
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(config))
    state = _resume(out, config, model, optimizer, scheduler)
    wrapped = (
        DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if ddp.world > 1
        else model
    )

    autocast_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    batches = _batches(dataset, config, ddp, state["epoch"], state["batch_in_epoch"])
    progress = tqdm(
        total=config.steps, initial=state["step"], desc="pretrain", disable=not ddp.main, unit="step"
    )
    metrics: dict[str, float] = {}
    window, window_start, flops_per_image = [], time.perf_counter(), None
    if ddp.main:
        (out / "config.json").write_text(config.to_json())
    stop = (
        config.steps
        if config.max_steps_per_run is None
        else min(config.steps, state["step"] + config.max_steps_per_run)
    )
    while state["step"] < stop:
        optimizer.zero_grad(set_to_none=True)
        losses = torch.zeros(4, device=device)
        images_seen = 0
        for micro in range(config.accumulate):
            epoch, batch_in_epoch, (images, graphs) = next(batches)
            torch.manual_seed(hash((config.seed, state["step"], micro, ddp.rank)) & (2**62 - 1))
            images, graphs = images.to(device, non_blocking=True), graphs.to(device)
            sync = micro == config.accumulate - 1 or ddp.world == 1
            context = wrapped.no_sync() if not sync else nullcontext()
            with (
                context,
                torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype != torch.float32),
            ):
                if flops_per_image is None and device.type == "cuda":
                    flops_per_image = _measure_flops(wrapped, images, graphs)
                result = wrapped(images, graphs)
                (result.loss / config.accumulate).backward()
            losses += torch.stack(
                [result.loss, result.image_loss, result.contrastive_loss, result.node_loss]
            ).detach()
            images_seen += images.size(0)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 3.0)
        optimizer.step()
        scheduler.step()
        state.update(step=state["step"] + 1, epoch=epoch, batch_in_epoch=batch_in_epoch + 1)
        window.append((losses / config.accumulate).cpu())
        progress.update(1)

        if state["step"] % config.log_every == 0 or state["step"] == config.steps:
            metrics = _log(
                out,
                ddp,
                state["step"],
                window,
                images_seen * ddp.world * len(window),
                time.perf_counter() - window_start,
                flops_per_image,
                device,
                scheduler.get_last_lr()[0],
            )
            progress.set_postfix(loss=f"{metrics['loss']:.3f}", img_s=f"{metrics['images_per_s']:.1f}")
            window, window_start = [], time.perf_counter()
        if ddp.main and (state["step"] % config.checkpoint_every == 0 or state["step"] == stop):
            _save(out, config, model, optimizer, scheduler, state)
    progress.close()
    if ddp.main and state["step"] == config.steps:
        model.save(out / "model.safetensors")
    if ddp.world > 1:
        dist.destroy_process_group()
    return metrics


def _differences(found: GeoLinkConfig, wanted: GeoLinkConfig) -> str:
    """The fields in which two model configs differ, as ``name found != wanted``."""
    return ", ".join(
        f"{f.name} {getattr(found, f.name)!r} != {getattr(wanted, f.name)!r}"
        for f in fields(GeoLinkConfig)
        if getattr(found, f.name) != getattr(wanted, f.name)
    )


def _init_distributed() -> _Distributed:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return _Distributed()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    return _Distributed(rank=dist.get_rank(), world=world, local_rank=local_rank)


def _param_groups(
    model: GeoLink, weight_decay: float, lr: float, backbone_lr_scale: float = 1.0
) -> list[dict[str, object]]:
    """No weight decay on biases, norms, tokens and position tables (1-D or frozen tensors).

    The image backbone (``img_encoder``) gets its own groups at ``lr * backbone_lr_scale`` when the scale is
    not 1 (otherwise the two groups of before).
    """
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    split = backbone_lr_scale != 1.0
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        no_decay = parameter.ndim <= 1 or name.endswith("token") or "mask_token" in name
        backbone = split and name.startswith("img_encoder.")
        groups.setdefault((backbone, no_decay), []).append(parameter)
    return [
        {
            "params": params,
            "weight_decay": 0.0 if no_decay else weight_decay,
            "lr": lr * backbone_lr_scale if backbone else lr,
        }
        for (backbone, no_decay), params in sorted(groups.items())
    ]


def freeze_batch_norms(module: nn.Module) -> None:
    """Put every BatchNorm layer in ``module`` in eval mode: its running statistics stop updating.

    ``module.train()`` undoes it; the pretraining loop calls this once after ``train()``.
    """
    for child in module.modules():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            child.eval()


def _warmup_cosine(config: PretrainConfig) -> Callable[[int], float]:
    """The learning-rate factor per step: linear warm-up, then cosine down to ``min_lr``."""
    floor = config.min_lr / config.lr
    warmup = min(config.warmup_steps, config.steps // 2)  # never the whole run

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, config.steps - warmup)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _batches(
    dataset: PretrainDataset, config: PretrainConfig, ddp: _Distributed, epoch: int, skip: int
) -> Iterator[tuple[int, int, tuple[torch.Tensor, Batch]]]:
    """Endless (epoch, batch index, batch) stream; the order depends on (seed, epoch) alone: exact resume."""
    sampler = DistributedSampler(
        dataset, num_replicas=ddp.world, rank=ddp.rank, shuffle=True, seed=config.seed
    )
    while True:
        sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        loader = DataLoader(
            dataset,
            batch_size=config.batch_size,
            sampler=sampler,
            collate_fn=collate,
            num_workers=config.num_workers,
            drop_last=len(dataset) >= config.batch_size * ddp.world,
            persistent_workers=False,
        )
        for index, batch in enumerate(loader):
            if index >= skip:
                yield epoch, index, batch
        epoch, skip = epoch + 1, 0


def _resume(
    out: Path, config: PretrainConfig, model: GeoLink, optimizer: Optimizer, scheduler: LRScheduler
) -> dict[str, int]:
    """Load the run state of ``out`` into model, optimizer and scheduler; return the loop position."""
    path = out / _CHECKPOINT
    if not path.exists():
        return {"step": 0, "epoch": 0, "batch_in_epoch": 0}
    saved = torch.load(path, map_location="cpu", weights_only=True)
    trained = GeoLinkConfig.from_json(saved["model_config"])
    if trained != config.model:
        raise InputError(
            f"cannot resume out={out}: its checkpoint was trained with another model config than model= "
            f"({_differences(trained, config.model)}); to start afresh, give another out="
        )
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    return saved["state"]


def _save(
    out: Path,
    config: PretrainConfig,
    model: GeoLink,
    optimizer: Optimizer,
    scheduler: LRScheduler,
    state: dict[str, int],
) -> None:
    """Write the checkpoint atomically (a kill mid-write leaves the previous one)."""
    payload = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "state": dict(state),
        "model_config": config.model.to_json(),
    }
    tmp = out / (_CHECKPOINT + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, out / _CHECKPOINT)


def _log(
    out: Path,
    ddp: _Distributed,
    step: int,
    window: list[torch.Tensor],
    images: int,
    seconds: float,
    flops_per_image: float | None,
    device: torch.device,
    lr: float,
) -> dict[str, float]:
    mean = torch.stack(window).mean(0)
    if ddp.world > 1:
        dist.all_reduce(mean)
        mean /= ddp.world
    metrics = {
        "step": step,
        "loss": mean[0].item(),
        "image_loss": mean[1].item(),
        "contrastive_loss": mean[2].item(),
        "node_loss": mean[3].item(),
        "images_per_s": images / seconds,
        "lr": lr,
    }
    if flops_per_image is not None:
        achieved = flops_per_image * images / seconds / ddp.world
        metrics["model_tflops_per_gpu"] = achieved / 1e12
        metrics["mfu"] = achieved / _peak_flops(device)
    if ddp.main:
        with (out / _METRICS).open("a") as handle:
            handle.write(json.dumps(metrics) + "\n")
    return metrics


def _measure_flops(model: nn.Module, images: torch.Tensor, graphs: Batch) -> float:
    """Model FLOPs of one training step (forward + backward) per image, counted by torch's FlopCounterMode."""
    counter = FlopCounterMode(display=False)
    with counter:
        model(images, graphs).loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / images.size(0)


_PEAK: dict[str, float] = {}


def _peak_flops(device: torch.device) -> float:
    """Measured bf16 matmul peak of this GPU (FLOP/s), the denominator of MFU."""
    key = str(device)
    if key not in _PEAK:
        a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
        for _ in range(3):
            a @ a
        torch.cuda.synchronize(device)
        start, repeats = time.perf_counter(), 20
        for _ in range(repeats):
            a @ a
        torch.cuda.synchronize(device)
        _PEAK[key] = 2 * 8192**3 * repeats / (time.perf_counter() - start)
    return _PEAK[key]
