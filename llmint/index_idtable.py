"""Item ids by label, and labels by item id, in about 30 bytes an item instead of 160.

A list of str and a dict of str -> int (what `Catalogue` kept until now) cost 166 B per item,
measured on 10M ids: 17 GB at 100M items, more than the index's own PQ codes, and 5 s per
10M items just to fill the dict when a saved index is loaded. `IdTable` keeps:

- every id's UTF-8 bytes, each ended by 0xFF (the byte no UTF-8 text holds), in one growing
  buffer, with each label's end offset: what `items.ids` holds on disk (`llmint.index_ids`),
  so a saved catalogue is loaded by reading its bytes, without creating one str per id;
- for the lookup of labels by id, a sorted array of 64-bit hashes of those bytes with their
  labels, built only when first needed (a loaded index that only searches never builds it),
  plus a dict of the ids added since the array was last merged (merged once it holds an
  eighth as many, so a catalogue added in windows is merged O(log n) times, each in O(n)).

The hash is a polynomial over the bytes, mod 2^64, computed for many ids at once with numpy;
two ids with the same hash are told apart by their bytes, so a collision costs time, never
a wrong label. Removed labels keep their bytes (the caller's live mask tells them apart;
`hits` never returns them); a label restored as removed has none.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import numpy as np

END = 0xFF  # ends every id's bytes: never a byte of UTF-8 text
_END = "\udcff"  # what surrogateescape decodes END to
_P = np.uint64(0x100000001B3)  # odd multiplier (the FNV prime) of the polynomial hash
_MERGE_MIN = 1 << 16  # the recent dict is merged into the sorted hashes past this size...
_MERGE_SHARE = 8  # ... or past 1/8 of them, whichever is larger
_HASH_ROWS = 1 << 18  # ids hashed per numpy pass (bounds its temporary arrays)
_LEN_MIX = 0x9E3779B97F4A7C15  # each id's byte length, times this, is xored into its hash
_FEW = 8  # up to this many ids are hashed in Python
_BUILD_LOCK = threading.Lock()  # one restored table's hashes are built by one thread


def encode(ids: Sequence[str]) -> bytes:
    """`ids` (str without lone surrogates) as UTF-8, each ended by 0xFF."""
    blob = (_END.join(ids) + _END).encode("utf-8", "surrogateescape") if len(ids) else b""
    if blob.count(END) != len(ids):  # an id held U+DCFF: its byte would split it
        raise ValueError(f"an item id among {list(ids[:3])}... is not valid Unicode text")
    return blob


def decode(blob: bytes | np.ndarray) -> list[str]:
    """The ids in `blob` (0xFF-ended UTF-8), split in C."""
    raw = blob.tobytes() if isinstance(blob, np.ndarray) else blob
    return raw[:-1].decode("utf-8", "surrogateescape").split(_END) if raw else []


def _powers(n: int) -> np.ndarray:
    return np.cumprod(np.full(n, _P, dtype=np.uint64))  # P^1 .. P^n, wrapping mod 2^64


def segment_hashes(data: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The uint64 hash of each of the consecutive segments of `data` (uint8), of `lengths` (>= 1)."""
    if not len(lengths):
        return np.zeros(0, dtype=np.uint64)
    starts = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    pos = np.arange(len(data), dtype=np.int64) - np.repeat(starts, lengths)  # offset within its id
    terms = data.astype(np.uint64) * _powers(int(lengths.max()))[pos]
    return np.add.reduceat(terms, starts) ^ (lengths.astype(np.uint64) * np.uint64(_LEN_MIX))


