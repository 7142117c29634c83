"""Re-segmentation on the warehouse: today's features, the champion and its published
segments in; the challenger, the decision and its records out.

:func:`run` reads what :func:`segmentation_dagster.core.lifecycle.resegment` needs from DuckDB
(customer_features, the champion, every customer's published segment, the champion's shares at
fit and how far from their centroid its segments' members were at fit), calls it, and records
the outcome in the registry: the challenger and its reference snapshot, the decision and its
transitions (promotion swaps the champion), and, when the champion stays, today's features as
its new drift reference. The ``segmentation_model`` asset calls it and publishes the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from segmentation_dagster.core import clustering, lifecycle, registry, segments


@dataclass(frozen=True)
class Outcome:
    """A recorded re-segmentation: the challenger's registry version, the champion it was
    compared with (None before the first), and what :func:`lifecycle.resegment` decided."""

    version: int
    champion_version: int | None
    result: lifecycle.Resegmentation


def run(
    con: duckdb.DuckDBPyConnection,
    model_dir: Path,
    selection: clustering.SelectionConfig | None = None,
    config: lifecycle.LifecycleConfig | None = None,
    features: pl.DataFrame | None = None,
    published: np.ndarray | None = None,
) -> Outcome:
    """Fit a challenger on today's features, decide against the champion and record it all.

    ``features`` and ``published`` (each row's published segment id, -1 for none) come from
    the warehouse's customer_features unless given (at most ``selection.fit_sample`` customers,
    by :func:`segments.read_features`' seeded sample): an engine that keeps the customers
    elsewhere (:mod:`spark_loop`) passes a fixed-size sample of them and their segments; the
    registry stays on ``con``."""
    if features is None:  # the sample Spark's loop takes too: both engines fit the same rows
        fit_sample = (selection or clustering.SelectionConfig()).fit_sample
        features = segments.read_features(con, sample=fit_sample)
        published = segments.current_segments(con, features)
    elif published is None:
        published = np.full(features.height, -1)
    current = registry.champion(con)
    champ_version, champ_model = current if current else (None, None)
    if champ_model is not None:  # customers new since the last assignment: the champion's
        missing = published < 0
        if missing.any():
            published[missing] = champ_model.assign(features.filter(pl.Series(missing)))[0]
    fit_shares = far = None
    if champ_model is not None:
        config = config or lifecycle.LifecycleConfig()
        fit_shares = registry.reference_shares(con, champ_version, champ_model, at_fit=True)
        fit_reference = pl.read_parquet(registry.fit_reference_path(con, champ_version))
        far = lifecycle.far_quantiles(champ_model, fit_reference, config.far_quantile)
    result = lifecycle.resegment(
        features,
        champ_model,
        published if champ_model is not None else None,
        registry.next_segment_id(con),
        registry.active_names(con),
        selection,
        config,
        fit_shares,
        far,
    )
    snapshot = features["snapshot_date"].max()
    version = registry.save_model(con, result.challenger, model_dir, snapshot, features)
    registry.record_decision(
        con, version, champ_version, result.decision, result.alignment, result.names
    )
    if not result.decision.promote and champ_version is not None:
        # the champion was validated on today's customers: they are the drift reference now
        registry.revalidate(con, champ_version, model_dir, snapshot, features)
    return Outcome(version, champ_version, result)
