"""Clustering: preprocessing, model selection by silhouette, assignment.

Everything here takes and returns plain values (numpy arrays, polars frames, dataclasses), so
the Dagster assets, the CLI and the benchmarks share it. Nothing is quadratic in the number of
customers: KMeans is fitted on at most ``fit_sample`` rows and the silhouette is computed on a
fixed-size, fixed-seed sample.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import polars as pl
from sklearn.cluster import KMeans
from sklearn.impute import SimpleImputer
from sklearn.metrics import silhouette_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

log = logging.getLogger(__name__)

ID_COLUMNS = ("customer_id", "snapshot_date")
#: Columns of customer_features that describe a customer but are not clustering inputs:
#: identifiers, raw counts that duplicate a rate, and bookkeeping.
NON_FEATURES = ("top_category", "exposure_days", "event_count", "days_since_last_event")


@dataclass(frozen=True)
class SelectionConfig:
    """How a model is chosen. ``k_min..k_max`` is searched; the best silhouette wins."""

    k_min: int = 3
    k_max: int = 10
    silhouette_sample: int = 5_000
    fit_sample: int = 200_000
    n_init: int = 4
    skew_threshold: float = 1.0
    seed: int = 0


@dataclass(frozen=True)
class FeaturePlan:
    """Which columns go into the fit and how, with the reason for every column left out."""

    used: tuple[str, ...]
    log_transformed: tuple[str, ...]
    dropped: dict[str, str]


@dataclass
class FittedModel:
    """A fitted preprocessing pipeline plus KMeans, and how it was chosen."""

    preprocessor: Pipeline
    kmeans: KMeans
    plan: FeaturePlan
    k: int
    scores: dict[int, float]
    n_train: int
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def silhouette(self) -> float:
        return self.scores[self.k]

    def transform(self, features: pl.DataFrame) -> np.ndarray:
        """Scaled feature matrix in the model's space (same transform as at fit time)."""
        return self.preprocessor.transform(_matrix(features, self.plan.used))

    def assign(self, features: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Cluster label and distance to its centroid for every row of ``features``."""
        x = self.transform(features)
        dist = self.kmeans.transform(x)
        labels = dist.argmin(axis=1)
        return labels, dist[np.arange(labels.size), labels]


def candidate_columns(features: pl.DataFrame) -> list[str]:
    """Numeric columns of ``features`` that could be clustering inputs."""
    return [
        c
        for c, t in features.schema.items()
        if c not in ID_COLUMNS and c not in NON_FEATURES and t.is_numeric()
    ]


def _matrix(features: pl.DataFrame, columns: tuple[str, ...] | list[str]) -> np.ndarray:
    return features.select(pl.col(c).cast(pl.Float64) for c in columns).to_numpy()


def plan_features(features: pl.DataFrame, skew_threshold: float = 1.0) -> FeaturePlan:
    """Decide which candidate columns to use, which to log-transform, and why others are out.

    A column is dropped when it is entirely NULL (the input cannot support it, e.g. views in a
    purchases-only log), or constant (no information). A non-negative column whose skewness
    exceeds ``skew_threshold`` is log1p-transformed.
    """
    used: list[str] = []
    logged: list[str] = []
    dropped: dict[str, str] = {}
    for c in candidate_columns(features):
        s = features[c].cast(pl.Float64)
        nn = s.drop_nulls().drop_nans()
        if nn.len() == 0:
            dropped[c] = "no values: the input data cannot support this feature"
            continue
        if nn.n_unique() <= 1:
            dropped[c] = f"constant ({nn[0]:g}) for every customer"
            continue
        used.append(c)
        skew = nn.skew()
        if nn.min() >= 0 and skew is not None and skew > skew_threshold:
            logged.append(c)
    for c, why in dropped.items():
        log.info("feature %s left out of the fit: %s", c, why)
    return FeaturePlan(tuple(used), tuple(logged), dropped)


def log1p_columns(x: np.ndarray, columns: tuple[int, ...] = ()) -> np.ndarray:
    """log1p of the given columns (non-negative), others unchanged; column order is kept."""
    out = np.array(x, dtype=float, copy=True)
    if columns:
        idx = list(columns)
        out[:, idx] = np.log1p(np.clip(out[:, idx], 0, None))
    return out


def build_preprocessor(plan: FeaturePlan) -> Pipeline:
    """Median-impute, log1p the skewed columns, standardise (a scikit-learn Pipeline).

    Output columns are in ``plan.used`` order, so centroids can be read feature by feature.
    """
    log_idx = tuple(plan.used.index(c) for c in plan.log_transformed)
    return Pipeline(
        [
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("log", FunctionTransformer(log1p_columns, kw_args={"columns": log_idx})),
            ("scale", StandardScaler()),
        ]
    )


def _sample_idx(n: int, size: int, seed: int) -> np.ndarray:
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def fit_kmeans_sweep(
    x: np.ndarray, config: SelectionConfig
) -> tuple[dict[int, KMeans], dict[int, float]]:
    """Fit KMeans for every k in range on a sample; score each by sampled silhouette."""
    fit_idx = _sample_idx(x.shape[0], config.fit_sample, config.seed)
    sil_idx = _sample_idx(x.shape[0], config.silhouette_sample, config.seed + 1)
    models: dict[int, KMeans] = {}
    scores: dict[int, float] = {}
    k_max = min(config.k_max, max(config.k_min, x.shape[0] - 1))
    for k in range(config.k_min, k_max + 1):
        km = KMeans(n_clusters=k, n_init=config.n_init, random_state=config.seed)
        km.fit(x[fit_idx])
        labels = km.predict(x[sil_idx])
        if np.unique(labels).size < 2:
            continue
        models[k] = km
        scores[k] = float(silhouette_score(x[sil_idx], labels))
    if not models:
        raise ValueError(f"no k in {config.k_min}..{config.k_max} gave two or more clusters")
    return models, scores


def fit(features: pl.DataFrame, config: SelectionConfig | None = None) -> FittedModel:
    """Fit the preprocessing and KMeans, choosing k by silhouette; see :class:`SelectionConfig`."""
    config = config or SelectionConfig()
    if features.height < config.k_min + 1:
        raise ValueError(
            f"customer_features has {features.height} rows; need more than {config.k_min} "
            "customers to fit a segmentation"
        )
    plan = plan_features(features, config.skew_threshold)
    if not plan.used:
        raise ValueError(f"no usable feature columns; dropped: {plan.dropped}")
    pre = build_preprocessor(plan)
    x = pre.fit_transform(_matrix(features, plan.used))
    models, scores = fit_kmeans_sweep(x, config)
    best = max(scores, key=lambda k: (scores[k], -k))
    return FittedModel(
        preprocessor=pre,
        kmeans=models[best],
        plan=plan,
        k=best,
        scores=scores,
        n_train=features.height,
    )
