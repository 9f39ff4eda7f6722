"""Real-data heads: building presence per cell (Kampala, Atlanta) per modality; UFZ segmentation smoke test.

Run: ./venv-run python bench/eval_heads.py --shared ../shared/data
Labels for Kampala and Atlanta come from OSM buildings (a cell is 'built' when buildings cover >= 25 % of it),
so the osm and fused vectors see the answer through their input: the image column is the honest probe.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import torch
from PIL import Image

from geolink_store.heads.from_store import train_from_store
from geolink_store.heads.labels import coverage_share
from geolink_store.heads.train import classification_metrics, train_head
from geolink_store.pipeline import IngestSettings, ingest
from geolink_store.sources.mosaic import open_imagery
from geolink_store.store.store import Store
from geolink_store.testing import bench_record
from model import GeoLink

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def presence(name: str, imagery: Path, buildings: Path, res: int, work: Path) -> None:
    west, south, east, north = open_imagery(imagery).footprint.bounds
    db = work / name
    ingest(
        str(db),
        f"{west},{south},{east},{north}",
        [str(imagery)],
        str(buildings),
        settings=IngestSettings(res=res, min_valid=0.9),
    )
    store = Store.open(db)
    cells = np.array(store.table("cells").to_arrow()["h3"].to_pylist())
    share = coverage_share(cells, gpd.read_file(buildings))
    labels = work / f"{name}.csv"
    pd.DataFrame({"h3": [f"{c:x}" for c in cells], "label": np.where(share >= 0.25, "built", "open")}).to_csv(
        labels, index=False
    )
    built = (share >= 0.25).mean()
    print(f"\n{name}: {len(cells)} res-{res} cells, {built:.0%} built; linear head, spatial split")
    print(f"{'modality':<8} {'accuracy':>8} {'macro-F1':>8} {'baseline':>8} {'train':>5} {'test':>5}")
    for modality in ("image", "osm", "fused", "concat"):
        m = train_from_store(store, labels, "label", modality=modality, split="spatial").metrics
        print(
            f"{modality:<8} {m['accuracy']:8.3f} {m['macro_f1']:8.3f} "
            f"{m['majority_baseline']['macro_f1']:8.3f} {m['train']:5d} {m['test']:5d}"
        )
        bench_record("heads_quality", f"{name}:{modality}", macro_f1=round(m["macro_f1"], 4))


def ufz_segmentation(folder: Path) -> None:
    """Patch-level head on the default model's image tokens; labels = majority class of each 16 x 16 block."""
    model = GeoLink.default()
    names = sorted(p.stem for p in (folder / "img").glob("*.png"))
    tokens, targets, tiles = [], [], []
    for i, name in enumerate(names):
        pixels = torch.from_numpy(
            np.asarray(Image.open(folder / "img" / f"{name}.png").convert("RGB"))
        ).permute(2, 0, 1)
        image = ((pixels.float() / 255 - IMAGENET_MEAN) / IMAGENET_STD)[None]
        tokens.append(model.encode(image).image_tokens[0].numpy())
        label = np.asarray(Image.open(folder / "label" / f"{name}.png")).astype(np.int64)
        blocks = label.reshape(14, 16, 14, 16).transpose(0, 2, 1, 3).reshape(196, 256)
        targets.append(np.array([np.bincount(b, minlength=256)[1:10].argmax() for b in blocks]))
        tiles.append(np.full(196, i))
    x, y, tile = np.concatenate(tokens), np.concatenate(targets), np.concatenate(tiles)
    classes = sorted(set(y.tolist()))
    y_index = np.searchsorted(classes, y)
    names_of = [
        "water",
        "green",
        "farmland",
        "undeveloped",
        "residential",
        "commercial",
        "institution",
        "industrial",
        "transport",
    ]
    test = tile >= 4  # the last two tiles (by name) are held out
    head = train_head(x[~test], y_index[~test], [names_of[c] for c in classes])
    predicted, _ = head.predict(x[test])
    m = classification_metrics(y_index[test], predicted, [names_of[c] for c in classes])
    print(
        f"\nUFZ smoke test (6 tiles, 4 train / 2 test, 196 patches each, image tokens of the default model): "
        f"patch accuracy {m['accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f}, mIoU {m['miou']:.3f}; "
        f"majority baseline accuracy {m['majority_baseline']['accuracy']:.3f}, "
        f"macro-F1 {m['majority_baseline']['macro_f1']:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=Path, required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        presence(
            "kampala", args.shared / "kampala_oam", args.shared / "kampala_oam" / "labels.geojson", 13, work
        )
        presence(
            "atlanta",
            args.shared / "atlanta_spacenet" / "sample_geotiff.tif",
            args.shared / "atlanta_spacenet" / "geotiff_labels.geojson",
            12,
            work,
        )
    ufz_segmentation(args.shared / "geolink_example" / "ufz_example")


if __name__ == "__main__":
    main()
