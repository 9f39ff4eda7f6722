"""How the bundled default model is made, and the evidence that pretraining helps (written to its model card).

Run: ``./venv-run python -m training.default_recipe --shared ../shared/data --work /tmp/default-run``

1. Pairs from every real image + OSM source in the shared data (Kampala tiles + OSM buildings at H3 res 12
   and 13, Atlanta panchromatic + buildings at res 11 and 12, the 5 official example chips) and real imagery
   without OSM (the two NAIP scenes at res 9, the 6 UFZ tiles) for the masked-image loss.
2. Three pretraining runs of the ``default`` preset: masked-image only (MAE), full GeoLink, and full GeoLink
   without the shared spatial positions in the fusion block.
3. A linear probe of each image encoder (and of the untrained initialisation) on held-out real labels:
   building presence of Kampala res-13 cells (OSM buildings), split spatially by res-11 blocks.
4. The full GeoLink run becomes ``model/weights/geolink_default.safetensors`` (float16); its card is
   ``MODEL_CARD.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import replace
from pathlib import Path

import geopandas as gpd
import numpy as np
import torch
from PIL import Image

from geolink_store.chips import read_chips
from geolink_store.graphs.builder import GraphBuilder
from geolink_store.grid import cell_lonlat, region_cells
from geolink_store.heads.labels import coverage_share
from geolink_store.heads.train import classification_metrics, spatial_split, train_head
from geolink_store.sources.mosaic import open_imagery
from model import GeoLink, GeoLinkConfig, empty_graph, preset
from model.checkpoint import DEFAULT_WEIGHTS
from training.loop import PretrainConfig, pretrain
from training.prepare import RegionPairs, example_samples, region_samples
from training.shards import Sample, write_shards


def _footprint_region(imagery: Path) -> str:
    """The lon/lat bbox of an imagery source (raster or tile folder) as a ``W,S,E,N`` region."""
    return ",".join(map(str, open_imagery(imagery).footprint.bounds))


def _build_pairs(shared: Path, out: Path) -> dict[str, int]:
    """Write all pretraining pairs as shards; return the sample count per source."""
    builder = GraphBuilder()
    kampala, atlanta = shared / "kampala_oam", shared / "atlanta_spacenet"
    sources = (
        {
            f"kampala_res{res}": RegionPairs(
                _footprint_region(kampala), (str(kampala),), str(kampala / "labels.geojson"), res
            )
            for res in (12, 13)
        }
        | {
            f"atlanta_res{res}": RegionPairs(
                _footprint_region(atlanta / "sample_geotiff.tif"),
                (str(atlanta / "sample_geotiff.tif"),),
                str(atlanta / "geotiff_labels.geojson"),
                res,
            )
            for res in (11, 12)
        }
        | {
            f"naip_{scene.stem[-8:-4]}": RegionPairs(_footprint_region(scene), (str(scene),), None, 9)
            for scene in sorted((shared / "naip_north_dakota").glob("*.tif"))
        }
    )
    samples, counts = [], {}
    for name, spec in sources.items():
        found = list(region_samples(spec, builder))
        counts[name] = len(found)
        samples += found
    examples = sorted((shared / "geolink_example" / "osm2graph_example").iterdir())
    samples += list(example_samples(examples, builder))
    counts["official_examples"] = len(examples)
    ufz = sorted((shared / "geolink_example" / "ufz_example" / "img").glob("*.png"))
    for path in ufz:  # their official graphs carry CLIP features: image-only here
        pixels = np.asarray(Image.open(path).convert("RGB"))
        samples.append(
            Sample(
                torch.from_numpy(pixels).permute(2, 0, 1).contiguous(),
                empty_graph(builder.text_dim, geometry=builder.geometry),
            )
        )
    counts["ufz_image_only"] = len(ufz)
    write_shards(samples, out, samples_per_shard=256)
    return counts


def _probe_data(shared: Path) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """Kampala res-13 cells: H3 ids, building presence (>= 30 % of the cell under OSM buildings), chips."""
    kampala = shared / "kampala_oam"
    source = open_imagery(kampala)
    cells = source.covered_cells(region_cells(_footprint_region(kampala), 13))
    crs = source.chip_crs(*(float(v[0]) for v in cell_lonlat(cells[:1])))
    chips = list(read_chips(source, cells, crs, min_valid=0.9))
    cells = np.array([c.cell for c in chips])
    share = coverage_share(cells, gpd.read_file(kampala / "labels.geojson"))
    images = torch.from_numpy(np.stack([c.image for c in chips]))
    return cells, (share >= 0.3).astype(np.int64), images


def _linear_probe(model: GeoLink, cells: np.ndarray, labels: np.ndarray, images: torch.Tensor) -> dict:
    """Macro-F1 of a logistic-regression probe on the image encoder's pooled vector, spatial split."""
    vectors = torch.cat(
        [model.encode(images[i : i + 64]).image_global for i in range(0, len(images), 64)]
    ).numpy()
    split = spatial_split(cells, test_fraction=0.3, block_levels=2, seed=0)
    head = train_head(vectors[split.train], labels[split.train], ["no building", "building"])
    predicted, _ = head.predict(vectors[split.test])
    metrics = classification_metrics(labels[split.test], predicted, ["no building", "building"])
    return {k: metrics[k] for k in ("accuracy", "macro_f1", "n")} | {
        "baseline_macro_f1": metrics["majority_baseline"]["macro_f1"]
    }


def main() -> None:
    """Run the recipe (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shared", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    counts = _build_pairs(args.shared, args.work / "shards")
    print(json.dumps(counts), flush=True)
    config = preset("default")
    runs = {
        "mae_only": replace(config, loss_weights=(1.0, 0.0, 0.0)),
        "geolink": config,
        "geolink_no_shared_positions": replace(config, shared_positions=False),
    }
    results = {}
    for name, run_config in runs.items():
        run_started = time.time()
        final = pretrain(
            PretrainConfig(
                data=str(args.work / "shards"),
                out=str(args.work / name),
                model=run_config,
                steps=args.steps,
                batch_size=args.batch_size,
                warmup_steps=20,
                log_every=10,
                checkpoint_every=100,
                num_workers=1,
                lr=5e-4,
            )
        )
        history = [json.loads(line) for line in (args.work / name / "metrics.jsonl").read_text().splitlines()]
        results[name] = {"final": final, "first": history[0], "minutes": (time.time() - run_started) / 60}
        print(name, json.dumps(results[name]), flush=True)

    cells, labels, images = _probe_data(args.shared)
    probes = {"random_init": _linear_probe(_seeded(config), cells, labels, images)}
    for name in runs:
        probes[name] = _linear_probe(
            GeoLink.from_checkpoint(args.work / name / "model.safetensors"), cells, labels, images
        )
    print(json.dumps(probes), flush=True)
    report = {
        "counts": counts,
        "runs": results,
        "probes": probes,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "hours": (time.time() - started) / 3600,
        "machine": f"{platform.machine()} CPU, {torch.get_num_threads()} threads, torch {torch.__version__}",
    }
    (args.work / "report.json").write_text(json.dumps(report, indent=1))
    GeoLink.from_checkpoint(args.work / "geolink" / "model.safetensors").save(
        DEFAULT_WEIGHTS, dtype=torch.float16
    )


def _seeded(config: GeoLinkConfig) -> GeoLink:
    """An untrained model, initialised with seed 0 (the probe's random-initialisation baseline)."""
    torch.manual_seed(0)
    return GeoLink(config).eval()


if __name__ == "__main__":
    main()
