"""Interest evolution and migration: profiles, category mix over time, trends, forecasts,
transitions, associations, churn and fairness slices.

Submodules, one concern each: `sequences` (events -> category sequences), `profile`,
`evolution`, `forecast`, `migration`, `association`, `churn`, `fairness`, `plots`.
Importing this package imports numpy only (scipy, statsmodels, matplotlib load inside functions).
"""

from .association import (
    LINK_COLUMNS,
    AssociationConfig,
    AssociationGraph,
    Link,
    association_graph,
    evidence,
    link_rows,
)
from .churn import ChurnConfig, ChurnEvaluation, ChurnSignal, churn_signal, evaluate_churn
from .evolution import CategoryMix, PopulationTrends, Trend, TrendConfig, category_mix, population_trends, trends
from .fairness import FairnessConfig, gaps, group_masks
from .forecast import ForecastConfig, ForecastResult, compare_forecasters, held_out_windows, ses_forecast
from .migration import (
    Flow,
    compare_matrices,
    precision_at_k,
    predicted_matrix,
    split_tokens,
    target_lists,
    top_flows,
    transition_counts,
)
from .plots import plot_category_mix, plot_flows, plot_forecast, plot_profile, plot_transitions
from .profile import ShopperProfile, shopper_profile
from .sequences import label_sequences, labelled, total_variation

__all__ = [
    "LINK_COLUMNS", "AssociationConfig", "AssociationGraph", "CategoryMix", "ChurnConfig", "ChurnEvaluation",
    "ChurnSignal", "FairnessConfig", "Flow", "ForecastConfig", "ForecastResult", "Link", "PopulationTrends",
    "ShopperProfile", "Trend", "TrendConfig", "association_graph", "category_mix", "churn_signal",
    "compare_forecasters", "compare_matrices", "evaluate_churn", "evidence", "gaps", "group_masks",
    "held_out_windows", "label_sequences", "labelled", "link_rows", "plot_category_mix", "plot_flows",
    "plot_forecast", "plot_profile", "plot_transitions", "population_trends", "precision_at_k", "predicted_matrix",
    "ses_forecast", "shopper_profile", "split_tokens", "target_lists", "top_flows", "total_variation",
    "transition_counts", "trends",
]
