"""The support chat's brain: a question about a shopper in, streamed answer updates out.

`answer(service, ctx, message)` parses the message (`llmint.chat`), runs what it asks
for on an `InterestService` and yields `Update`s as the answer grows: first the
scored top categories, then the explanation token by token, then the served
prediction with its products and cited events. `Context` keeps the shopper, the
window and the last prediction between messages, so "why?" and "what else in that
category?" follow on. Front-ends (the Gradio app) only draw the updates.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .chat import HELP_TEXT, Window, parse_question, window_events
from .errors import DataError
from .schema import Event


@dataclass
class Context:
    """One chat's memory: who we talk about and what was last answered."""

    user_id: str | None = None
    pasted: tuple[Event, ...] | None = None  # a pasted history replaces the stored one
    window: Window | None = None
    category: str | None = None
    prediction: Any = None
    shown: tuple[str, ...] = ()  # product ids already shown for `category`

    def switch(self, user_id: str | None = None, pasted: tuple[Event, ...] | None = None) -> None:
        """A new subject: forget what was answered about the previous one."""
        self.user_id, self.pasted = user_id, pasted
        self.window, self.category, self.prediction, self.shown = None, None, None, ()


@dataclass(frozen=True)
class Update:
    """The answer so far. `done` marks the last update of an answer."""

    text: str
    top: tuple[Any, ...] = ()
    prediction: Any = None
    products: tuple[Any, ...] = ()
    events: tuple[Event, ...] = ()
    cited: tuple[int, ...] = ()
    window: str | None = None
    done: bool = False


def _subject_events(service: Any, ctx: Context) -> tuple[Event, ...]:
    if ctx.pasted is not None:
        return ctx.pasted
    if ctx.user_id is None:
        raise DataError("no shopper selected: pick a shopper id, name one (\"customer 42\") or paste events")
    return tuple(service.history(ctx.user_id))


def _subject(service: Any, ctx: Context) -> tuple[Any, tuple[Event, ...]]:
    """What to pass to the service (a user id or a list of events) and the events it stands for."""
    events = _subject_events(service, ctx)
    if ctx.window is None and ctx.pasted is None:
        return ctx.user_id, events
    picked = tuple(window_events(events, ctx.window))
    if ctx.window is not None and not picked:
        raise DataError(f"no events in {ctx.window.describe()} for this shopper")
    return list(picked), picked


def _history_summary(service: Any, events: Sequence[Event]) -> str:
    if not events:
        return "This shopper has no events yet."
    from .render import when

    labels = Counter(service.taxonomy.label_of(it) for e in events
                     if e.item_id and (it := service.items.get(e.item_id)) is not None)
    labels.pop(None, None)
    top = ", ".join(f"{lab} ({n})" for lab, n in labels.most_common(3)) or "no categorised items"
    actions = ", ".join(f"{a} {n}" for a, n in Counter(e.action for e in events).most_common())
    return (f"{len(events)} events from {when(events[0])} to {when(events[-1])} ({actions}). "
            f"Most frequent categories: {top}. The timeline is below.")


def _population_evidence(service: Any, pred: Any, graph: Any) -> str:
    """Association links that bear on the prediction: from the cited events' categories to the
    predicted one first, else the predicted category's own strongest links."""
    from .analysis import evidence

    cited = []
    for c in pred.cited:
        it = service.items.get(c.event.item_id) if c.event.item_id else None
        lab = service.taxonomy.label_of(it) if it is not None else None
        if lab and lab not in cited:
            cited.append(lab)
    lines = [x for lab in cited for x in evidence(graph, lab, k=5) if f" {pred.top_category} " in f"{x} "]
    lines = lines or evidence(graph, pred.top_category, k=2)
    return "\n\nIn the population:" + "".join(f"\n- {x}" for x in lines[:3]) if lines else ""


def _predict(service: Any, ctx: Context, n_products: int) -> Iterator[Update]:
    subject, events = _subject(service, ctx)
    scope = ctx.window.describe() if ctx.window else None
    stream = service.stream_explanation(subject, top_k=5, n_products=n_products)
    text = ""
    head = ""
    for chunk in stream:
        if not head:
            best = stream.top[0]
            head = f"**Next interest: {best.category}** ({best.probability:.0%}" + (
                f", from {scope})" if scope else ")") + "\n\n"
        text += chunk
        yield Update(head + text, top=stream.top, events=events, window=scope)
    pred = stream.prediction
    ctx.prediction, ctx.category = pred, pred.top_category
    ctx.shown = tuple(p.item_id for p in pred.products)
    cited = tuple(c.position for c in pred.cited)
    note = "" if pred.explanation_source != "evidence" else (
        "\n\n_(The model's own words did not pass the faithfulness check, so the grounded explanation above "
        "is served.)_")
    cold = f"\n\n_Cold start: {pred.n_events} events; the population prior weighs {pred.prior_weight:.0%}._" \
        if pred.cold_start else ""
    final = (f"**Next interest: {pred.top_category}** ({pred.top[0].probability:.0%}"
             + (f", from {scope})" if scope else ")") + f"\n\n{pred.explanation or ''}{note}{cold}")
    yield Update(final, top=pred.top, prediction=pred, products=pred.products, events=events, cited=cited,
                 window=scope, done=True)


def answer(service: Any, ctx: Context, message: str, n_products: int = 5,
           associations: Any = None) -> Iterator[Update]:
    """Answer one chat message about the context's shopper; raises LlmintError on bad input.

    `associations` (an `llmint.analysis.AssociationGraph`) adds population evidence to "why?" answers.
    """
    q = parse_question(message)
    if q.user_id is not None and q.user_id != ctx.user_id:
        service.history(q.user_id)  # UnknownIdError names an unknown shopper
        ctx.switch(user_id=q.user_id)
    if q.window is not None:
        ctx.window = q.window
    elif q.all_history:
        ctx.window = None
    if q.intent == "help":
        yield Update(HELP_TEXT, done=True)
        return
    if q.intent == "history":
        _, events = _subject(service, ctx)
        yield Update(_history_summary(service, events), events=events, done=True)
        return
    if q.intent == "why" and ctx.prediction is not None and q.window is None:
        pred = ctx.prediction
        reasons = "; ".join(pred.faithfulness_reasons) or "every cited event exists and the category is named"
        _, events = _subject(service, ctx)
        population = _population_evidence(service, pred, associations) if associations is not None else ""
        yield Update(f"**Why {pred.top_category}?** {pred.explanation}{population}\n\n"
                     f"Cited events are highlighted in the timeline. Faithfulness check: "
                     f"{'passed' if pred.faithful else 'failed'} ({reasons}).",
                     top=pred.top, prediction=pred, products=pred.products, events=events,
                     cited=tuple(c.position for c in pred.cited), done=True)
        return
    if q.intent == "products" and ctx.category is not None and q.window is None:
        subject, events = _subject(service, ctx)
        more = service.products(subject, ctx.category, n=n_products, exclude=ctx.shown)
        ctx.shown = ctx.shown + tuple(p.item_id for p in more)
        text = (f"More in **{ctx.category}**, nearest this shopper's profile:" if more else
                f"No more products in **{ctx.category}** beyond the {len(ctx.shown)} already shown.")
        yield Update(text, products=more, events=events, done=True)
        return
    yield from _predict(service, ctx, n_products)


__all__ = ["Context", "Update", "answer"]
