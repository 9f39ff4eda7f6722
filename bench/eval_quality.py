"""Quality benchmark of a model's stored vectors, every figure beside same-run baselines.

Candidates (all in this run): the bundled default (``GeoLink.default()``), any checkpoints given with
``--model`` (e.g. the previous default), the same network as the default at random initialisation (no
ImageNet weights either), the EfficientNet-Lite2 preset with its ImageNet weights and no GeoLink pretraining
(its OSM and fusion parts untrained), and a colour histogram (image tasks only).

1. AID scene classification (``--aid``: the ``AID/`` folder of the public repository ``zlima/testtensor``,
   30 class folders of 150 x 150 JPEGs; research use only: evaluation, never training, never bundled). Fixed
   stratified split: per class the first ``--per-class`` files in sorted order, alternating train / test.
   Linear probe and kNN (the project's own heads) on the pooled image vector.
2. Building presence of real cells (image vector, spatial split): Kampala res 13 (OpenAerialMap + OSM
   buildings) and Atlanta res 12 (WorldView-2 + buildings), from ``--shared``.
3. OSM vectors on the same cells and the bundled Kampala sample: mean pairwise cosine, share of distinct
   vectors, effective rank, and an osm-only building-presence head (labels come from OSM, so it must be high);
   fused vs image vs osm heads; the fused gap between cells with and without OSM (within-group minus
   across-group cosine).

Run: ``python bench/eval_quality.py --shared ../shared/data --aid /path/to/AID [--model ckpt.safetensors]``.
Prints tables and one JSON record per figure (``geolink_store.testing.bench_record``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import torch
from PIL import Image

from geolink_store.chips import read_chips
from geolink_store.constants import IMAGENET_MEAN, IMAGENET_STD
from geolink_store.graphs import GraphBuilder
from geolink_store.grid import cell_lonlat, disk, region_cells
from geolink_store.heads import spatial_split, train_head
from geolink_store.heads.labels import coverage_share
from geolink_store.heads.train import classification_metrics
from geolink_store.sample import kampala_sample
from geolink_store.sources import OSMIndex, open_imagery, read_osm
from geolink_store.testing import bench_record
from model import GeoLink, preset

BATCH = 32


@dataclass
class Region:
    """Real cells with imagery, OSM graphs (built per model) and building-presence labels."""

    name: str
    cells: np.ndarray
    images: torch.Tensor  # (N, 3, 224, 224) ImageNet-normalised
    entities: list[gpd.GeoDataFrame]  # OSM entities of each chip, in the chip CRS
    specs: list  # ChipSpec of each chip
    labels: np.ndarray  # 1 where buildings cover >= 30 % of the cell


def load_region(name: str, imagery: Path, osm: Path, res: int) -> Region:
    """Every cell of the imagery's footprint at ``res`` with >= 90 % valid pixels."""
    source = open_imagery(imagery)
    cells = source.covered_cells(region_cells(",".join(map(str, source.footprint.bounds)), res))
    crs = source.chip_crs(*(float(v[0]) for v in cell_lonlat(cells[:1])))
    chips = list(read_chips(source, cells, crs, min_valid=0.9))
    cells = np.array([chip.cell for chip in chips])
    index = OSMIndex(read_osm(osm, tuple(np.asarray(source.footprint.buffer(0.01).bounds))), crs)
    share = coverage_share(cells, gpd.read_file(osm))
    return Region(
        name,
        cells,
        torch.from_numpy(np.stack([chip.image for chip in chips])),
        [index.query(chip.spec.bounds) for chip in chips],
        [chip.spec for chip in chips],
        (share >= 0.3).astype(np.int64),
    )


