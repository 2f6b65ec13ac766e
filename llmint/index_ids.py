"""A saved index's catalogue on disk: its item ids in `items.ids`, its labels and category codes in `items.npz`.

Until format v2 the ids, labels and categories were lists in `meta.json`: one JSON document
built whole in memory to save and parsed whole to load, several times the size of the ids
(measured: 350 B per item at the peak of a load). Now:

- `items.ids`: a header line `llmint-ids 1 <digest> <n>` and then every live item id, in
  label order, as UTF-8 ended by the byte 0xFF. No UTF-8 text holds that byte, so ids may
  hold any character, newlines included. These are the bytes `IdTable`
  (`llmint.index_idtable`) keeps in memory: saved and loaded as one array, no str per id.
- `items.npz`: `labels` (int64, the live labels ascending), `codes` (int32, each one's
  category code into `meta.json`'s `category_names`, -1 for none) and their `digest`.

A file's tag is the digest (sha256, 16 hex digits) of its content, recorded in the file and
in `meta.json`. Both files are written beside and renamed before `meta.json` is, so two
saves of the same catalogue racing on one folder leave files that agree, a reader that
raced a save of another catalogue is told so (`Mismatch`, and `ItemIndex.load` reads
again), and a damaged file is caught when read (the digest is checked: about 1 s per GB).
An id that is not valid Unicode text (a lone surrogate) cannot be written: `Catalogue`
refuses it when it is added.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .errors import ModelError
from .index_idtable import END, decode

IDS = "items.ids"
ENTRIES = "items.npz"
HEADER = "llmint-ids 1"
BLOCK = 1 << 24  # bytes written at a time
DIGEST = 16  # hex digits of sha256 kept as a file's tag


class Mismatch(ModelError):
    """The files of one saved catalogue come from different saves (a writer raced the reader)."""


def _replace(tmp: Path, path: Path) -> None:
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_ids(path: Path, blob: np.ndarray | Iterable[np.ndarray]) -> str:
    """Write the ids in `blob` (uint8: UTF-8, each ended by 0xFF, as `IdTable` keeps them; or
    consecutive chunks of it, `IdTable.blobs`) to `path` via a temporary file; return the
    digest of their bytes (the file's tag)."""
    chunks = [blob] if isinstance(blob, np.ndarray) else blob
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    h = hashlib.sha256()
    n = 0
    try:
        with open(tmp, "wb") as f:
            head = f"{HEADER} {'0' * DIGEST} {' ' * 20}\n".encode()  # the count is known at the end
            f.write(head)
            for chunk in chunks:
                n += int(np.count_nonzero(chunk == END))
                for s in range(0, len(chunk), BLOCK):
                    part = np.ascontiguousarray(chunk[s : s + BLOCK]).data
                    h.update(part)
                    f.write(part)
            digest = h.hexdigest()[:DIGEST]
            f.seek(0)
            f.write(f"{HEADER} {digest} {n:<20}\n".encode())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _replace(tmp, path)
    return digest


def read_id_bytes(path: Path, digest: str, n: int) -> np.ndarray:
    """The bytes (uint8) of the `n` ids in `path`, whose digest is `digest`: Mismatch when
    another save wrote the file, ModelError when it is truncated or damaged."""
    try:
        with open(path, "rb") as f:
            head = f.readline().decode("ascii", "replace").split()
            if head[:2] != HEADER.split() or len(head) != 4:
                raise ModelError(f"{path} is not an item-id file (header {' '.join(head)[:40]!r})")
            if head[2] != digest:
                raise Mismatch(f"{path} was written by another save ({head[2]}, not {digest})")
            body = np.fromfile(f, dtype=np.uint8)
    except FileNotFoundError as err:
        raise Mismatch(f"{path} is missing") from err
    if hashlib.sha256(body.data).hexdigest()[:DIGEST] != digest:
        raise ModelError(f"{path} is damaged: its ids no longer match their digest {digest}")
    found = int(np.count_nonzero(body == END))
    if found != n or head[3] != str(n) or (len(body) and body[-1] != END):
        raise ModelError(f"{path} holds {found} whole ids (header {head[3]}); meta.json says {n}")
    return body


def read_ids(path: Path, digest: str, n: int) -> list[str]:
    """The `n` ids in `path` as str (`read_id_bytes`, decoded)."""
    return decode(read_id_bytes(path, digest, n))


def _digest(labels: np.ndarray, codes: np.ndarray) -> str:
    h = hashlib.sha256(np.ascontiguousarray(labels).data)
    h.update(np.ascontiguousarray(codes).data)
    return h.hexdigest()[:DIGEST]


def write_entries(path: Path, labels: np.ndarray, codes: np.ndarray) -> str:
    """Write the live `labels` and their category `codes` to `path` (.npz); return their digest."""
    labels, codes = labels.astype(np.int64, copy=False), codes.astype(np.int32, copy=False)
    digest = _digest(labels, codes)
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:12]}.tmp.npz")  # numpy would append .npz
    try:
        np.savez(tmp, labels=labels, codes=codes, digest=np.array(digest))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _replace(tmp, path)
    return digest


def read_entries(path: Path, digest: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The (labels, codes) in `path`, `n` of each, whose digest is `digest`: Mismatch when
    another save wrote the file, ModelError when it is damaged."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["digest"]) != digest:
                raise Mismatch(f"{path} was written by another save ({z['digest']}, not {digest})")
            labels, codes = z["labels"], z["codes"]
    except FileNotFoundError as err:
        raise Mismatch(f"{path} is missing") from err
    except (KeyError, ValueError, OSError, EOFError) as err:
        raise ModelError(f"{path} cannot be read as an item table: {err}") from err
    if len(labels) != n or len(codes) != n or labels.dtype != np.int64 or codes.dtype != np.int32:
        raise ModelError(f"{path} holds {len(labels)} labels and {len(codes)} codes; meta.json says {n}")
    if _digest(labels, codes) != digest:
        raise ModelError(f"{path} is damaged: its labels no longer match their digest {digest}")
    return labels, codes


__all__ = ["ENTRIES", "IDS", "Mismatch", "read_entries", "read_id_bytes", "read_ids", "write_entries", "write_ids"]
