"""The GeoLink network: ViT image encoder, heterogeneous-GAT OSM encoder, their fusion, pretraining losses.

Parameter names and shapes equal the official implementation's, so official checkpoints load unchanged. The
behaviour differs where the official code is wrong (each method's docstring says where): per-graph
normalisation, deterministic fusion, empty graphs anywhere in a batch, any float dtype, no in-place changes to
inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
import torch_geometric.nn as pyg_nn
from timm.models.vision_transformer import Block
from torch import nn
from torch_geometric.data import Batch, HeteroData

from model.checkpoint import DEFAULT_WEIGHTS, read_checkpoint, write_checkpoint
from model.config import GeoLinkConfig
from model.errors import CheckpointError, InputError
from model.fusion import TwoWayFusionBlock
from model.graphs import GEOMETRY_DIM, batch_graphs
from model.osm import NODE_TYPES, OSMHeteroGAT, graph_layer_norm
from model.pos_embed import grid_sincos, node_sincos
from model.pretrained import load_image_init

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class EncodeOutput:
    """What ``GeoLink.encode`` returns (float32 tensors)."""

    image_layers: list[torch.Tensor]
    """Raw outputs of the requested ViT blocks, each (B, 196, D), class token dropped; for a CNN, the
    requested feature stages flattened, each (B, H * W, C)."""
    image_tokens: torch.Tensor
    """(B, 196, D): the final patch tokens after the encoder norm (the image side of fine-grained vectors)."""
    image_global: torch.Tensor
    """(B, G): mean of ``image_tokens`` (ViT, G = D); for a CNN, the global average pool of the backbone's
    final feature map (G = ``GeoLink.global_dim``, e.g. 1280 for EfficientNet-Lite2)."""
    fused: torch.Tensor | None
    """(B, 196, F): the hybrid image+OSM patch embedding; None without graphs."""
    osm_region: torch.Tensor | None
    """(B, R): the graph-level OSM embedding (zeros for a graph without nodes); None without graphs."""
    has_osm: torch.Tensor | None
    """(B,) bool: whether each sample's graph has any node; None without graphs."""


@dataclass
class PretrainOutput:
    """The three GeoLink losses and their weighted sum."""

    loss: torch.Tensor
    image_loss: torch.Tensor
    contrastive_loss: torch.Tensor
    node_loss: torch.Tensor


@dataclass
class _Tokens:
    """OSM node tokens padded per graph for the fusion block."""

    features: torch.Tensor  # (B, N, F)
    positions: torch.Tensor  # (B, N, F)
    padding: torch.Tensor  # (B, N) True where there is no node
    order: torch.Tensor  # (M,) index into the concatenated nodes of each kept token (row-major over B, N)


