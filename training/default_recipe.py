"""How the bundled default model is made (its figures go to its model card).

Run: ``./venv-run python -m training.default_recipe --shared ../shared/data --work /tmp/default-run``

1. Pairs from every real image + OSM source in the shared data (Kampala tiles + OSM buildings at H3 res 12
   and 13, Atlanta panchromatic + buildings at res 11 and 12, the 5 official example chips) and real imagery
   without OSM (the two NAIP scenes at res 9, the 6 UFZ tiles) for the masked-image loss; graphs carry the
   OSM geometry node features.
2. One GeoLink pretraining run of the ``efficientnet_lite2`` preset from its ImageNet weights. The backbone
   keeps what ImageNet taught it: it trains at a tenth of the learning rate of the new parts, its BatchNorm
   statistics stay frozen (CPU batches are small), and the warm-up is short.
3. The result becomes ``model/weights/geolink_default.safetensors`` (float16); ``report.json`` in ``--work``
   holds the sample counts, the loss history and the time. The evidence of quality (against random
   initialisation, the ImageNet initialisation, a colour histogram and the previous default) is
   ``bench/eval_quality.py``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from geolink_store.graphs.builder import GraphBuilder
from geolink_store.sources.mosaic import open_imagery
from model import GeoLink, empty_graph, preset
from model.checkpoint import DEFAULT_WEIGHTS
from training.loop import PretrainConfig, pretrain
from training.prepare import RegionPairs, example_samples, region_samples
from training.shards import Sample, write_shards


def _footprint_region(imagery: Path) -> str:
    """The lon/lat bbox of an imagery source (raster or tile folder) as a ``W,S,E,N`` region."""
    return ",".join(map(str, open_imagery(imagery).footprint.bounds))


def _build_pairs(shared: Path, out: Path) -> dict[str, int]:
    """Write all pretraining pairs as shards; return the sample count per source."""
    builder = GraphBuilder(geometry=True)
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


def main() -> None:
    """Run the recipe (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shared", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=240)
    parser.add_argument("--batch-size", type=int, default=24)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--backbone-lr-scale", type=float, default=0.1)
    parser.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS, help="where the float16 model goes")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    shards = args.work / "shards"
    counts = _build_pairs(args.shared, shards)
    print(json.dumps(counts), flush=True)
    run = PretrainConfig(
        data=str(shards),
        out=str(args.work / "run"),
        model=preset("efficientnet_lite2"),
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        backbone_lr_scale=args.backbone_lr_scale,
        freeze_backbone_norm=True,
        warmup_steps=20,
        log_every=10,
        checkpoint_every=40,
        num_workers=1,
    )
    final = pretrain(run)
    history = [json.loads(line) for line in (args.work / "run" / "metrics.jsonl").read_text().splitlines()]
    report = {
        "counts": counts,
        "run": json.loads(run.to_json()),
        "first": history[0],
        "final": final,
        "history": history,
        "hours": (time.time() - started) / 3600,
        "machine": f"{platform.machine()} CPU, {torch.get_num_threads()} threads, torch {torch.__version__}",
    }
    (args.work / "report.json").write_text(json.dumps(report, indent=1))
    GeoLink.from_checkpoint(args.work / "run" / "model.safetensors").save(args.out, dtype=torch.float16)


if __name__ == "__main__":
    main()
