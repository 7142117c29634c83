"""Human names and readable rules for segments.

Names come from archetypes: each archetype is a weighted pattern over standardised feature
differences (segment mean minus population mean, over the population standard deviation). The
archetypes are assigned to segments one-to-one by Hungarian assignment on their scores; an
archetype is never given to a segment whose profile contradicts its defining traits
(``ARCHETYPE_MUST`` / ``ARCHETYPE_MUST_NOT``), and a segment no archetype fits gets a name from
its strongest traits. The rules come from a shallow
surrogate decision tree that predicts the segment from the raw features; its fidelity (agreement
with the model on held-out customers) says how far to trust them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy.optimize import linear_sum_assignment
from sklearn.tree import DecisionTreeClassifier

from segmentation_dagster.core.clustering import sample_idx
from segmentation_dagster.core.profiling import DESCRIBABLE, describable

#: name -> {feature: weight}; the score is the weighted mean of the segment's z-scores.
ARCHETYPES: dict[str, dict[str, float]] = {
    "Loyal high spenders": {"frequency": 1.0, "avg_order_value": 0.5, "avg_item_price": 0.5,
                            "view_to_purchase_rate": 0.5},
    "Bargain hunters": {"discount_share": 1.0, "avg_item_price": -0.5, "searches_per_session": 0.3},
    "Window shoppers": {"views_per_session": 1.0, "cart_rate": -0.5, "view_to_purchase_rate": -0.5},
    "Cart abandoners": {"cart_abandonment_rate": 1.0, "cart_rate": 0.5,
                        "view_to_purchase_rate": -0.3},
    "New customers": {"tenure_days": -1.0, "activity_trend": 0.5},
    "Lapsed": {"activity_trend": -1.0, "recency_days": 0.5, "sessions_per_week": -0.3},
    "Category specialists": {"top_category_share": 1.0, "category_count": -0.5},
    "Frequent visitors": {"sessions_per_week": 1.0},
    "Big baskets": {"avg_order_value": 1.0, "frequency": -0.3},
}  # fmt: skip
#: Archetypes that only mean something when the input logs browsing: without these features
#: among the model's inputs (e.g. a purchases-only log, where a "session" is an order) they
#: are not offered.
ARCHETYPE_REQUIRES: dict[str, tuple[str, ...]] = {
    "Window shoppers": ("views_per_session",),
    "Cart abandoners": ("cart_rate",),
    "Frequent visitors": ("views_per_session",),
}
MIN_ARCHETYPE_SCORE = 0.4
#: What a segment's profile must show for the name to be true (+1: clearly above the
#: population, -1: clearly below), and what it must not show clearly. A name whose defining
#: trait the profile contradicts is never given, however well the rest of the pattern scores
#: ("New customers" with the longest tenure, "Lapsed" for newcomers).
ARCHETYPE_MUST: dict[str, dict[str, int]] = {
    "Loyal high spenders": {"frequency": 1},
    "Bargain hunters": {"discount_share": 1},
    "Window shoppers": {"views_per_session": 1},
    "Cart abandoners": {"cart_abandonment_rate": 1},
    "New customers": {"tenure_days": -1},
    "Lapsed": {"activity_trend": -1},
    "Category specialists": {"top_category_share": 1},
    "Frequent visitors": {"sessions_per_week": 1},
    "Big baskets": {"avg_order_value": 1},
}
ARCHETYPE_MUST_NOT: dict[str, dict[str, int]] = {
    "Lapsed": {"tenure_days": -1, "activity_trend": 1},
    "New customers": {"tenure_days": 1},
    "Loyal high spenders": {"tenure_days": -1, "frequency": -1},
}
#: A trait is shown "clearly" at this many population standard deviations.
CLEAR_Z = 0.25


def zscores(profiles: pl.DataFrame, population: pl.DataFrame, features: list[str]) -> pl.DataFrame:
    """Per segment and feature: (segment mean - population mean) / population sd."""
    mean = population.select(pl.col(features).cast(pl.Float64).mean()).row(0, named=True)
    sd = population.select(pl.col(features).cast(pl.Float64).std()).row(0, named=True)
    return profiles.select(
        "segment_id",
        *[
            ((pl.col(f) - mean[f]) / sd[f]).alias(f) if sd[f] else pl.lit(0.0).alias(f)
            for f in features
        ],
    )


def archetype_scores(z: pl.DataFrame) -> np.ndarray:
    """Score matrix (segments x archetypes)."""
    out = np.full((z.height, len(ARCHETYPES)), -np.inf)
    for j, (name, weights) in enumerate(ARCHETYPES.items()):
        usable = {f: w for f, w in weights.items() if f in z.columns}
        if not usable or any(f not in z.columns for f in ARCHETYPE_REQUIRES.get(name, ())):
            continue
        total = sum(abs(w) for w in usable.values())
        vals = sum(w * z[f].fill_null(0).to_numpy() for f, w in usable.items())
        out[:, j] = np.where(_consistent(z, name), vals / total, -np.inf)
    return out


def _consistent(z: pl.DataFrame, name: str) -> np.ndarray:
    """Per segment: does its profile show what the name claims and nothing it denies? A claim
    the features cannot show (no discount column: no ``discount_share``) is not made."""
    ok = np.ones(z.height, dtype=bool)
    for f, sign in ARCHETYPE_MUST.get(name, {}).items():
        ok &= sign * z[f].fill_null(0).to_numpy() >= CLEAR_Z if f in z.columns else False
    for f, sign in ARCHETYPE_MUST_NOT.get(name, {}).items():
        if f in z.columns:
            ok &= sign * z[f].fill_null(0).to_numpy() < CLEAR_Z
    return ok


def trait_name(zrow: dict[str, float]) -> str:
    """A name from the two strongest traits, e.g. 'Visit often, pay full price'."""
    ranked = sorted(describable(zrow), key=lambda f: -abs(zrow[f]))
    words = [DESCRIBABLE[f][0 if zrow[f] > 0 else 1] for f in ranked[:2] if abs(zrow[f]) >= 0.25]
    return (", ".join(words) or "average customers").capitalize()


def name_segments(z: pl.DataFrame, taken: set[str] | None = None) -> dict[int, str]:
    """A distinct name per segment id, avoiding ``taken`` (names kept by other segments)."""
    taken = set(taken or ())
    names_list = list(ARCHETYPES)
    free = [j for j, n in enumerate(names_list) if n not in taken]
    scores = archetype_scores(z)[:, free] if free else np.zeros((z.height, 0))
    chosen: dict[int, str] = {}
    if scores.size:
        finite = np.where(np.isfinite(scores), scores, -1e6)
        rows, cols = linear_sum_assignment(-finite)
        for r, c in zip(rows, cols, strict=True):
            if finite[r, c] >= MIN_ARCHETYPE_SCORE:
                chosen[int(z["segment_id"][int(r)])] = names_list[free[c]]
    used = taken | set(chosen.values())
    for row in z.iter_rows(named=True):
        sid = int(row["segment_id"])
        if sid in chosen:
            continue
        name = trait_name({k: v for k, v in row.items() if k != "segment_id"})
        base, n = name, 2
        while name in used:
            name, n = f"{base} ({n})", n + 1
        chosen[sid] = name
        used.add(name)
    return chosen


def _simplify(path: list[tuple[str, bool, float]]) -> str:
    """'a > 1 and a > 3 and b <= 2' -> 'a > 3 and b <= 2' (tightest bound per feature)."""
    upper: dict[str, float] = {}
    lower: dict[str, float] = {}
    order: list[str] = []
    for f, is_upper, thr in path:
        if f not in order:
            order.append(f)
        if is_upper:
            upper[f] = min(upper.get(f, np.inf), thr)
        else:
            lower[f] = max(lower.get(f, -np.inf), thr)
    parts = []
    for f in order:
        if f in lower and f in upper:
            parts.append(f"{lower[f]:.3g} < {f} <= {upper[f]:.3g}")
        elif f in lower:
            parts.append(f"{f} > {lower[f]:.3g}")
        else:
            parts.append(f"{f} <= {upper[f]:.3g}")
    return " and ".join(parts)


@dataclass(frozen=True)
class SurrogateRules:
    """A shallow tree that mimics the segmentation, as one rule per segment."""

    rules: dict[int, str]
    fidelity: float
    depth: int


def surrogate_rules(
    x: np.ndarray,
    segment_ids: np.ndarray,
    feature_names: list[str] | tuple[str, ...],
    depth: int = 5,
    sample: int = 50_000,
    seed: int = 0,
) -> SurrogateRules:
    """Fit a depth-``depth`` tree on raw features to predict segments; per segment, the rule of
    the leaf that covers most of it, with its precision and coverage."""
    idx = sample_idx(x.shape[0], sample, seed)
    rng = np.random.default_rng(seed)
    test = rng.random(idx.size) < 0.25
    ys = segment_ids[idx]
    xs = np.where(np.isnan(x[idx]), np.nanmedian(x[idx], axis=0), x[idx])
    min_leaf = max(5, int(0.01 * (~test).sum()))
    tree = DecisionTreeClassifier(max_depth=depth, min_samples_leaf=min_leaf, random_state=seed)
    tree.fit(xs[~test], ys[~test])
    fidelity = float((tree.predict(xs[test]) == ys[test]).mean()) if test.any() else 1.0
    t = tree.tree_
    leaves = tree.apply(xs)
    rules: dict[int, str] = {}
    paths: dict[int, list[tuple[str, bool, float]]] = {0: []}
    stack = [0]
    while stack:
        node = stack.pop()
        if t.children_left[node] == -1:
            continue
        f, thr = feature_names[t.feature[node]], t.threshold[node]
        paths[t.children_left[node]] = paths[node] + [(f, True, thr)]
        paths[t.children_right[node]] = paths[node] + [(f, False, thr)]
        stack += [t.children_left[node], t.children_right[node]]
    for sid in np.unique(ys):
        in_seg = ys == sid
        best, best_cov = None, 0.0
        for leaf in np.unique(leaves[in_seg]):
            cov = float((leaves[in_seg] == leaf).mean())
            if cov > best_cov:
                best, best_cov = leaf, cov
        in_leaf = leaves == best
        precision = float((ys[in_leaf] == sid).mean())
        cond = _simplify(paths.get(int(best), [])) or "all customers"
        rules[int(sid)] = f"{cond} (covers {best_cov:.0%} of the segment, {precision:.0%} precise)"
    return SurrogateRules(rules, fidelity, depth)
