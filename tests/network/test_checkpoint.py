"""Checkpoints: official multimodal layout, ours (safetensors), and every way a checkpoint can be wrong."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file, save_file

from model import CheckpointError, GeoLink, fingerprint, preset

TINY = replace(preset("test"), timm_kwargs={"depth": 1}, osm_in_chans=384)
OFFICIAL_CONFIG = {"architecture": "vit_tiny_patch16_224", "num_classes": 0, "global_pool": "", "depth": 1}


class Payload:
    """A class a checkpoint could try to make the loader instantiate."""


@pytest.fixture(scope="module")
def model() -> GeoLink:
    torch.manual_seed(0)
    return GeoLink(TINY).eval()


def test_official_multimodal_layout_round_trip(model: GeoLink, tmp_path) -> None:
    path = tmp_path / "official.pth"
    torch.save({"model_config": OFFICIAL_CONFIG, "model_state_dict": model.state_dict()}, path)
    loaded = GeoLink.from_checkpoint(path)
    assert loaded.config.osm_in_chans == 384 and loaded.config.multimodal
    images = torch.randn(1, 3, 224, 224)
    torch.testing.assert_close(loaded.encode(images).image_global, model.encode(images).image_global)


def test_safetensors_round_trip_keeps_config_and_weights(model: GeoLink, tmp_path) -> None:
    path = model.save(tmp_path / "ours.safetensors")
    loaded = GeoLink.from_checkpoint(path)
    assert loaded.config == model.config
    assert loaded.patch_embed is loaded.img_encoder.patch_embed
    assert fingerprint(loaded.config, loaded.state_dict()) == fingerprint(model.config, model.state_dict())
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_missing_file(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        GeoLink.from_checkpoint(tmp_path / "nope.pth")


@pytest.mark.parametrize("name", ["empty.pth", "empty.safetensors"])
def test_empty_file(tmp_path, name: str) -> None:
    (tmp_path / name).touch()
    with pytest.raises(CheckpointError, match=r"is empty \(0 bytes\)"):
        GeoLink.from_checkpoint(tmp_path / name)


def test_unknown_layout(tmp_path) -> None:
    torch.save({"weights": torch.zeros(1)}, tmp_path / "odd.pth")
    with pytest.raises(CheckpointError, match="unknown checkpoint layout.*weights"):
        GeoLink.from_checkpoint(tmp_path / "odd.pth")


def test_corrupt_file(tmp_path) -> None:
    (tmp_path / "bad.pth").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        GeoLink.from_checkpoint(tmp_path / "bad.pth")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        GeoLink.from_checkpoint(tmp_path / "bad.safetensors")


def test_bad_config_names_the_keys(model: GeoLink, tmp_path) -> None:
    path = model.save(tmp_path / "keys.safetensors")
    config = json.loads(model.config.to_json()) | {"depht": 3}
    save_file(load_file(path), path, metadata={"format": "geolink-store", "config": json.dumps(config)})
    with pytest.raises(CheckpointError, match=r"bad geolink-store config .*unknown keys \['depht'\]"):
        GeoLink.from_checkpoint(path)


def test_wrong_shapes_name_keys_and_shapes(model: GeoLink, tmp_path) -> None:
    state = dict(model.state_dict())
    state["img_fusion_mlp.weight"] = torch.zeros(10, 192)
    del state["osm_node_pred.bias"]
    torch.save({"model_config": OFFICIAL_CONFIG, "model_state_dict": state}, tmp_path / "shapes.pth")
    with pytest.raises(CheckpointError) as error:
        GeoLink.from_checkpoint(tmp_path / "shapes.pth")
    message = str(error.value)
    assert "missing (1): osm_node_pred.bias" in message
    assert "img_fusion_mlp.weight (10, 192) != (256, 192)" in message
    assert "\n" not in message


def test_other_architecture_is_refused(model: GeoLink, tmp_path) -> None:
    config = dict(OFFICIAL_CONFIG, architecture="vit_small_patch16_224")
    torch.save({"model_config": config, "model_state_dict": model.state_dict()}, tmp_path / "arch.pth")
    with pytest.raises(CheckpointError, match="do not fit vit_small_patch16_224.*wrong shape"):
        GeoLink.from_checkpoint(tmp_path / "arch.pth")


def test_pickled_code_is_refused(model: GeoLink, tmp_path) -> None:
    torch.save(
        {"model_config": OFFICIAL_CONFIG, "model_state_dict": model.state_dict(), "x": Payload()},
        tmp_path / "p.pth",
    )
    with pytest.raises(CheckpointError, match="refused: loading it would unpickle code"):
        GeoLink.from_checkpoint(tmp_path / "p.pth")


def test_default_model_is_reproducible() -> None:
    state = torch.random.get_rng_state()
    first, second = GeoLink.default(), GeoLink.default()
    assert torch.equal(state, torch.random.get_rng_state())  # the caller's RNG is untouched
    assert fingerprint(first.config, first.state_dict()) == fingerprint(second.config, second.state_dict())
    assert first.config.osm_in_chans == 384 and first.config.type_attention
    assert not first.training
