"""`ServiceConfig.coalesce_max`: concurrent single predictions scored in one pass, on the real SmolLM2.

What is checked: a coalesced prediction equals the same shopper predicted alone (float32 batch noise,
`replay_atol`), every audit row says how many shoppers its scoring pass held, such a row replays
identical, and explained predictions, coalesced too, continue their own prompt's K/V cut out of the pass.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import at_once, one_thread_service, shop

from llmint import ServiceConfig
from llmint.service_config import REPLAY_ATOL

pytestmark = pytest.mark.real

N = 4


@pytest.fixture(scope="module")
def svc(smollm2, tmp_path_factory):
    cfg = ServiceConfig(audit_path=str(tmp_path_factory.mktemp("co") / "audit.sqlite"), max_new_tokens=8,
                        coalesce_max=N, coalesce_wait_ms=1000)
    with one_thread_service(shop(n_users=6, length=5), cfg, smollm2) as s:
        yield s


def _at_once(svc, users: list[str], **kw) -> dict[str, object]:
    return at_once(lambda u: svc.predict(u, n_products=1, **kw), users)


def test_concurrent_requests_share_one_pass_and_equal_the_lone_ones(svc) -> None:
    users = svc.user_ids()[:N]
    together = _at_once(svc, users, explain=False)
    st = svc.coalesce_stats
    assert st.items == N and st.largest == N and st.batches == 1  # the 1 s wait gathers all four
    rows = {u: svc.audit.get(p.audit_id) for u, p in together.items()}
    assert all(r.decoding["score_batch"] == N for r in rows.values())

    alone = {u: svc.predict(u, explain=False, n_products=1) for u in users}  # one by one: batches of 1
    assert svc.coalesce_stats.sizes == {N: 1, 1: N}
    for u in users:
        a, b = np.array(list(alone[u].distribution.values())), np.array(list(together[u].distribution.values()))
        assert list(alone[u].distribution) == list(together[u].distribution)
        assert np.abs(a - b).max() < REPLAY_ATOL
        assert alone[u].top_category == together[u].top_category
        assert alone[u].products == together[u].products
        assert svc.audit.get(alone[u].audit_id).decoding["score_batch"] == 1
    rep = svc.replay(together[users[0]].audit_id)
    assert rep.identical and rep.versions_match, rep.differences


def test_explained_predictions_share_a_pass_and_continue_their_own_prompts(svc) -> None:
    users = svc.user_ids()[:2]
    alone = {u: svc.predict(u, n_products=1) for u in users}
    before = svc.coalesce_stats.sizes.get(2, 0)
    ps = _at_once(svc, users, explain=True)
    assert svc.coalesce_stats.sizes.get(2, 0) == before + 1  # both scored in one pass
    for u, p in ps.items():
        d = svc.audit.get(p.audit_id).decoding
        assert d["score_batch"] == 2 and d["generation_cache"] == "prompt"
        assert p.model_text == alone[u].model_text and p.top_category == alone[u].top_category
        rep = svc.replay(p.audit_id)
        assert rep.identical, rep.differences
    stream = svc.stream_explanation(users[0], n_products=1)  # a stream's scoring goes through the coalescer too
    assert "".join(stream) and stream.prediction.model_text == alone[users[0]].model_text
    assert svc.audit.get(stream.prediction.audit_id).decoding["generation_cache"] == "prompt"


def test_a_cold_shopper_is_not_scored_and_a_batch_is_scored_as_one(svc) -> None:
    before = svc.coalesce_stats.items
    cold = svc.predict([], explain=False, n_products=1)
    assert svc.audit.get(cold.audit_id).decoding["score_batch"] == 0
    batch = svc.predict_batch(svc.user_ids()[:3], explain=False, n_products=1)
    assert [svc.audit.get(p.audit_id).decoding["score_batch"] for p in batch] == [3, 3, 3]
    assert svc.coalesce_stats.items == before  # predict_batch is already a batch


@pytest.mark.parametrize("kwargs", [{"coalesce_max": 0}, {"coalesce_max": True}, {"coalesce_max": 2.0},
                                    {"coalesce_wait_ms": -1}, {"coalesce_wait_ms": True},
                                    {"coalesce_wait_ms": float("nan")}, {"coalesce_wait_ms": 1e9}])
def test_bad_coalesce_settings_are_refused(kwargs) -> None:
    with pytest.raises(ValueError, match="coalesce"):
        ServiceConfig(**kwargs)
