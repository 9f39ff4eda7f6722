"""``geolink heads``: train classifiers from stored vectors, apply them, list and compare them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from geolink_store.cli.group import OneLineErrors
from geolink_store.cli.options import F, db_option, epoch_option, format_option, model_option
from geolink_store.constants import HEAD_MODALITIES

if TYPE_CHECKING:
    import pyarrow as pa

    from geolink_store.store import Store

@click.group("heads", cls=OneLineErrors)
def heads_group() -> None:
    """Light heads trained straight from the store (no re-encoding)."""


def _train_options(command: F) -> F:
    """The options ``train`` and ``compare`` share."""
    for option in reversed(
        [
            db_option,
            click.option(
                "--labels",
                "labels_path",
                required=True,
                type=click.Path(dir_okay=False),
                help="Points/polygons (GeoJSON, GPKG, GeoParquet), CSV of h3,label, or a label raster.",
            ),
            click.option("--label-column", default="label", show_default=True),
            click.option(
                "--kind", type=click.Choice(["linear", "mlp", "knn"]), default="linear", show_default=True
            ),
            click.option(
                "--split",
                type=click.Choice(["spatial", "random"]),
                default="spatial",
                show_default=True,
                help="spatial: whole blocks of coarser H3 parents on one side.",
            ),
            click.option(
                "--min-share",
                type=click.FloatRange(0, 1),
                default=0.5,
                show_default=True,
                help="Share of a cell a polygon must cover to label it.",
            ),
            model_option,
            epoch_option,
            click.option("--seed", type=int, default=0, show_default=True),
            format_option(),
        ]
    ):
        command = option(command)
    return command


@heads_group.command("train")
@_train_options
@click.option("--modality", type=click.Choice(HEAD_MODALITIES), default="fused", show_default=True)
def train(
    db: str,
    labels_path: str,
    label_column: str,
    kind: str,
    split: str,
    min_share: float,
    model_id: str | None,
    epoch: str | None,
    seed: int,
    fmt: str,
    modality: str,
) -> None:
    """Train a head on labelled cells and save it in the store's heads table."""
    from geolink_store.heads.from_store import train_from_store
    from geolink_store.store import Store

    trained = train_from_store(
        Store.open(db),
        labels_path,
        label_column,
        modality=modality,
        kind=kind,
        split=split,
        model_id=model_id,
        epoch=epoch,
        min_share=min_share,
        seed=seed,
    )
    if fmt == "json":
        click.echo(
            json.dumps({"head_id": trained.head_id, "metrics": trained.metrics, "dropped": trained.dropped})
        )
        return
    m = trained.metrics
    for reason, count in trained.dropped.items():
        click.echo(f"note: {count} {reason}", err=True)
    click.echo(
        f"head {trained.head_id}: {kind} on {modality} vectors, {split} split "
        f"({m['train']} train / {m['test']} test)"
    )
    click.echo(
        f"accuracy {m['accuracy']:.3f}  macro-F1 {m['macro_f1']:.3f}  mIoU {m['miou']:.3f}   "
        f"majority baseline ({m['majority_baseline']['class']}): accuracy "
        f"{m['majority_baseline']['accuracy']:.3f}  macro-F1 {m['majority_baseline']['macro_f1']:.3f}"
    )
    click.echo("per-class F1: " + ", ".join(f"{c} {f:.3f}" for c, f in m["per_class_f1"].items()))


