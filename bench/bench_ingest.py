"""End-to-end ingest throughput (cells/s) of the bundled Kampala sample with the default model.

Run: ./venv-run python bench/bench_ingest.py
Baseline in the same run: the model's encode alone on the same number of chips (the floor of any ingest), so
the ratio is the cost of reading tiles, building graphs and writing the store. The store's write path alone
(no model) is measured by bench/bench_search.py (upsert rows/s).
"""

from __future__ import annotations

import tempfile
import time

import torch

from geolink_store.pipeline import IngestSettings, ingest
from geolink_store.sample import kampala_sample
from geolink_store.testing import bench_record
from model import GeoLink


def main() -> None:
    sample = kampala_sample()
    model = GeoLink.default()
    with tempfile.TemporaryDirectory() as tmp:
        ingest(
            f"{tmp}/warm",
            sample.region,
            [str(sample.imagery)],
            str(sample.osm),
            model=model,
            settings=IngestSettings(res=sample.res, fine_res=sample.fine_res),
        )  # warm the tag cache and imports
        start = time.perf_counter()
        report = ingest(
            f"{tmp}/db",
            sample.region,
            [str(sample.imagery)],
            str(sample.osm),
            model=model,
            settings=IngestSettings(res=sample.res, fine_res=sample.fine_res),
        )
        seconds = time.perf_counter() - start
    images = torch.randn(report.cells_encoded, 3, 224, 224)
    start = time.perf_counter()
    for i in range(0, len(images), 16):
        model.encode(images[i : i + 16])
    encode_only = time.perf_counter() - start
    print(
        f"ingest: {report.cells_encoded} cells + {report.patches_written} patch rows in {seconds:.2f} s = "
        f"{report.cells_encoded / seconds:.1f} cells/s; "
        f"encode alone {report.cells_encoded / encode_only:.1f} "
        f"cells/s (ingest takes {seconds / encode_only:.1f}x the encode time)"
    )
    bench_record(
        "ingest",
        "bundled sample",
        cells_per_s=round(report.cells_encoded / seconds, 2),
        encode_cells_per_s=round(report.cells_encoded / encode_only, 2),
    )


if __name__ == "__main__":
    main()
