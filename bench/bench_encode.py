"""Encoding throughput of the default GeoLink model here (images/s), against timm's plain ViT forward.

Run: ./venv-run python bench/bench_encode.py [--batch 16] [--repeats 5]
The baseline (timm ``forward_features`` of the same ViT) runs in the same process, so the ratio is comparable
across noisy machines. OSM graphs have the size of a typical real UFZ tile (11 polygons, 43 lines, 16 points).
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from model import GeoLink, empty_graph


def _throughput(fn, batch: int, repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return batch * repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = GeoLink.default()
    images = torch.randn(args.batch, 3, 224, 224)
    graphs = [_sample_graph(model.config.osm_in_chans, i) for i in range(args.batch)]
    vit = model.img_encoder.eval()

    rows = []
    with torch.no_grad():
        base = _throughput(lambda: vit.forward_features(images), args.batch, args.repeats)
        rows.append(("timm ViT forward_features (baseline)", "fp32", base))
        for dtype in (torch.float32, torch.bfloat16):
            name = "fp32" if dtype == torch.float32 else "bf16"
            rows.append(
                (
                    "GeoLink.encode image only",
                    name,
                    _throughput(
                        lambda dtype=dtype: model.encode(images, dtype=dtype), args.batch, args.repeats
                    ),
                )
            )
            rows.append(
                (
                    "GeoLink.encode image + OSM (fused)",
                    name,
                    _throughput(
                        lambda dtype=dtype: model.encode(images, graphs, dtype=dtype),
                        args.batch,
                        args.repeats,
                    ),
                )
            )
    print(
        f"machine: {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
        f"model {model.config.architecture}, batch {args.batch}"
    )
    print(f"{'path':<40} {'dtype':<5} {'img/s':>8} {'vs baseline':>11}")
    for path, dtype, rate in rows:
        print(f"{path:<40} {dtype:<5} {rate:8.1f} {rate / base:10.2f}x")


def _sample_graph(width: int, seed: int):
    """A graph of a typical real UFZ tile's size (about 70 nodes), random tag features of ``width``."""
    generator = torch.Generator().manual_seed(seed)
    graph = empty_graph(width)
    for node_type, count, points in (("polygon", 11, 4), ("line", 43, 3), ("point", 16, 1)):
        graph[node_type].x = torch.randn(count, width, generator=generator)
        graph[node_type].pos = torch.rand(count, points, 2, generator=generator)
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
