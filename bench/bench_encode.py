"""Encoding throughput of a GeoLink model here (images/s), against its backbone's own timm forward.

Run: ./venv-run python bench/bench_encode.py [--model CKPT] [--batch 16] [--repeats 5]
The baseline (timm ``forward_features`` of the same backbone: the ViT, or the CNN) runs in the same process,
so the ratio is comparable across noisy machines. OSM graphs have the size of a typical real UFZ tile
(11 polygons, 43 lines, 16 points), with geometry features when the model reads them.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

import torch
from torch_geometric.data import HeteroData

from geolink_store.testing import bench_record
from model import GEOMETRY_DIM, GeoLink, empty_graph


def _throughput(fn: Callable[[], object], batch: int, repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return batch * repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", help="a checkpoint (default: the bundled default model)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = GeoLink.from_checkpoint(args.model) if args.model else GeoLink.default()
    images = torch.randn(args.batch, 3, 224, 224)
    graphs = [_sample_graph(model, i) for i in range(args.batch)]
    backbone = model.img_encoder.eval()

    rows = []
    with torch.no_grad():
        base = _throughput(lambda: backbone.forward_features(images), args.batch, args.repeats)
        rows.append(("timm forward_features (baseline)", "fp32", base))
        for dtype in (torch.float32, torch.bfloat16):
            name = "fp32" if dtype == torch.float32 else "bf16"
            for path, with_graphs in (("image only", None), ("image + OSM (fused)", graphs)):
                rate = _throughput(
                    lambda dtype=dtype, g=with_graphs: model.encode(images, g, dtype=dtype),
                    args.batch,
                    args.repeats,
                )
                rows.append((f"GeoLink.encode {path}", name, rate))
    print(
        f"machine: {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
        f"model {model.config.architecture}, batch {args.batch}"
    )
    print(f"{'path':<40} {'dtype':<5} {'img/s':>8} {'vs baseline':>11}")
    for path, dtype, rate in rows:
        print(f"{path:<40} {dtype:<5} {rate:8.1f} {rate / base:10.2f}x")
        bench_record(
            "encode",
            f"{model.config.architecture}: {path} {dtype}",
            images_per_s=round(rate, 1),
            vs_baseline=round(rate / base, 3),
        )


def _sample_graph(model: GeoLink, seed: int) -> HeteroData:
    """A graph of a typical real UFZ tile's size (about 70 nodes), random features of the model's widths."""
    generator = torch.Generator().manual_seed(seed)
    geometry = model.config.node_geometry
    graph = empty_graph(model.config.osm_in_chans, geometry=geometry)
    for node_type, count, points in (("polygon", 11, 4), ("line", 43, 3), ("point", 16, 1)):
        graph[node_type].x = torch.randn(count, model.config.osm_in_chans, generator=generator)
        graph[node_type].pos = torch.rand(count, points, 2, generator=generator)
        if geometry:
            graph[node_type].geo = torch.rand(count, GEOMETRY_DIM, generator=generator)
    for edge in graph.edge_types:
        src, _, dst = edge
        n_src, n_dst = graph[src].num_nodes, graph[dst].num_nodes
        graph[edge].edge_index = torch.stack(
            [
                torch.randint(n_src, (3 * n_src,), generator=generator),
                torch.randint(n_dst, (3 * n_src,), generator=generator),
            ]
        )
    return graph


if __name__ == "__main__":
    main()
