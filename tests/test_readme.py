"""The README's Python API example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_api_example() -> str:
    section = README.read_text().split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_python_api_example_runs(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(python_api_example(), str(README), "exec"), scope)
    assert scope["report"].cells_encoded > 0
    assert len(scope["hits"]) == 5 and scope["hits"]["distance"].is_monotonic_increasing
    assert scope["per_parent"]["cells"].sum() == scope["report"].cells_encoded
    assert 0.0 <= scope["head"].metrics["macro_f1"] <= 1.0
