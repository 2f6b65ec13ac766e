"""A bounded load test of `InterestService` in-process: threads as clients, then an audit check.

`python -m llmint.loadtest --clients 50 --seconds 60` builds the service on a dataset
(MovieLens by default), starts `--clients` threads that each call
`predict(user_id, explain=False)` on random known shoppers until `--seconds` have
passed (a request in flight when time is up is finished, and the time it takes to
drain is reported), then checks the audit log: every served request has exactly one
row, every row written during the run parses completely, and the SQLite file passes
`PRAGMA integrity_check`. `--coalesce 16` lets the service score up to 16 of the
clients' concurrent requests in one pass (`ServiceConfig.coalesce_max`). It prints and writes a JSON report to
`runs/loadtest/<UTC time>.json`: requests, errors by type, throughput, latency
p50/p95/p99/max, the audit check and the machine. This module knows nothing about
HTTP in-process; with `--url` it loads the running app's signed-in `/predict` API route
instead (loopback only) and checks the app's audit file. torch is imported inside `main`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m llmint.loadtest", description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=50, help="client threads (default 50)")
    p.add_argument("--seconds", type=float, default=60.0, help="how long clients send requests (default 60)")
    p.add_argument("--dataset", default="movielens", help="dataset name or events file (default movielens)")
    p.add_argument("--n-products", type=int, default=5, help="products per prediction (default 5)")
    p.add_argument("--torch-threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the clients' user choices")
    p.add_argument("--coalesce", type=int, default=1, help="the service scores up to this many concurrent "
                   "requests in one pass (ServiceConfig.coalesce_max; default 1: off)")
    p.add_argument("--coalesce-wait-ms", type=float, default=0.0,
                   help="how long a request waits for company (ServiceConfig.coalesce_wait_ms; default 0)")
    p.add_argument("--out", type=Path, default=Path("runs/loadtest"), help="report folder")
    p.add_argument("--url", default=None, help="load the running app (python app.py) at this loopback URL "
                   "instead of an in-process service; needs --user, --password and --audit")
    p.add_argument("--user", default=None, help="app username (with --url)")
    p.add_argument("--password", default=os.environ.get("LLMINT_LOADTEST_PASSWORD"),
                   help="app password (with --url; default $LLMINT_LOADTEST_PASSWORD)")
    p.add_argument("--audit", type=Path, default=None, help="the app's audit SQLite file (with --url)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds a request may wait (with --url)")
    return p


def _check_args(a: argparse.Namespace) -> None:
    if a.clients < 1:
        raise ValueError(f"--clients {a.clients}; expected an int >= 1")
    if not (a.seconds > 0 and np.isfinite(a.seconds)):
        raise ValueError(f"--seconds {a.seconds}; expected a number > 0")
    if a.n_products < 0 or a.torch_threads < 1:
        raise ValueError("--n-products must be >= 0 and --torch-threads >= 1")
    if a.coalesce < 1 or not 0 <= a.coalesce_wait_ms <= 10_000:
        raise ValueError("--coalesce must be >= 1 and --coalesce-wait-ms within [0, 10000]")
    if a.url is not None:
        from urllib.parse import urlparse

        if urlparse(a.url).hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"--url {a.url}: the load test only targets loopback")
        if not (a.user and a.password and a.audit):
            raise ValueError("--url needs --user, --password (or $LLMINT_LOADTEST_PASSWORD) and --audit")


def hammer(call: Callable[[str], str], users: list[str], clients: int, seconds: float, *,
           seed: int = 0) -> dict[str, Any]:
    """`clients` threads call `call(user_id) -> audit_id` on random users until `seconds` have passed.

    Returns the figures and the served audit ids (`audit_ids`); an exception is an error, counted by type.
    """
    if not users:
        raise ValueError("there are no stored shoppers to predict for")
    lock = threading.Lock()
    done: list[tuple[float, str]] = []  # (latency s, audit_id)
    errors: Counter[str] = Counter()
    error_examples: list[str] = []
    start = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def client(k: int) -> None:
        rng = np.random.default_rng([seed, k])
        start.wait()
        while time.perf_counter() < stop_at[0]:
            uid = users[int(rng.integers(len(users)))]
            t0 = time.perf_counter()
            try:
                audit_id = call(uid)
            except Exception as e:  # noqa: BLE001 - every failure is counted and reported
                with lock:
                    errors[type(e).__name__] += 1
                    if len(error_examples) < 5:
                        error_examples.append(f"{type(e).__name__}: {e}")
                continue
            with lock:
                done.append((time.perf_counter() - t0, audit_id))

    threads = [threading.Thread(target=client, args=(k,), name=f"loadtest-{k}", daemon=True)
               for k in range(clients)]
    for t in threads:
        t.start()
    t_start = time.perf_counter()
    stop_at[0] = t_start + seconds
    start.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t_start
    lat = np.array([d[0] for d in done]) * 1000
    q = (lambda x: round(float(np.percentile(lat, x)), 1)) if len(lat) else (lambda x: None)
    return {
        "clients": clients, "seconds": seconds, "wall_s": round(wall, 2),
        "drain_s": round(max(0.0, wall - seconds), 2), "requests": len(done) + sum(errors.values()),
        "ok": len(done), "errors": dict(errors), "error_examples": error_examples,
        "throughput_per_s": round(len(done) / wall, 3) if wall > 0 else None,
        "latency_ms": {"p50": q(50), "p95": q(95), "p99": q(99),
                       "max": round(float(lat.max()), 1) if len(lat) else None,
                       "mean": round(float(lat.mean()), 1) if len(lat) else None},
        "audit_ids": [d[1] for d in done],
    }


def run_load(svc: Any, clients: int, seconds: float, *, n_products: int = 5, seed: int = 0) -> dict[str, Any]:
    """Hammer `svc` in-process with `clients` threads for `seconds`; return the figures and the audit check."""
    before = svc.audit.count()
    res = hammer(lambda uid: svc.predict(uid, explain=False, n_products=n_products).audit_id,
                 svc.user_ids(), clients, seconds, seed=seed)
    res["audit"] = check_audit(svc.audit, res.pop("audit_ids"), before)
    return res


def run_http(url: str, auth: tuple[str, str], audit_path: Path, clients: int, seconds: float, *,
             seed: int = 0, timeout_s: float = 900.0) -> dict[str, Any]:
    """Hammer the app's signed-in `/predict` API route over HTTP (loopback); check its audit file.

    A request may wait `timeout_s` in the app's queue: with more clients than the model serves
    per second, waiting is the expected outcome, and a client timeout is counted as an error.
    """
    from gradio_client import Client

    from .audit import AuditLog

    local = threading.local()

    def call(uid: str) -> str:
        if not hasattr(local, "client"):
            local.client = Client(url, auth=auth, verbose=False, analytics_enabled=False,
                                  httpx_kwargs={"timeout": timeout_s})
        return str(local.client.predict(uid, False, api_name="/predict")["audit_id"])

    users = Client(url, auth=auth, verbose=False, analytics_enabled=False).predict(api_name="/shoppers")
    with AuditLog(audit_path) as log:
        before = log.count()
        res = hammer(call, list(users), clients, seconds, seed=seed)
        res["audit"] = check_audit(log, res.pop("audit_ids"), before)
    res["n_users"] = len(users)
    return res


def check_audit(log: Any, audit_ids: list[str], rows_before: int) -> dict[str, Any]:
    """Exactly one row per served request, each parsing completely; the file's integrity."""
    from .audit import AuditError

    n_rows = log.count() - rows_before
    corrupt = 0
    for audit_id in audit_ids:
        try:
            row = log.get(audit_id)
            ok = (row.top_category in row.output["labels"] and len(row.output["distribution"]) == len(
                row.output["labels"]) and abs(sum(row.output["distribution"]) - 1.0) < 1e-6)
        except (AuditError, KeyError, TypeError, ValueError):
            ok = False
        corrupt += not ok
    with sqlite3.connect(log.path) as conn:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
    return {"rows_written": n_rows, "requests_ok": len(audit_ids), "unique_ids": len(set(audit_ids)),
            "one_row_per_request": n_rows == len(audit_ids) == len(set(audit_ids)),
            "corrupt_rows": corrupt, "integrity_check": integrity,
            "ok": n_rows == len(audit_ids) == len(set(audit_ids)) and corrupt == 0 and integrity == "ok"}


