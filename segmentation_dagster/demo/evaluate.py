"""Scores against the simulated truth (the demo generator's hidden personas)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from sklearn.metrics import adjusted_rand_score

from segmentation_dagster.demo.simulate import truth_at


@dataclass(frozen=True)
class Evaluation:
    """How well segments recover the personas."""

    ari: float
    n_customers: int
    n_segments: int
    n_personas: int
    crosstab: pl.DataFrame


def evaluate_segments(segments: pl.DataFrame, truth_path: Path, as_of: dt.date) -> Evaluation:
    """Adjusted Rand index between ``segments`` (customer_id, segment_id) and the true personas
    on ``as_of`` (the features' snapshot date; see :func:`simulate.truth_at`)."""
    if not truth_path.exists():
        raise FileNotFoundError(
            f"{truth_path}: no truth file; it exists only for data made by `segmentation demo`"
        )
    truth = truth_at(pl.read_parquet(truth_path), as_of)
    truth = truth.with_columns(pl.col("customer_id").cast(pl.String))
    persona_column = "persona"
    joined = segments.with_columns(pl.col("customer_id").cast(pl.String)).join(
        truth, on="customer_id", how="inner"
    )
    if joined.height == 0:
        raise ValueError(f"no customer of the segments appears in {truth_path}")
    crosstab = (
        joined.group_by(persona_column, "segment_id")
        .len()
        .sort("segment_id")
        .pivot(on="segment_id", index=persona_column, values="len")
        .fill_null(0)
        .sort(persona_column)
    )
    return Evaluation(
        ari=float(adjusted_rand_score(joined[persona_column], joined["segment_id"])),
        n_customers=joined.height,
        n_segments=joined["segment_id"].n_unique(),
        n_personas=joined[persona_column].n_unique(),
        crosstab=crosstab,
    )
