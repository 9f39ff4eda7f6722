"""The two-way cross-modal fusion block: image patch tokens and OSM node tokens read each other."""

from __future__ import annotations

import math

import torch
from torch import nn


class TwoWayFusionBlock(nn.Module):
    """One fusion layer (adapted from SAM's two-way block, as in GeoLink).

    Image tokens ``img`` (B, L, C) and OSM tokens ``osm`` (B, N, C) carry position embeddings in the same
    patch-grid frame. The steps are: OSM self-attention; image tokens attend to OSM tokens; OSM tokens attend
    to the updated image tokens; a linear layer on the OSM tokens. Every step is followed by a LayerNorm.

    Attribute names follow the official checkpoint (``cross_attn_token_to_image`` is the image -> OSM
    attention). A sample without any OSM token gets nothing from the cross-attention: its image tokens become
    ``norm2(img)``, the defined image-only path.

    ``gated=True`` (ours, not the official layout) makes the OSM -> image step proportionate: image tokens may
    attend to nothing (a zero key and value, ``add_zero_attn``), so a patch far from every OSM feature takes
    little from it, and the step's residual is scaled by ``tanh(image_gate)``, a learned scalar that starts at
    0.5 (a short pretraining run moves a scalar little, so it does not start at 0). Without it one small
    building moves every image token of its cell by a full attention output.

    Args:
        dim: token width C.
        num_heads: attention heads of every attention step.
        dropout: attention dropout.
        gated: the proportionate OSM -> image step above.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.1, gated: bool = False) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = nn.MultiheadAttention(
            dim, num_heads, dropout=dropout, batch_first=True, add_zero_attn=gated
        )
        self.image_gate = nn.Parameter(torch.full((1,), math.atanh(0.5))) if gated else None
        self.norm2 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = nn.MultiheadAttention(
            dim, num_heads, dropout=dropout, batch_first=True
        )
        self.norm3 = nn.LayerNorm(dim)
        self.mlp = nn.Linear(dim, dim)
        self.norm4 = nn.LayerNorm(dim)

    def forward(
        self,
        img: torch.Tensor,
        osm: torch.Tensor,
        img_pe: torch.Tensor,
        osm_pe: torch.Tensor,
        padding: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the updated image tokens (B, L, C) and OSM tokens (B, N, C).

        ``img_pe`` (B, L, C) and ``osm_pe`` (B, N, C) are their position embeddings; ``padding`` (B, N) is
        True for padded OSM slots.
        """
        empty = padding.all(dim=1) if padding is not None else None
        if empty is not None and empty.any():
            # Give an empty sample one visible (zero) slot so softmax stays finite; the output is unused.
            padding = padding.clone()
            padding[empty, 0] = False

        osm_q = osm + osm_pe
        osm = self.norm1(
            osm + self.self_attn(osm_q, osm_q, osm, key_padding_mask=padding, need_weights=False)[0]
        )

        osm_k = osm + osm_pe
        from_osm = self.cross_attn_token_to_image(
            img + img_pe, osm_k, osm, key_padding_mask=padding, need_weights=False
        )[0]
        if empty is not None:
            from_osm = from_osm.masked_fill(empty[:, None, None], 0.0)
        if self.image_gate is not None:
            from_osm = torch.tanh(self.image_gate).to(from_osm.dtype) * from_osm
        img = self.norm2(img + from_osm)

        img_k = img + img_pe
        osm = self.norm3(
            osm + self.cross_attn_image_to_token(osm + osm_pe, img_k, img, need_weights=False)[0]
        )
        osm = self.norm4(self.mlp(osm))
        return img, osm
