"""``geolink ingest`` and ``geolink demo`` end to end on the bundled real sample, and their bad input."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from geolink_store.cli import main
from geolink_store.sample import kampala_sample

SAMPLE = kampala_sample()


def _ingest(db: Path, *extra: str):
    args = [
        "ingest",
        "--db",
        str(db),
        "--region",
        SAMPLE.region,
        "--imagery",
        str(SAMPLE.imagery),
        "--osm",
        str(SAMPLE.osm),
        "--res",
        str(SAMPLE.res),
        "--fine-res",
        str(SAMPLE.fine_res),
        *extra,
    ]
    return CliRunner().invoke(main, args)


def test_ingest_json_then_resume(tmp_path: Path) -> None:
    first = _ingest(tmp_path / "db", "--format", "json")
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert report["cells_encoded"] == 72 and report["patches_written"] > 300
    again = json.loads(_ingest(tmp_path / "db", "--format", "json").stdout)
    assert again["cells_encoded"] == 0 and again["cells_already_stored"] == 72


def test_ingest_bad_input_is_one_line(tmp_path: Path) -> None:
    cases = {
        "checkpoint not found": ("--model", str(tmp_path / "missing.pth")),
        "misses the imagery": ("--region", "10,10,10.01,10.01"),
    }
    for expected, extra in cases.items():
        result = _ingest(tmp_path / "db", *extra)
        assert result.exit_code == 1, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
        assert "Traceback" not in result.output
    corrupt = tmp_path / "corrupt.tif"
    corrupt.write_bytes(b"II*\x00" + b"\x00" * 100)
    result = CliRunner().invoke(
        main,
        [
            "ingest",
            "--db",
            str(tmp_path / "db"),
            "--region",
            SAMPLE.region,
            "--imagery",
            str(corrupt),
            "--osm",
            str(SAMPLE.osm),
        ],
    )
    assert result.exit_code == 1 and result.stderr.startswith("error: ") and "Traceback" not in result.output
    bad_res = _ingest(tmp_path / "db", "--res", "16")
    assert bad_res.exit_code == 2 and "16" in bad_res.stderr


def test_demo_writes_maps(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    assert "search: the 5 cells most like" in result.stdout and "SQL (DuckDB)" in result.stdout
    assert (tmp_path / "demo" / "search_map.html").stat().st_size > 5_000
    assert (tmp_path / "demo" / "similarity_map.png").stat().st_size > 50_000
