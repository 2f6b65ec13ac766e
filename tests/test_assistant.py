"""The support chat's answers on the real service (SmolLM2, MiniLM, FAISS, SQLite): streaming,
follow-ups that keep the shopper, windows, switching shoppers, readable errors."""

from __future__ import annotations

import pytest
from conftest import one_thread_service, shop

from llmint import DataError, ServiceConfig, UnknownIdError
from llmint.analysis import association_graph, label_sequences
from llmint.assistant import Context, answer

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def svc(smollm2, tmp_path_factory):
    cfg = ServiceConfig(audit_path=str(tmp_path_factory.mktemp("chat") / "audit.sqlite"), max_new_tokens=12)
    with one_thread_service(shop(n_users=6, length=6), cfg, smollm2) as s:
        yield s


def _rows(svc) -> int:
    return svc.audit.count()


def test_predict_streams_then_serves_one_audited_prediction(svc) -> None:
    ctx, before = Context(user_id="u1"), _rows(svc)
    ups = list(answer(svc, ctx, "what is she likely to want next?"))
    assert len(ups) >= 2 and not any(u.done for u in ups[:-1]) and ups[-1].done
    assert ups[0].top and ups[0].top[0].category in svc.taxonomy.labels  # the category comes first
    last = ups[-1]
    assert last.prediction is not None and last.prediction.user_id == "u1"
    assert last.text.startswith(f"**Next interest: {last.prediction.top_category}**")
    assert last.prediction.explanation in last.text
    assert last.cited == tuple(c.position for c in last.prediction.cited)
    assert [p.item_id for p in last.products] == list(ctx.shown)
    assert _rows(svc) == before + 1 and ctx.category == last.prediction.top_category


def test_follow_ups_keep_the_shopper_and_write_no_rows(svc) -> None:
    ctx = Context(user_id="u2")
    first = list(answer(svc, ctx, "what next?", n_products=2))[-1]
    before = _rows(svc)
    graph = association_graph(label_sequences(svc.dataset.histories(), svc.items, svc.taxonomy),
                              svc.taxonomy.labels)
    why = list(answer(svc, ctx, "why?", associations=graph))
    assert len(why) == 1 and why[0].text.startswith(f"**Why {first.prediction.top_category}?**")
    assert why[0].cited == first.cited
    more = list(answer(svc, ctx, "what else in that category?", n_products=2))[-1]
    assert {p.item_id for p in more.products}.isdisjoint(p.item_id for p in first.products)
    assert all(p.category == first.prediction.top_category for p in more.products)
    assert _rows(svc) == before  # explaining again and browsing products are not new predictions


def test_window_and_reset(svc) -> None:
    ctx = Context(user_id="u3")
    last = list(answer(svc, ctx, "what about the last 2 events only?"))[-1]
    assert last.prediction.n_events == 2 and last.window == "the last 2 events" and len(last.events) == 2
    full = list(answer(svc, ctx, "and over the whole history?"))[-1]
    assert full.prediction.n_events == len(svc.history("u3")) and full.window is None


def test_switching_shopper_by_name_and_errors(svc) -> None:
    ctx = Context(user_id="u1")
    hist = list(answer(svc, ctx, "customer u4: show the history"))
    assert ctx.user_id == "u4" and hist[-1].text.startswith(f"{len(svc.history('u4'))} events from")
    with pytest.raises(UnknownIdError, match="nobody"):
        list(answer(svc, ctx, "customer nobody: what next?"))
    assert ctx.user_id == "u4"  # an unknown name keeps the current shopper
    with pytest.raises(DataError, match="no shopper selected"):
        list(answer(svc, Context(), "what next?"))
    assert "plain words" in next(iter(answer(svc, Context(), "help"))).text


def test_pasted_history(svc) -> None:
    events = tuple(svc.history("u5")[:3])
    ctx = Context(pasted=events)
    last = list(answer(svc, ctx, "what next?"))[-1]
    assert last.prediction.n_events == 3 and last.prediction.cold_start
