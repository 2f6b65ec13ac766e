"""llmint's Gradio app for support staff and auditors: `python app.py` (no flags needed).

Four tabs over one `llmint.InterestService` per dataset (loaded on first use,
sharing one model, one embedder and one audit log):

- **Chat**: pick a shopper (search-as-you-type over known ids) or paste events; ask
  in plain words. Answers stream: the top categories as a bar chart, the
  explanation token by token, then the cited events highlighted in the timeline
  and product cards from the index.
- **Shopper**: the timeline, short-term vs long-term interest, the category mix over time.
- **Population**: the dataset's top migration flows between categories (a Sankey chart) and its
  strongest association links (co-occurrence and transition lift).
- **Audit**: the audit log as a filterable table, a row's full record, replay, flag
  or approve (signed with the reviewer's name), export, summary.

Sign-in is required for every tab and API route: users come from `--users-file`,
`$LLMINT_USERS_FILE` or `$LLMINT_USERS` (see `llmint/auth.py`); with none
configured, one account with a random password is made for this run and printed.
This file only draws: the work is done by `llmint.assistant`, `llmint.render`,
`llmint.analysis` and the service.
"""

import argparse
import logging
import os
import tempfile
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from llmint.errors import LlmintError

logger = logging.getLogger("llmint.app")

CATEGORISED = ("movielens", "office", "instacart", "taobao")  # datasets with a category taxonomy
FLAG_REASONS = ("unfaithful explanation", "wrong category", "offensive or unsafe text", "privacy", "other")
TIMELINE_ROWS = 60  # newest events drawn in a timeline (older ones are counted, not drawn)
POPULATION_LINKS = 20  # association links listed in the population tab
AUDIT_COLUMNS = ["audit_id", "served (UTC)", "shopper", "top category", "faithful", "status", "latency ms"]


@dataclass(frozen=True)
class AppConfig:
    """What the app serves and where; every field has a working default."""

    dataset: str = "movielens"
    host: str = "127.0.0.1"
    port: int = 7860
    users_file: str | None = None
    audit_path: str | None = None
    data_dir: str | None = None
    model: str | None = None
    adapter: str | None = "auto"  # the adapter bundled for each dataset, if any (llmint.bundled)
    max_new_tokens: int = 64
    n_products: int = 5
    dtype: str = "float32"
    coalesce: int = 1  # requests arriving together (API and chat) scored in one pass, up to this many (1: off)


class Backend:
    """Services per dataset, loaded on first use; one model, embedder and audit log for all."""

    def __init__(self, cfg: AppConfig) -> None:
        from llmint.audit import AuditConfig, AuditLog
        from llmint.loaders import available_datasets

        self.cfg = cfg
        data_dir = Path(cfg.data_dir) if cfg.data_dir else None
        found = set(available_datasets(data_dir))
        self.names = [n for n in CATEGORISED if n in found or n == "movielens"]
        if cfg.dataset not in self.names:
            self.names.insert(0, cfg.dataset)
        self.audit = AuditLog(AuditConfig(path=Path(cfg.audit_path)) if cfg.audit_path else None)
        self._services: dict[str, Any] = {}
        self._graphs: dict[str, Any] = {}
        self._transitions: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._loaded = self._embedder = None

    def service(self, name: str) -> Any:
        from llmint.embed import load_embedder
        from llmint.loaders import load_dataset
        from llmint.models import load_model
        from llmint.paths import index_dir
        from llmint.service import InterestService
        from llmint.service_config import ServiceConfig

        if name not in self.names:
            raise LlmintError(f"unknown dataset {name!r}; this app serves {self.names}")
        with self._lock:
            if name not in self._services:
                t0 = time.perf_counter()
                cfg = self.cfg
                if self._loaded is None:
                    self._loaded = load_model(cfg.model, dtype=cfg.dtype)
                    self._embedder = load_embedder()
                dataset = load_dataset(name, data_dir=Path(cfg.data_dir) if cfg.data_dir else None)
                scfg = ServiceConfig(model=cfg.model, adapter=cfg.adapter, max_new_tokens=cfg.max_new_tokens,
                                     dtype=cfg.dtype, coalesce_max=cfg.coalesce,
                                     index_dir=str(index_dir(name)))
                self._services[name] = InterestService.from_dataset(
                    dataset, scfg, loaded=self._loaded, embedder=self._embedder, audit=self.audit)
                logger.info("dataset %s ready in %.1f s", name, time.perf_counter() - t0)
            return self._services[name]

    def _population(self, name: str) -> tuple[Any, Any]:
        """The dataset's association graph and category transition counts, both from one pass, computed once."""
        from llmint.analysis import association_graph, label_sequences, transition_counts

        svc = self.service(name)
        with self._lock:
            if name not in self._graphs:
                seqs = label_sequences(svc.dataset.histories(), svc.items, svc.taxonomy)
                self._graphs[name] = association_graph(seqs, svc.taxonomy.labels)
                self._transitions[name] = transition_counts(seqs, len(svc.taxonomy.labels))
            return self._graphs[name], self._transitions[name]

    def associations(self, name: str) -> Any:
        """The dataset's category association graph (co-occurrence and transitions), computed once."""
        return self._population(name)[0]

    def transitions(self, name: str) -> Any:
        """The dataset's category-to-category transition counts (n_labels, n_labels), computed once."""
        return self._population(name)[1]

    def user_ids(self, name: str) -> list[str]:
        return sorted(self.service(name).user_ids(), key=lambda u: (len(u), u))

    def close(self) -> None:
        self.audit.close()