@heads_group.command("compare")
@_train_options
def compare(
    db: str,
    labels_path: str,
    label_column: str,
    kind: str,
    split: str,
    min_share: float,
    model_id: str | None,
    epoch: str | None,
    seed: int,
    fmt: str,
) -> None:
    """Train one head per modality on the same split and compare them (saved together, or none)."""
    from geolink_store.heads.from_store import fit_from_store, save_heads
    from geolink_store.store import Store

    store = Store.open(db)
    heads, rows = [], []
    for modality in HEAD_MODALITIES:
        trained = fit_from_store(
            store,
            labels_path,
            label_column,
            modality=modality,
            kind=kind,
            split=split,
            model_id=model_id,
            epoch=epoch,
            min_share=min_share,
            seed=seed,
        )
        heads.append(trained)
        rows.append(
            {"modality": modality, "head_id": trained.head_id}
            | {k: trained.metrics[k] for k in ("accuracy", "macro_f1", "miou", "train", "test")}
            | {"baseline_macro_f1": trained.metrics["majority_baseline"]["macro_f1"]}
        )
    save_heads(store, heads)
    if fmt == "json":
        click.echo(json.dumps(rows))
        return
    click.echo(
        f"{'modality':<9} {'accuracy':>8} {'macro-F1':>8} {'mIoU':>6} {'baseline F1':>11} {'train':>6} "
        f"{'test':>5}  head"
    )
    for r in rows:
        click.echo(
            f"{r['modality']:<9} {r['accuracy']:8.3f} {r['macro_f1']:8.3f} {r['miou']:6.3f} "
            f"{r['baseline_macro_f1']:11.3f} {r['train']:6d} {r['test']:5d}  {r['head_id']}"
        )


@heads_group.command("predict")
@db_option
@click.option("--head", "head_id", required=True, help="Head id (see `geolink heads list`).")
@click.option("--model", "model_id", help="Refuse unless the head was trained on this model's vectors.")
@epoch_option
@click.option(
    "--map",
    "map_path",
    type=click.Path(dir_okay=False),
    help="Also draw the predictions over the store's imagery: a .png, or an offline .html map.",
)
def predict(db: str, head_id: str, model_id: str | None, epoch: str | None, map_path: str | None) -> None:
    """Fill the predictions table for every stored cell of the head's model (and draw them first)."""
    from geolink_store.heads.from_store import predictions_for
    from geolink_store.query.maps import check_map_path
    from geolink_store.store import Store

    target = check_map_path(map_path) if map_path else None
    store = Store.open(db)
    predictions = predictions_for(store, head_id, model_id, epoch)
    if target is None:
        store.upsert("predictions", predictions)
    else:
        _save_with_map(store, predictions, target)
    counts = predictions.group_by("label").aggregate([("label", "count")]).to_pylist()
    click.echo(
        f"{predictions.num_rows} predictions written: "
        + ", ".join(f"{c['label']} {c['label_count']}" for c in counts)
    )
    if target is not None:
        click.echo(f"map written to {map_path}", err=True)


def _save_with_map(store: Store, predictions: pa.Table, target: Path) -> None:
    """Draw the map beside ``target``, upsert the predictions, then give the map its name.

    A failure at any step leaves neither the map nor new predictions behind.
    """
    from geolink_store.heads.from_store import load_head
    from geolink_store.query.maps import predictions_map

    head_id = predictions["head_id"][0].as_py() if predictions.num_rows else None
    classes = load_head(store, head_id)[0]["classes"] if head_id else None
    partial = target.with_name(f".{target.name}.partial{target.suffix}")
    try:
        predictions_map(predictions, partial, classes=classes, store=store)
        store.upsert("predictions", predictions)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


@heads_group.command("list")
@db_option
@format_option()
def list_command(db: str, fmt: str) -> None:
    """The heads saved in the store."""
    from geolink_store.heads.from_store import list_heads
    from geolink_store.store import Store

    heads = list_heads(Store.open(db))
    if fmt == "json":
        click.echo(json.dumps(heads, default=str))
        return
    for h in heads:
        click.echo(
            f"{h['head_id']}  {h['kind']:<6} {h['modality']:<6} {h['table']:<7} model {h['model_id']}  "
            f"macro-F1 {h['metrics']['macro_f1']:.3f}  classes {', '.join(h['classes'])}  ({h['labels']})"
        )
