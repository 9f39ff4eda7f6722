"""Tag normalisation, the on-disk tag-embedding cache, and the CLIP text encoder (tiny random weights)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from geolink_store.errors import GeolinkError
from geolink_store.graphs.text import CLIPTextEncoder, TagEmbeddingCache, encoder_name
from geolink_store.sources.tags import normalise_tags


class HashEncoder:
    """A deterministic text model stand-in: each string hashes to a fixed vector. Counts what it is asked to
    embed."""

    def __init__(self, dim: int = 8, name: str = "hash-8") -> None:
        self.dim, self.name, self.calls = dim, name, []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        digest = [hashlib.sha256(t.encode("utf-8", "surrogatepass")).digest()[: self.dim] for t in texts]
        return (
            np.frombuffer(b"".join(digest), dtype=np.uint8).reshape(len(texts), self.dim).astype(np.float32)
        )


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ({"building": "yes", "roof:shape": "flat"}, ("building:building", "roof shape:flat")),
        ("highway:service;oneway:oneway", ("highway:service", "oneway:oneway")),
        ("amenity:restaurant;cuisine:pizza;burger", ("amenity:restaurant", "cuisine:pizza;burger")),
        (
            {"name": b"Caf\xe9", "building:levels": 3.0, "note": float("nan"), "": "x"},
            ("name:Caf\ufffd", "building levels:3"),
        ),
        ({"addr:street": "Rue\udcff"}, ("addr street:Rue?",)),
        (["shop:shoes", "shop:shoes"], ("shop:shoes",)),
        (None, ()),
        ("", ()),
    ],
)
def test_normalise_tags_follows_the_official_format(tags, expected) -> None:
    assert normalise_tags(tags) == expected
    assert normalise_tags(normalise_tags(tags)) == expected


def test_normalise_tags_rejects_other_types() -> None:
    with pytest.raises(GeolinkError, match="OSM tags must be"):
        normalise_tags(42)


def test_cache_embeds_each_string_once_and_persists(tmp_path) -> None:
    encoder = HashEncoder()
    cache = TagEmbeddingCache(encoder, tmp_path)
    first = cache.embed(["building:building", "highway:service", "building:building"])
    assert encoder.calls == [["building:building", "highway:service"]]
    np.testing.assert_array_equal(first[0], first[2])
    cache.embed(["highway:service"])
    assert len(encoder.calls) == 1

    reopened_encoder = HashEncoder()
    reopened = TagEmbeddingCache(reopened_encoder, tmp_path)
    np.testing.assert_array_equal(reopened.embed(["highway:service", "building:building"]), first[[1, 0]])
    assert reopened_encoder.calls == [] and reopened.encoded == 0
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave no temporaries


def test_cache_is_keyed_by_encoder_name(tmp_path) -> None:
    TagEmbeddingCache(HashEncoder(name="model-a"), tmp_path).embed(["shop:shoes"])
    other = HashEncoder(dim=4, name="model-b")
    assert TagEmbeddingCache(other, tmp_path).embed(["shop:shoes"]).shape == (1, 4)
    assert other.calls == [["shop:shoes"]]
    assert len(list(tmp_path.iterdir())) == 2


def test_cache_skips_a_corrupt_shard_and_re_embeds(tmp_path) -> None:
    cache = TagEmbeddingCache(HashEncoder(), tmp_path)
    cache.embed(["landuse:grass"])
    (shard,) = cache.directory.glob("*.npz")
    shard.write_bytes(b"not a zip")
    encoder = HashEncoder()
    assert TagEmbeddingCache(encoder, tmp_path).embed(["landuse:grass"]).shape == (1, 8)
    assert encoder.calls == [["landuse:grass"]]


def test_cache_rejects_a_bad_encoder_output() -> None:
    class Broken:
        def encode(self, texts):
            return np.zeros((len(texts) + 1, 3))

    with pytest.raises(GeolinkError, match="returned shape"):
        TagEmbeddingCache(Broken()).embed(["a:b"])
    assert encoder_name(Broken()).endswith("Broken")


def test_clip_encoder_matches_the_official_per_string_mean(tmp_path) -> None:
    """Batched, padded encoding equals the official one-string-at-a-time mean over all tokens but BOS."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from tokenizers import pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        vocab.update({c + suffix: len(vocab) + i for i, c in enumerate(alphabet)})
    transformers.CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(tmp_path)
    config = transformers.CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    torch.manual_seed(0)
    transformers.CLIPTextModel(config).save_pretrained(tmp_path)

    encoder = CLIPTextEncoder(tmp_path, name="tiny-clip")
    texts = ["building:building", "a:b", "highway:residential;x"]
    batch = encoder.encode(texts)
    assert batch.shape == (3, 32) and batch.dtype == np.float32 and encoder.dim == 32
    for text, row in zip(texts, batch, strict=True):
        ids = encoder.tokenizer(text, return_tensors="pt").input_ids
        with torch.no_grad():
            alone = encoder.model(input_ids=ids).last_hidden_state[0, 1:].mean(0).numpy()
        np.testing.assert_allclose(row, alone, atol=1e-5)


def test_clip_encoder_needs_weights_on_disk(tmp_path) -> None:
    pytest.importorskip("transformers")
    with pytest.raises(GeolinkError, match="not found"):
        CLIPTextEncoder(tmp_path / "missing")
