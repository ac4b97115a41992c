"""Every saved file's format, read and verified in one place: fast models, the accurate
tier's files, retrained heads and checkpoints. Never pickled.

Each kind of file has a :class:`Format` (its name and the versions this code reads) that
its manifest must name, and every payload is checked against the SHA-256 its manifest
records (:func:`verify`) before anything in it is read.

A fast model:

``<directory>/manifest.json``
    what the model is (format, name, labels, settings, metrics, training data,
    library versions, creation time) and the SHA-256 of the arrays file.
``<directory>/model.npz``
    a zip of ``.npy`` arrays written with ``allow_pickle=False``.

Format version 2 stores the members uncompressed, each array's data aligned to
64 bytes, so a server memory-maps the file and reads the arrays in place: every
worker shares the same pages, and loading copies nothing. The same bytes travel
through the database for retrained versions (``feedback/store.py``), where the arrays
are views of the blob. Version 1 files (deflated members, the format before
issue #9) are still read; their arrays are decompressed into memory.

Only numeric arrays are accepted (no object dtype), and the arrays file must
match the manifest's checksum before anything in it is read.
"""
from __future__ import annotations

import hashlib
import io
import json
import mmap
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sentiment_clf.errors import ModelFileError

ARRAYS_FILE = "model.npz"
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class Format:
    """A kind of saved file: the ``format`` its manifest names, the ``format_version``
    written now and those this code reads (None: a manifest written before versions)."""

    name: str
    version: int
    readable: tuple[int | None, ...]
    what: str  # what it is called in errors

    def stamp(self) -> dict:
        """What a manifest of this format starts with."""
        return {"format": self.name, "format_version": self.version}

    def check(self, manifest: Any, source: str) -> None:
        """ModelFileError unless ``manifest`` is a manifest of this format, of a readable version."""
        if not isinstance(manifest, dict) or manifest.get("format") != self.name \
                or manifest.get("format_version") not in self.readable:
            versions = ", ".join(str(v) for v in self.readable if v is not None)
            raise ModelFileError(f"{source}: not a {self.name} {self.what} of a version this code reads ({versions})")


FAST_MODEL = Format("sentiment-clf/nlp-model", 2, (1, 2), "model")
ACCURATE_MODEL = Format("sentiment-clf/accurate-model", 1, (1,), "model")
ACCURATE_HEAD = Format("sentiment-clf/accurate-head", 1, (None, 1), "head")  # a retrained head, in the database
LEARNED_STATE = Format("sentiment-clf/learned-state", 1, (1,), "checkpoint")
# The fast model's (this module's first format), as the code that writes one names it.
FORMAT, FORMAT_VERSION = FAST_MODEL.name, FAST_MODEL.version

_ALIGN = 64
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # a zip member's local file header (30 bytes)
_ALIGNMENT_EXTRA_ID = 0xD935  # the extra-field id zipalign uses for padding