class GeoLink(nn.Module):
    """GeoLink (NeurIPS 2025): remote-sensing imagery and OpenStreetMap in one model.

    The image backbone is a timm ViT (the official layout) or a timm CNN (a model without ``patch_embed``,
    with ``feature_info``): its stride-16 feature map, through a 1x1 conv to ``config.token_dim`` channels,
    gives the 14 x 14 image tokens, and the average pool of its final map the global image vector.

    Args:
        config: the architecture (``model.presets`` names the usual ones); default: the official ViT-L/16.
        pretrained: load the ImageNet weights ``config.image_init`` names, if any (``from_checkpoint`` passes
            False: the weights come from the file, and the weights package need not be installed).
    """

    def __init__(self, config: GeoLinkConfig | None = None, pretrained: bool = True) -> None:
        super().__init__()
        self.config = config = config or GeoLinkConfig()
        self.img_encoder = timm.create_model(
            config.architecture, pretrained=False, num_classes=0, global_pool="", **config.timm_kwargs
        )
        self.is_vit = hasattr(self.img_encoder, "patch_embed")
        if self.is_vit:
            self.patch_embed = self.img_encoder.patch_embed
            self.grid_size = self.patch_embed.grid_size[0]
            self.patch_size = self.patch_embed.patch_size[0]
            self.img_size = tuple(self.patch_embed.img_size)
            dim = self.img_encoder.embed_dim
            self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
            self.img_pos_embed = nn.Parameter(grid_sincos(dim, self.grid_size), requires_grad=False)
        else:
            dim = self._build_cnn()
        self.img_norm = nn.LayerNorm(dim)
        if config.multimodal:
            self._build_multimodal(dim)
        self._init_weights()
        self._freeze_unused()
        if config.image_init is not None and pretrained:
            load_image_init(config.image_init, config.architecture, self.img_encoder)

    def _build_cnn(self) -> int:
        """The token projection and input conversion of a CNN backbone; return the token width.

        The tokens come from the last feature stage at reduction 16 (a 14 x 14 grid at 224 px). A backbone
        whose ``pretrained_cfg`` wants another mean/std than ImageNet's gets ImageNet-normalised input
        converted inside the model (non-persistent buffers: checkpoints are unaffected).
        """
        info = getattr(self.img_encoder, "feature_info", None)
        if not info or not hasattr(self.img_encoder, "forward_intermediates"):
            raise InputError(
                f"architecture {self.config.architecture!r}: neither a timm ViT (patch_embed) nor a timm CNN "
                "with feature_info and forward_intermediates"
            )
        reductions = [stage["reduction"] for stage in info]
        if 16 not in reductions:
            raise InputError(
                f"architecture {self.config.architecture!r} has no stride-16 feature stage ({reductions})"
            )
        self.token_stage = len(reductions) - 1 - reductions[::-1].index(16)
        self.patch_size, self.img_size = 16, (224, 224)
        self.grid_size = self.img_size[0] // self.patch_size
        assert self.grid_size == 14
        self.img_proj = nn.Conv2d(info[self.token_stage]["num_chs"], self.config.token_dim, kernel_size=1)
        cfg = self.img_encoder.pretrained_cfg
        mean, std = torch.tensor(cfg.get("mean", _IMAGENET_MEAN)), torch.tensor(cfg.get("std", _IMAGENET_STD))
        mean_in, std_in = torch.tensor(_IMAGENET_MEAN), torch.tensor(_IMAGENET_STD)
        self.convert_input = not (torch.allclose(mean, mean_in) and torch.allclose(std, std_in))
        # x_rgb = x * std_in + mean_in, then (x_rgb - mean) / std
        self.register_buffer("img_in_scale", (std_in / std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("img_in_shift", ((mean_in - mean) / std).view(1, 3, 1, 1), persistent=False)
        return self.config.token_dim

    def _build_multimodal(self, dim: int) -> None:
        """The OSM encoder, MAE decoder, region readout, fusion block and pretraining heads."""
        c = self.config
        patch = self.patch_size
        geometry = GEOMETRY_DIM if c.node_geometry else 0
        self.osm_encoder = OSMHeteroGAT(c.osm_in_chans + geometry, c.osm_embed_dim)
        self.osm_norm = nn.ModuleDict({t: pyg_nn.LayerNorm(c.osm_embed_dim) for t in NODE_TYPES})

        self.rec_img_pos_embed = nn.Parameter(grid_sincos(c.decoder_dim, self.grid_size), requires_grad=False)
        self.img_decoder_mlp = nn.Linear(dim, c.decoder_dim)
        if self.is_vit:
            self.img_mask_token = nn.Parameter(torch.zeros(1, 1, c.decoder_dim))
        else:  # SimMIM: masked patches take a learned value in the input space (see _cnn_masked_image)
            self.img_pixel_mask = nn.Parameter(torch.zeros(1, 3, 1, 1))
        self.img_cross_modal_decoder = nn.ModuleList(
            Block(c.decoder_dim, c.decoder_heads, 4.0, qkv_bias=True, norm_layer=nn.LayerNorm)
            for _ in range(c.decoder_depth)
        )
        self.img_decoder_norm = nn.LayerNorm(c.decoder_dim)
        self.img_decoder_pred = nn.Linear(c.decoder_dim, patch * patch * 3)

        self.osm_read_out = nn.ModuleDict(
            {t: pyg_nn.Set2Set(c.osm_embed_dim, processing_steps=5) for t in NODE_TYPES}
        )
        self.osm_aggr_mlp = nn.ModuleDict(
            {t: nn.Linear(2 * c.osm_embed_dim + int(c.count_readout), c.region_dim) for t in NODE_TYPES}
        )
        self.type_attention = nn.Linear(c.region_dim, 1)
        self.osm_graph_consistency_prj = nn.Linear(c.region_dim, c.contrast_dim)
        self.img_consistency_prj = nn.Linear(self.global_dim, c.contrast_dim)

        self.fusion_img_pos_embed = nn.Parameter(
            grid_sincos(c.fusion_dim, self.grid_size), requires_grad=False
        )
        self.img_fusion_mlp = nn.Linear(dim, c.fusion_dim)
        self.osm_node_fusion_mlp = nn.ModuleDict(
            {t: nn.Linear(c.osm_embed_dim, c.fusion_dim) for t in NODE_TYPES}
        )
        self.osm_mask_token = nn.ParameterDict(
            {t: nn.Parameter(torch.zeros(1, c.osm_in_chans)) for t in NODE_TYPES}
        )
        self.osm_cross_modal_encoder = nn.ModuleList(
            TwoWayFusionBlock(c.fusion_dim, c.fusion_heads, c.fusion_dropout, gated=c.fusion_gate)
            for _ in range(c.fusion_depth)
        )
        self.osm_node_pred = nn.Linear(c.fusion_dim, c.osm_in_chans)

    def _init_weights(self) -> None:
        """MAE-style init: xavier patch embedding and linears, N(0, 0.02) tokens; backbones keep timm's."""
        if self.is_vit:
            weight = self.patch_embed.proj.weight.data
            nn.init.xavier_uniform_(weight.view(weight.size(0), -1))
            nn.init.normal_(self.cls_token, std=0.02)
        for name, module in self.named_children():
            if name != "img_encoder":
                module.apply(_init_linear_and_norm)
        if self.config.multimodal and self.is_vit:
            nn.init.normal_(self.img_mask_token, std=0.02)
        if self.config.multimodal:
            for token in self.osm_mask_token.values():
                nn.init.normal_(token, std=0.02)

    def _freeze_unused(self) -> None:
        """Parameters kept only for checkpoint compatibility take no gradient.

        These are timm's own class token, positions and norm (GeoLink replaces them) and, with the official
        plain sum over OSM types, the type attention.
        """
        if self.is_vit:
            for name in ("cls_token", "pos_embed"):
                getattr(self.img_encoder, name).requires_grad_(False)
            self.img_encoder.norm.requires_grad_(False)
        if self.config.multimodal:
            self.type_attention.requires_grad_(self.config.type_attention)

    # ------------------------------------------------------------------ checkpoints

    @classmethod
    def from_checkpoint(cls, path: str | Path, map_location: str | torch.device = "cpu") -> GeoLink:
        """Build the model a checkpoint describes and load its weights strictly; return it in eval mode.

        Reads official multimodal and unimodal ``.pth`` files and our ``.safetensors`` (``model.checkpoint``).

        Raises:
            CheckpointError: the file is missing, unreadable or refused, or its weights do not fit its config
                (the message names the missing, unexpected and wrongly shaped keys).
        """
        config, state = read_checkpoint(path, map_location)
        try:
            model = cls(config, pretrained=False)
        except (RuntimeError, TypeError, ValueError) as error:
            raise CheckpointError(
                f"{path}: cannot build {config.architecture} ({str(error).splitlines()[0]})"
            ) from None
        model._load_strict(state, path)
        return model.eval()

    @classmethod
    def default(cls) -> GeoLink:
        """The bundled default model (``model/weights/MODEL_CARD.md``); the caller's RNG state is kept."""
        with torch.random.fork_rng(devices=[]):
            return cls.from_checkpoint(DEFAULT_WEIGHTS)

    def save(self, path: str | Path, dtype: torch.dtype | None = None) -> Path:
        """Write config and weights as one ``.safetensors`` file (floating tensors cast to ``dtype``)."""
        return write_checkpoint(path, self.config, self.state_dict(), dtype)

    def _load_strict(self, state: dict[str, torch.Tensor], source: str | Path) -> None:
        """Load ``state`` strictly, or say in one message which keys are missing, unexpected or misshapen."""
        expected = self.state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        wrong = [
            f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
            for k in sorted(set(state) & set(expected))
            if state[k].shape != expected[k].shape
        ]
        if missing or unexpected or wrong:
            parts = [
                f"{label} ({len(items)}): {', '.join(items[:4])}{' ...' if len(items) > 4 else ''}"
                for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
                if items
            ]
            raise CheckpointError(
                f"{source}: weights do not fit {self.config.architecture}: " + "; ".join(parts)
            )
        self.load_state_dict(state, strict=True)

    @property
    def embed_dim(self) -> int:
        """Width of the image tokens (``image_tokens``, the ``patches.image`` vectors)."""
        return self.img_encoder.embed_dim if self.is_vit else self.config.token_dim

    @property
    def global_dim(self) -> int:
        """Width of the global image vector (``image_global``, the ``cells.image`` vectors)."""
        return self.img_encoder.embed_dim if self.is_vit else self.img_encoder.num_features

    @property
    def depth(self) -> int:
        """Number of ViT blocks, or of a CNN's feature stages (the valid ``layers`` of ``encode``)."""
        return len(self.img_encoder.blocks) if self.is_vit else len(self.img_encoder.feature_info)

    # ------------------------------------------------------------------ inference

    @torch.no_grad()
    def encode(
        self,
        images: torch.Tensor,
        graphs: HeteroData | Sequence[HeteroData] | Batch | None = None,
        layers: Sequence[int] = (),
        max_fusion_nodes: int | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> EncodeOutput:
        """Encode ImageNet-normalised images (B, 3, 224, 224) and, optionally, one OSM graph per image.

        ``layers`` are 0-based ViT block indices whose raw outputs are returned (for a CNN: indices into its
        timm feature stages, ``feature_info``, each returned flattened). Every OSM node takes part in
        the fusion unless ``max_fusion_nodes`` caps it; the cap keeps evenly spaced nodes (deterministic).
        ``dtype=torch.bfloat16`` runs under autocast. Results never depend on the other samples of the batch.

        Raises:
            InputError: images of another shape, ``layers`` out of range, graphs for an image-only model, or
                a graph count other than the image count.
        """
        self._check_images(images)
        bad = [i for i in layers if not 0 <= i < self.depth]
        if bad:
            what = "a ViT with {} blocks" if self.is_vit else "a CNN with {} feature stages"
            raise InputError(
                f"layers={list(layers)}: {bad} out of range for {what.format(self.depth)} (0-based)"
            )
        if max_fusion_nodes is not None and max_fusion_nodes < 1:
            raise InputError(
                f"max_fusion_nodes={max_fusion_nodes}: give a number >= 1, or None for every node"
            )
        batch = None if graphs is None else self._graph_batch(graphs, images, "call encode with graphs=None")

        training = self.training
        self.eval()
        try:
            with torch.autocast(images.device.type, dtype=dtype, enabled=dtype != torch.float32):
                if self.is_vit:
                    collected, final = self._image_blocks(self._image_sequence(images), set(layers))
                    normed = self.img_norm(final[:, 1:])
                    image_global = normed.mean(dim=1)
                else:
                    collected, normed, image_global = self._cnn_features(images, layers)
                out = EncodeOutput(
                    image_layers=[t.float() for t in collected],
                    image_tokens=normed.float(),
                    image_global=image_global.float(),
                    fused=None,
                    osm_region=None,
                    has_osm=None,
                )
                if batch is not None:
                    self._encode_osm(out, normed, batch, max_fusion_nodes)
        finally:
            self.train(training)
        return out

    @torch.no_grad()
    def encode_osm(
        self, graphs: HeteroData | Sequence[HeteroData] | Batch
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The graph-level OSM embedding (B, R) of graphs alone (no imagery) and whether each has a node (B,).

        Equal to ``encode(...).osm_region`` for the same graphs: the region readout never sees the image.
        """
        self._require_osm("it has no OSM encoder")
        batch = batch_graphs(graphs, geometry=self.config.node_geometry).to(self.img_norm.weight.device)
        training = self.training
        self.eval()
        try:
            x = {t: batch[t].x for t in NODE_TYPES}
            region, present = self._region(
                self._osm_nodes(x, batch, batch.num_graphs), batch, batch.num_graphs
            )
        finally:
            self.train(training)
        return region.float(), present

    def _encode_osm(self, out: EncodeOutput, normed: torch.Tensor, batch: Batch, cap: int | None) -> None:
        """Fill the OSM and fused fields of ``out`` from the final normalised image tokens."""
        num_graphs = normed.size(0)
        x = {t: batch[t].x for t in NODE_TYPES}
        nodes = self._osm_nodes(x, batch, num_graphs)
        region, _ = self._region(nodes, batch, num_graphs)
        tokens = self._fusion_tokens(nodes, batch, num_graphs, cap=cap)
        img_pe = self.fusion_img_pos_embed[:, 1:].expand(num_graphs, -1, -1)
        fused, _ = self._fuse(self.img_fusion_mlp(normed), img_pe, tokens)
        out.fused = fused.float()
        out.osm_region = region.float()
        out.has_osm = ~tokens.padding.all(dim=1)

    def _check_images(self, images: torch.Tensor) -> None:
        """Raise InputError unless ``images`` is (B, 3, H, W) at the backbone's input size."""
        expected = (3, *self.img_size)
        if images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise InputError(
                f"images must be (B, {', '.join(map(str, expected))}), got {tuple(images.shape)}"
            )

    def _require_osm(self, advice: str) -> None:
        """Raise InputError if this model has no OSM side (image-only); ``advice`` ends the message."""
        if not self.config.multimodal:
            raise InputError(f"this model is image-only (config.multimodal=False): {advice}")

    def _graph_batch(
        self, graphs: HeteroData | Sequence[HeteroData] | Batch, images: torch.Tensor, advice: str
    ) -> Batch:
        """``graphs`` as one batch on the device of ``images`` (B, 3, H, W), one graph per image."""
        self._require_osm(advice)
        batch = batch_graphs(graphs, geometry=self.config.node_geometry).to(images.device)
        if batch.num_graphs != images.size(0):
            raise InputError(f"got {images.size(0)} images but {batch.num_graphs} graphs")
        return batch

    # ------------------------------------------------------------------ image path

    def _image_sequence(self, images: torch.Tensor) -> torch.Tensor:
        """Patch tokens plus fixed positions, without the class token: (B, L, D)."""
        return self.patch_embed(images) + self.img_pos_embed[:, 1:]

    def _image_blocks(
        self, tokens: torch.Tensor, layers: set[int]
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Prepend GeoLink's class token to ``tokens`` (B, L, D) and run the ViT blocks.

        Returns the raw outputs (B, L, D) of the blocks in ``layers`` and the last output (B, 1 + L, D).
        """
        cls = (self.cls_token + self.img_pos_embed[:, :1]).expand(tokens.size(0), -1, -1)
        x = torch.cat([cls, tokens], dim=1)
        collected = []
        for i, block in enumerate(self.img_encoder.blocks):
            x = block(x)
            if i in layers:
                collected.append(x[:, 1:])
        return collected, x

    def _cnn_features(
        self, images: torch.Tensor, layers: Sequence[int]
    ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """A CNN backbone on ImageNet-normalised ``images``.

        Returns the feature stages in ``layers`` (sorted, each (B, H * W, C)), the normalised tokens
        (B, 196, token_dim) and the global average pool of the final feature map (B, global_dim).
        """
        x = images * self.img_in_scale + self.img_in_shift if self.convert_input else images
        wanted = sorted({self.token_stage, *layers})
        final, maps = self.img_encoder.forward_intermediates(x, indices=wanted)
        by_stage = dict(zip(wanted, maps, strict=True))
        stage = by_stage[self.token_stage]
        if tuple(stage.shape[-2:]) != (self.grid_size, self.grid_size):
            raise InputError(
                f"the stride-16 features are {tuple(stage.shape[-2:])}, expected a {self.grid_size} x "
                f"{self.grid_size} grid"
            )
        tokens = self.img_proj(stage).flatten(2).transpose(1, 2)
        collected = [by_stage[i].flatten(2).transpose(1, 2) for i in sorted(set(layers))]
        return collected, self.img_norm(tokens), final.mean(dim=(2, 3))

    def _cnn_masked_image(
        self, images: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """SimMIM-style masked-image objective for a CNN backbone.

        MAE drops the masked patches from the sequence, which a convolution cannot do (it needs the whole
        grid, and dropping patches would leave holes its kernels read as black). SimMIM (Xie et al. 2022)
        instead replaces the pixels of masked 16 x 16 patches with a learned value (three parameters, in the
        model's ImageNet-normalised input space), runs the backbone on the whole masked image and predicts
        the pixels of every patch from its token with a light decoder, scoring masked patches only. The
        backbone sees ordinary full-size images, so ImageNet features and BatchNorm statistics stay
        meaningful, and the existing MAE decoder (on all 196 tokens, no mask tokens) is reused.

        Returns the kept patch indices (B, K), the pixel loss, the normalised tokens of the kept patches
        (B, K, token_dim) and the global image vector (B, global_dim), both from the masked image.
        """
        b, g, p = images.size(0), self.grid_size, self.patch_size
        keep, _, patch_mask = _random_patch_mask(
            (b, g * g), self.config.img_mask_ratio, generator, images.device
        )
        pixels = patch_mask.view(b, 1, g, g).repeat_interleave(p, dim=2).repeat_interleave(p, dim=3)
        pixels = pixels.to(images.dtype)
        masked = images * (1 - pixels) + self.img_pixel_mask.to(images.dtype) * pixels
        _, tokens, image_vector = self._cnn_features(masked, ())
        y = self.img_decoder_mlp(tokens) + self.rec_img_pos_embed[:, 1:]
        for block in self.img_cross_modal_decoder:
            y = block(y)
        prediction = self.img_decoder_pred(self.img_decoder_norm(y))
        image_loss = self._pixel_loss(images, prediction, patch_mask)
        visible = torch.gather(tokens, 1, keep.unsqueeze(-1).expand(-1, -1, tokens.size(-1)))
        return keep, image_loss, visible, image_vector

    # ------------------------------------------------------------------ OSM path

    def _osm_nodes(
        self, x: dict[str, torch.Tensor], batch: Batch, num_graphs: int
    ) -> dict[str, torch.Tensor]:
        """Node embeddings (GAT, ReLU, per-graph LayerNorm) from node features ``x``."""
        width = {t: v.size(-1) for t, v in x.items()}
        if any(w != self.config.osm_in_chans for w in width.values()):
            raise InputError(
                f"OSM node features are {width} wide but the model expects {self.config.osm_in_chans}"
                " (the tag text encoder of the graphs and of the model differ)"
            )
        if self.config.node_geometry:
            x = self._with_geometry(x, batch)
        edges = {e: batch[e].edge_index for e in batch.edge_types}
        hidden = self.osm_encoder(x, edges)
        return {
            t: graph_layer_norm(hidden[t], batch[t].batch, num_graphs, self.osm_norm[t]) for t in NODE_TYPES
        }

    def _with_geometry(self, x: dict[str, torch.Tensor], batch: Batch) -> dict[str, torch.Tensor]:
        """``cat(x, geo)`` per type (``config.node_geometry``): the GAT input, tag and geometry features.

        Raises:
            InputError: the batch has no ``geo`` (GEOMETRY_DIM wide) for some node type.
        """
        lacking = [t for t in NODE_TYPES if "geo" not in batch[t] or batch[t].geo.size(-1) != GEOMETRY_DIM]
        if lacking:
            raise InputError(
                f"the graphs lack geometry features graph[type].geo ({GEOMETRY_DIM} wide) for {lacking}, "
                "which this model reads (config.node_geometry=True): build them with "
                "GraphBuilder(geometry=True)"
            )
        return {t: torch.cat([x[t], batch[t].geo.to(x[t].dtype)], dim=-1) for t in NODE_TYPES}

    def _region(
        self, nodes: dict[str, torch.Tensor], batch: Batch, num_graphs: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Graph-level OSM embedding (B, R) and which graphs have any node (B,).

        Per type: Set2Set readout (with ``config.count_readout``, then ``log1p`` of the type's node count),
        then a linear layer; an absent type contributes zero. The types are combined by the official plain
        sum, or, with ``config.type_attention``, by a softmax over the types present.
        """
        slots, present = [], []
        for t in NODE_TYPES:
            owner = batch[t].batch
            has_type = torch.bincount(owner, minlength=num_graphs) > 0
            pooled = self.osm_read_out[t](nodes[t], owner, dim_size=num_graphs)
            if self.config.count_readout:
                count = torch.bincount(owner, minlength=num_graphs).to(pooled.dtype)
                pooled = torch.cat([pooled, count.log1p().unsqueeze(-1)], dim=-1)
            slots.append(self.osm_aggr_mlp[t](pooled) * has_type.unsqueeze(-1))
            present.append(has_type)
        slots_t, present_t = torch.stack(slots, dim=1), torch.stack(present, dim=1)
        if self.config.type_attention:
            logits = self.type_attention(slots_t).squeeze(-1).masked_fill(~present_t, float("-inf"))
            weights = torch.softmax(logits, dim=1).nan_to_num(0.0)
            return (weights.unsqueeze(-1) * slots_t).sum(dim=1), present_t.any(dim=1)
        return slots_t.sum(dim=1), present_t.any(dim=1)

    # ------------------------------------------------------------------ fusion

    def _fusion_tokens(
        self,
        nodes: dict[str, torch.Tensor],
        batch: Batch,
        num_graphs: int,
        cap: int | None,
        selected: dict[str, torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> _Tokens:
        """Project nodes to fusion tokens with their shared sin-cos positions and pad them per graph.

        ``selected`` restricts the nodes per type (a boolean mask). Above ``cap`` nodes per graph, evenly
        spaced nodes are kept, or random ones when a ``generator`` is given (pretraining).
        """
        features, positions, owners = [], [], []
        for t in NODE_TYPES:
            keep = selected[t] if selected is not None else slice(None)
            features.append(self.osm_node_fusion_mlp[t](nodes[t][keep]))
            positions.append(node_sincos(self.config.fusion_dim, batch[t].pos[keep], self.grid_size))
            owners.append(batch[t].batch[keep])
        feature, owner = torch.cat(features), torch.cat(owners)
        position = torch.cat(positions).to(feature.dtype)
        if not self.config.shared_positions:
            position = torch.zeros_like(position)

        order = _group_by_owner(owner, generator)
        counts = torch.bincount(owner, minlength=num_graphs)
        rank = (
            torch.arange(order.numel(), device=owner.device)
            - (torch.cumsum(counts, 0) - counts)[owner[order]]
        )
        if cap is not None:
            kept = rank < cap if generator is not None else _evenly_spaced(rank, counts[owner[order]], cap)
            order = order[kept]
            rank = _rank_within(owner[order], num_graphs)
            counts = counts.clamp(max=cap)
        slots = max(int(counts.max()) if counts.numel() else 0, 1)
        rows = owner[order]
        padded = feature.new_zeros(num_graphs, slots, feature.size(-1))
        padded_pos = position.new_zeros(num_graphs, slots, position.size(-1))
        padded[rows, rank] = feature[order]
        padded_pos[rows, rank] = position[order]
        padding = torch.arange(slots, device=owner.device).unsqueeze(0) >= counts.unsqueeze(1)
        return _Tokens(padded, padded_pos, padding, order)

    def _fuse(
        self, img: torch.Tensor, img_pe: torch.Tensor, tokens: _Tokens
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the fusion blocks (each on the previous one's output); return image and OSM tokens."""
        if not self.config.shared_positions:
            img_pe = torch.zeros_like(img_pe)
        osm = tokens.features.to(img.dtype)
        for block in self.osm_cross_modal_encoder:
            img, osm = block(img, osm, img_pe.to(img.dtype), tokens.positions.to(img.dtype), tokens.padding)
        return img, osm

    # ------------------------------------------------------------------ pretraining

    def forward(
        self,
        images: torch.Tensor,
        graphs: HeteroData | Sequence[HeteroData] | Batch,
        generator: torch.Generator | None = None,
    ) -> PretrainOutput:
        """The three GeoLink pretraining losses for a batch of images and their OSM graphs.

        1. masked-image reconstruction (MAE, per-patch normalised pixels, masked patches only; SimMIM-style
           for a CNN backbone, see ``_cnn_masked_image``; the contrastive loss then reads its global vector);
        2. image-region contrastive (symmetric InfoNCE between visible image tokens and the masked graph's
           region embedding), over the samples that have OSM;
        3. masked-node reconstruction: masked node tokens read the visible image tokens through the fusion
           block, with shared positions, and predict their original tag features.
        Randomness comes from ``generator`` (a torch generator), never from global numpy state.
        """
        self._check_images(images)
        batch = self._graph_batch(graphs, images, "pretraining needs a multimodal GeoLink")
        c = self.config
        generator = generator or _generator_from_global_rng(images.device)
        num_graphs = images.size(0)

        if self.is_vit:
            tokens = self._image_sequence(images)
            keep, restore, patch_mask = _random_patch_mask(
                tokens.shape[:2], c.img_mask_ratio, generator, images.device
            )
            visible = torch.gather(tokens, 1, keep.unsqueeze(-1).expand(-1, -1, tokens.size(-1)))
            _, final = self._image_blocks(visible, set())
            latent = self.img_norm(final)

            prediction = self._decode_pixels(latent, restore)
            image_loss = self._pixel_loss(images, prediction, patch_mask)
            visible_tokens, image_vector = latent[:, 1:], latent[:, 1:].mean(dim=1)
        else:
            keep, image_loss, visible_tokens, image_vector = self._cnn_masked_image(images, generator)

        masked = _random_node_mask(batch, num_graphs, c.osm_mask_ratio, generator)
        x = {
            t: torch.where(masked[t].unsqueeze(-1), self.osm_mask_token[t].to(batch[t].x.dtype), batch[t].x)
            for t in NODE_TYPES
        }
        nodes = self._osm_nodes(x, batch, num_graphs)
        region, has_osm = self._region(nodes, batch, num_graphs)
        contrastive_loss = self._contrastive_loss(
            self.img_consistency_prj(image_vector)[has_osm],
            self.osm_graph_consistency_prj(region)[has_osm],
        )

        node_tokens = self._fusion_tokens(
            nodes, batch, num_graphs, cap=c.max_masked_nodes, selected=masked, generator=generator
        )
        fusion_pe = self.fusion_img_pos_embed[:, 1:].expand(num_graphs, -1, -1)
        visible_pe = torch.gather(fusion_pe, 1, keep.unsqueeze(-1).expand(-1, -1, fusion_pe.size(-1)))
        _, osm_out = self._fuse(self.img_fusion_mlp(visible_tokens), visible_pe, node_tokens)
        targets = torch.cat([batch[t].x[masked[t]] for t in NODE_TYPES])[node_tokens.order]
        predicted = self.osm_node_pred(osm_out[~node_tokens.padding])
        node_loss = (
            (predicted.float() - targets.float()).pow(2).mean()
            if targets.numel()
            else visible_tokens.new_zeros(())
        )

        w = c.loss_weights
        loss = w[0] * image_loss + w[1] * contrastive_loss + w[2] * node_loss
        return PretrainOutput(loss, image_loss, contrastive_loss, node_loss)

    def _decode_pixels(self, latent: torch.Tensor, restore: torch.Tensor) -> torch.Tensor:
        """MAE decoder: visible latents plus mask tokens, unshuffled, to per-patch pixels (B, L, p*p*3)."""
        y = self.img_decoder_mlp(latent)
        missing = restore.size(1) + 1 - y.size(1)
        patches = torch.cat([y[:, 1:], self.img_mask_token.to(y.dtype).expand(y.size(0), missing, -1)], dim=1)
        patches = torch.gather(patches, 1, restore.unsqueeze(-1).expand(-1, -1, y.size(-1)))
        y = torch.cat([y[:, :1], patches], dim=1) + self.rec_img_pos_embed
        for block in self.img_cross_modal_decoder:
            y = block(y)
        return self.img_decoder_pred(self.img_decoder_norm(y))[:, 1:]

    def _pixel_loss(self, images: torch.Tensor, prediction: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean squared error over masked patches (targets normalised per patch when ``norm_pix_loss``)."""
        p = self.patch_size
        b, ch, h, w = images.shape
        target = (
            images.reshape(b, ch, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1).reshape(b, -1, p * p * ch)
        )
        if self.config.norm_pix_loss:
            target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
        per_patch = (prediction.float() - target.float()).pow(2).mean(dim=-1)
        return (per_patch * mask).sum() / mask.sum()

    def _contrastive_loss(self, img: torch.Tensor, osm: torch.Tensor) -> torch.Tensor:
        """Symmetric InfoNCE with in-batch negatives at the configured temperature."""
        if img.size(0) == 0:
            return img.new_zeros((), dtype=torch.float32)
        logits = (
            F.normalize(img.float(), dim=-1) @ F.normalize(osm.float(), dim=-1).T / self.config.temperature
        )
        labels = torch.arange(logits.size(0), device=logits.device)
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def _init_linear_and_norm(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def _generator_from_global_rng(device: torch.device) -> torch.Generator:
    """A generator seeded from torch's global RNG, so that ``torch.manual_seed`` governs pretraining."""
    return torch.Generator(device=device).manual_seed(int(torch.randint(2**62, (1,))))


def _group_by_owner(owner: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Indices grouping nodes by graph: stable (type order) or, with a generator, shuffled within a graph."""
    if generator is None:
        return torch.argsort(owner, stable=True)
    noise = torch.rand(owner.numel(), generator=generator, device=generator.device).to(owner.device)
    return torch.argsort(owner.double() + noise.double(), stable=True)


def _evenly_spaced(rank: torch.Tensor, count: torch.Tensor, cap: int) -> torch.Tensor:
    """Keep ``cap`` evenly spaced ranks of each group of ``count`` (all of a group no larger than ``cap``)."""
    bins = rank * cap // count.clamp(min=1)
    first_in_bin = (rank == 0) | (bins != (rank - 1) * cap // count.clamp(min=1))
    return (count <= cap) | first_in_bin


def _rank_within(owner_sorted: torch.Tensor, num_graphs: int) -> torch.Tensor:
    """0-based position of each element within its group, for elements already grouped by owner."""
    counts = torch.bincount(owner_sorted, minlength=num_graphs)
    starts = torch.cumsum(counts, 0) - counts
    return torch.arange(owner_sorted.numel(), device=owner_sorted.device) - starts[owner_sorted]


def _random_patch_mask(
    shape: torch.Size, ratio: float, generator: torch.Generator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample random patch masking: (kept indices, restore order, mask with 1 = hidden)."""
    batch_size, length = shape
    keep_count = int(length * (1 - ratio))
    noise = torch.rand(batch_size, length, generator=generator, device=generator.device).to(device)
    shuffle = torch.argsort(noise, dim=1)
    restore = torch.argsort(shuffle, dim=1)
    mask = torch.ones(batch_size, length, device=device)
    mask[:, :keep_count] = 0
    return shuffle[:, :keep_count], restore, torch.gather(mask, 1, restore)


def _random_node_mask(
    batch: Batch, num_graphs: int, ratio: float, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """Per graph and type, mask round(ratio * n) random nodes (at least one where the type has nodes)."""
    masks = {}
    for t in NODE_TYPES:
        owner = batch[t].batch
        counts = torch.bincount(owner, minlength=num_graphs)
        wanted = torch.round(counts.double() * ratio).long().clamp(min=1)
        order = _group_by_owner(owner, generator)
        rank = _rank_within(owner[order], num_graphs)
        mask = torch.zeros_like(owner, dtype=torch.bool)
        mask[order] = rank < wanted[owner[order]]
        masks[t] = mask
    return masks
