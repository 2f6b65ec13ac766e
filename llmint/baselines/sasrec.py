"""SASRec trained with full cross-entropy over all tokens (SASRec-CE).

Self-attentive sequential recommendation (Kang & McAuley, 2018) with the
loss of Klenitskiy & Vasilev (2023): softmax cross-entropy over the whole
vocabulary at every position, no sampled negatives. Learned positional
embeddings, pre-norm causal self-attention blocks, output layer tied to the
input embeddings. Histories are left-padded to `max_len`; padded keys are
masked out of attention. Early stopping on validation NDCG@10.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .base import check_sequences

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SASRecConfig:
    """Hyper-parameters of SASRec-CE."""

    max_len: int = 50  # positions seen by the model (the most recent events)
    hidden: int = 64
    n_layers: int = 2
    n_heads: int = 1
    dropout: float = 0.5
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    max_epochs: int = 60
    patience: int = 5  # epochs without validation NDCG@10 improvement before stopping
    seed: int = 0
    device: str = "cpu"
    num_threads: int | None = None  # torch CPU threads (None = leave as is)
    progress: bool = True  # tqdm bar over epochs

    def __post_init__(self) -> None:
        for name in ("max_len", "hidden", "n_layers", "n_heads", "batch_size", "max_epochs", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}; expected >= 1")
        if self.hidden % self.n_heads:
            raise ValueError(f"hidden={self.hidden} must be divisible by n_heads={self.n_heads}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout={self.dropout}; expected 0 <= dropout < 1")
        if self.lr <= 0:
            raise ValueError(f"lr={self.lr}; expected > 0")


def _build_net(n_classes: int, cfg: SASRecConfig):
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            h = cfg.hidden
            self.ln1 = nn.LayerNorm(h)
            self.qkv = nn.Linear(h, 3 * h)
            self.proj = nn.Linear(h, h)
            self.ln2 = nn.LayerNorm(h)
            self.ff = nn.Sequential(nn.Linear(h, h), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(h, h))
            self.drop = nn.Dropout(cfg.dropout)

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            b, L, h = x.shape
            q, k, v = self.qkv(self.ln1(x)).view(b, L, 3, cfg.n_heads, h // cfg.n_heads).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=cfg.dropout if self.training else 0.0
            )
            x = x + self.drop(self.proj(a.transpose(1, 2).reshape(b, L, h)))
            return x + self.drop(self.ff(self.ln2(x)))

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(n_classes + 1, cfg.hidden, padding_idx=0)  # token t is stored as t + 1
            self.pos = nn.Embedding(cfg.max_len, cfg.hidden)
            self.drop = nn.Dropout(cfg.dropout)
            self.blocks = nn.ModuleList(Block() for _ in range(cfg.n_layers))
            self.ln = nn.LayerNorm(cfg.hidden)
            nn.init.normal_(self.emb.weight, std=cfg.hidden**-0.5)
            with torch.no_grad():
                self.emb.weight[0].zero_()

        def forward(self, seq: torch.Tensor) -> torch.Tensor:
            """seq (B, L) left-padded with 0 -> hidden states (B, L, H)."""
            L = seq.shape[1]
            real = seq > 0
            x = self.emb(seq) * math.sqrt(cfg.hidden) + self.pos.weight[:L]
            x = self.drop(x) * real.unsqueeze(-1)
            causal = torch.ones(L, L, dtype=torch.bool, device=seq.device).tril()
            eye = torch.eye(L, dtype=torch.bool, device=seq.device)
            # attend to earlier real positions; every query may attend to itself (no empty rows)
            mask = (causal & real[:, None, :]) | eye
            for blk in self.blocks:
                x = blk(x, mask[:, None])
            return self.ln(x)

        def logits(self, h: torch.Tensor) -> torch.Tensor:
            return h @ self.emb.weight[1:].T

    return Net()


def _left_pad(seqs: Sequence[Sequence[int]], L: int) -> np.ndarray:
    out = np.zeros((len(seqs), L), dtype=np.int64)
    for i, s in enumerate(seqs):
        s = list(s)[-L:]
        if s:
            out[i, L - len(s) :] = np.asarray(s, dtype=np.int64) + 1
    return out


def _windows(sequences: Sequence[Sequence[int]], L: int) -> tuple[np.ndarray, np.ndarray]:
    """Training pairs: inputs s[:-1] and targets s[1:], cut into windows of L from the end."""
    xs, ys = [], []
    for s in sequences:
        s = list(s)
        end = len(s)
        while end >= 2:
            start = max(0, end - L - 1)
            chunk = s[start:end]
            xs.append(chunk[:-1])
            ys.append(chunk[1:])
            end = start + 1 if start > 0 else 0
    return _left_pad(xs, L), _left_pad(ys, L)


class SASRec:
    """SASRec-CE as a `Ranker`."""

    name = "sasrec_ce"

    def __init__(self, config: SASRecConfig | None = None) -> None:
        self.config = config or SASRecConfig()
        self.history: list[dict[str, float]] = []

    def _device(self):
        import torch

        if self.config.device.startswith("cuda") and not torch.cuda.is_available():
            logger.warning("CUDA requested but not available; SASRec trains on the CPU")
            return torch.device("cpu")
        return torch.device(self.config.device)

    def fit(self, sequences, n_classes, *, valid=None) -> SASRec:
        import torch
        from torch.nn import functional as F
        from tqdm.auto import tqdm

        from ..metrics import rank_metrics

        cfg = self.config
        check_sequences(sequences, n_classes)
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        self.n = n_classes
        counts = np.ones(n_classes)
        for s in sequences:
            if len(s):
                counts += np.bincount(np.asarray(s, dtype=np.int64), minlength=n_classes)
        self.pop = (counts / counts.sum()).astype(np.float32)
        self.dev = self._device()
        self.net = _build_net(n_classes, cfg).to(self.dev)
        x_all, y_all = _windows(sequences, cfg.max_len)
        if len(x_all) == 0:
            logger.warning("SASRec: no training pairs; it will predict popularity")
            self.net = None
            return self
        opt = torch.optim.AdamW(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        best, best_state, bad = -1.0, None, 0
        bar = tqdm(range(cfg.max_epochs), desc="SASRec-CE", disable=not cfg.progress, leave=False)
        for epoch in bar:
            self.net.train()
            order = rng.permutation(len(x_all))
            total, steps = 0.0, 0
            for s in range(0, len(order), cfg.batch_size):
                idx = order[s : s + cfg.batch_size]
                x = torch.from_numpy(x_all[idx]).to(self.dev)
                y = torch.from_numpy(y_all[idx]).to(self.dev)
                h = self.net(x)
                sel = y > 0
                loss = F.cross_entropy(self.net.logits(h[sel]), y[sel] - 1)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item()
                steps += 1
            rec = {"epoch": epoch + 1, "loss": total / max(steps, 1)}
            if valid is not None and len(valid[1]):
                probs = self.predict_proba(valid[0])
                rec["valid_ndcg@10"] = float(rank_metrics(probs, np.asarray(valid[1]), ks=(10,))["ndcg@10"].mean())
                if rec["valid_ndcg@10"] > best:
                    best, bad = rec["valid_ndcg@10"], 0
                    best_state = copy.deepcopy(self.net.state_dict())
                else:
                    bad += 1
            self.history.append(rec)
            bar.set_postfix({k: round(v, 4) for k, v in rec.items() if k != "epoch"})
            logger.info("SASRec epoch %s", rec)
            if valid is not None and bad >= cfg.patience:
                break
        if best_state is not None:
            self.net.load_state_dict(best_state)
        self.best_valid_ndcg10 = best
        return self

    def predict_proba(self, histories: Sequence[Sequence[int]], batch_size: int = 512) -> np.ndarray:
        import torch

        out = np.empty((len(histories), self.n), dtype=np.float32)
        if self.net is None:
            out[:] = self.pop
            return out
        self.net.eval()
        with torch.inference_mode():
            for s in range(0, len(histories), batch_size):
                chunk = histories[s : s + batch_size]
                x = torch.from_numpy(_left_pad(chunk, self.config.max_len)).to(self.dev)
                p = torch.softmax(self.net.logits(self.net(x)[:, -1]), dim=-1).float().cpu().numpy()
                empty = np.array([len(h) == 0 for h in chunk])
                p[empty] = self.pop  # cold start with no events: the population prior
                out[s : s + len(chunk)] = p
        return out
