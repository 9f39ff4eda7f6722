"""Start-up time of the command line: ``geolink --help`` and every subcommand's ``--help``.

Baseline, same run: a bare ``python -c "import click, numpy"`` (the least a click command line over numpy
costs). Target: each within 3x of it. Each command runs in a fresh interpreter, median of ``--repeats``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from geolink_store.cli.main import COMMANDS
from geolink_store.testing import bench_record

GEOLINK = str(Path(sys.executable).with_name("geolink"))


def median_seconds(argv: list[str], repeats: int) -> float:
    """Median wall time of running ``argv`` to completion."""
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    baseline = median_seconds([sys.executable, "-c", "import click, numpy"], args.repeats)
    cases = {"geolink --help": [GEOLINK, "--help"]}
    cases |= {f"geolink {name} --help": [GEOLINK, name, "--help"] for name in sorted(COMMANDS)}
    cases["geolink heads train --help"] = [GEOLINK, "heads", "train", "--help"]
    print(f"baseline python -c 'import click, numpy': {baseline * 1000:.0f} ms (median of {args.repeats})")
    print(f"{'command':<32} {'ms':>6} {'x baseline':>10}")
    bench_record("startup", "baseline import click, numpy", seconds=round(baseline, 4))
    for name, argv in cases.items():
        seconds = median_seconds(argv, args.repeats)
        print(f"{name:<32} {seconds * 1000:6.0f} {seconds / baseline:10.2f}")
        bench_record("startup", name, seconds=round(seconds, 4), ratio=round(seconds / baseline, 3))


if __name__ == "__main__":
    main()
