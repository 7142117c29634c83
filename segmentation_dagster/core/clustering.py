"""Clustering: preprocessing, candidate models, the selection rule, assignment.

Everything here takes and returns plain values (numpy arrays, polars frames, dataclasses), so
the Dagster assets, the CLI and the benchmarks share it. Nothing is quadratic in the number of
customers: candidates are compared on at most ``search_sample`` rows, the winner is refitted on
at most ``fit_sample`` rows, and every pairwise metric
(silhouette, Davies-Bouldin, Calinski-Harabasz, stability) is computed on a fixed-size,
fixed-seed sample.

Selection rule (see :func:`select`):

1. Candidates from three families: KMeans and Ward's hierarchical clustering for every k in
   ``k_min..k_max``, and HDBSCAN, which finds the number of dense groups itself (a diagonal
   Gaussian mixture is available too). Each is fitted on a sample; every family assigns all
   customers by the same rule, the nearest centroid in the model's space, so assignment
   scales to every customer and runs chunk by chunk.
2. A candidate whose smallest segment holds less than ``min_segment_share`` of the customers is
   out (a segment nobody can act on).
3. Parsimony: a candidate whose silhouette is more than ``silhouette_tolerance`` below the best
   (default: one standard error of the best candidate's silhouette, from its customers'
   silhouettes on the evaluation sample — the one-standard-error rule)
   is out. Silhouette is typically flat across neighbouring k; among near-equals, fewer
   segments are easier to act on and more stable.
4. The remaining candidates, fewest segments first (higher silhouette first at equal k), are
   refitted on ``stability_rounds`` bootstrap resamples (the first ``stability_top_n`` of
   them); stability is the mean adjusted Rand index between each refit and the original on a
   common sample. The first with stability >= ``min_stability`` wins (the first overall if
   none does).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import ClassVar, Literal, TypeVar

import numpy as np
import polars as pl
from scipy.cluster.hierarchy import fcluster, linkage
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.cluster import HDBSCAN, KMeans
from sklearn.impute import SimpleImputer
from sklearn.metrics import (
    adjusted_rand_score,
    calinski_harabasz_score,
    davies_bouldin_score,
    pairwise_distances,
    silhouette_samples,
    silhouette_score,
)
from sklearn.mixture import GaussianMixture
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from segmentation_dagster.core import checks

log = logging.getLogger(__name__)

Algorithm = Literal["kmeans", "ward", "hdbscan", "gmm"]
ALGORITHMS: tuple[str, ...] = ("kmeans", "ward", "hdbscan", "gmm")
T = TypeVar("T")
R = TypeVar("R")
ID_COLUMNS = ("customer_id", "snapshot_date")
#: Columns of customer_features that describe a customer but are not clustering inputs:
#: identifiers, raw counts that duplicate a rate, and bookkeeping.
NON_FEATURES = (
    "top_category", "exposure_days", "event_count", "days_since_last_event", "regime_changes",
)  # fmt: skip
#: Durations that always enter the fit on a log scale: a week matters at the start of a
#: customer's life, not after two years (without it, long-standing customers' spread of
#: signup dates hides the new ones).
LOG_SCALE: tuple[str, ...] = ("tenure_days",)
#: Features left out of the fit by default (they still appear in profiles), and why.
DEFAULT_EXCLUDED: dict[str, str] = {
    "monetary": "equals frequency x avg_order_value: would count purchase volume twice",
    "review_count": "sparse (most customers never review); described in profiles instead",
    "category_count": "grows with the length of a customer's history; top_category_share and "
    "category_hhi carry the focus",
}


@dataclass(frozen=True)
class SelectionConfig:
    """How a model is chosen; every field is exposed in the Dagster launchpad."""

    k_min: int = 3
    k_max: int = 10
    algorithms: tuple[Algorithm, ...] = ("kmeans", "ward", "hdbscan")
    silhouette_sample: int = 5_000
    #: Ward's tree is quadratic in memory: it is built on at most this many customers
    ward_sample: int = 5_000
    #: HDBSCAN is fitted on at most this many customers
    density_sample: int = 10_000
    search_sample: int = 50_000  # candidates and bootstraps are fitted on this many rows
    fit_sample: int = 200_000  # the winner is refitted on this many
    n_init: int = 4
    min_segment_share: float = 0.02
    silhouette_tolerance: float | None = None  # None: one standard error of the best
    stability_top_n: int = 3
    stability_rounds: int = 3
    min_stability: float = 0.8
    skew_threshold: float = 1.0
    max_missing_share: float = 0.4
    max_correlation: float = 0.9
    exclude: tuple[str, ...] = tuple(DEFAULT_EXCLUDED)
    seed: int = 0

    #: each field's range (docs/configuration.md, "Ranges")
    RULES: ClassVar[dict[str, checks.Rule]] = {
        "k_min": checks.whole(2),
        "k_max": checks.whole(2),
        "algorithms": checks.each(checks.one_of(ALGORITHMS), unique=True),
        "silhouette_sample": checks.whole(2),
        "ward_sample": checks.whole(2),
        "density_sample": checks.whole(2),
        "search_sample": checks.whole(2),
        "fit_sample": checks.whole(2),
        "n_init": checks.whole(1),
        "min_segment_share": checks.number(0, 1, high_open=True),
        "silhouette_tolerance": checks.optional(checks.number(0, 2)),
        "stability_top_n": checks.whole(1),
        "stability_rounds": checks.whole(1),
        "min_stability": checks.number(0, 1),
        "skew_threshold": checks.number(0),
        "max_missing_share": checks.number(0, 1),
        "max_correlation": checks.fraction(),
        "exclude": checks.each(checks.identifier(), non_empty=False),
        "seed": checks.whole(0, 2**32 - 1),
    }

    def __post_init__(self) -> None:
        checks.apply(self, self.RULES)
        if self.k_max < self.k_min:
            raise checks.CheckError("k_max", f">= k_min ({self.k_min})", self.k_max)


@dataclass(frozen=True)
class FeaturePlan:
    """Which columns go into the fit and how, with the reason for every column left out."""

    used: tuple[str, ...]
    log_transformed: tuple[str, ...]
    dropped: dict[str, str]


@dataclass(frozen=True)
class Candidate:
    """One scored candidate model."""

    algorithm: Algorithm
    k: int
    silhouette: float
    davies_bouldin: float
    calinski_harabasz: float
    min_segment_share: float
    stability: float | None = None
    rejected: str | None = None

    def as_row(self) -> dict[str, object]:
        return {
            "algorithm": self.algorithm,
            "k": self.k,
            "silhouette": round(self.silhouette, 4),
            "davies_bouldin": round(self.davies_bouldin, 3),
            "calinski_harabasz": round(self.calinski_harabasz, 1),
            "min_segment_share": round(self.min_segment_share, 4),
            "stability": None if self.stability is None else round(self.stability, 3),
            "rejected": self.rejected or "",
        }


@dataclass
class FittedModel:
    """A fitted preprocessing pipeline plus a clustering estimator, and how it was chosen.

    ``segment_ids[i]`` is the published segment id of the estimator's cluster ``i``; it starts
    as ``i + 1`` and is rewritten by alignment so that ids keep their meaning across refits.
    """

    preprocessor: Pipeline
    estimator: KMeans | CentroidClusters | GaussianMixture
    algorithm: Algorithm
    plan: FeaturePlan
    k: int
    candidates: list[Candidate]
    selection_reason: str
    n_train: int
    segment_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))

    def __post_init__(self) -> None:
        if self.segment_ids.size == 0:
            self.segment_ids = np.arange(1, self.k + 1)

    @property
    def chosen(self) -> Candidate:
        return next(c for c in self.candidates if c.algorithm == self.algorithm and c.k == self.k)

    @property
    def silhouette(self) -> float:
        return self.chosen.silhouette

    @property
    def centroids(self) -> np.ndarray:
        """Cluster centres in the model's scaled feature space, in estimator order."""
        if isinstance(self.estimator, GaussianMixture):
            return self.estimator.means_
        return self.estimator.cluster_centers_

    def raw_centroids(self) -> pl.DataFrame:
        """Centroids mapped back to feature units (one row per published segment id).

        Undoes the scaling and the log1p; clipping and imputation need no inverse. Another
        model can then place these centroids in its own space with its own preprocessor.
        """
        z = self.preprocessor.named_steps["scale"].inverse_transform(self.centroids)
        logged = list(self.preprocessor.named_steps["log"].kw_args["columns"])
        z[:, logged] = np.expm1(z[:, logged])
        return pl.DataFrame(z, schema=list(self.plan.used)).with_columns(
            segment_id=pl.Series(self.segment_ids)
        )

    def transform_partial(self, features: pl.DataFrame) -> np.ndarray:
        """Like :meth:`transform`, but columns the frame lacks are imputed (median)."""
        missing = [c for c in self.plan.used if c not in features.columns]
        filled = features.with_columns(pl.lit(None, pl.Float64).alias(c) for c in missing)
        return self.preprocessor.transform(_matrix(filled, self.plan.used))

    def transform(self, features: pl.DataFrame) -> np.ndarray:
        """Scaled feature matrix in the model's space (the transform fitted at training)."""
        missing = [c for c in self.plan.used if c not in features.columns]
        if missing:
            raise KeyError(f"features lack column(s) the model was fitted on: {missing}")
        return self.preprocessor.transform(_matrix(features, self.plan.used))

    def cluster_index(
        self, x: np.ndarray, previous: np.ndarray | None = None, margin: float = 0.0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Estimator cluster index, distance to that centroid, and a confidence in [0, 1].

        With ``previous`` (each row's earlier cluster index, -1 for none) a row keeps its
        earlier cluster unless another centroid is nearer by more than ``margin`` (a share of
        the distance to the earlier one): hysteresis, so a customer on a boundary does not flip
        back and forth from one day's noise."""
        dist = np.sqrt(((x[:, None, :] - self.centroids[None, :, :]) ** 2).sum(-1))
        rows = np.arange(x.shape[0])
        if not isinstance(self.estimator, GaussianMixture):
            idx = dist.argmin(axis=1)
        else:
            proba = self.estimator.predict_proba(x)
            idx = proba.argmax(axis=1)
        if previous is not None and margin > 0:
            had = previous >= 0
            before = dist[rows, np.where(had, previous, 0)]
            stay = had & (dist[rows, idx] > (1 - margin) * before)
            idx = np.where(stay, previous, idx)
        if not isinstance(self.estimator, GaussianMixture):
            two = np.sort(dist, axis=1)[:, :2] if self.k > 1 else np.c_[dist, dist + 1]
            confidence = 1.0 - two[:, 0] / np.maximum(two[:, 1], 1e-12)
        else:
            confidence = proba[rows, idx]
        return idx, dist[rows, idx], confidence

    def cluster_index_rows(
        self,
        features: pl.DataFrame,
        chunk: int = 262_144,
        previous: np.ndarray | None = None,
        margin: float = 0.0,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`cluster_index` of every row of ``features``, transformed here.

        Every step is per-row, so it runs in chunks of ``chunk`` rows (a whole-frame version
        spends its time faulting in a fresh copy of the matrix per preprocessing step, and the
        n x k x d distance temporary)."""

        def part(start: int, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            prev = None if previous is None else previous[start : start + length]
            return self.cluster_index(self.transform(features.slice(start, length)), prev, margin)

        parts = [part(start, chunk) for start in range(0, features.height, chunk)] or [
            part(0, features.height)
        ]
        idx, distance, confidence = (np.concatenate(p) for p in zip(*parts, strict=True))
        return idx, distance, confidence

    def assign(
        self,
        features: pl.DataFrame,
        chunk: int = 262_144,
        previous_ids: np.ndarray | None = None,
        margin: float = 0.0,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Published segment id, distance to its centroid and confidence for every row.

        ``previous_ids`` (each row's earlier published id, or a negative number) and ``margin``
        add hysteresis (see :meth:`cluster_index`); an earlier id this model does not have is
        no earlier cluster."""
        previous = None
        if previous_ids is not None:
            position = {int(sid): i for i, sid in enumerate(self.segment_ids)}
            previous = np.fromiter(
                (position.get(int(p), -1) for p in previous_ids), dtype=np.int64,
                count=len(previous_ids),
            )  # fmt: skip
        idx, distance, confidence = self.cluster_index_rows(features, chunk, previous, margin)
        return self.segment_ids[idx], distance, confidence


class CentroidClusters(ClusterMixin, BaseEstimator):
    """Clusters summarised by their centroids; ``predict`` assigns the nearest centroid.

    Ward and HDBSCAN are fitted on a sample and have no rule for customers outside it; their
    clusters' centroids give them one that scales to every customer (as KMeans' does)."""

    cluster_centers_: np.ndarray

    def predict(self, x: np.ndarray) -> np.ndarray:
        d = ((x[:, None, :] - self.cluster_centers_[None, :, :]) ** 2).sum(-1)
        return d.argmin(axis=1)

    def _centres(self, x: np.ndarray, labels: np.ndarray) -> None:
        ids = np.unique(labels[labels >= 0])
        self.cluster_centers_ = np.stack([x[labels == i].mean(axis=0) for i in ids])
        self.n_clusters_ = len(ids)


class WardClusters(CentroidClusters):
    """Ward's agglomerative clustering of a sample, cut into ``n_clusters``."""

    def __init__(self, n_clusters: int = 5, max_samples: int = 5_000, random_state: int = 0):
        self.n_clusters = n_clusters
        self.max_samples = max_samples
        self.random_state = random_state

    def fit(self, x: np.ndarray, y: object = None) -> WardClusters:
        xs = x[sample_idx(x.shape[0], self.max_samples, self.random_state)]
        tree = linkage(xs, method="ward")
        self._centres(xs, fcluster(tree, self.n_clusters, criterion="maxclust") - 1)
        return self


class DensityClusters(CentroidClusters):
    """HDBSCAN on a sample: dense groups of at least ``min_cluster_share`` of the sample, as
    many as the data has (customers in no dense group are assigned their nearest group)."""

    def __init__(
        self, min_cluster_share: float = 0.02, max_samples: int = 10_000, random_state: int = 0
    ):
        self.min_cluster_share = min_cluster_share
        self.max_samples = max_samples
        self.random_state = random_state

    def fit(self, x: np.ndarray, y: object = None) -> DensityClusters:
        xs = x[sample_idx(x.shape[0], self.max_samples, self.random_state)]
        size = max(10, int(self.min_cluster_share * xs.shape[0]))
        labels = HDBSCAN(min_cluster_size=size, min_samples=10, copy=True).fit_predict(xs)
        if (labels >= 0).sum() == 0:  # no dense group at all: one cluster of everyone
            labels = np.zeros(xs.shape[0], dtype=int)
        self._centres(xs, labels)
        return self


def candidate_columns(features: pl.DataFrame) -> list[str]:
    """Numeric columns of ``features`` that could be clustering inputs."""
    return [
        c
        for c, t in features.schema.items()
        if c not in ID_COLUMNS and c not in NON_FEATURES and t.is_numeric()
    ]


def _matrix(features: pl.DataFrame, columns: tuple[str, ...] | list[str]) -> np.ndarray:
    return features.select(pl.col(c).cast(pl.Float64) for c in columns).to_numpy()


def plan_features(features: pl.DataFrame, config: SelectionConfig | None = None) -> FeaturePlan:
    """Decide which candidate columns to use, which to log-transform, and why others are out.

    In order, a column is left out when it is: excluded by configuration; entirely NULL (the
    input cannot support it, e.g. views in a purchases-only log); constant; NULL for more than
    ``max_missing_share`` of customers (the fit would mostly see imputed values); or correlated
    above ``max_correlation`` with a column already kept. A non-negative column whose skewness
    exceeds ``skew_threshold`` is log1p-transformed, and so are the durations in ``LOG_SCALE``.
    """
    config = config or SelectionConfig()
    dropped: dict[str, str] = {}
    kept: list[str] = []
    for c in candidate_columns(features):
        s = features[c].cast(pl.Float64)
        nn = s.drop_nulls().drop_nans()
        if c in config.exclude:
            dropped[c] = "excluded by configuration: " + DEFAULT_EXCLUDED.get(c, "by request")
        elif nn.len() == 0:
            dropped[c] = "no values: the input data cannot support this feature"
        elif nn.n_unique() <= 1:
            dropped[c] = f"constant ({nn[0]:g}) for every customer"
        elif (missing := 1 - nn.len() / max(features.height, 1)) > config.max_missing_share:
            dropped[c] = (
                f"undefined for {missing:.0%} of customers (> {config.max_missing_share:.0%})"
            )
        else:
            kept.append(c)
    used: list[str] = []
    if kept:
        idx = sample_idx(features.height, 50_000, config.seed)
        sample = features[idx].select(pl.col(kept).cast(pl.Float64).fill_nan(None))
        sample = sample.with_columns(pl.all().fill_null(pl.all().median()))
        corr = np.nan_to_num(np.corrcoef(sample.to_numpy(), rowvar=False))
        corr = np.atleast_2d(corr)
        for i, c in enumerate(kept):
            twin = next(
                (u for u in used if abs(corr[i, kept.index(u)]) > config.max_correlation), None
            )
            if twin is not None:
                dropped[c] = f"correlation {corr[i, kept.index(twin)]:.2f} with {twin}"
            else:
                used.append(c)
    logged = []
    for c in used:
        nn = features[c].cast(pl.Float64).drop_nulls().drop_nans()
        skew = nn.skew()
        skewed = skew is not None and skew > config.skew_threshold
        if nn.min() >= 0 and (c in LOG_SCALE or skewed):
            logged.append(c)
    for c, why in dropped.items():
        log.info("feature %s left out of the fit: %s", c, why)
    return FeaturePlan(tuple(used), tuple(logged), dropped)


def log1p_columns(x: np.ndarray, columns: tuple[int, ...] = ()) -> np.ndarray:
    """log1p of the given columns (non-negative), others unchanged; column order is kept."""
    out = np.array(x, dtype=float, copy=True)
    for i in columns:  # in place, column by column: no fancy-indexed copy of the matrix
        col = out[:, i]
        np.clip(col, 0, None, out=col)
        np.log1p(col, out=col)
    return out


class Winsorizer(FunctionTransformer):
    """Clip every column to its fitted [0.5 %, 99.5 %] quantiles: robust to a few extreme
    customers (one reseller buying 500 items must not stretch everyone else's scale)."""

    def __init__(self, lower: float = 0.005, upper: float = 0.995) -> None:
        self.lower = lower
        self.upper = upper
        super().__init__()

    def fit(self, x: np.ndarray, y: object = None) -> Winsorizer:
        # both quantiles from one partition of each column: half the time of two calls
        self.lo_, self.hi_ = np.nanquantile(x, [self.lower, self.upper], axis=0)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return np.clip(x, self.lo_, self.hi_)


def median_or_zero(values: np.ndarray) -> float:
    """A column's median (0 when it has no values): SimpleImputer's statistic.

    SimpleImputer's own "median" takes a masked-array median of the whole matrix, which sorts
    it; ``np.median`` of each column's present values (a partition, not a sort) gives the same
    medians for a fraction of the work."""
    return float(np.median(values)) if values.size else 0.0


def build_preprocessor(plan: FeaturePlan) -> Pipeline:
    """Impute (median), log1p the skewed columns, clip outliers, standardise.

    Output columns are in ``plan.used`` order, so centroids can be read feature by feature.
    """
    log_idx = tuple(plan.used.index(c) for c in plan.log_transformed)
    return Pipeline(
        [
            ("impute", SimpleImputer(strategy=median_or_zero)),
            ("log", FunctionTransformer(log1p_columns, kw_args={"columns": log_idx})),
            ("clip", Winsorizer()),
            ("scale", StandardScaler()),
        ]
    )


def sample_idx(n: int, size: int, seed: int) -> np.ndarray:
    """A sorted, seeded sample of ``size`` row indices out of ``n`` (all rows if fewer)."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


#: Independent fits run in this many threads (numpy and sklearn's kernels release the GIL, so
#: the candidate grid shares the cores); results are the same (every fit is seeded).
FIT_THREADS = min(2, os.cpu_count() or 1)


def _parallel(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``[fn(i) for i in items]``, in FIT_THREADS threads, in order."""
    with ThreadPoolExecutor(FIT_THREADS) as pool:
        return list(pool.map(fn, items))


def _estimator(algorithm: Algorithm, k: int, config: SelectionConfig, seed: int):
    if algorithm == "kmeans":
        return KMeans(n_clusters=k, n_init=config.n_init, random_state=seed)
    if algorithm == "ward":
        return WardClusters(n_clusters=k, max_samples=config.ward_sample, random_state=seed)
    if algorithm == "hdbscan":
        return DensityClusters(config.min_segment_share, config.density_sample, seed)
    if algorithm != "gmm":
        raise ValueError(f"unknown algorithm {algorithm!r}; choose from {ALGORITHMS}")
    return GaussianMixture(
        n_components=k,
        covariance_type="diag",
        n_init=1,
        init_params="k-means++",
        reg_covar=1e-4,
        random_state=seed,
    )


def _score(
    algorithm: Algorithm, k: int, labels: np.ndarray, x_eval: np.ndarray, d_eval: np.ndarray
) -> Candidate | None:
    """Scores of one candidate's ``labels`` of ``x_eval``; ``d_eval`` is the pairwise distance
    matrix of ``x_eval`` (computed once and shared by every candidate's silhouette)."""
    present = np.unique(labels)
    if present.size < 2:
        return None
    shares = np.bincount(labels, minlength=k) / labels.size
    return Candidate(
        algorithm=algorithm,
        k=k,
        silhouette=float(silhouette_score(d_eval, labels, metric="precomputed")),
        davies_bouldin=float(davies_bouldin_score(x_eval, labels)),
        calinski_harabasz=float(calinski_harabasz_score(x_eval, labels)),
        min_segment_share=float(shares.min()),
    )


def stability(
    algorithm: Algorithm,
    k: int,
    x_fit: np.ndarray,
    x_eval: np.ndarray,
    reference: np.ndarray,
    config: SelectionConfig,
) -> float:
    """Mean ARI between ``reference`` labels of ``x_eval`` and refits on bootstrap resamples."""
    rng = np.random.default_rng(config.seed + 17)
    n = x_fit.shape[0]
    boots = [rng.integers(0, n, n) for _ in range(config.stability_rounds)]

    def refit(r: int) -> float:
        est = _estimator(algorithm, k, config, config.seed + 100 + r).fit(x_fit[boots[r]])
        return adjusted_rand_score(reference, est.predict(x_eval))

    return float(np.mean(_parallel(refit, range(config.stability_rounds))))


def select(
    x: np.ndarray, config: SelectionConfig
) -> tuple[Candidate, object, list[Candidate], str]:
    """Fit and score every candidate on ``x`` (scaled); return the winner, its estimator,
    all candidates (with rejection reasons) and a one-line reason for the choice."""
    search_idx = sample_idx(x.shape[0], min(config.search_sample, config.fit_sample), config.seed)
    fit_idx = sample_idx(x.shape[0], config.fit_sample, config.seed)
    eval_idx = sample_idx(x.shape[0], config.silhouette_sample, config.seed + 1)
    x_fit, x_eval = x[search_idx], x[eval_idx]
    d_eval = pairwise_distances(x_eval)
    k_max = min(config.k_max, max(config.k_min, x_eval.shape[0] // 10))

    ward_tree = None
    if "ward" in config.algorithms:  # one tree, cut at every k
        ward_x = x_fit[sample_idx(x_fit.shape[0], config.ward_sample, config.seed)]
        ward_tree = linkage(ward_x, method="ward")

    def candidate(key: tuple[Algorithm, int]):  # noqa: ANN202
        if key[0] == "ward":
            est = WardClusters(key[1], config.ward_sample, config.seed)
            est._centres(ward_x, fcluster(ward_tree, key[1], criterion="maxclust") - 1)
        else:
            est = _estimator(key[0], key[1], config, config.seed).fit(x_fit)
        k = getattr(est, "n_clusters_", key[1])
        labels = est.predict(x_eval)
        if key[0] == "hdbscan" and not config.k_min <= k <= config.k_max:
            return None, est, labels
        return _score(key[0], k, labels, x_eval, d_eval), est, labels

    grid = [
        (a, k)
        for a in config.algorithms
        for k in ([0] if a == "hdbscan" else range(config.k_min, k_max + 1))
    ]
    fitted: dict[tuple[str, int], tuple[Candidate, object, np.ndarray]] = {
        key: (cand, est, labels)
        for key, (cand, est, labels) in zip(grid, _parallel(candidate, grid), strict=True)
        if cand is not None
    }
    if not fitted:
        raise ValueError(f"no candidate in k={config.k_min}..{config.k_max} found 2+ segments")

    def reject(key: tuple[str, int], why: str) -> None:
        cand, est, labels = fitted[key]
        fitted[key] = (replace(cand, rejected=why), est, labels)

    for key, (cand, _, _) in list(fitted.items()):
        if cand.min_segment_share < config.min_segment_share:
            reject(
                key,
                f"smallest segment {cand.min_segment_share:.1%} < {config.min_segment_share:.0%}",
            )
    # if every candidate has a tiny segment, fall back to all of them rather than to nothing
    alive = [key for key, (c, _, _) in fitted.items() if c.rejected is None] or list(fitted)
    best = max(alive, key=lambda key: fitted[key][0].silhouette)
    best_sil = fitted[best][0].silhouette
    tolerance = config.silhouette_tolerance
    if tolerance is None:  # one standard error of the best silhouette (a mean over customers)
        per_customer = silhouette_samples(d_eval, fitted[best][2], metric="precomputed")
        tolerance = float(per_customer.std() / np.sqrt(per_customer.size))
    band = []
    for key in alive:
        if fitted[key][0].silhouette < best_sil - tolerance:
            reject(key, f"silhouette more than {tolerance:.4f} below the best")
        else:
            band.append(key)
    band.sort(key=lambda key: (fitted[key][0].k, -fitted[key][0].silhouette))
    top = band[: config.stability_top_n]
    for key in top:
        cand, est, labels = fitted[key]
        s = stability(key[0], cand.k, x_fit, x_eval, labels, config)
        fitted[key] = (replace(cand, stability=s), est, labels)
    stable = [key for key in top if (fitted[key][0].stability or 0) >= config.min_stability]
    if stable:
        for key in top:
            if key not in stable:
                reject(key, f"stability {fitted[key][0].stability:.2f} < {config.min_stability}")
    best = (stable or top)[0]
    winner, est, _ = fitted[best]
    refit = ""
    # kmeans and gmm: the candidates are fitted on the search sample, the winner once more on
    # the (larger) fit sample; Ward and HDBSCAN use their own (smaller) samples whatever they
    # are given
    if fit_idx.size > search_idx.size and winner.algorithm in ("kmeans", "gmm"):
        est = _estimator(winner.algorithm, winner.k, config, config.seed).fit(x[fit_idx])
        refit = f"; refitted on {fit_idx.size:,} rows"
    reason = (
        f"{winner.algorithm} k={winner.k}: fewest segments with silhouette {winner.silhouette:.3f} "
        f"within {tolerance:.4f} of the best ({best_sil:.3f}), every segment >= "
        f"{config.min_segment_share:.0%} of customers, bootstrap stability {winner.stability:.2f}"
        + ("" if stable else f" (no candidate reached stability {config.min_stability})")
        + refit
    )
    candidates = sorted((c for c, _, _ in fitted.values()), key=lambda c: (c.algorithm, c.k))
    return winner, est, candidates, reason


def fit(features: pl.DataFrame, config: SelectionConfig | None = None) -> FittedModel:
    """Plan features, fit the preprocessing, select and fit the clustering model."""
    config = config or SelectionConfig()
    if features.height < config.k_min * 10:
        raise ValueError(
            f"customer_features has {features.height} rows; need at least {config.k_min * 10} "
            "customers to fit a segmentation"
        )
    plan = plan_features(features, config)
    if not plan.used:
        raise ValueError(f"no usable feature columns; dropped: {plan.dropped}")
    pre = build_preprocessor(plan)
    x = pre.fit_transform(_matrix(features, plan.used))
    winner, est, candidates, reason = select(x, config)
    return FittedModel(
        preprocessor=pre,
        estimator=est,
        algorithm=winner.algorithm,
        plan=plan,
        k=winner.k,
        candidates=candidates,
        selection_reason=reason,
        n_train=features.height,
    )
