"""Start-up time of the command line: ``geolink --help``, every subcommand's ``--help``, and real queries.

Baselines, same run: a bare ``python -c "import click, numpy"`` for the ``--help`` cases (target: each within
3x) and a bare ``python -c "import duckdb; duckdb.sql('SELECT 1')"`` for the queries on a small synthetic
store (targets: ``geolink sql --db STORE "SELECT 1"`` within 4x, ``geolink search`` within 6x). Each command
runs in a fresh interpreter; the cases take turns, one run each per round, and each figure is the median of
``--repeats`` rounds, so that a busy machine slows all of them alike. ``geolink search`` reads the store
through pylance, so a bare ``import lance`` plus opening the table is measured too: the floor of any search.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from geolink_store.cli.main import COMMANDS
from geolink_store.grid import hex_id
from geolink_store.testing import bench_record, synthetic_store

GEOLINK = str(Path(sys.executable).with_name("geolink"))
HELP_BASELINE = "python -c 'import click, numpy'"
QUERY_BASELINE = "python -c \"import duckdb; duckdb.sql('SELECT 1')\""
TARGETS = {"geolink sql SELECT 1": 4.0, "geolink search --cell": 6.0}
LANCE_FLOOR = "python: import lance, open cells (floor)"


def medians(cases: dict[str, list[str]], repeats: int) -> dict[str, float]:
    """Median wall time of each command, the cases taking turns round by round."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, argv in cases.items():
            began = time.perf_counter()
            subprocess.run(argv, check=True, capture_output=True)
            times[name].append(time.perf_counter() - began)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "db")
        _, rows = synthetic_store(db, n=2000)
        cell = hex_id(rows["h3"][10].as_py())
        helps = {
            HELP_BASELINE: [sys.executable, "-c", "import click, numpy"],
            "geolink --help": [GEOLINK, "--help"],
        }
        helps |= {f"geolink {name} --help": [GEOLINK, name, "--help"] for name in sorted(COMMANDS)}
        helps["geolink heads train --help"] = [GEOLINK, "heads", "train", "--help"]
        queries = {
            QUERY_BASELINE: [sys.executable, "-c", "import duckdb; duckdb.sql('SELECT 1')"],
            "geolink sql SELECT 1": [GEOLINK, "sql", "--db", db, "SELECT 1"],
            "geolink sql count(*) FROM models": [GEOLINK, "sql", "--db", db, "SELECT count(*) FROM models"],
            "geolink sql h3_to_string": [
                GEOLINK,
                "sql",
                "--db",
                db,
                "SELECT h3_to_string(617733123060924415)",
            ],
            "geolink search --cell": [GEOLINK, "search", "--db", db, "--cell", cell, "--k", "10"],
            LANCE_FLOOR: [sys.executable, "-c", f"import lance; lance.dataset({db!r} + '/cells.lance')"],
        }
        for group, baseline in ((helps, HELP_BASELINE), (queries, QUERY_BASELINE)):
            figures = medians(group, args.repeats)
            base = figures[baseline]
            print(f"baseline {baseline}: {base * 1000:.0f} ms (median of {args.repeats})")
            print(f"{'command':<36} {'ms':>6} {'x baseline':>10} {'target':>7}")
            bench_record("startup", f"baseline {baseline}", seconds=round(base, 4))
            for name, seconds in figures.items():
                if name == baseline:
                    continue
                target = TARGETS.get(name, 3.0 if group is helps else None)
                ratio = seconds / base
                print(f"{name:<36} {seconds * 1000:6.0f} {ratio:10.2f} {target or '':>7}")
                extra = {"target_ratio": target} if target else {}
                bench_record("startup", name, seconds=round(seconds, 4), ratio=round(ratio, 3), **extra)


if __name__ == "__main__":
    main()
