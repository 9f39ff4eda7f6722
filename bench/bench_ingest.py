"""End-to-end ingest throughput (cells/s) of the bundled Kampala sample, per model, in one run.

Run: ./venv-run python bench/bench_ingest.py [--compare OLD_CKPT ...]
Each model (the bundled default, then every ``--compare`` checkpoint, e.g. the previous default) ingests the
sample twice (the first warms caches and imports); the baseline beside each is that model's encode alone on
the same number of chips (the floor of any ingest), so ``ingest / encode`` is the cost of reading tiles,
building graphs and writing the store. The store's write path alone (no model) is bench/bench_search.py.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from geolink_store.pipeline import IngestSettings, ingest
from geolink_store.sample import kampala_sample
from geolink_store.testing import bench_record
from model import GeoLink


def _ingest_rate(model: GeoLink, tmp: str) -> tuple[float, float]:
    """Cells/s of a full ingest of the sample and of the model's encode alone on as many chips."""
    sample = kampala_sample()
    settings = IngestSettings(res=sample.res, fine_res=sample.fine_res)
    for name in ("warm", "db"):
        start = time.perf_counter()
        report = ingest(
            f"{tmp}/{name}",
            sample.region,
            [str(sample.imagery)],
            str(sample.osm),
            model=model,
            settings=settings,
        )
        seconds = time.perf_counter() - start
    images = torch.randn(report.cells_encoded, 3, 224, 224)
    start = time.perf_counter()
    for i in range(0, len(images), 16):
        model.encode(images[i : i + 16])
    encode_only = time.perf_counter() - start
    return report.cells_encoded / seconds, report.cells_encoded / encode_only


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--compare", action="append", default=[], help="another checkpoint to measure")
    args = parser.parse_args()
    models = {"default": GeoLink.default}
    models |= {path: lambda path=path: GeoLink.from_checkpoint(path) for path in args.compare}
    rates = {}
    for name, load in models.items():
        model = load()
        with tempfile.TemporaryDirectory() as tmp:
            rates[name] = _ingest_rate(model, tmp)
        cells, encode = rates[name]
        print(
            f"{name} ({model.config.architecture}): ingest {cells:.1f} cells/s, encode alone {encode:.1f} "
            f"cells/s (ingest takes {encode / cells:.1f}x the encode time)"
        )
        bench_record(
            "ingest",
            f"bundled sample, {name}",
            cells_per_s=round(cells, 2),
            encode_cells_per_s=round(encode, 2),
            vs_default=round(cells / rates["default"][0], 3),
        )


if __name__ == "__main__":
    main()
