"""OSM tags as the official GeoLink data writes them: unique, normalised ``"key:value"`` strings."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache

import numpy as np

from geolink_store.errors import InputError


class NormalisedTags(tuple):
    """A node's tags as unique, normalised ``"key:value"`` strings (what :func:`normalise_tags` returns)."""

    __slots__ = ()


def normalise_tags(tags: str | Mapping | Sequence[str] | None) -> NormalisedTags:
    """A node's tags as unique ``"key:value"`` strings, normalised as the official GeoLink data is.

    A ``:`` inside a key becomes a space (``roof:shape`` -> ``roof shape``) and the value ``yes`` becomes the
    key (``building=yes`` -> ``building:building``). Accepts a mapping ``{key: value}``, a
    ``"key:value;key:value"`` string (the official ``label`` format; an item without ``:`` continues the
    previous value, as OSM multi-values like ``cuisine=pizza;burger`` do), or a sequence of ``"key:value"``
    strings. Bytes are decoded as UTF-8 with replacement; missing values are dropped. The result is returned
    as it is when normalised again.

    Raises:
        InputError: ``tags`` is none of these.
    """
    if isinstance(tags, NormalisedTags):
        return tags
    if isinstance(tags, str):
        return _normalise_tag_string(tags)
    if tags is None or (isinstance(tags, float) and math.isnan(tags)):
        return NormalisedTags()
    if isinstance(tags, Mapping):
        pairs = tags.items()
    elif isinstance(tags, Sequence | np.ndarray):
        pairs = (str(tag).partition(":")[::2] for tag in tags)
    else:
        raise InputError(
            f"OSM tags must be a dict or a 'key:value;key:value' string, got {type(tags).__name__}"
        )
    return _tag_strings(pairs)


@lru_cache(maxsize=1 << 16)
def _normalise_tag_string(text: str) -> NormalisedTags:
    pairs: list[list[str]] = []
    for item in text.split(";"):
        key, sep, value = item.partition(":")
        if sep:
            pairs.append([key, value])
        elif pairs and item.strip():
            pairs[-1][1] += ";" + item
    return _tag_strings(pairs)


def _tag_strings(pairs: Iterable) -> NormalisedTags:
    out = []
    for key, value in pairs:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        key, value = _clean_text(key).replace(":", " "), _clean_text(value)
        if key and value:
            out.append(f"{key}:{key if value == 'yes' else value}")
    return NormalisedTags(dict.fromkeys(out))


def _clean_text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").strip()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).encode("utf-8", "replace").decode("utf-8").strip()
