"""One sample's fields: which tar members hold what, and how each is encoded and decoded.

A sample is the WebDataset convention: tar members ``KEY.EXT`` sharing a key. jestbench reads an
image (``npy`` — raw uint8, ``H x W x C``, for built-in data where PNG decoding would cost the loop —
or ``png``/``jpg``/``jpeg``/``webp``), a caption (``txt``, UTF-8) and optional metadata (``json``: an
object whose ``label`` is a class index or class name and whose ``noise`` names the noise applied).
Other members are ignored. The same functions decode for the loader and check for ``validate``, so
a sample that passes validation is one the loader can read.
"""

from __future__ import annotations

import ast
import io
import json
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

IMAGE_EXTENSIONS = ("npy", "png", "jpg", "jpeg", "webp")
CAPTION_EXTENSION = "txt"
META_EXTENSION = "json"
UNKNOWN_NOISE = "unknown"

_NPY_MAGIC = b"\x93NUMPY"


class SampleDecodeError(ValueError):
    """A field that cannot be decoded; the message says which and why (the caller adds shard and key)."""


@dataclass(frozen=True)
class ImageSpec:
    """The image geometry every sample of a dataset is delivered at: ``size x size``, ``channels`` (1 or 3)."""

    size: int
    channels: int

    @property
    def mode(self) -> str:
        """The PIL mode images are converted to."""
        return "L" if self.channels == 1 else "RGB"


@dataclass(frozen=True)
class Meta:
    """What a sample's ``json`` says: its label (``None`` when it has none) and noise kind."""

    label: int | str | None
    noise: str
    fields: dict[str, Any]


def encode_npy(image: np.ndarray) -> bytes:
    """``image`` (uint8, ``H x W x C``) in NumPy's ``.npy`` format, which any WebDataset reader decodes."""
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.ascontiguousarray(image), allow_pickle=False)
    return buffer.getvalue()


@lru_cache(maxsize=64)
def _npy_header(header: bytes) -> tuple[np.dtype[Any], tuple[int, ...], bool]:
    # Every built-in image has the same header: parse it once (np.load costs ~40 µs per image).
    fields = ast.literal_eval(header.decode("latin1"))
    return (
        np.lib.format.descr_to_dtype(fields["descr"]),
        tuple(fields["shape"]),
        bool(fields["fortran_order"]),
    )


def _decode_npy(data: bytes) -> np.ndarray:
    if not data.startswith(_NPY_MAGIC) or len(data) < 10:
        raise SampleDecodeError("image .npy cannot be decoded (not a .npy array: bad magic bytes)")
    start, width = (10, 2) if data[6] == 1 else (12, 4)
    header_len = int.from_bytes(data[8 : 8 + width], "little")
    try:
        dtype, shape, fortran = _npy_header(data[start : start + header_len])
    except (ValueError, SyntaxError, KeyError, TypeError) as err:
        raise SampleDecodeError(f"image .npy cannot be decoded (unreadable header: {err})") from None
    offset = start + header_len
    expected = math.prod(shape) * dtype.itemsize
    if len(data) - offset != expected or dtype.hasobject:
        raise SampleDecodeError(
            f"image .npy cannot be decoded ({len(data) - offset} data bytes; its header promises {expected})"
        )
    array = np.frombuffer(data, dtype=dtype, offset=offset).reshape(shape, order="F" if fortran else "C")
    return array


def decode_image(data: bytes, extension: str, spec: ImageSpec | None) -> np.ndarray:
    """The image as uint8 ``H x W x C``; converted to ``spec`` (mode, then a centre crop of the
    shorter side resized to ``spec.size``) unless ``spec`` is None (validation only checks decoding)."""
    if extension == "npy":
        array = _decode_npy(data)
        if array.dtype != np.uint8 or array.ndim not in (2, 3):
            raise SampleDecodeError(f".npy image must be uint8 H x W [x C]; got {array.dtype} {array.shape}")
        if array.ndim == 2:
            array = array[:, :, None]
        if spec is None or array.shape == (spec.size, spec.size, spec.channels):
            return array
        from PIL import Image

        image = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
    else:
        from PIL import Image, UnidentifiedImageError

        try:
            image = Image.open(io.BytesIO(data))
            image.load()
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
            raise SampleDecodeError(f"image .{extension} cannot be decoded ({err})") from None
        if spec is None:
            return np.asarray(image)
    return _fit(image, spec)


def _fit(image: Any, spec: ImageSpec) -> np.ndarray:
    from PIL import Image

    image = image.convert(spec.mode)
    if image.size != (spec.size, spec.size):
        width, height = image.size
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        image = image.resize(
            (spec.size, spec.size), Image.Resampling.BICUBIC, box=(left, top, left + side, top + side)
        )
    array = np.asarray(image, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def decode_caption(data: bytes) -> str:
    """The caption text, surrounding whitespace removed; an empty caption is an error."""
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError as err:
        raise SampleDecodeError(f"caption .txt is not UTF-8 ({err})") from None
    if not text:
        raise SampleDecodeError("caption .txt is empty")
    return text


def decode_meta(data: bytes | None) -> Meta:
    """The ``json`` metadata; a sample without one has no label and unknown noise."""
    if data is None:
        return Meta(None, UNKNOWN_NOISE, {})
    try:
        fields = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise SampleDecodeError(f"metadata .json is not valid JSON ({err})") from None
    if not isinstance(fields, dict):
        raise SampleDecodeError(f"metadata .json must be an object; got {type(fields).__name__}")
    label = fields.get("label")
    if isinstance(label, bool) or not (
        label is None or isinstance(label, str) or (isinstance(label, int) and label >= 0)
    ):
        raise SampleDecodeError(f"metadata label {label!r} must be a class index >= 0, a class name or null")
    noise = fields.get("noise", UNKNOWN_NOISE)
    if not isinstance(noise, str):
        raise SampleDecodeError(f"metadata noise {noise!r} must be a string")
    return Meta(label, noise, fields)


def check_fields(fields: dict[str, bytes], image_extension: str) -> None:
    """Decode every field jestbench reads, raising :class:`SampleDecodeError` on the first that fails."""
    decode_image(fields[image_extension], image_extension, None)
    decode_caption(fields[CAPTION_EXTENSION])
    decode_meta(fields.get(META_EXTENSION))
