"""SASRec trained with full cross-entropy over all tokens (SASRec-CE).

Self-attentive sequential recommendation (Kang & McAuley, 2018) with the
loss of Klenitskiy & Vasilev (2023, "Turning Dross Into Gold Loss"): softmax
cross-entropy over the whole vocabulary at every position, no sampled
negatives. Learned positional embeddings, pre-norm causal self-attention
blocks, a final layer norm, and an output layer tied to the input token
embeddings. Sequences are left-padded; padded keys are masked out of
attention and positions are counted from the most recent event, so the
amount of padding never changes a prediction. Training uses every position
of every training sequence (long sequences are cut into windows of
`max_len` from the end) and stops early on validation NDCG@10.

This module knows nothing about events, text or the evaluation harness.
torch is imported inside the functions that need it.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from .base import check_sequences, check_valid, popularity

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SASRecConfig:
    """Hyper-parameters of SASRec-CE (defaults: the usual Amazon-Beauty setting)."""

    max_len: int = 50  # positions seen by the model (the most recent events)
    hidden: int = 64  # embedding and hidden size
    n_layers: int = 2  # self-attention blocks
    n_heads: int = 1  # attention heads; must divide hidden
    dropout: float = 0.5  # on embeddings, attention weights, residual branches
    lr: float = 1e-3  # Adam learning rate
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    batch_size: int = 128  # training windows per step
    max_epochs: int = 200  # upper bound; early stopping usually ends sooner
    patience: int = 10  # epochs without validation NDCG@10 improvement before stopping
    seed: int = 0  # weight init, dropout and batch order
    device: str = (
        "cpu"  # "cpu", "cuda", "cuda:N" (falls back to the CPU if CUDA is missing) or "mps"
    )
    num_threads: int | None = (
        None  # torch CPU threads while fitting/predicting (None = leave as is)
    )
    progress: bool = True  # tqdm bar over epochs

    def __post_init__(self) -> None:
        for name in (
            "max_len",
            "hidden",
            "n_layers",
            "n_heads",
            "batch_size",
            "max_epochs",
            "patience",
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}={v!r}; expected an int >= 1")
        if self.hidden % self.n_heads:
            raise ValueError(f"hidden={self.hidden} must be divisible by n_heads={self.n_heads}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout={self.dropout}; expected 0 <= dropout < 1")
        if not self.lr > 0:
            raise ValueError(f"lr={self.lr}; expected > 0")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay={self.weight_decay}; expected >= 0")
        dev = self.device.split(":")
        if (
            dev[0] not in ("cpu", "cuda", "mps")
            or len(dev) > 2
            or (len(dev) == 2 and not dev[1].isdigit())
        ):
            raise ValueError(f"device={self.device!r}; expected 'cpu', 'cuda', 'cuda:N' or 'mps'")
        if self.num_threads is not None and (
            not isinstance(self.num_threads, int) or self.num_threads < 1
        ):
            raise ValueError(f"num_threads={self.num_threads!r}; expected None or an int >= 1")


def _build_net(n_classes: int, cfg: SASRecConfig):
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Block(nn.Module):
        """Pre-norm causal self-attention + position-wise feed-forward, both residual."""

        def __init__(self) -> None:
            super().__init__()
            h = cfg.hidden
            self.ln1 = nn.LayerNorm(h)
            self.qkv = nn.Linear(h, 3 * h)
            self.proj = nn.Linear(h, h)
            self.ln2 = nn.LayerNorm(h)
            self.ff = nn.Sequential(
                nn.Linear(h, h), nn.ReLU(), nn.Dropout(cfg.dropout), nn.Linear(h, h)
            )
            self.drop = nn.Dropout(cfg.dropout)

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            b, L, h = x.shape
            qkv = self.qkv(self.ln1(x)).view(b, L, 3, cfg.n_heads, h // cfg.n_heads)
            q, k, v = qkv.permute(2, 0, 3, 1, 4)
            p = cfg.dropout if self.training else 0.0
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
            x = x + self.drop(self.proj(a.transpose(1, 2).reshape(b, L, h)))
            return x + self.drop(self.ff(self.ln2(x)))

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(
                n_classes + 1, cfg.hidden, padding_idx=0
            )  # token t is stored as t + 1
            self.pos = nn.Embedding(
                cfg.max_len, cfg.hidden
            )  # row max_len - 1 = the most recent event
            self.drop = nn.Dropout(cfg.dropout)
            self.blocks = nn.ModuleList(Block() for _ in range(cfg.n_layers))
            self.ln = nn.LayerNorm(cfg.hidden)
            nn.init.normal_(self.emb.weight, std=cfg.hidden**-0.5)
            with torch.no_grad():
                self.emb.weight[0].zero_()

        def forward(self, seq: torch.Tensor) -> torch.Tensor:
            """seq (B, L) left-padded with 0, L <= max_len -> hidden states (B, L, H)."""
            L = seq.shape[1]
            real = seq > 0
            x = self.emb(seq) * math.sqrt(cfg.hidden) + self.pos.weight[cfg.max_len - L :]
            x = self.drop(x) * real.unsqueeze(-1)
            causal = torch.ones(L, L, dtype=torch.bool, device=seq.device).tril()
            eye = torch.eye(L, dtype=torch.bool, device=seq.device)
            # a query sees earlier real positions; a padded query sees only itself (no empty rows)
            mask = ((causal & real[:, None, :]) | eye)[:, None]
            for blk in self.blocks:
                x = blk(x, mask)
            return self.ln(x)

        def logits(self, h: torch.Tensor) -> torch.Tensor:
            """(..., H) -> (..., n_classes), through the tied token embeddings."""
            return h @ self.emb.weight[1:].T

    return Net()


def _left_pad(seqs: Sequence[Sequence[int]], L: int) -> np.ndarray:
    """int64 (n, L): each sequence's last L tokens, shifted by +1, right-aligned; 0 = padding."""
    out = np.zeros((len(seqs), L), dtype=np.int64)
    for i, s in enumerate(seqs):
        s = list(s)[-L:] if L else []
        if s:
            out[i, L - len(s) :] = np.asarray(s, dtype=np.int64) + 1
    return out


