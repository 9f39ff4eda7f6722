"""Fixed 2-D sine-cosine position embeddings (MAE formula), for patch grids and for arbitrary points.

The first half of each embedding encodes x (the column), the second half y (the row), in patch-grid units.
"""

from __future__ import annotations

import torch

from model.errors import InputError


def _sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """Embed ``positions`` (any shape) into (..., dim): [sin(p * w), cos(p * w)], w = 1/10000^(2i/dim)."""
    omega = torch.arange(dim // 2, dtype=torch.float32, device=positions.device) / (dim / 2.0)
    omega = 1.0 / 10000**omega
    angles = positions.to(torch.float32).reshape(-1, 1) * omega
    return torch.cat([angles.sin(), angles.cos()], dim=1).reshape(*positions.shape, dim)


def _sincos_2d(dim: int, xy: torch.Tensor) -> torch.Tensor:
    """Embed points ``xy`` (..., 2) in grid units into (..., dim): x in the first half, y in the second."""
    if dim % 4:
        raise InputError(
            f"sin-cos position width {dim} is not a multiple of 4 (the ViT width, fusion_dim and decoder_dim "
            "must be)"
        )
    return torch.cat([_sincos_1d(dim // 2, xy[..., 0]), _sincos_1d(dim // 2, xy[..., 1])], dim=-1)


def grid_sincos(dim: int, grid_size: int, cls_token: bool = True) -> torch.Tensor:
    """The (1, [1 +] grid_size**2, dim) table of a square patch grid, row-major, coordinates 0..grid_size-1.

    With ``cls_token`` a leading all-zero row is added for the class token.
    """
    coords = torch.arange(grid_size, dtype=torch.float32)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")
    table = _sincos_2d(dim, torch.stack([cols, rows], dim=-1).reshape(-1, 2))
    if cls_token:
        table = torch.cat([torch.zeros(1, dim), table], dim=0)
    return table.unsqueeze(0)


def node_sincos(dim: int, pos: torch.Tensor, grid_size: int) -> torch.Tensor:
    """Embeddings (N, dim) of OSM nodes: the mean over their chip-frame points ``pos`` (N, P, 2) in [0, 1]."""
    return _sincos_2d(dim, pos * grid_size).mean(dim=1)
