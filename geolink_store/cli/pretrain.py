"""``geolink pretrain``: build pretraining shards from real data, then pretrain GeoLink (or with torchrun)."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from model import GeoLinkConfig


@click.command(
    "pretrain",
    epilog="Example: geolink pretrain --prepare --region 32.59,0.35,32.60,0.36 --imagery tiles/ "
    "--osm buildings.geojson --res 12 --data shards/ && geolink pretrain --data shards/ "
    "--out run/ --steps 1000.  Several processes: torchrun --nproc_per_node 8 -m training "
    "--config run/config.json",
)
@click.option(
    "--data", required=True, type=click.Path(file_okay=False), help="Shard folder (written by --prepare)."
)
@click.option(
    "--out", type=click.Path(file_okay=False), help="Run folder: checkpoints, metrics, model (resumes)."
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="A run config JSON (see run/config.json).",
)
@click.option(
    "--architecture",
    help="A GeoLink preset of model.presets (e.g. default, vit_b16), or a timm ViT name: the default preset "
    "with that image encoder.  [default: the config of --init, else the default preset]",
)
@click.option("--steps", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--lr", type=float, default=1.5e-4, show_default=True)
@click.option(
    "--init",
    type=click.Path(dir_okay=False),
    help="Start from this checkpoint (ours, the bundled default included: model/weights/"
    "geolink_default.safetensors); its config is the run's.",
)
@click.option(
    "--prepare", is_flag=True, help="Write shards of (chip, graph) pairs into --data instead of training."
)
@click.option("--region", help="With --prepare: W,S,E,N, a region file or H3 cells.")
@click.option("--imagery", multiple=True, help="With --prepare: rasters or tile folders.")
@click.option("--osm", help="With --prepare: OSM source (omit for image-only pairs).")
@click.option(
    "--res", type=click.IntRange(0, 15), default=12, show_default=True, help="With --prepare: H3 resolution."
)
def pretrain_command(
    data: str,
    out: str | None,
    config_file: str | None,
    architecture: str | None,
    steps: int,
    batch_size: int,
    lr: float,
    init: str | None,
    prepare: bool,
    region: str | None,
    imagery: tuple[str, ...],
    osm: str | None,
    res: int,
) -> None:
    """Pretrain GeoLink on image + OSM pairs (the three losses), or prepare its shards."""
    from geolink_store.errors import InputError

    if prepare:
        if not region or not imagery:
            raise InputError("--prepare needs --region and --imagery (and --osm for image + OSM pairs)")
        from geolink_store.regions import checked_region

        checked = checked_region(region, res)  # before torch loads: a continent fails at once
        for path in (*imagery, *([osm] if osm else [])):
            if not Path(path).exists():
                raise InputError(f"{path} does not exist")
        from geolink_store.graphs.builder import GraphBuilder
        from training.prepare import RegionPairs, region_samples
        from training.shards import write_shards

        # geometry features are stored too: they cost little, and a model without node_geometry ignores them
        builder = GraphBuilder(geometry=True)
        pairs = RegionPairs(checked.region, imagery, osm, res)
        paths = write_shards(region_samples(pairs, builder), data)
        click.echo(f"wrote {len(paths)} shards to {data}")
        return
    from training.loop import PretrainConfig, pretrain

    if config_file:
        config = PretrainConfig.from_json(Path(config_file).read_text())
    else:
        if out is None:
            raise InputError("give --out (or --config)")
        config = PretrainConfig(
            data=data,
            out=out,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            init=init,
            model=_model_config(architecture) if architecture else None,
        )
    metrics = pretrain(config)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one line for the run
        click.echo(json.dumps(metrics))


def _model_config(architecture: str) -> GeoLinkConfig:
    """The preset of that name, or else the ``default`` preset with the timm ViT of that name.

    Raises:
        InputError: ``architecture`` is neither a preset nor a timm model (the message lists the presets).
    """
    import timm

    from model import PRESET_NAMES, preset

    if architecture not in PRESET_NAMES and timm.is_model(architecture):
        return replace(preset("default"), architecture=architecture)
    return preset(architecture)
