"""Library messages name keyword arguments; the command line shows them as the command's flags."""

from __future__ import annotations

from click.testing import CliRunner

from geolink_store.cli import main
from geolink_store.cli.group import _as_flags
from geolink_store.cli.heads import train
from geolink_store.cli.query import search


def test_keywords_become_the_commands_flags() -> None:
    assert (
        _as_flags("give either within= or parent=, not both", search)
        == "give either --within or --parent, not both"
    )
    assert (
        _as_flags("one query: cells=, lonlat= or like_file=", search)
        == "one query: --cell, --lonlat or --like-file"
    )
    assert _as_flags("pass model_id=ID or modality=image", train) == "pass --model ID or --modality image"
    assert _as_flags("lower block_levels= (no flag)", train) == "lower block_levels= (no flag)"


def test_a_library_error_reads_in_flags_on_the_command_line(tmp_path) -> None:
    result = CliRunner().invoke(main, ["search", "--db", str(tmp_path / "missing"), "--lonlat", "1,2"])
    assert result.exit_code == 1
    assert (
        result.output.startswith("error: ") and "--db" in result.output and "Traceback" not in result.output
    )
