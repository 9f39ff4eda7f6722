"""Bulk encoding of the bundled sample region (Kampala aerial tiles + OSM buildings) into a LanceDB store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from h3.api import basic_int as h3

from geolink_store.errors import GeolinkError
from geolink_store.pipeline import IngestSettings, ingest, plan_ingest
from geolink_store.pipeline.engines.local import LocalEngine
from geolink_store.pipeline.prefetch import prefetched
from geolink_store.pipeline.writebehind import WriteBehind
from geolink_store.sample import kampala_sample
from geolink_store.store import Store
from model import GeoLink, GeoLinkConfig

SAMPLE = kampala_sample()
SETTINGS = IngestSettings(res=SAMPLE.res, fine_res=SAMPLE.fine_res, batch_size=8)


def _ingest(db: Path, **changes) -> object:
    settings = IngestSettings(**{**SETTINGS.__dict__, **changes})
    return ingest(str(db), SAMPLE.region, [str(SAMPLE.imagery)], str(SAMPLE.osm), settings=settings)


def _rows(db: Path, table: str) -> dict[int, np.ndarray]:
    data = Store.open(db).table(table).to_arrow()
    return dict(
        zip(data["h3"].to_pylist(), np.stack(data["fused"].to_numpy(zero_copy_only=False)), strict=True)
    )


@pytest.fixture(scope="module")
def clean_store(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("clean") / "db"
    report = _ingest(db)
    assert (
        report.cells_encoded
        == report.cells_in_region - report.cells_without_imagery - report.cells_too_sparse
    )
    return db


def test_ingest_writes_cells_patches_and_model(clean_store: Path) -> None:
    store = Store.open(clean_store)
    cells = store.table("cells").to_arrow()
    assert cells.num_rows > 50
    assert set(cells["res"].to_pylist()) == {SAMPLE.res}
    parents = cells[f"h3_r{SAMPLE.res - 1}"].to_pylist()
    assert parents == [h3.cell_to_parent(c, SAMPLE.res - 1) for c in cells["h3"].to_pylist()]
    with_osm = sum(n > 0 for n in cells["n_polygon"].to_pylist())
    assert with_osm > cells.num_rows // 2  # Kampala's sample is densely built
    assert cells["osm"].null_count == sum(n == 0 for n in cells["n_polygon"].to_pylist())
    patches = store.table("patches").to_arrow()
    assert all(
        h3.cell_to_parent(c, SAMPLE.res) == p
        for c, p in zip(patches["h3"].to_pylist(), patches["parent"].to_pylist(), strict=True)
    )
    assert patches.num_rows >= 5 * cells.num_rows  # most of the 7 children of each cell hold a patch centre
    assert [m["model_id"] for m in store.models()] == cells["model_id"].unique().to_pylist()
    assert all(store.table_info(name)["fragments"] == 1 for name in store.table_names())  # ingest optimized


def test_reingest_replaces_instead_of_duplicating(clean_store: Path, tmp_path: Path) -> None:
    db = tmp_path / "db"
    _ingest(db)
    report = _ingest(db, overwrite=True)
    assert report.cells_encoded > 0
    again, clean = _rows(db, "cells"), _rows(clean_store, "cells")
    assert again.keys() == clean.keys() and Store.open(db).table("cells").count_rows() == len(clean)
    resumed = _ingest(db)
    assert resumed.cells_encoded == 0 and resumed.cells_already_stored == len(clean)


WORKER = """
import sys
from geolink_store.pipeline import IngestSettings, ingest
from geolink_store.pipeline.engines.local import LocalEngine
from geolink_store.sample import kampala_sample
s = kampala_sample()
ingest(sys.argv[1], s.region, [str(s.imagery)], str(s.osm),
       settings=IngestSettings(res=s.res, fine_res=s.fine_res, batch_size=4),
       engine=LocalEngine(prefetch=int(sys.argv[2]), commit_cells=8))
