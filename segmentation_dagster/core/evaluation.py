"""How good the segments are, on any shop's data (no truth needed).

- separation: :func:`segmentation_dagster.core.drift.model_quality` (silhouette and centroid
  distance today and at fit);
- stability: the champion refitted on the same customers in another order with another seed;
  the agreement of the two assignments (adjusted Rand index) and the share of customers whose
  published id is unchanged after the refit is aligned as a challenger would be;
- per segment: customers, share, mean distance and confidence.

The comparison with the demo's true personas is separate
(:mod:`segmentation_dagster.demo.evaluate`): only demo data has a truth.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import polars as pl
from sklearn.metrics import adjusted_rand_score

from segmentation_dagster.core.clustering import FittedModel, SelectionConfig, fit
from segmentation_dagster.core.lifecycle import Alignment, align_to_champion


@dataclass(frozen=True)
class Stability:
    """A forced refit against the champion: assignment agreement (ARI), the share of customers
    whose published id is unchanged, and the refit's alignment (kept/new/retired ids)."""

    ari: float
    unchanged_share: float
    alignment: Alignment


def refit_stability(
    features: pl.DataFrame,
    champion: FittedModel,
    config: SelectionConfig | None = None,
    seed: int = 1,
) -> Stability:
    """Refit on the same customers, shuffled, with another seed; align it to ``champion``
    exactly as a challenger would be; compare both assignments of every customer."""
    config = replace(config or SelectionConfig(), seed=seed)
    refit = fit(features.sample(fraction=1.0, shuffle=True, seed=seed), config)
    alignment = align_to_champion(refit, champion, int(champion.segment_ids.max()) + 1, features)
    refit.segment_ids = alignment.segment_ids
    before, _, _ = champion.assign(features)
    after, _, _ = refit.assign(features)
    return Stability(
        ari=float(adjusted_rand_score(before, after)),
        unchanged_share=float((before == after).mean()),
        alignment=alignment,
    )


def segment_summary(champion: FittedModel, features: pl.DataFrame) -> pl.DataFrame:
    """Per published segment: customers, share, mean distance to its centroid, mean
    confidence (how much nearer the own centroid is than the next)."""
    ids, dist, conf = champion.assign(features)
    return (
        pl.DataFrame({"segment_id": ids, "distance": dist, "confidence": conf})
        .group_by("segment_id")
        .agg(
            customers=pl.len(),
            mean_distance=pl.col("distance").mean(),
            mean_confidence=pl.col("confidence").mean(),
        )
        .with_columns(share=pl.col("customers") / max(len(ids), 1))
        .sort("segment_id")
        .select("segment_id", "customers", "share", "mean_distance", "mean_confidence")
    )
