"""Transitions, flows, predicted-vs-actual matrices, migration target lists and associations: known answers."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import shop

from llmint.analysis import (
    LINK_COLUMNS,
    association_graph,
    compare_matrices,
    evidence,
    link_rows,
    precision_at_k,
    predicted_matrix,
    split_tokens,
    target_lists,
    top_flows,
    transition_counts,
)
from llmint.analysis.association import AssociationConfig
from llmint.analysis.migration import SplitTokens, row_normalise
from llmint.baselines import Markov, MostPopular
from llmint.split import make_split
from llmint.taxonomy import Taxonomy


def test_transition_counts_and_flows() -> None:
    c = transition_counts({"a": [0, 1, 1, 2], "b": [2, 0, 1], "c": [1]}, 3)
    assert c.tolist() == [[0, 2, 0], [0, 1, 1], [1, 0, 0]]
    flows = top_flows(c, ["A", "B", "C"], k=2)
    # count ties are broken by lift: C->A (1 / (1/5) = 5) before B->C (0.5 / (1/5) = 2.5)
    assert [(f.source, f.target, f.count) for f in flows] == [("A", "B", 2), ("C", "A", 1)]
    # P(B | A) = 1; P(B) over all transition targets = 3/5 -> lift 5/3
    assert flows[0].prob == 1.0 and flows[0].lift == pytest.approx(5 / 3)
    assert all(f.source != f.target for f in top_flows(c, ["A", "B", "C"], k=10))


def test_predicted_matrix_and_comparison() -> None:
    probs = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])
    pm = predicted_matrix(probs, [0, 0, 1], 2)
    np.testing.assert_allclose(pm, [[0.25, 0.75], [1.0, 0.0]])
    data = np.array([[1, 3], [0, 4]])  # rows: P = [.25, .75] (tv 0) and [0, 1] (tv 1)
    cmp = compare_matrices(data, pm, ["A", "B"])
    assert cmp.row_tv == {"A": 0.0, "B": 1.0}
    assert cmp.mean_tv == pytest.approx(4 / 8)  # weighted by the rows' counts 4 and 4
    np.testing.assert_allclose(row_normalise(np.array([[0, 0], [1, 3]])), [[0, 0], [0.25, 0.75]])


def test_target_lists_precision_hand_case() -> None:
    tokens = SplitTokens(train=[], test_users=["u1", "u2", "u3", "u4"], test_hist=[[0], [0], [1], [0]],
                         test_target=np.array([1, 0, 0, 1]))
    probs = np.array([[0.2, 0.8], [0.9, 0.1], [0.6, 0.4], [0.7, 0.3]])
    lists = target_lists(probs, tokens, ["A", "B"], k=2)
    a, b = lists
    assert a.users == ["u3"] and a.n_candidates == 1 and a.n_movers == 1  # only u3 is outside A
    assert b.users == ["u1", "u4"] and b.scores == [0.8, 0.3] and b.n_movers == 2
    p = precision_at_k(lists, tokens, ["A", "B"], ks=(1, 2))
    assert p["precision@1"] == 1.0 and p["precision@2"] == 1.0
    assert p["base_rate"] == pytest.approx((1 / 1 + 2 / 3) / 2)
    # a ranker that ranks the non-mover u2 first for B gets precision@1 = 0.5 over the two categories
    bad = probs.copy()
    bad[:, 1] = [0.1, 0.95, 0.4, 0.3]
    pb = precision_at_k(target_lists(bad, tokens, ["A", "B"], k=2), tokens, ["A", "B"], ks=(1,))
    assert pb["precision@1"] == 0.5


def test_markov_targets_on_cycling_shoppers_are_exact(ds) -> None:
    # shop(): every shopper moves to the next of 4 categories in a fixed cycle, so Markov knows who moves where
    tax = Taxonomy.from_items(ds.items.values(), 2)
    tokens = split_tokens(make_split(ds.histories()), ds.items, tax)
    assert len(tokens.test_target) == 12
    labels = list(tax.labels)
    m = Markov().fit(tokens.train, len(labels))
    lists = target_lists(m.predict_proba(tokens.test_hist), tokens, labels, k=12)
    assert precision_at_k(lists, tokens, labels, ks=(1,))["precision@1"] == 1.0
    pop = MostPopular().fit(tokens.train, len(labels))
    last = [h[-1] for h in tokens.test_hist]
    actual = np.zeros((4, 4), int)
    np.add.at(actual, (last, tokens.test_target), 1)
    tv_markov = compare_matrices(actual, predicted_matrix(m.predict_proba(tokens.test_hist), last, 4), labels)
    tv_pop = compare_matrices(actual, predicted_matrix(pop.predict_proba(tokens.test_hist), last, 4), labels)
    assert tv_markov.mean_tv < 0.2 < tv_pop.mean_tv


def test_association_lift_pmi_and_evidence() -> None:
    seqs = {"1": [0, 1], "2": [0, 1], "3": [2], "4": [2, 2]}
    g = association_graph(seqs, ["A", "B", "C"], AssociationConfig(min_support=2, min_lift=1.0))
    co = [lk for lk in g.links if lk.kind == "co-occurrence"]
    assert [(lk.source, lk.target, lk.support) for lk in co] == [("A", "B", 2)]
    assert co[0].lift == pytest.approx(2.0) and co[0].pmi == pytest.approx(1.0)  # P(A,B)=.5, P(A)=P(B)=.5
    tr = [lk for lk in g.links if lk.kind == "transition"]
    # transitions: A->B twice, C->C once; P(B | A) = 1, P(B) = 2/3 -> lift 1.5
    assert [(lk.source, lk.target) for lk in tr] == [("A", "B")] and tr[0].lift == pytest.approx(1.5)
    assert evidence(g, "A") == ["shoppers who buy A often move to B next (lift 1.5, 2 transitions)",
                                "shoppers who buy A also buy B (lift 2.0, 2 shoppers)"]
    assert evidence(g, "B") == ["shoppers who buy B also buy A (lift 2.0, 2 shoppers)"]
    assert evidence(g, "C") == []
    with pytest.raises(ValueError, match="min_support"):
        AssociationConfig(min_support=0)


def test_link_rows_table_of_the_strongest_links() -> None:
    seqs = {"1": [0, 1], "2": [0, 1], "3": [2], "4": [2, 2]}
    g = association_graph(seqs, ["A", "B", "C"], AssociationConfig(min_support=2, min_lift=1.0))
    assert LINK_COLUMNS == ["from", "to", "link", "support", "lift", "PMI"]
    # strongest first: co-occurrence A-B (lift 2, PMI 1), then the transition A -> B (lift 1.5, PMI log2 1.5)
    assert link_rows(g) == [["A", "B", "co-occurrence", 2, 2.0, 1.0], ["A", "B", "transition", 2, 1.5, 0.58]]
    assert link_rows(g, k=1) == [["A", "B", "co-occurrence", 2, 2.0, 1.0]]
    assert link_rows(g, kind="transition") == [["A", "B", "transition", 2, 1.5, 0.58]]
    assert link_rows(association_graph({}, ["A"])) == []


def test_migration_report_on_shop(tmp_path) -> None:
    from llmint.analysis.reports import migration_report

    res = migration_report(shop(n_users=30, length=8), tmp_path, ks=(1, 5))
    assert res["n_transitions"] == 30 * 7 and res["stay_share"] == 0.0
    assert res["rankers"]["markov"]["precision@1"] == 1.0
    assert res["rankers"]["markov"]["matrix_tv"] < res["rankers"]["most_popular"]["matrix_tv"]
    assert (tmp_path / "migration_shop.png").stat().st_size > 1000
    # the Sankey of the 4 cycle flows, beside the heat map
    assert res["files"]["sankey_png"] == str(tmp_path / "migration_shop_flows.png")
    assert (tmp_path / "migration_shop_flows.png").stat().st_size > 1000
