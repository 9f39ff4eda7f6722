"""Pretraining pairs from real data: chips of a region's H3 cells with their OSM graphs, written as shards.

The same readers as ingestion (imagery mosaics, OSM sources, GraphBuilder) produce the pairs, so a model
pretrained here sees exactly what it will encode later. Imagery without OSM gives image-only samples (empty
graphs), which still train the masked-image loss.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
import torch
from PIL import Image

from geolink_store.chips import read_chips
from geolink_store.graphs.builder import GraphBuilder
from geolink_store.grid import cell_geometries, cell_lonlat, region_cells
from geolink_store.sources.mosaic import open_imagery
from geolink_store.sources.osm import OSMIndex, read_example_folder, read_osm
from model import empty_graph
from model.errors import InputError
from training.shards import Sample

_PICTURES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class RegionPairs:
    """Where to cut pretraining pairs: a region, its imagery, optional OSM, the H3 resolution of the chips."""

    region: object
    imagery: tuple[str, ...]
    osm: str | None
    res: int
    min_valid: float = 0.9


def region_samples(spec: RegionPairs, builder: GraphBuilder) -> Iterator[Sample]:
    """One sample per cell of the region that the imagery covers (uint8 chip + graph, empty without OSM)."""
    source = open_imagery(list(spec.imagery))
    cells = source.covered_cells(region_cells(spec.region, spec.res))
    crs = source.chip_crs(*(float(v[0]) for v in cell_lonlat(cells[:1])))
    index = None
    if spec.osm is not None:
        west, south, east, north = shapely.union_all(cell_geometries(cells)).bounds
        pad = 0.01
        index = OSMIndex(read_osm(spec.osm, (west - pad, south - pad, east + pad, north + pad)), crs)
    for chip in read_chips(source, cells, crs, min_valid=spec.min_valid):
        image = torch.from_numpy(chip.rgb()).permute(2, 0, 1).contiguous()
        graph = (
            builder.build(index.query(chip.spec.bounds), chip.spec)
            if index
            else empty_graph(builder.text_dim, geometry=builder.geometry)
        )
        yield Sample(image=image, graph=graph)


def example_samples(folders: list[str | Path], builder: GraphBuilder, size: int = 224) -> Iterator[Sample]:
    """Samples from official per-chip example folders (image, OSM files, bbox pickle), resized to ``size``.

    Raises:
        InputError: a folder holds no image.
    """
    for folder in map(Path, folders):
        example = read_example_folder(folder)
        picture = next((p for p in folder.iterdir() if p.suffix.lower() in _PICTURES), None)
        if picture is None:
            raise InputError(f"example folder {folder} holds no {'/'.join(_PICTURES)} image")
        pixels = np.asarray(Image.open(picture).convert("RGB").resize((size, size), Image.BILINEAR))
        graph = builder.build(example.entities, example.bbox)
        yield Sample(image=torch.from_numpy(pixels).permute(2, 0, 1).contiguous(), graph=graph)