"""


@pytest.mark.parametrize(("delay", "prefetch"), [(3.0, 0), (6.5, 0), (4.5, 2), (6.0, 2)])
def test_sigkill_then_resume_gives_exactly_the_clean_rows(
    clean_store: Path, tmp_path: Path, delay: float, prefetch: int
) -> None:
    """Killed mid-ingest, inline or with its read-ahead and write-behind threads, then run again."""
    db = tmp_path / "db"
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(db), str(prefetch)], stderr=subprocess.DEVNULL
    )
    time.sleep(delay)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    _ingest(db)
    for table in ("cells", "patches"):
        resumed, clean = _rows(db, table), _rows(clean_store, table)
        assert resumed.keys() == clean.keys()
        assert Store.open(db).table(table).count_rows() == len(clean)
        for cell, vector in clean.items():
            np.testing.assert_allclose(resumed[cell], vector, rtol=1e-4, atol=1e-5)


def test_model_with_other_widths_is_refused(clean_store: Path, tmp_path: Path) -> None:
    small = GeoLink(
        GeoLinkConfig(architecture="vit_small_patch16_224", timm_kwargs={"depth": 1}, osm_in_chans=384)
    )
    before = Store.open(clean_store).table("cells").count_rows()
    with pytest.raises(GeolinkError, match="image vectors are 1280-d but this model gives 384-d"):
        ingest(
            str(clean_store),
            SAMPLE.region,
            [str(SAMPLE.imagery)],
            str(SAMPLE.osm),
            model=small,
            settings=SETTINGS,
        )
    assert Store.open(clean_store).table("cells").count_rows() == before


def test_region_without_imagery(tmp_path: Path) -> None:
    with pytest.raises(GeolinkError, match="misses the imagery"):
        ingest(
            str(tmp_path / "db"),
            "10.0,10.0,10.01,10.01",
            [str(SAMPLE.imagery)],
            str(SAMPLE.osm),
            settings=SETTINGS,
        )
    assert not (tmp_path / "db").exists() or not any((tmp_path / "db").iterdir())


def test_cells_without_imagery_can_be_encoded_osm_only(tmp_path: Path) -> None:
    """A region larger than the imagery, osm_only: cells outside it that hold OSM get an osm vector alone."""
    west, south, east, north = SAMPLE.bbox
    region = f"{west - 0.0006},{south - 0.0006},{east + 0.0006},{north + 0.0006}"
    report = ingest(
        str(tmp_path / "db"),
        region,
        [str(SAMPLE.imagery)],
        str(SAMPLE.osm),
        settings=IngestSettings(**{**SETTINGS.__dict__, "osm_only": True}),
    )
    assert report.cells_osm_only > 0 and report.cells_encoded > 0
    cells = Store.open(tmp_path / "db").table("cells").to_arrow()
    osm_only = [s == "osm-only" for s in cells["source"].to_pylist()]
    assert sum(osm_only) == report.cells_osm_only
    assert cells["image"].null_count == cells["fused"].null_count == report.cells_osm_only
    assert all(v is not None for v, only in zip(cells["osm"].to_pylist(), osm_only, strict=True) if only)
    from geolink_store.query.search import search

    query = cells["h3"][osm_only.index(True)].as_py()
    assert len(search(Store.open(tmp_path / "db"), cells=query, modality="osm", k=3)) == 3
    with pytest.raises(GeolinkError, match="no 'image' vector"):
        search(Store.open(tmp_path / "db"), cells=query, modality="image", k=3)


def test_geometry_model_ingests_with_geometry_and_a_builder_without_it_is_refused(tmp_path: Path) -> None:
    """A node_geometry model gets graphs with ``geo``; on the sample (every feature ``building=yes``) its
    ``osm`` vectors differ between cells, where the official layout gives one vector (issue #13)."""
    import torch

    from geolink_store.graphs.builder import GraphBuilder

    torch.manual_seed(0)
    config = GeoLinkConfig(
        architecture="vit_tiny_patch16_224", timm_kwargs={"depth": 1}, osm_in_chans=384, region_dim=32
    )
    with pytest.raises(GeolinkError, match=r"node geometry.*GraphBuilder\(geometry=True\)"):
        ingest(
            str(tmp_path / "refused"), SAMPLE.region, [str(SAMPLE.imagery)], str(SAMPLE.osm),
            model=GeoLink(GeoLinkConfig(**{**config.__dict__, "node_geometry": True})),
            settings=SETTINGS, graph_builder=GraphBuilder(),
        )  # fmt: skip
    osm = {}
    for geometry in (False, True):
        torch.manual_seed(0)
        model = GeoLink(
            GeoLinkConfig(**{**config.__dict__, "node_geometry": geometry, "count_readout": geometry})
        )
        db = tmp_path / f"geometry-{geometry}"
        ingest(str(db), SAMPLE.region, [str(SAMPLE.imagery)], str(SAMPLE.osm), model=model, settings=SETTINGS)
        data = Store.open(db).table("cells").to_arrow()
        vectors = np.stack([v for v in data["osm"].to_pylist() if v is not None])  # null without OSM
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        osm[geometry] = (unit @ unit.T)[~np.eye(len(unit), dtype=bool)].mean()
    assert osm[False] > 0.9999 and osm[True] < 0.99


def test_batches_are_committed_together_and_equal_a_sequential_run(clean_store: Path, tmp_path: Path) -> None:
    """18 batches of 4 cells: the first batch alone, then one commit per 32 cells (4 versions, not 18),
    read ahead in a worker thread; the rows equal those of the clean run, and of a run without read-ahead."""
    for name, engine in (
        ("ahead", LocalEngine(prefetch=2, commit_cells=32, commit_seconds=3600)),
        ("inline", LocalEngine(prefetch=0)),
    ):
        db = tmp_path / name
        plan = plan_ingest(
            str(db),
            SAMPLE.region,
            [str(SAMPLE.imagery)],
            str(SAMPLE.osm),
            settings=IngestSettings(res=SAMPLE.res, fine_res=SAMPLE.fine_res, batch_size=4),
        )
        engine.run(plan, None)
        assert plan.report.cells_encoded == 72
        if name == "ahead":
            assert [len(Store.open(db).table(t).list_versions()) for t in ("cells", "patches")] == [4, 4]
        for table in ("cells", "patches"):
            rows, clean = _rows(db, table), _rows(clean_store, table)
            assert rows.keys() == clean.keys()
            for cell, vector in clean.items():
                np.testing.assert_allclose(rows[cell], vector, rtol=1e-4, atol=1e-5)


def test_read_ahead_keeps_order_and_raises_where_the_producer_failed() -> None:
    def produce():
        yield from range(5)
        raise GeolinkError("cannot read imagery x.tif: truncated")

    seen = []
    with pytest.raises(GeolinkError, match="truncated"):
        for item in prefetched(produce(), depth=2):
            seen.append(item)
    assert seen == [0, 1, 2, 3, 4]
    assert list(prefetched(iter(range(7)), depth=3)) == list(range(7))
    assert list(prefetched(iter(range(3)), depth=0)) == [0, 1, 2]


def test_write_behind_keeps_order_and_raises_where_the_consumer_failed() -> None:
    for depth in (0, 1, 3):
        consumed: list[int] = []
        with WriteBehind(consumed.append, depth) as writer:
            for item in range(9):
                writer.put(item)
        assert consumed == list(range(9))

    def consume(item: int) -> None:
        if item == 2:
            raise GeolinkError("cannot write the store: disk full")
        consumed.append(item)

    consumed = []
    with pytest.raises(GeolinkError, match="disk full"), WriteBehind(consume, 2) as writer:
        for item in range(50):
            writer.put(item)
            time.sleep(0.01)
    assert consumed == [0, 1]


def test_write_behind_drops_waiting_items_when_the_caller_fails() -> None:
    consumed: list[int] = []

    def slow(item: int) -> None:
        time.sleep(0.2)
        consumed.append(item)

    with pytest.raises(KeyboardInterrupt), WriteBehind(slow, 3) as writer:
        for item in range(4):
            writer.put(item)
        raise KeyboardInterrupt
    assert consumed == [0]  # the item in progress is finished, the three waiting are dropped