def hashes_of(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The hash and byte length of each id in `blob` (from `encode`)."""
    data = np.frombuffer(blob, dtype=np.uint8)
    ends = np.flatnonzero(data == END) + 1
    lengths = np.diff(ends, prepend=0)
    return segment_hashes(data, lengths), lengths


def _few_hashes(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    """`hashes_of(blob)` computed in Python, for a few short ids."""
    p, mask = int(_P), (1 << 64) - 1
    hashes, lengths = [], []
    for part in blob.split(bytes([END]))[:-1]:
        h = END * p  # the ending byte is hashed too, innermost in Horner's rule
        for b in reversed(part):
            h = ((h + b) * p) & mask
        n = len(part) + 1
        hashes.append(h ^ ((n * _LEN_MIX) & mask))
        lengths.append(n)
    return np.array(hashes, dtype=np.uint64), np.array(lengths, dtype=np.int64)


class IdTable:
    """Labels 0..n-1, each with an id's bytes (0xFF-ended UTF-8), and the labels of ids."""

    def __init__(self) -> None:
        self._data = np.zeros(0, dtype=np.uint8)  # every id's bytes (room for more)
        self._nbytes = 0
        self._ends = np.zeros(0, dtype=np.int64)  # label -> end offset in _data (room for more)
        self._n = 0
        # sorted hashes of labels [0, _upto) and their labels: one tuple, replaced whole, so a
        # reader in another thread never pairs new hashes with old labels
        self._table: tuple[np.ndarray, np.ndarray] = (np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64))
        self._upto = 0
        self._built = True  # False: [0, _upto) not hashed yet (a restored table)
        self._recent: dict[str, int] = {}  # live ids of labels >= _upto

    def __len__(self) -> int:
        return self._n

    @classmethod
    def restore(cls, n_labels: int, labels: np.ndarray, blob: np.ndarray) -> IdTable:
        """`n_labels` labels of which `labels` (ascending) have the ids in `blob` (0xFF-ended
        UTF-8, uint8, in label order); the others have none. ValueError when the counts differ."""
        data = np.asarray(blob, dtype=np.uint8)
        ends = np.flatnonzero(data == END) + 1
        if len(ends) != len(labels) or (len(data) and data[-1] != END):
            raise ValueError(f"{len(labels)} labels but {len(ends)} ids")
        lengths = np.zeros(n_labels, dtype=np.int64)
        lengths[labels] = np.diff(ends, prepend=0)
        table = cls()
        table._data, table._nbytes = data, len(data)
        table._ends, table._n = np.cumsum(lengths), n_labels
        table._upto, table._built = n_labels, False
        return table

    # ------------------------------------------------------------- label -> id

    def id_of(self, label: int) -> str:
        """The id of `label` (bytes kept after a removal; '' for a label restored as removed)."""
        return self.ids_at([label])[0]

    def ids_at(self, labels: Sequence[int]) -> list[str]:
        """The ids of `labels` (any order; '' for a label restored as removed)."""
        at = np.asarray(labels, dtype=np.int64)
        ends = self._ends[at]
        starts = np.where(at > 0, self._ends[np.maximum(at - 1, 0)], 0)
        view = memoryview(self._data)
        return [str(view[s : max(s, e - 1)], "utf-8", "surrogateescape")
                for s, e in zip(starts.tolist(), ends.tolist(), strict=True)]

    def blob(self, labels: np.ndarray | None = None) -> np.ndarray:
        """The 0xFF-ended bytes (uint8) of `labels` (ascending), or of every label when None."""
        if labels is None or len(labels) == self._n:
            return self._data[: self._nbytes]
        return np.concatenate([np.zeros(0, np.uint8), *self.blobs(labels)])

    def blobs(self, labels: np.ndarray, rows: int = _HASH_ROWS * 4) -> Iterator[np.ndarray]:
        """`blob(labels)` (`labels` ascending) a chunk of `rows` labels at a time: a save of 100M
        ids holds one chunk, not a second copy of every id's bytes and a mask as long."""
        for s in range(0, len(labels), rows):
            part = labels[s : s + rows]
            lo, hi = int(part[0]), int(part[-1]) + 1
            first = int(self._ends[lo - 1]) if lo else 0
            data = self._data[first : int(self._ends[hi - 1])]
            if hi - lo == len(part):  # no label missing in between: the bytes as they lie
                yield data
                continue
            keep = np.zeros(hi - lo, dtype=bool)
            keep[part - lo] = True
            yield data[np.repeat(keep, np.diff(self._ends[lo:hi], prepend=first))]

    def ids(self, labels: np.ndarray | None = None) -> list[str]:
        """The ids of `labels` (ascending), or of every label when None."""
        return decode(self.blob(labels))

    # ------------------------------------------------------------- id -> label

    def find(self, ids: Sequence[str], alive: np.ndarray) -> np.ndarray:
        """The live label (`alive`: label -> live?) of each of `ids`, -1 for none (int64)."""
        get = self._recent.get
        out = np.array([get(iid, -1) for iid in ids], dtype=np.int64)
        rest = np.flatnonzero(out < 0).tolist()
        if not rest or not self._upto:
            return out
        self._build()
        blob = encode([ids[j] for j in rest])
        if len(rest) <= _FEW:  # numpy's fixed cost (~30 us a call) outweighs a loop in Python
            hashes, lengths = _few_hashes(blob)
        else:
            hashes, lengths = hashes_of(blob)
        order = np.argsort(hashes)  # ascending keys: numpy's binary search starts where the last ended
        lo = np.empty(len(hashes), dtype=np.int64)
        table, table_label = self._table
        n = len(table)
        lo[order] = np.searchsorted(table, hashes[order], side="left")
        offset = np.concatenate([[0], np.cumsum(lengths)])
        hit = lo < n
        hit[hit] = table[lo[hit]] == hashes[hit]
        for k in np.flatnonzero(hit).tolist():  # ids whose hash is in the table: compared byte for byte
            want, h = blob[offset[k] : offset[k + 1]], table[lo[k]]
            for at in range(int(lo[k]), n):
                if table[at] != h:
                    break
                lab = int(table_label[at])
                if alive[lab] and self._bytes(lab) == want:
                    out[rest[k]] = lab
                    break
        return out

    def _bytes(self, label: int) -> bytes:
        start = int(self._ends[label - 1]) if label else 0
        return self._data[start : int(self._ends[label])].tobytes()

    def append(self, ids: Sequence[str]) -> None:
        """Give `ids` (new, unique, without lone surrogates) the next labels."""
        blob = np.frombuffer(encode(ids), dtype=np.uint8)
        n0, b0 = self._n, self._nbytes
        self._data = _room(self._data, b0 + len(blob))
        self._data[b0 : b0 + len(blob)] = blob
        self._ends = _room(self._ends, n0 + len(ids))
        self._ends[n0 : n0 + len(ids)] = b0 + np.flatnonzero(blob == END) + 1
        self._n, self._nbytes = n0 + len(ids), b0 + len(blob)
        if self._built:  # a restored table hashes these too when it is built
            self._recent.update(zip(ids, range(n0, n0 + len(ids)), strict=True))
            if len(self._recent) > max(_MERGE_MIN, len(self._table[0]) // _MERGE_SHARE):
                self._merge(self._upto, self._n)

    def forget(self, ids: Sequence[str]) -> None:
        """`ids` were removed: the recent dict lets go of them (the sorted part checks `alive`)."""
        for iid in ids:
            self._recent.pop(iid, None)

    def _build(self) -> None:
        """Hash a restored table's labels, once; threads that look ids up meanwhile wait for it."""
        if self._built:
            return
        with _BUILD_LOCK:
            if not self._built:
                upto = self._upto
                self._merge(0, upto)
                self._merge(upto, self._n)
                self._built = True  # last: another thread reads the table only once it is whole

    def _merge(self, start: int, stop: int) -> None:
        """Hash labels [start, stop) (those with bytes) into the sorted table."""
        first = int(self._ends[start - 1]) if start else 0
        lengths = np.diff(self._ends[start:stop], prepend=first)
        labels = np.flatnonzero(lengths) + start
        parts = []
        for s in range(0, len(labels), _HASH_ROWS):  # the bytes of labels [start, stop) are contiguous
            rows = labels[s : s + _HASH_ROWS]
            lo = first if s == 0 else int(self._ends[rows[0] - 1])
            hi = int(self._ends[rows[-1]])
            parts.append(segment_hashes(self._data[lo:hi], lengths[rows - start]))
        del lengths
        hashes = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)
        del parts
        order = np.argsort(hashes, kind="stable")
        hashes, labels = hashes[order], labels[order]
        del order
        old, old_label = self._table
        if len(old):  # one linear merge of two sorted runs
            at = np.searchsorted(old, hashes, side="right")
            self._table = (np.insert(old, at, hashes), np.insert(old_label, at, labels))
        else:
            self._table = (hashes, labels)
        self._upto = stop
        self._recent.clear()


def _room(a: np.ndarray, need: int) -> np.ndarray:
    """`a`, or a copy with room for `need` entries (doubling: O(log n) copies)."""
    if need <= len(a):
        return a
    grown = np.zeros(max(need, 2 * len(a)), dtype=a.dtype)
    grown[: len(a)] = a
    return grown


__all__ = ["IdTable", "decode", "encode", "hashes_of", "segment_hashes"]
