"""``geolink ingest`` and ``geolink demo``: encode a region into a store (the demo: the bundled sample)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import click

from geolink_store.cli.options import format_option, given_store
from geolink_store.constants import DEFAULT_EPOCH
from geolink_store.errors import InputError

if TYPE_CHECKING:
    from tqdm import tqdm

    from geolink_store.pipeline import IngestReport


@contextmanager
def progress_bars() -> Iterator[Callable[[int], Callable[[int], None]]]:
    """A factory of tqdm bars on stderr (cells/s), each advanced by the cells a batch finished.

    Bars show on a terminal only, and every bar is closed on exit, so that an error raised mid-run prints on
    a line of its own.
    """
    from tqdm import tqdm

    bars: list[tqdm] = []

    def open_bar(total: int) -> Callable[[int], None]:
        bar = tqdm(total=total, desc="encoding", unit="cell", dynamic_ncols=True, disable=None)
        bars.append(bar)

        def advance(done: int) -> None:
            bar.update(done)
            if bar.n >= total:
                bar.close()

        return advance

    try:
        yield open_bar
    finally:
        for bar in bars:
            bar.close()


def _summary(report: IngestReport) -> str:
    return (
        f"{report.cells_encoded} cells encoded ({report.cells_per_s:.1f} cells/s), "
        f"{report.cells_osm_only} OSM-only, "
        f"{report.cells_with_osm} with OSM, {report.patches_written} patch rows; "
        f"{report.cells_already_stored} already stored, {report.cells_without_imagery} without imagery, "
        f"{report.cells_too_sparse} with too little imagery; model {report.model_id}"
    )


@click.command(
    "ingest",
    epilog="Example: geolink ingest --db store --region 32.59,0.35,32.60,0.36 "
    "--imagery tiles/ --osm kampala.osm.pbf --res 12",
)
@click.option(
    "--db",
    required=True,
    callback=given_store,
    help="Store: a directory or an s3://, gs://, az:// URI (created if absent).",
)
@click.option(
    "--region", required=True, help="W,S,E,N in degrees, a GeoJSON/GPKG/GeoParquet file, or H3 cells."
)
@click.option(
    "--imagery",
    required=True,
    multiple=True,
    help="GeoTIFF/COG or slippy-map tile folder; repeatable (a mosaic, in priority order).",
)
@click.option(
    "--osm",
    default=None,
    help="OSM PBF, GeoJSON/GPKG/GeoParquet, or an official example folder; without it, imagery alone.",
)
@click.option(
    "--epoch",
    default=DEFAULT_EPOCH,
    show_default=True,
    help="Label of this snapshot (2010, 2020-06, 2024-growing-season): the same cells in two epochs are "
    "two rows each.",
)
@click.option(
    "--vectors",
    type=click.Choice(["float32", "int8", "both"]),
    default="float32",
    show_default=True,
    help="How cells store their vectors: float32, int8 (codes and a scale per vector: a quarter of the "
    "bytes) or both; fixed when the store's cells table is created.",
)
@click.option(
    "--res", type=click.IntRange(0, 15), default=9, show_default=True, help="H3 resolution of the cells."
)
@click.option(
    "--fine-res", type=click.IntRange(0, 15), default=None, help="Resolution of patch cells [res + 2]."
)
@click.option(
    "--model", "checkpoint", type=click.Path(), help="Checkpoint (official .pth or ours); default: bundled."
)
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option(
    "--min-valid",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="Skip cells whose chip holds less than this share of valid imagery.",
)
@click.option(
    "--overwrite", is_flag=True, help="Re-encode cells already stored for this model (default: resume)."
)
@click.option(
    "--osm-only",
    is_flag=True,
    help="Cells without imagery but with OSM get their OSM vector alone "
    "(image and fused null) instead of being skipped.",
)
@click.option(
    "--allow-empty-osm",
    is_flag=True,
    help="Encode even when the OSM source holds no usable feature in the region (refused by default: "
    "most often OSM of another place or CRS).",
)
@click.option(
    "--partition-levels",
    type=click.IntRange(0, 15),
    default=3,
    show_default=True,
    help="Partition the cells by their parent this many resolutions coarser (3: ~343 cells each).",
)
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="Encode in this process, or on a Ray cluster (pip install 'geolink-store[ray]').",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Ray engine: encoder actors (one GPU each on a GPU cluster, else --cpus-per-worker cores).",
)
@click.option(
    "--cpus-per-worker",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Ray engine: cores (torch threads) per CPU encoder actor.",
)
@click.option(
    "--ray-address",
    default=None,
    help="Ray engine: a running cluster ('auto', 'ray://head:10001'); default: a new local cluster.",
)
@format_option()
def ingest_command(
    db: str,
    region: str,
    imagery: tuple[str, ...],
    osm: str | None,
    epoch: str,
    vectors: str,
    res: int,
    fine_res: int | None,
    checkpoint: str | None,
    batch_size: int,
    min_valid: float,
    overwrite: bool,
    osm_only: bool,
    allow_empty_osm: bool,
    partition_levels: int,
    engine: str,
    workers: int,
    cpus_per_worker: int,
    ray_address: str | None,
    fmt: str,
) -> None:
    """Encode every cell of a region into the store: image, OSM and fused vectors per cell and per patch."""
    from geolink_store.preflight import check_ingest_inputs
    from geolink_store.store.epochs import checked_label

    checked_label(epoch)
    checked = check_ingest_inputs(db, region, imagery, osm, res, res + 2 if fine_res is None else fine_res)
    if checkpoint:
        _check_checkpoint_file(Path(checkpoint))
    from geolink_store.pipeline import IngestSettings, ingest  # torch and the model load only now
    from model import GeoLink

    settings = IngestSettings(
        res=res,
        fine_res=fine_res,
        batch_size=batch_size,
        min_valid=min_valid,
        overwrite=overwrite,
        osm_only=osm_only,
        partition_levels=partition_levels,
        allow_empty_osm=allow_empty_osm,
        epoch=epoch,
        vectors=vectors,
    )
    runner = None
    if engine == "ray":
        from geolink_store.pipeline import RayEngine

        runner = RayEngine(workers=workers, cpus_per_worker=cpus_per_worker, address=ray_address)
    with progress_bars() as progress:
        report = ingest(
            db,
            checked.region,
            list(imagery),
            osm,
            model=partial(GeoLink.from_checkpoint, checkpoint) if checkpoint else GeoLink.default,
            model_name=Path(checkpoint).name if checkpoint else "default",
            settings=settings,
            engine=runner,
            progress=progress,
        )
    if fmt == "json":
        click.echo(
            json.dumps(
                {k: v for k, v in vars(report).items() if k != "skipped_cells"}
                | {"cells_per_s": report.cells_per_s}
            )
        )
    else:
        click.echo(_summary(report))


def _check_checkpoint_file(path: Path) -> None:
    """Refuse a checkpoint that is missing, a folder or empty, before torch loads."""
    if not path.is_file():
        raise InputError(f"checkpoint not found: {path} (or not a file)")
    if path.stat().st_size == 0:
        raise InputError(f"checkpoint {path} is empty (0 bytes): an interrupted download or copy?")


@click.command("demo")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="geolink-demo",
    show_default=True,
    help="Folder for the store and the maps.",
)
def demo_command(out: str) -> None:
    """The main job on the bundled sample region, offline: ingest, search, SQL, maps."""
    from geolink_store.demo import run_demo

    with progress_bars() as progress:
        run_demo(Path(out), progress)
