"""No command leaves files in the system temp folder (torch_geometric's rendered GATConv templates used to).

Each command runs as a real process with ``TMPDIR`` pointing at a fresh folder, which must be as empty
afterwards as before. The one entry allowed is torch's own compile cache folder (``torchinductor_<user>``,
made by ``import torch._dynamo`` for every torch program and shared by them all), and only while empty.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from geolink_store.sample import kampala_sample

GEOLINK = str(Path(sys.executable).with_name("geolink"))
SAMPLE = kampala_sample()

pytestmark = pytest.mark.slow  # four commands end to end: about 2 minutes on an idle 2-core machine


def _leftovers(folder: Path) -> list[str]:
    """What is in ``folder``, torch's empty compile cache folder aside."""
    return sorted(
        entry.name
        for entry in folder.iterdir()
        if not (entry.name.startswith("torchinductor_") and entry.is_dir() and not any(entry.iterdir()))
    )


def _run(temp: Path, *args: object) -> None:
    done = subprocess.run(
        [GEOLINK, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=os.environ | {"TMPDIR": str(temp)},
    )
    assert done.returncode == 0, done.stderr
    assert _leftovers(temp) == [], f"geolink {args[0]} left {_leftovers(temp)} in the temp folder"


def test_demo_ingest_and_pretrain_leave_no_temp_files(tmp_path: Path) -> None:
    temp = tmp_path / "system-temp"
    temp.mkdir()
    _run(temp, "demo", "--out", tmp_path / "demo")
    db = tmp_path / "demo" / "store"
    assert db.is_dir(), sorted(p.name for p in (tmp_path / "demo").iterdir())
    _run(temp, "sql", "--db", db, "SELECT count(*) AS n FROM cells")
    shards = tmp_path / "shards"
    prepare = ["--prepare", "--region", SAMPLE.region, "--imagery", SAMPLE.imagery, "--osm", SAMPLE.osm]
    _run(temp, "pretrain", "--data", shards, *prepare, "--res", SAMPLE.res)
    _run(temp, "pretrain", "--data", shards, "--out", tmp_path / "run", "--steps", 1, "--batch-size", 4)