# ---------------------------------------------------------------- handlers (plain functions, testable)


def _message(err: BaseException) -> str:
    """A readable line for the page: the library's own message, or a reference for the log."""
    if isinstance(err, (LlmintError, ValueError, TypeError, KeyError)):
        return str(err) or type(err).__name__
    ref = uuid.uuid4().hex[:8]
    logger.error("internal error %s:\n%s", ref, "".join(traceback.format_exception(err)))
    return f"Something went wrong on our side (reference {ref}); it has been logged."


def _username(request: Any) -> str:
    name = getattr(request, "username", None) if request is not None else None
    if not name:
        raise LlmintError("sign in first: reviewer actions record who made them")
    return str(name)


def build(backend: Backend) -> Any:
    """The Gradio Blocks app over `backend` (not launched)."""
    import gradio as gr

    from llmint.analysis import LINK_COLUMNS
    from llmint.assistant import Context, answer
    from llmint.chat import HELP_TEXT
    from llmint.pasted import parse_events_text
    from llmint.render import (
        audit_row_html,
        error_html,
        prediction_html,
        probability_figure,
        products_html,
        timeline_html,
    )

    default = backend.cfg.dataset

    def label_of(svc: Any) -> Any:
        return svc.taxonomy.label_of

    # -- header: dataset and shopper

    def pick_dataset(name: str, ctx: Context) -> tuple[Any, Any, Context, str]:
        try:
            ids = backend.user_ids(name)
        except Exception as err:  # noqa: BLE001 - shown in the page
            return gr.update(), gr.update(), ctx, error_html(_message(err))
        labels = list(backend.service(name).taxonomy.labels)
        return (gr.update(choices=ids, value=None), gr.update(choices=[""] + labels, value=""), Context(),
                f"Dataset **{name}**: {len(ids)} shoppers, {len(labels)} categories.")

    # -- chat

    def chat(message: str, history: list, ctx: Context, name: str, shopper: str | None, pasted: str):
        history = list(history or [])
        message = (message or "").strip()
        if not message:
            yield history, ctx, gr.update(), gr.update(), gr.update(), gr.update(), ""
            return
        history.append({"role": "user", "content": message})
        history.append({"role": "assistant", "content": "…"})
        try:
            svc = backend.service(name)
            if pasted and pasted.strip():
                rows = parse_events_text(pasted)
                events = tuple(svc.check(rows))
                if ctx.pasted != events:
                    ctx.switch(pasted=events)
            elif shopper and (shopper != ctx.user_id or ctx.pasted is not None):
                ctx.switch(user_id=str(shopper))
            graph = backend.associations(name)
            for up in answer(svc, ctx, message, n_products=backend.cfg.n_products, associations=graph):
                history[-1] = {"role": "assistant", "content": up.text}
                chart = probability_figure(up.top) if up.top else gr.update()
                card = prediction_html(up.prediction, up.window) if up.prediction is not None else gr.update()
                timeline = (timeline_html(up.events, svc.items, label_of(svc), up.cited, limit=TIMELINE_ROWS)
                            if up.done else gr.update())
                cards = products_html(up.products) if up.done and (up.products or up.prediction) else gr.update()
                yield history, ctx, chart, card, timeline, cards, ""
        except Exception as err:  # noqa: BLE001 - every failure becomes a readable message
            history[-1] = {"role": "assistant", "content": f"⚠️ {_message(err)}"}
            yield history, ctx, gr.update(), error_html(_message(err)), gr.update(), gr.update(), ""

    # -- shopper tab

    def shopper_view(name: str, shopper: str | None, recent_n: int):
        empty = (gr.update(), gr.update(), "")
        if not shopper:
            return (*empty, "Pick a shopper id above.")
        try:
            from llmint.analysis import category_mix, evidence, plot_category_mix, plot_profile, shopper_profile

            svc = backend.service(name)
            events = svc.history(str(shopper))
            prof = shopper_profile(events, svc.items, svc.taxonomy, recent_n=int(recent_n))
            mix = category_mix(events, svc.items, svc.taxonomy)
            short = max(prof.short, key=prof.short.get) if prof.short else None
            long = max(prof.long, key=prof.long.get) if prof.long else None
            rising = max(prof.shift, key=prof.shift.get) if prof.shift else None
            text = (f"**{shopper}**: {prof.n_events} events. Recent interest (last {int(recent_n)} events): "
                    f"**{short}**; long-term (recency-weighted): **{long}**; "
                    f"biggest current shift towards **{rising}** ({prof.shift.get(rising, 0.0):+.0%}).")
            links = evidence(backend.associations(name), short, k=3) if short else []
            if links:
                text += "\n\nWhere shoppers of **" + str(short) + "** go: " + "; ".join(links) + "."
            return (plot_profile(prof), plot_category_mix(mix),
                    timeline_html(events, svc.items, label_of(svc), limit=TIMELINE_ROWS), text)
        except Exception as err:  # noqa: BLE001
            return (*empty, f"⚠️ {_message(err)}")

    # -- population tab

    def population_view(name: str) -> tuple[Any, Any, str]:
        try:
            from llmint.analysis import AssociationConfig, link_rows, plot_flows

            svc = backend.service(name)
            graph = backend.associations(name)
            rows = link_rows(graph, k=POPULATION_LINKS)
            cfg = AssociationConfig()
            text = (f"Dataset **{name}**: {graph.n_shoppers} shoppers with categorised events; "
                    f"{len(graph.links)} association links (support ≥ {cfg.min_support}, lift ≥ {cfg.min_lift}), "
                    f"the strongest {len(rows)} below. Support counts shoppers with both categories "
                    "(co-occurrence) or moves from → to (transition).")
            return plot_flows(backend.transitions(name), list(svc.taxonomy.labels)), rows, text
        except Exception as err:  # noqa: BLE001
            return gr.update(), [], f"⚠️ {_message(err)}"

    # -- audit tab

    def audit_table(since: str, until: str, category: str, faithful: str, status: str, user: str):
        try:
            filters = {
                "since": since.strip() or None, "until": until.strip() or None, "category": category or None,
                "faithful": {"yes": True, "no": False}.get(faithful), "user_id": user.strip() or None,
                "status": None if status == "any" else status,
            }
            rows = backend.audit.list(limit=500, **filters)
            total = backend.audit.count(**filters)
            data = [[r.audit_id, r.created_utc, r.user_id or "(pasted)", r.top_category,
                     {True: "yes", False: "no", None: "-"}[r.faithful], r.status or "unreviewed",
                     round(r.latency_ms)] for r in rows]
            return data, f"{total} rows match" + (" (newest 500 shown)" if total > 500 else "")
        except Exception as err:  # noqa: BLE001
            return [], f"⚠️ {_message(err)}"

    def audit_select(evt: gr.SelectData, table: Any) -> str:
        try:
            row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
            return str(table.iloc[row, 0]) if hasattr(table, "iloc") else str(table[row][0])
        except Exception:  # noqa: BLE001 - a click outside the data
            return ""

    def audit_show(audit_id: str) -> str:
        try:
            return audit_row_html(backend.audit.get(audit_id.strip()))
        except Exception as err:  # noqa: BLE001
            return error_html(_message(err))

    def audit_replay(audit_id: str, name: str) -> str:
        try:
            res = backend.service(name).replay(audit_id.strip())
            if res.identical:
                return f"Replayed **{res.audit_id}**: the output is identical (same versions: {res.versions_match})."
            diffs = ", ".join(res.differences) or "none"
            vers = "; ".join(res.version_differences) or "none"
            return (f"Replayed **{res.audit_id}**: the output differs in {diffs}. "
                    f"Version differences: {vers}. (A row served on another dataset replays only there.)")
        except Exception as err:  # noqa: BLE001
            return f"⚠️ {_message(err)}"

    def audit_review(action: str, audit_id: str, reason: str, note: str, request: gr.Request) -> tuple[str, str]:
        try:
            who = _username(request)
            aid = audit_id.strip()
            if action == "flag":
                backend.audit.flag(aid, who, reason or "other", note or "")
            else:
                backend.audit.approve(aid, who, note or "")
            verb = "flagged" if action == "flag" else "approved"
            return f"{aid} {verb} by {who}.", audit_row_html(backend.audit.get(aid))
        except Exception as err:  # noqa: BLE001
            return f"⚠️ {_message(err)}", gr.update()

    def audit_export(fmt: str, category: str, status: str) -> tuple[Any, str]:
        try:
            folder = Path(tempfile.mkdtemp(prefix="llmint-export-"))
            path = folder / f"audit.{fmt}"
            n = backend.audit.export(path, format=fmt, category=category or None,
                                     status=None if status == "any" else status)
            return str(path), f"Exported {n} rows as {fmt}."
        except Exception as err:  # noqa: BLE001
            return None, f"⚠️ {_message(err)}"

    def audit_summary() -> Any:
        try:
            return backend.audit.summary()
        except Exception as err:  # noqa: BLE001
            return {"error": _message(err)}

    # -- layout

    first = backend.service(default)
    ids = backend.user_ids(default)
    with gr.Blocks(title="llmint", analytics_enabled=False) as demo:
        ctx = gr.State(Context())
        gr.Markdown("# llmint — shoppers' next interest, explained")
        with gr.Row():
            dataset = gr.Dropdown(backend.names, value=default, label="Dataset", scale=1, elem_id="dataset")
            shopper = gr.Dropdown(ids, value=None, label="Shopper id (type to search)", filterable=True,
                                  allow_custom_value=True, scale=2, elem_id="shopper")
            status_line = gr.Markdown(f"Dataset **{default}**: {len(ids)} shoppers, "
                                      f"{len(first.taxonomy)} categories.", elem_id="status-line")
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                with gr.Row():
                    with gr.Column(scale=3):
                        bot = gr.Chatbot(label="Ask about the shopper", height=380, elem_id="chatbot")
                        msg = gr.Textbox(placeholder="what is she likely to want next?", label="Question",
                                         elem_id="question")
                        with gr.Row():
                            send = gr.Button("Ask", variant="primary", elem_id="ask")
                            gr.Button("Clear").click(lambda: ([], Context()), None, [bot, ctx])
                        with gr.Accordion("Or paste a history (JSON list or JSON Lines of events)", open=False):
                            pasted = gr.Textbox(lines=5, label="Events", elem_id="pasted",
                                                placeholder='{"item_id": "50", "action": "review", '
                                                            '"timestamp": 881250949, "rating": 5}')
                        gr.Markdown(HELP_TEXT)
                    with gr.Column(scale=2):
                        chart = gr.Plot(label="Top categories", elem_id="chart")
                        card = gr.HTML(elem_id="answer")
                products = gr.HTML(elem_id="products")
                timeline = gr.HTML(elem_id="timeline")
            with gr.Tab("Shopper", id="shopper"):
                with gr.Row():
                    recent_n = gr.Slider(3, 50, value=10, step=1, label="Recent window (events)")
                    show = gr.Button("Show shopper", elem_id="show-shopper")
                shopper_text = gr.Markdown(elem_id="shopper-summary")
                with gr.Row():
                    profile_plot = gr.Plot(label="Short-term vs long-term interest")
                    mix_plot = gr.Plot(label="Category mix over time")
                shopper_timeline = gr.HTML()
            with gr.Tab("Population", id="population"):
                show_pop = gr.Button("Show population", elem_id="show-population")
                pop_text = gr.Markdown(elem_id="population-summary")
                pop_plot = gr.Plot(label="Top migration flows between categories", elem_id="population-flows")
                pop_links = gr.Dataframe(headers=LINK_COLUMNS, interactive=False, wrap=True,
                                         label="Strongest association links", elem_id="population-links")
            with gr.Tab("Audit", id="audit"):
                with gr.Row():
                    since = gr.Textbox(label="Since (YYYY-MM-DD)", scale=1)
                    until = gr.Textbox(label="Until (YYYY-MM-DD)", scale=1)
                    category = gr.Dropdown([""] + list(first.taxonomy.labels), value="", label="Category", scale=2)
                    faithful = gr.Dropdown(["any", "yes", "no"], value="any", label="Faithful", scale=1)
                    status = gr.Dropdown(["any", "flagged", "approved", "unreviewed"], value="any",
                                         label="Status", scale=1, elem_id="status-filter")
                    user = gr.Textbox(label="Shopper id", scale=1)
                    refresh = gr.Button("Refresh", elem_id="refresh")
                count = gr.Markdown(elem_id="audit-count")
                table = gr.Dataframe(headers=AUDIT_COLUMNS, interactive=False, elem_id="audit-table", wrap=True)
                with gr.Row():
                    audit_id = gr.Textbox(label="Audit id (click a row)", elem_id="audit-id", scale=2)
                    show_row = gr.Button("Show record", elem_id="show-record")
                    replay = gr.Button("Replay", elem_id="replay")
                with gr.Row():
                    reason = gr.Dropdown(list(FLAG_REASONS), value=FLAG_REASONS[0], label="Flag reason")
                    note = gr.Textbox(label="Note", elem_id="note", scale=2)
                    flag = gr.Button("Flag", variant="stop", elem_id="flag")
                    approve = gr.Button("Approve", elem_id="approve")
                review_msg = gr.Markdown(elem_id="review-msg")
                record = gr.HTML(elem_id="record")
                with gr.Row():
                    fmt = gr.Dropdown(["csv", "jsonl", "parquet"], value="csv", label="Export format")
                    export = gr.Button("Export")
                    export_file = gr.File(label="Export")
                export_msg = gr.Markdown()
                with gr.Accordion("Summary", open=False):
                    summary_btn = gr.Button("Summarise")
                    summary = gr.JSON()

        dataset.change(pick_dataset, [dataset, ctx], [shopper, category, ctx, status_line])
        chat_io = ([msg, bot, ctx, dataset, shopper, pasted], [bot, ctx, chart, card, timeline, products, msg])
        send.click(chat, *chat_io)
        msg.submit(chat, *chat_io)
        show.click(shopper_view, [dataset, shopper, recent_n], [profile_plot, mix_plot, shopper_timeline, shopper_text])
        show_pop.click(population_view, [dataset], [pop_plot, pop_links, pop_text])
        filters = [since, until, category, faithful, status, user]
        refresh.click(audit_table, filters, [table, count])
        table.select(audit_select, [table], [audit_id])
        show_row.click(audit_show, [audit_id], [record])
        replay.click(audit_replay, [audit_id, dataset], [review_msg])
        def flag_row(audit_id: str, reason: str, note: str, request: gr.Request) -> tuple[str, str]:
            return audit_review("flag", audit_id, reason, note, request)

        def approve_row(audit_id: str, reason: str, note: str, request: gr.Request) -> tuple[str, str]:
            return audit_review("approve", audit_id, reason, note, request)

        flag.click(flag_row, [audit_id, reason, note], [review_msg, record])
        approve.click(approve_row, [audit_id, reason, note], [review_msg, record])
        export.click(audit_export, [fmt, category, status], [export_file, export_msg])
        summary_btn.click(audit_summary, None, [summary])

        # API routes for scripts and the load test (signed in like the page): JSON in, JSON out
        def predict(user_id: str, explain: bool = False) -> dict:
            """Next interest of a known shopper of the first dataset: the served prediction (one audit row)."""
            try:
                return backend.service(default).predict(str(user_id), explain=bool(explain),
                                                        n_products=backend.cfg.n_products).to_dict()
            except LlmintError as err:
                raise gr.Error(_message(err)) from None

        def shoppers() -> list:
            """The shopper ids of the first dataset."""
            return backend.user_ids(default)

        gr.api(predict, api_name="predict", concurrency_limit=max(4, backend.cfg.coalesce))
        gr.api(shoppers, api_name="shoppers")
    return demo