def pack_arrays(arrays: dict[str, np.ndarray]) -> bytes:
    """The bytes of an arrays file: the same arrays always give the same bytes.

    Members are stored in name order with fixed timestamps, uncompressed, and
    padded (a zip extra field) so each array's data starts at a multiple of 64.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.save(member, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            # numpy pads its header to 64 bytes, so aligning the member aligns the data.
            start = buffer.tell() + _LOCAL_HEADER.size + len(info.filename.encode())
            padding = (-(start + 4)) % _ALIGN
            info.extra = struct.pack("<HH", _ALIGNMENT_EXTRA_ID, padding) + b"\0" * padding
            archive.writestr(info, member.getvalue())
    return buffer.getvalue()


def unpack_arrays(payload: Any) -> dict[str, np.ndarray]:
    """The arrays in ``payload`` (bytes, a memoryview or an mmap of an arrays file).

    Stored members become read-only views of ``payload`` (no copy); deflated ones
    (format version 1) are decompressed. Raises ValueError for anything else.
    """
    view = memoryview(payload)
    arrays = {}
    with zipfile.ZipFile(_ViewFile(view)) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy") or "/" in info.filename:
                raise ValueError(f"unexpected member {info.filename!r}")
            name = info.filename[:-4]
            if info.compress_type == zipfile.ZIP_STORED:
                arrays[name] = _view_array(view, info)
            else:
                arrays[name] = np.load(io.BytesIO(archive.read(info)), allow_pickle=False)
    return arrays


class _ViewFile(io.RawIOBase):
    """A read-only file over a buffer, for zipfile: reading it copies only what is read."""

    def __init__(self, view: memoryview):
        self._view, self._position = view.cast("B"), 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        start = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}[whence]
        self._position = max(0, start + offset)
        return self._position

    def readinto(self, buffer) -> int:
        chunk = self._view[self._position:self._position + len(buffer)]
        buffer[:len(chunk)] = chunk
        self._position += len(chunk)
        return len(chunk)


def _view_array(view: memoryview, info: zipfile.ZipInfo) -> np.ndarray:
    header = _LOCAL_HEADER.unpack_from(view, info.header_offset)
    name_length, extra_length = header[-2], header[-1]
    start = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
    member = io.BytesIO(view[start:start + min(info.file_size, 65536)])
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(member)
    elif version == (2, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(member)
    else:
        raise ValueError(f"{info.filename}: .npy format version {version} is not supported")
    if dtype.hasobject:
        raise ValueError(f"{info.filename}: object arrays are not allowed")
    count = int(np.prod(shape, dtype=np.int64))
    if member.tell() + count * dtype.itemsize > info.file_size:
        raise ValueError(f"{info.filename}: shorter than its header says")
    array = np.ndarray(shape, dtype=dtype, buffer=view, offset=start + member.tell(),
                       order="F" if fortran_order else "C")
    array.flags.writeable = False
    return array


def checksum(payload: Any) -> str:
    """The SHA-256 of ``payload`` (bytes, or a memory map), as manifests record it."""
    return hashlib.sha256(payload).hexdigest()


def file_checksum(path: Path) -> str:
    return checksum(Path(path).read_bytes())


def verify(payload: Any, expected: Any, source: str,
           remedy: str = "rebuild it with build_model.py or restore it from version control") -> None:
    """ModelFileError unless ``payload``'s SHA-256 is ``expected`` (what its manifest records)."""
    found = checksum(payload)
    if found != expected:
        raise ModelFileError(f"{source}: checksum mismatch, the file was altered or damaged "
                             f"(expected sha256 {expected}, found {found}); {remedy}")


def check(manifest: dict, payload: Any, source: str) -> None:
    """Raise ModelFileError unless ``manifest`` is a fast model's and ``payload`` matches it."""
    FAST_MODEL.check(manifest, source)
    verify(payload, manifest.get("arrays_sha256"), source)


def read_manifest(directory: Path, missing: str = "no model manifest here", kind: Format | None = None) -> dict:
    """The manifest in ``directory`` (of the format ``kind``, when given); ModelFileError when
    missing, not a JSON object or of another format."""
    path = Path(directory) / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFileError(f"{path}: {missing}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path}: not a valid JSON manifest ({exc})") from None
    if kind is not None:
        kind.check(manifest, str(path))
    elif not isinstance(manifest, dict):
        raise ModelFileError(f"{path}: not a manifest (a JSON object)")
    return manifest


def map_arrays_file(directory: Path, manifest: dict) -> mmap.mmap:
    """The arrays file named by ``manifest``, memory-mapped read-only and checked."""
    directory = Path(directory)
    path = directory / str(manifest.get("arrays_file", ARRAYS_FILE))
    if path.parent != directory:
        raise ModelFileError(f"{directory / MANIFEST_FILE}: arrays_file must be a file in the same folder")
    try:
        with path.open("rb") as handle:
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    except FileNotFoundError:
        raise ModelFileError(f"{path}: the model's arrays file is missing") from None
    except ValueError:  # an empty file cannot be mapped
        raise ModelFileError(f"{path}: the model's arrays file is empty") from None
    check(manifest, mapped, str(path))
    return mapped


def write(directory: Path, manifest: dict, payload: bytes) -> None:
    """Write ``payload`` and ``manifest`` into ``directory`` (created if needed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ARRAYS_FILE).write_bytes(payload)
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def library_versions(*packages: str) -> dict:
    """Python's version and each installed package's, for a manifest (what wrote the file)."""
    import platform
    from importlib.metadata import version

    return {"python": platform.python_version(), **{name: version(name) for name in packages}}
