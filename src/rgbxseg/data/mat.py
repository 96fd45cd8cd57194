"""MATLAB files: v5/v7 through scipy, v7.3 (HDF5) through h5py. Both are optional dependencies, imported lazily."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..runtime import require
from .errors import DatasetError, existing_file


def load_mat_v5(path: str | os.PathLike[str], **options: Any) -> dict[str, Any]:
    """``scipy.io.loadmat`` with errors that name the file (v7.3 files are refused with the reason)."""
    path = existing_file(path)
    loadmat = require("scipy.io", "datasets", "reading MATLAB v5 files").loadmat
    try:
        return loadmat(path, **options)
    except NotImplementedError as err:  # scipy's answer to HDF5-based v7.3 files
        raise DatasetError(f"{path}: is a MATLAB v7.3 (HDF5) file, expected the v5/v7 format ({err})") from err
    except (ValueError, TypeError, OSError) as err:
        raise DatasetError(f"{path}: not a readable MATLAB file ({err}); re-download it") from err


def open_mat_v73(path: str | os.PathLike[str], *, cache_bytes: int = 64 * 2**20) -> Any:
    """Open a MATLAB v7.3 file read-only as an ``h5py.File`` (arrays come back with their axes reversed)."""
    path = existing_file(path)
    h5py = require("h5py", "datasets", "reading MATLAB v7.3 (HDF5) files")
    try:
        return h5py.File(path, "r", rdcc_nbytes=cache_bytes)
    except OSError as err:
        raise DatasetError(
            f"{path}: not a MATLAB v7.3 (HDF5) file ({err}); it may be truncated or saved in an older MATLAB format"
        ) from err


def mat_key(mat: Any, key: str, path: str | os.PathLike[str]) -> Any:
    """``mat[key]`` with an error naming the file and the keys it does have."""
    try:
        return mat[key]
    except (KeyError, ValueError) as err:
        keys = sorted(k for k in mat if not str(k).startswith("__"))
        raise DatasetError(f"{path}: has no variable {key!r} (it has {keys}); is this the right file?") from err


def read_char_reference(h5file: Any, reference: Any) -> str:
    """A MATLAB char array stored behind an HDF5 object reference (cell arrays of strings in v7.3 files)."""
    codes = np.asarray(h5file[reference]).ravel()
    return "".join(chr(int(code)) for code in codes)
