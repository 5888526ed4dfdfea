"""Checking an uploaded ``.npz`` before it is accepted (numpy only, ``allow_pickle=False``).

Accepted: a zip of ``.npy`` members (``numpy.savez`` / ``savez_compressed``) holding

- ``x``: floats, shape ``(rows, features)`` (or images ``(rows, H, W)`` / ``(rows, C, H, W)`` for the
  CNN), every value finite;
- ``y``: integers, shape ``(rows,)``, one class label per row;

at least :data:`MIN_ROWS` rows, no member holding Python objects (a pickle), and the arrays'
uncompressed size within the limit. Every member's header is read before any array is loaded, so a
pickle or an oversized (compressed) array is refused without being unpacked.
"""

from __future__ import annotations

import math
import re
import zipfile
from pathlib import Path
from typing import IO, Any

import numpy as np

MIN_ROWS = 8
MAX_MEMBERS = 16
_MEMBER = re.compile(r"^[A-Za-z0-9_.\-]{1,64}\.npy$")
SAVE_HINT = "save it with numpy.savez(FILE, x=x, y=y)"


class InvalidDataset(Exception):
    """The upload is refused: ``field`` names what is wrong (``file``, ``x``, ``y``)."""

    def __init__(self, field: str, message: str, *, status_code: int = 422) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.status_code = status_code


def inspect_npz(path: Path, *, max_array_bytes: int) -> dict[str, Any]:
    """The summary of a valid upload (rows, x shape and dtype, classes); :class:`InvalidDataset`
    naming the field otherwise."""
    if not zipfile.is_zipfile(path):
        raise InvalidDataset("file", f"is not an .npz archive (a zip of .npy arrays); {SAVE_HINT}")
    try:
        with zipfile.ZipFile(path) as archive:
            headers = _headers(archive)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
        raise InvalidDataset("file", f"is not a readable .npz archive ({exc}); {SAVE_HINT}") from exc
    for name in ("x", "y"):
        if name not in headers:
            raise InvalidDataset(
                name,
                f"missing: the .npz holds {sorted(headers) or 'no arrays'}; it needs x and y ({SAVE_HINT})",
            )
    total = sum(math.prod(shape) * dtype.itemsize for shape, dtype in headers.values())
    if total > max_array_bytes:
        raise InvalidDataset(
            "file",
            f"its arrays take {total} bytes uncompressed; at most {max_array_bytes} (MAX_DATASET_BYTES)",
            status_code=413,
        )
    x, y = _load(path)
    return _check(x, y)


def _headers(archive: zipfile.ZipFile) -> dict[str, tuple[tuple[int, ...], np.dtype[Any]]]:
    members = archive.infolist()
    if len(members) > MAX_MEMBERS:
        raise InvalidDataset("file", f"holds {len(members)} members; an .npz of x and y has a few")
    headers: dict[str, tuple[tuple[int, ...], np.dtype[Any]]] = {}
    for info in members:
        if info.is_dir() or not _MEMBER.match(info.filename):
            raise InvalidDataset(
                "file", f"holds {info.filename[:80]!r}, which is not an .npy array; {SAVE_HINT}"
            )
        name = info.filename.removesuffix(".npy")
        with archive.open(info) as handle:
            shape, dtype = _read_header(handle, name)
        if dtype.hasobject:
            raise InvalidDataset(name, "holds Python objects (a pickle); only numeric arrays are accepted")
        headers[name] = (shape, dtype)
    return headers


def _read_header(handle: IO[bytes], name: str) -> tuple[tuple[int, ...], np.dtype[Any]]:
    try:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except (ValueError, OSError, EOFError) as exc:
        raise InvalidDataset(name, f"is not a readable .npy array ({exc}); {SAVE_HINT}") from exc
    return tuple(int(n) for n in shape), np.dtype(dtype)


def _load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # a zip with something else in front
            raise ValueError("it does not start like an .npz")
        with loaded as archive:
            return archive["x"], archive["y"]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InvalidDataset("file", f"is not a readable .npz without pickles ({exc}); {SAVE_HINT}") from exc


def _check(x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    if x.ndim not in (2, 3, 4) or not np.issubdtype(x.dtype, np.floating) or 0 in x.shape[1:]:
        raise InvalidDataset(
            "x",
            "must be a float array of shape (rows, features), or images (rows, H, W) or (rows, C, H, W); "
            f"got dtype {x.dtype} and shape {x.shape}",
        )
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise InvalidDataset(
            "y",
            "must be a 1-D integer array of class labels, one per row of x; "
            f"got dtype {y.dtype} and shape {y.shape}",
        )
    if len(y) != len(x):
        raise InvalidDataset("y", f"has {len(y)} labels for the {len(x)} rows of x; give one label per row")
    if len(x) < MIN_ROWS:
        raise InvalidDataset(
            "x", f"has {len(x)} rows; at least {MIN_ROWS} are needed (training, validation, probe)"
        )
    if not bool(np.isfinite(x).all()):
        raise InvalidDataset("x", "holds NaN or infinite values; only finite numbers are accepted")
    return {
        "rows": len(x),
        "x_shape": [int(n) for n in x.shape[1:]],
        "x_dtype": str(x.dtype),
        "classes": len(np.unique(y)),
    }