def _args(argv: list[str] | None = None) -> AppConfig:
    d = AppConfig()
    p = argparse.ArgumentParser(prog="python app.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default=d.dataset, help="dataset shown first (default: %(default)s)")
    p.add_argument("--host", default=d.host, help="address to listen on (default: %(default)s, loopback only)")
    p.add_argument("--port", type=int, default=d.port, help="port (default: %(default)s)")
    p.add_argument("--users-file", default=None, help="file of username:password-hash lines (see llmint/auth.py)")
    p.add_argument("--audit", dest="audit_path", default=None, help="audit SQLite file "
                   "(default: <LLMINT_HOME>/audit.sqlite)")
    p.add_argument("--data-dir", default=None, help="e-commerce datasets folder (default: LLMINT_DATA_DIR or "
                   "../shared/data)")
    p.add_argument("--model", default=None, help="LLM (default: the bundled SmolLM2-135M-Instruct)")
    p.add_argument("--adapter", default=d.adapter, help="peft adapter folder, 'none' for zero-shot, or 'auto' "
                   "(default): the adapter bundled for each dataset (MovieLens), zero-shot where none is")
    p.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens, help="explanation length cap")
    p.add_argument("--dtype", default=d.dtype, choices=["float32", "bfloat16", "float16", "auto"],
                   help="model dtype (default: %(default)s); auto: bfloat16 where the CPU or GPU computes it "
                        "natively, about 1.8x faster scoring on such a CPU")
    p.add_argument("--coalesce", type=int, default=d.coalesce,
                   help="score up to N concurrent requests (the /predict API's and the chat's) in one model "
                        "pass (default: %(default)s, off; pays on a GPU, see docs/scaling.md)")
    p.add_argument("--hash-password", action="store_true",
                   help="read a password on stdin, print its hash for a users file, and exit")
    a = vars(p.parse_args(argv))
    if a["coalesce"] < 1:
        p.error(f"--coalesce {a['coalesce']}: expected an int >= 1 (1: off)")
    if a.pop("hash_password"):
        import getpass

        from llmint.auth import hash_password

        print(hash_password(getpass.getpass("password: ")))
        raise SystemExit(0)
    return replace(d, **a)


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cfg = _args(argv)
    from llmint.auth import load_users, one_time_users
    from llmint.render import CSS

    users = load_users(cfg.users_file)
    if not len(users):
        users = one_time_users()
    print(f"llmint: loading {cfg.dataset} (model, product index, audit log)…", flush=True)
    backend = Backend(cfg)
    demo = build(backend)
    if users.one_time_password:
        print("llmint: no users configured (--users-file, LLMINT_USERS_FILE or LLMINT_USERS); "
              f"sign in for this run as  admin / {users.one_time_password}", flush=True)
    demo.queue(default_concurrency_limit=4)
    demo.launch(server_name=cfg.host, server_port=cfg.port, auth=users.check, ssr_mode=False, css=CSS,
                auth_message="llmint: sign in (reviewer actions are recorded under your name)",
                show_error=False, quiet=False)


if __name__ == "__main__":
    main()
