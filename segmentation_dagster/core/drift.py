"""Monitors: behaviour drift (Evidently), segment-share drift (PSI), model-quality decay.

Evidently's default drift tests change with sample size and answer "is there *any* difference"
(p-values that go to zero on large samples). Here every column uses an explicit method (default:
normed Wasserstein distance, an effect size in reference standard deviations) and both frames
are sampled to a fixed size with a fixed seed.

Each column's threshold is *calibrated* on the reference itself unless configured: the effect
two bootstrap resamples of the reference show by chance (its ``quantile``-th value over
``rounds`` pairs) times ``margin``, never below ``min_threshold``. Chance effects grow as a
column's values get fewer, so a column only some customers have (discount share: buyers only)
gets a higher bar than one every active customer has, and the bar follows the sample size
instead of Evidently's size-dependent default.

The score that drives decisions (:attr:`BehaviourDrift.score`) is the largest effect as a
multiple of its column's threshold: >= 1 means at least one column moved more than chance
allows. The share of drifted columns is reported alongside.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import duckdb
import numpy as np
import polars as pl
from scipy import stats
from sklearn.metrics import silhouette_score

from segmentation_dagster.adapters import evidently_drift
from segmentation_dagster.core import checks, compiled
from segmentation_dagster.core.clustering import FittedModel, sample_idx

#: Evidently's tests of a numeric column (its registry), the methods a column may be given
METHODS = ("wasserstein", "psi", "kl_div", "jensenshannon", "hellinger", "ed", "empirical_mmd",
           "ks", "anderson", "cramer_von_mises", "es", "mannw", "t_test")  # fmt: skip


def _pinned(value: object) -> bool:
    """A per_column entry: a method of :data:`METHODS` and a threshold > 0."""
    method, threshold = value  # type: ignore[misc]
    return method in METHODS and checks.number(0, low_open=True).test(threshold)


@dataclass(frozen=True)
class DriftConfig:
    """Per-column method and threshold (explicit, never Evidently's size-dependent default).

    ``threshold=None`` calibrates each column on the reference (see the module docstring);
    a number applies to every column; ``per_column`` pins a method and threshold per column.
    """

    method: str = "wasserstein"
    threshold: float | None = None
    per_column: dict[str, tuple[str, float]] = field(default_factory=dict)
    sample_size: int = 20_000
    seed: int = 0
    min_threshold: float = 0.05
    rounds: int = 30
    calibration_size: int = 5_000
    quantile: float = 0.95
    margin: float = 2.0

    #: each field's range (docs/configuration.md, "Ranges")
    RULES: ClassVar[dict[str, checks.Rule]] = {
        "method": checks.one_of(METHODS),
        "threshold": checks.optional(checks.number(0, low_open=True)),
        "per_column": checks.Rule(
            f"a mapping of feature names to [method, threshold > 0], method one of "
            f"{', '.join(METHODS)}",
            lambda v: (
                isinstance(v, dict)
                and all(
                    checks.identifier().test(k) and len(p) == 2 and _pinned(p) for k, p in v.items()
                )
            ),
        ),
        "sample_size": checks.whole(2),
        "seed": checks.whole(0, 2**32 - 1),
        "min_threshold": checks.number(0),
        "rounds": checks.whole(1),
        "calibration_size": checks.whole(2),
        "quantile": checks.number(0, 1, low_open=True, high_open=True),
        "margin": checks.number(0, low_open=True),
    }

    def __post_init__(self) -> None:
        checks.apply(self, self.RULES)

    def method_for(self, column: str) -> str:
        return self.per_column.get(column, (self.method, 0.0))[0]


def _effect(method: str, reference: np.ndarray, current: np.ndarray) -> float:
    """The statistic Evidently's ValueDrift computes for ``method`` on a numeric column.

    Normed Wasserstein is computed here with the same formula (scipy's distance over the
    reference's std, floored at 0.001; a test pins it to Evidently's value): calibration
    makes hundreds of these calls, and Evidently's own goes through much more machinery.
    """
    if method == "wasserstein":
        norm = max(float(np.std(reference)), 0.001)
        return float(stats.wasserstein_distance(reference, current) / norm)
    return evidently_drift.stattest_score(method, reference, current)


def thresholds(
    reference: pl.DataFrame, columns: list[str] | tuple[str, ...], config: DriftConfig
) -> dict[str, float]:
    """Each column's threshold: pinned in ``config``, or calibrated by bootstrapping the
    reference against itself (resample pairs the size of a monitor sample)."""
    out: dict[str, float] = {}
    for c in columns:
        if c in config.per_column:
            out[c] = config.per_column[c][1]
        elif config.threshold is not None:
            out[c] = config.threshold
        else:
            values = reference[c].drop_nulls().to_numpy()
            rng = np.random.default_rng(config.seed)
            # resample at most calibration_size rows; chance effects shrink as 1/sqrt(n)
            n = min(values.size, config.sample_size)
            m = min(n, config.calibration_size)
            chance = [
                _effect(config.method_for(c), rng.choice(values, m), rng.choice(values, m))
                for _ in range(config.rounds)
            ] if values.size > 1 else [0.0]  # fmt: skip
            noise = float(np.quantile(chance, config.quantile)) * np.sqrt(m / max(n, 1))
            out[c] = round(float(max(config.min_threshold, config.margin * noise)), 4)
    return out


@dataclass(frozen=True)
class BehaviourDrift:
    """Effect size per column, which crossed their threshold, and the share that did."""

    scores: dict[str, float]
    thresholds: dict[str, float]
    drifted: tuple[str, ...]
    drift_share: float
    n_reference: int
    n_current: int
    report_path: Path | None

    @property
    def score(self) -> float:
        """The largest effect as a multiple of its column's threshold (>= 1: drifted)."""
        ratios = [s / self.thresholds[c] for c, s in self.scores.items() if np.isfinite(s)]
        return round(max(ratios, default=0.0), 4)


def read_sample(
    con: duckdb.DuckDBPyConnection, relation: str, params: list, n: int, seed: int
) -> pl.DataFrame:
    """At most ``n`` rows of ``relation`` (a table name or ``read_parquet(?)``, never user
    text), the same rows for the same seed: the first by :func:`compiled.sample_order` (as
    Spark's loop samples). One scan and a top-n, so a monitor reads a fixed-size sample
    whatever the customer count, instead of every customer's features."""
    rows = con.execute(f"select count(*) from {relation}", params).fetchall()[0][0]
    return compiled.sample(lambda q: con.sql(q, params=params).pl(), relation, n, seed, rows)


def _sample(df: pl.DataFrame, n: int, seed: int) -> pl.DataFrame:
    return df[sample_idx(df.height, n, seed)]


def behaviour_drift(
    reference: pl.DataFrame,
    current: pl.DataFrame,
    columns: list[str] | tuple[str, ...],
    config: DriftConfig | None = None,
    report_path: Path | None = None,
) -> BehaviourDrift:
    """Compare ``current`` with ``reference`` feature by feature with an Evidently report."""
    config = config or DriftConfig()
    cols = [c for c in columns if c in reference.columns and c in current.columns]
    ref = _sample(reference.select(cols), config.sample_size, config.seed).to_pandas()
    cur = _sample(current.select(cols), config.sample_size, config.seed + 1).to_pandas()
    bars = thresholds(reference.select(cols), cols, config)
    report = evidently_drift.value_drift(ref, cur, {c: config.method_for(c) for c in cols}, bars)
    scores = report.scores
    drifted = tuple(c for c in cols if scores.get(c, 0) > bars[c])
    if report_path is not None:
        report_path.parent.mkdir(parents=True, exist_ok=True)
        # per process: runs overlapping on one warehouse write the same report outside the lock
        tmp = report_path.with_name(f".{report_path.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)  # never write through a link left in the folder
        report.save_html(tmp)
        tmp.replace(report_path)
    return BehaviourDrift(
        scores=scores,
        thresholds=bars,
        drifted=drifted,
        drift_share=len(drifted) / len(cols) if cols else 0.0,
        n_reference=len(ref),
        n_current=len(cur),
        report_path=report_path,
    )


#: Features whose distribution moves on a quiet shop, so their drift is no evidence that
#: behaviour changed: every steady customer's tenure grows a day a day, and while history
#: accumulates (after the data's first day, or a customer's regime restart) longer gaps between
#: orders and more categories become visible.
NOT_MONITORED: dict[str, str] = {
    "tenure_days": "grows with the calendar",
    "mean_days_between_orders": "lengthens while history accumulates",
    "category_count": "grows while history accumulates",
}


def monitored_columns(columns: list[str] | tuple[str, ...]) -> list[str]:
    """The model's features the behaviour monitor compares (all but :data:`NOT_MONITORED`)."""
    return [c for c in columns if c not in NOT_MONITORED]


def comparable_columns(reference: pl.DataFrame, columns: list[str] | tuple[str, ...]) -> list[str]:
    """Columns a drift score means something for: present, not all NULL, not constant in the
    reference (normed Wasserstein divides by the reference's spread)."""
    keep = []
    for c in columns:
        if c not in reference.columns:
            continue
        values = reference[c].drop_nulls()
        if values.len() > 1 and (values.std() or 0) > 0:
            keep.append(c)
    return keep


def psi(expected: dict[int, float], actual: dict[int, float], eps: float = 1e-4) -> float:
    """Population stability index between two share distributions over the same keys."""
    keys = set(expected) | set(actual)
    e = np.array([max(expected.get(k, 0.0), eps) for k in keys])
    a = np.array([max(actual.get(k, 0.0), eps) for k in keys])
    return float(((a - e) * np.log(a / e)).sum())


def shares(segment_ids: np.ndarray) -> dict[int, float]:
    """Share of customers per segment id."""
    ids, counts = np.unique(segment_ids, return_counts=True)
    return {int(i): float(c) / segment_ids.size for i, c in zip(ids, counts, strict=True)}


@dataclass(frozen=True)
class ModelQuality:
    """How well the champion still fits: today vs the snapshot it was fitted on."""

    silhouette_now: float
    silhouette_at_fit: float
    mean_distance_now: float
    mean_distance_at_fit: float

    @property
    def distance_ratio(self) -> float:
        return (
            self.mean_distance_now / self.mean_distance_at_fit if self.mean_distance_at_fit else 1.0
        )


#: Customers per side that model_quality measures.
QUALITY_SAMPLE = 5_000


def model_quality(
    model: FittedModel,
    reference: pl.DataFrame,
    current: pl.DataFrame,
    sample: int = QUALITY_SAMPLE,
) -> ModelQuality:
    """Silhouette and mean distance to the assigned centroid, on fixed samples."""

    def measure(df: pl.DataFrame, seed: int) -> tuple[float, float]:
        part = df[sample_idx(df.height, sample, seed)]
        x = model.transform(part)
        idx, dist, _ = model.cluster_index(x)
        sil = float(silhouette_score(x, idx)) if np.unique(idx).size > 1 else -1.0
        return sil, float(dist.mean())

    s_now, d_now = measure(current, 1)
    s_fit, d_fit = measure(reference, 1)
    return ModelQuality(s_now, s_fit, d_now, d_fit)
