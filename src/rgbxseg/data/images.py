"""Reading and writing the image files of a dataset: one place for decoding, bit depths and error messages."""

from __future__ import annotations

import os
import shutil

import numpy as np
from PIL import Image

from ..io import atomic_write_path
from .errors import DatasetError, existing_file

PNG_COMPRESS_LEVEL = 3
"""zlib level for written PNGs: close to the default's size at a fraction of its encoding time."""

JPEG_SUFFIXES = frozenset({".jpg", ".jpeg"})

SUFFIX_FORMATS = {".png": "PNG"} | dict.fromkeys(JPEG_SUFFIXES, "JPEG")
"""The content (Pillow's format name) that each image suffix promises."""

_DECODE_ERRORS = (OSError, SyntaxError, ValueError)  # what Pillow raises for corrupt or truncated files


def read_image(path: str | os.PathLike[str], *, convert: str | None = None, match_suffix: bool = False) -> np.ndarray:
    """Decode a PNG/JPEG into an array that keeps the stored bit depth (uint8 or uint16).

    ``convert`` (a Pillow mode such as ``"RGB"`` or ``"L"``) converts first; without it palette images give their
    indices, which is what label PNGs need. ``match_suffix`` refuses a ``.png``/``.jpg`` whose content is another
    format: a JPEG named ``.png`` would slip compression artefacts into labels or depth. Raises
    :class:`MissingFileError` or :class:`DatasetError` naming the file.
    """
    path = existing_file(path)
    try:
        with Image.open(path) as image:
            found = "JPEG" if image.format == "MPO" else image.format  # camera JPEGs with extra frames open as MPO
            image.load()
            converted = image.convert(convert) if convert is not None and image.mode != convert else image
            array = np.array(converted)  # a writable copy (np.asarray would be a read-only view)
    except _DECODE_ERRORS as err:
        raise DatasetError(
            f"{path}: cannot be decoded ({err}); the file is corrupt or truncated, re-create it"
        ) from err
    expected = SUFFIX_FORMATS.get(path.suffix.lower())
    if match_suffix and expected not in (None, found):
        raise DatasetError(
            f"{path}: is a {found} file named {path.suffix}; re-create it as a real {expected} (re-encoding will do "
            "for RGB; labels and depth must come from the source, as JPEG compression changes their values)"
        )
    if array.dtype == np.int32 and array.size and array.min() >= 0 and array.max() <= np.iinfo(np.uint16).max:
        array = array.astype(np.uint16)  # 16-bit greyscale opened in Pillow's 32-bit "I" mode
    elif array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("="))
    return array


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(height, width) from the file header, without decoding the pixels."""
    path = existing_file(path)
    try:
        with Image.open(path) as image:
            width, height = image.size
    except _DECODE_ERRORS as err:
        raise DatasetError(f"{path}: not a readable image ({err}); the file is corrupt, re-create it") from err
    return height, width


def image_header(path: str | os.PathLike[str]) -> tuple[tuple[int, int], str] | None:
    """((height, width), Pillow mode) from the header, or None when the file is absent or not an image."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            return (height, width), image.mode
    except (*_DECODE_ERRORS, FileNotFoundError):
        return None


_PIL_MODES = {(np.dtype(np.uint8), 2): "L", (np.dtype(np.uint16), 2): "I;16", (np.dtype(np.uint8), 3): "RGB"}


def write_png(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write uint8 H×W (greyscale), uint16 H×W (16-bit) or uint8 H×W×3 (RGB) atomically."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    mode = _PIL_MODES.get((array.dtype, array.ndim))
    if mode is None or (array.ndim == 3 and array.shape[2] != 3):
        raise ValueError(f"cannot write a {array.dtype} array of shape {array.shape} as PNG ({path})")
    image = Image.fromarray(np.ascontiguousarray(array))
    with atomic_write_path(path) as tmp:
        image.save(tmp, format="PNG", compress_level=PNG_COMPRESS_LEVEL)


def copy_file(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Copy ``source`` to ``target`` atomically (used to keep original JPEGs without re-encoding them)."""
    source = existing_file(source)
    with atomic_write_path(target) as tmp:
        shutil.copyfile(source, tmp)