def aid_split(root: Path, per_class: int) -> tuple[list[Path], np.ndarray, np.ndarray, list[str]]:
    """Files, labels and train mask of the fixed stratified AID split."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    files, labels, train = [], [], []
    for label, name in enumerate(classes):
        chosen = sorted((root / name).glob("*.jpg"))[:per_class]
        files += chosen
        labels += [label] * len(chosen)
        train += [i % 2 == 0 for i in range(len(chosen))]
    return files, np.array(labels), np.array(train), classes


def aid_images(files: list[Path]) -> torch.Tensor:
    """AID JPEGs resized to 224 x 224 (bilinear), ImageNet-normalised."""
    mean, std = torch.from_numpy(IMAGENET_MEAN)[:, None, None], torch.from_numpy(IMAGENET_STD)[:, None, None]
    out = torch.empty(len(files), 3, 224, 224)
    for i, path in enumerate(files):
        pixels = np.asarray(Image.open(path).convert("RGB").resize((224, 224), Image.BILINEAR))
        out[i] = (torch.from_numpy(pixels).permute(2, 0, 1).float() / 255 - mean) / std
    return out


def colour_histogram(images: torch.Tensor) -> np.ndarray:
    """Per-channel 16-bin histograms plus mean and std of the un-normalised RGB (54-d)."""
    mean, std = torch.from_numpy(IMAGENET_MEAN)[:, None, None], torch.from_numpy(IMAGENET_STD)[:, None, None]
    rgb = (images * std + mean).clamp(0, 1).flatten(2)  # (N, 3, H*W)
    bins = torch.stack([torch.stack([torch.histc(c, 16, 0, 1) for c in image]) for image in rgb])
    bins = bins.flatten(1) / rgb.size(-1)
    return torch.cat([bins, rgb.mean(-1), rgb.std(-1)], dim=1).numpy()


def image_vectors(model: GeoLink, images: torch.Tensor) -> np.ndarray:
    """``encode(images).image_global`` in batches."""
    return torch.cat(
        [model.encode(images[i : i + BATCH]).image_global for i in range(0, len(images), BATCH)]
    ).numpy()


def osm_and_fused(model: GeoLink, region: Region) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``osm`` vectors (zeros without OSM), ``fused`` cell vectors and has-OSM flags of the cells."""
    builder = GraphBuilder(geometry=model.config.node_geometry)
    graphs = builder.build_many(list(zip(region.entities, region.specs, strict=True)))
    osm, fused, has = [], [], []
    for i in range(0, len(graphs), BATCH):
        out = model.encode(region.images[i : i + BATCH], graphs[i : i + BATCH])
        osm.append(out.osm_region)
        fused.append(out.fused.mean(dim=1))
        has.append(out.has_osm)
    return torch.cat(osm).numpy(), torch.cat(fused).numpy(), torch.cat(has).numpy()


def head_scores(vectors: np.ndarray, labels: np.ndarray, train: np.ndarray, kind: str = "linear") -> float:
    """Test macro-F1 (or accuracy for many classes) of a head trained on the train rows."""
    classes = [str(c) for c in range(int(labels.max()) + 1)]
    head = train_head(vectors[train], labels[train], classes, kind=kind)
    predicted, _ = head.predict(vectors[~train])
    metrics = classification_metrics(labels[~train], predicted, classes)
    return metrics["accuracy"] if len(classes) > 2 else metrics["macro_f1"]


def spatial_train_mask(cells: np.ndarray) -> np.ndarray:
    split = spatial_split(cells, test_fraction=0.3, block_levels=2, seed=0)
    mask = np.zeros(len(cells), dtype=bool)
    mask[split.train] = True
    return mask


def diversity(vectors: np.ndarray) -> dict[str, float]:
    """Mean pairwise cosine, share of distinct vectors (rounded to 1e-4) and effective rank of the rows."""
    if len(vectors) < 2:
        return {"mean_cosine": float("nan"), "distinct": float("nan"), "effective_rank": float("nan")}
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    cosine = unit @ unit.T
    upper = cosine[np.triu_indices(len(vectors), 1)]
    singular = np.linalg.svd(vectors - vectors.mean(0), compute_uv=False)
    p = singular / max(singular.sum(), 1e-12)
    rank = float(np.exp(-(p[p > 0] * np.log(p[p > 0])).sum()))
    distinct = len(np.unique(np.round(vectors, 4), axis=0)) / len(vectors)
    return {"mean_cosine": float(upper.mean()), "distinct": distinct, "effective_rank": rank}


def presence_split(vectors: np.ndarray, has: np.ndarray, cells: np.ndarray) -> dict[str, float]:
    """How much OSM presence alone splits the vectors.

    ``osm_gap``: mean cosine within the has-OSM and the no-OSM group minus the mean across them (0: presence
    does not split the space). ``neighbour_cosine_across``: mean cosine of adjacent cells (H3 neighbours) of
    which one has OSM and the other none, beside ``neighbour_cosine_within`` of adjacent cells alike.
    """
    if has.all() or not has.any():
        return {}
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    cosine = unit @ unit.T
    within = (cosine[np.ix_(has, has)].mean() + cosine[np.ix_(~has, ~has)].mean()) / 2
    position = {int(cell): i for i, cell in enumerate(cells)}
    pairs = [
        (i, position[int(other)])
        for i, cell in enumerate(cells)
        for other in disk(int(cell), 1)
        if int(other) in position and position[int(other)] > i
    ]
    alike = [cosine[i, j] for i, j in pairs if has[i] == has[j]]
    across = [cosine[i, j] for i, j in pairs if has[i] != has[j]]
    return {
        "osm_gap": float(within - cosine[np.ix_(has, ~has)].mean()),
        "neighbour_cosine_within": float(np.mean(alike)) if alike else float("nan"),
        "neighbour_cosine_across": float(np.mean(across)) if across else float("nan"),
    }