def _windows(sequences: Sequence[Sequence[int]], L: int) -> tuple[np.ndarray, np.ndarray]:
    """Training pairs (inputs s[:-1], targets s[1:]) in windows of L, cut from the end.

    Every token after the first of a sequence is a target exactly once.

    Example:
        >>> x, y = _windows([[5, 6, 7, 8]], 2)  # (tokens are stored + 1)
        >>> x.tolist(), y.tolist()
        ([[7, 8], [0, 6]], [[8, 9], [0, 7]])
    """
    xs, ys = [], []
    for s in sequences:
        s = list(s)
        end = len(s)
        while end >= 2:
            start = max(0, end - L - 1)
            xs.append(s[start : end - 1])
            ys.append(s[start + 1 : end])
            end = start + 1 if start > 0 else 0
    return _left_pad(xs, L), _left_pad(ys, L)


def _batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of similar length (sorted within pools of 32 batches), in random order."""
    order = rng.permutation(len(lengths))
    pool = batch_size * 32
    out: list[np.ndarray] = []
    for s in range(0, len(order), pool):
        chunk = order[s : s + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        out.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [out[i] for i in rng.permutation(len(out))]


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    import torch

    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


class SASRec:
    """SASRec-CE as a `Ranker`.

    After `fit`, `history` holds one record per epoch (loss, validation
    NDCG@10, seconds), `best_epoch` the epoch whose weights are kept.

    Example:
        >>> m = SASRec(SASRecConfig(max_epochs=2, progress=False)).fit([[0, 1, 2, 0, 1, 2]], 3)
        >>> m.predict_proba([[0, 1], []]).shape
        (2, 3)
    """

    name = "sasrec_ce"

    def __init__(self, config: SASRecConfig | None = None) -> None:
        self.config = config or SASRecConfig()
        self.history: list[dict[str, float]] = []
        self.best_epoch: int | None = None
        self.net = None

    def _device(self):
        import torch

        if self.config.device.startswith("cuda") and not torch.cuda.is_available():
            logger.warning("CUDA requested but not available; SASRec runs on the CPU")
            return torch.device("cpu")
        return torch.device(self.config.device)

    def fit(self, sequences, n_classes, *, valid=None) -> SASRec:
        """Train on every position of `sequences`; keep the epoch with the best validation NDCG@10.

        Without `valid` (or with no validation cases) it trains `max_epochs`
        epochs and keeps the last weights.
        """
        import torch

        check_sequences(sequences, n_classes)
        check_valid(valid, n_classes)
        if valid is not None and not len(valid[1]):
            valid = None
        self.n = int(n_classes)
        self.pop = popularity(sequences, self.n).astype(np.float32)
        self.dev = self._device()
        self.history, self.best_epoch = [], None
        x_all, y_all = _windows(sequences, self.config.max_len)
        if len(x_all) == 0:
            logger.warning(
                "SASRec: no training pairs (all sequences shorter than 2): it predicts popularity"
            )
            self.net = None
            return self
        forked = [self.dev] if self.dev.type == "cuda" else []
        with _threads(self.config.num_threads), torch.random.fork_rng(devices=forked):
            torch.manual_seed(self.config.seed)
            self._train(x_all, y_all, valid)
        return self

    def _train(self, x_all: np.ndarray, y_all: np.ndarray, valid) -> None:
        import torch
        from torch.nn import functional as F
        from tqdm.auto import tqdm

        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        self.net = _build_net(self.n, cfg).to(self.dev)
        opt = torch.optim.AdamW(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        lengths = (x_all > 0).sum(axis=1)
        logger.info(
            "SASRec-CE: %d windows, %d targets, %d classes, config %s",
            len(x_all),
            int(lengths.sum()),
            self.n,
            asdict(cfg),
        )
        best, best_state, bad = -math.inf, None, 0
        bar = tqdm(range(cfg.max_epochs), desc="SASRec-CE", disable=not cfg.progress, leave=False)
        for epoch in bar:
            t0 = time.perf_counter()
            self.net.train()
            total, n_tok = 0.0, 0
            for idx in _batches(lengths, cfg.batch_size, rng):
                L = int(lengths[idx].max())
                x = torch.from_numpy(x_all[idx, -L:]).to(self.dev)
                y = torch.from_numpy(y_all[idx, -L:]).to(self.dev)
                sel = y > 0
                loss = F.cross_entropy(self.net.logits(self.net(x)[sel]), y[sel] - 1)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item() * int(sel.sum())
                n_tok += int(sel.sum())
            rec = {"epoch": epoch + 1, "loss": total / n_tok}
            if valid is not None:
                rec["valid_ndcg@10"] = self.valid_ndcg(valid[0], valid[1])
                if rec["valid_ndcg@10"] > best:
                    best, bad, self.best_epoch = rec["valid_ndcg@10"], 0, epoch + 1
                    best_state = copy.deepcopy(self.net.state_dict())
                else:
                    bad += 1
            rec["seconds"] = time.perf_counter() - t0
            self.history.append(rec)
            bar.set_postfix({k: round(v, 4) for k, v in rec.items() if k != "epoch"})
            logger.info("SASRec-CE epoch %s", rec)
            if valid is not None and bad >= cfg.patience:
                break
        if best_state is not None:
            self.net.load_state_dict(best_state)
        else:
            self.best_epoch = len(self.history)

    def _logits(self, histories: Sequence[Sequence[int]], batch_size: int) -> Iterator[np.ndarray]:
        """float32 (chunk, n_classes) next-token logits, chunk by chunk, in eval mode."""
        import torch

        self.net.eval()
        with torch.inference_mode():
            for s in range(0, len(histories), batch_size):
                chunk = histories[s : s + batch_size]
                L = max(1, min(self.config.max_len, max(len(h) for h in chunk)))
                x = torch.from_numpy(_left_pad(chunk, L)).to(self.dev)
                yield self.net.logits(self.net(x)[:, -1]).float().cpu().numpy()

    def valid_ndcg(
        self, histories: Sequence[Sequence[int]], targets: Sequence[int], batch_size: int = 1024
    ) -> float:
        """Mean NDCG@10; rank = other tokens scoring >= the target (ties count against it)."""
        targets = np.asarray(targets, dtype=np.int64)
        total = 0.0
        for s, z in zip(
            range(0, len(targets), batch_size), self._logits(histories, batch_size), strict=True
        ):
            empty = np.array([len(h) == 0 for h in histories[s : s + batch_size]])
            z[empty] = np.log(self.pop)
            t = z[np.arange(len(z)), targets[s : s + batch_size]][:, None]
            rank = (z >= t).sum(axis=1) - 1  # 0 = first
            total += float(np.where(rank < 10, 1.0 / np.log2(rank + 2.0), 0.0).sum())
        return total / max(len(targets), 1)

    def predict_proba(
        self, histories: Sequence[Sequence[int]], batch_size: int = 512
    ) -> np.ndarray:
        """float32 (n, n_classes) softmax over all tokens; an empty history gets the prior."""
        if not hasattr(self, "pop"):
            raise RuntimeError("SASRec is not fitted: call fit() first")
        check_sequences(histories, self.n, "history")
        out = np.empty((len(histories), self.n), dtype=np.float32)
        if self.net is None:
            out[:] = self.pop
            return out
        with _threads(self.config.num_threads):
            for s, z in zip(
                range(0, len(histories), batch_size),
                self._logits(histories, batch_size),
                strict=True,
            ):
                z = np.exp(z - z.max(axis=1, keepdims=True))
                out[s : s + len(z)] = z / z.sum(axis=1, keepdims=True)
        empty = np.array([len(h) == 0 for h in histories], dtype=bool)
        out[empty] = self.pop
        return out