def _write(report: dict[str, Any], out: Path, stamp: str) -> Path:
    path = out / f"{stamp}.json"
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(json.dumps({k: report[k] for k in ("requests", "ok", "errors", "throughput_per_s", "latency_ms",
                                             "audit", "wall_s", "drain_s", "score_batches") if k in report}, indent=2))
    print(f"report: {path}")
    return path


def main(argv: list[str] | None = None, *, service: Any = None) -> Path:
    """Run the load test; return the JSON report's path. `service`: use this one instead of building it."""
    args = make_parser().parse_args(argv)
    _check_args(args)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    args.out.mkdir(parents=True, exist_ok=True)
    config = {k: str(v) if isinstance(v, Path) else v for k, v in sorted(vars(args).items()) if k != "password"}
    machine = {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    if args.url is not None:
        result = run_http(args.url, (args.user, args.password), args.audit, args.clients, args.seconds,
                          seed=args.seed, timeout_s=args.timeout)
        return _write({"config": config, "target": "http", **result, "machine": machine, "created_utc": stamp},
                      args.out, stamp)
    import torch

    torch.set_num_threads(args.torch_threads)
    t0 = time.perf_counter()
    own = service is None
    if own:
        from .service import InterestService
        from .service_config import ServiceConfig

        service = InterestService(ServiceConfig(dataset=args.dataset,
                                                audit_path=str(args.out / f"{stamp}.audit.sqlite"),
                                                coalesce_max=args.coalesce, coalesce_wait_ms=args.coalesce_wait_ms))
    build_s = time.perf_counter() - t0
    try:
        result = run_load(service, args.clients, args.seconds, n_products=args.n_products, seed=args.seed)
        st = service.coalesce_stats
        result["score_batches"] = None if st is None else st.summary()
    finally:
        if own:
            service.close()
    report = {
        "config": config, "target": "in-process",
        "dataset": service.dataset.name, "n_users": len(service.user_ids()), "labels": len(service.taxonomy),
        "service_build_s": round(build_s, 1), **result,
        "machine": {**machine, "torch_threads": torch.get_num_threads(), "device": service.config.device,
                    "model": service.model_id},
        "created_utc": stamp,
    }
    return _write(report, args.out, stamp)


if __name__ == "__main__":
    main()