def candidates(extra: list[Path]) -> dict[str, Callable[[], GeoLink]]:
    """Name -> a builder of each model compared (built lazily: each is a few hundred MB of activations)."""

    def seeded(name: str, imagenet: bool) -> Callable[[], GeoLink]:
        def build() -> GeoLink:
            torch.manual_seed(0)
            return GeoLink(preset(name), pretrained=imagenet).eval()

        return build

    found = {
        "default": GeoLink.default,
        "random_init_default": seeded("default", imagenet=False),
        "imagenet_lite2": seeded("efficientnet_lite2", imagenet=True),
    }
    for path in extra:
        found[path.stem] = lambda path=path: GeoLink.from_checkpoint(path)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shared", type=Path, required=True, help="the shared real-data folder")
    parser.add_argument("--aid", type=Path, help="AID/ folder of zlima/testtensor (skipped without it)")
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--model", type=Path, action="append", default=[], help="checkpoint to compare too")
    args = parser.parse_args()
    torch.set_num_threads(max(torch.get_num_threads(), 1))

    sample = kampala_sample()
    regions = [
        load_region(
            "kampala_r13", args.shared / "kampala_oam", args.shared / "kampala_oam" / "labels.geojson", 13
        ),
        load_region(
            "atlanta_r12",
            args.shared / "atlanta_spacenet" / "sample_geotiff.tif",
            args.shared / "atlanta_spacenet" / "geotiff_labels.geojson",
            12,
        ),
        load_region("sample_kampala_r12", sample.imagery, sample.osm, sample.res),
    ]
    aid = None
    if args.aid is not None:
        files, labels, train, classes = aid_split(args.aid, args.per_class)
        aid = (aid_images(files), labels, train)
        print(
            f"AID: {len(files)} images, {len(classes)} classes, "
            f"{int(train.sum())} train / {int((~train).sum())} test"
        )

    rows: dict[str, dict[str, float]] = {}
    if aid is not None:
        hist = colour_histogram(aid[0])
        rows["colour_histogram"] = {
            "aid_linear": head_scores(hist, aid[1], aid[2]),
            "aid_knn": head_scores(hist, aid[1], aid[2], "knn"),
        }
    for region in regions[:2]:
        hist = colour_histogram(region.images)
        rows.setdefault("colour_histogram", {})[f"{region.name}_building_image"] = head_scores(
            hist, region.labels, spatial_train_mask(region.cells)
        )

    for name, build in candidates(args.model).items():
        model = build()
        row = rows.setdefault(name, {})
        if aid is not None:
            vectors = image_vectors(model, aid[0])
            row["aid_linear"] = head_scores(vectors, aid[1], aid[2])
            row["aid_knn"] = head_scores(vectors, aid[1], aid[2], "knn")
        for region in regions:
            train = spatial_train_mask(region.cells)
            image = image_vectors(model, region.images)
            osm, fused, has = osm_and_fused(model, region)
            stats = diversity(osm[has])
            row |= {f"{region.name}_osm_{k}": v for k, v in stats.items()}
            if region.name.startswith("sample"):
                continue
            row[f"{region.name}_building_image"] = head_scores(image, region.labels, train)
            row[f"{region.name}_building_osm"] = head_scores(osm, region.labels, train)
            row[f"{region.name}_building_fused"] = head_scores(fused, region.labels, train)
            for modality, vectors in (("fused", fused), ("image", image)):
                row |= {
                    f"{region.name}_{modality}_{k}": v
                    for k, v in presence_split(vectors, has, region.cells).items()
                }
        del model

    metrics = sorted({k for row in rows.values() for k in row})
    print(f"{'metric':<40}" + "".join(f"{name[:21]:>22}" for name in rows))
    for metric in metrics:
        print(f"{metric:<40}" + "".join(f"{row.get(metric, float('nan')):>22.3f}" for row in rows.values()))
    for name, row in rows.items():
        for metric, value in row.items():
            bench_record("quality", f"{name}:{metric}", value=round(float(value), 4))


if __name__ == "__main__":
    main()
