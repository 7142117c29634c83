"""Model lifecycle: champion vs challenger, stable segment ids across refits, migrations.

Two models live in different scaled spaces (each fitted its own preprocessing), so they are
compared on *today's* customers in one space, the challenger's: each model labels the same
customers, and the centroids and silhouettes of both labelings are computed on the same matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import silhouette_score

from segmentation_dagster.core.clustering import FittedModel, sample_idx


@dataclass(frozen=True)
class Alignment:
    """How a new model's clusters map onto existing segment ids."""

    segment_ids: np.ndarray  # published id per cluster index of the new model
    matched: dict[int, tuple[int, float]]  # new segment id -> (old id, centroid distance)
    new: tuple[int, ...]  # ids minted for clusters with no close old centroid
    retired: tuple[int, ...]  # old ids no new cluster matched

    def as_rows(self) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = [
            {"segment_id": sid, "status": "kept", "distance": round(d, 3)}
            for sid, (_, d) in sorted(self.matched.items())
        ]
        rows += [{"segment_id": sid, "status": "new", "distance": None} for sid in self.new]
        rows += [{"segment_id": sid, "status": "retired", "distance": None} for sid in self.retired]
        return rows


def label_centroids(x: np.ndarray, labels: np.ndarray) -> dict[int, np.ndarray]:
    """Mean row of ``x`` per label."""
    return {int(lab): x[labels == lab].mean(axis=0) for lab in np.unique(labels)}


def align(
    new_centroids: dict[int, np.ndarray],
    old_centroids: dict[int, np.ndarray],
    next_id: int,
    max_distance: float,
) -> Alignment:
    """Match new clusters to old segment ids by Hungarian assignment on centroid distance.

    ``new_centroids`` is keyed by the new model's cluster index, ``old_centroids`` by published
    segment id, both in one space. A pair farther apart than ``max_distance`` is no match: the
    new cluster gets a fresh id (``next_id``, ``next_id + 1``, ...) and the old id is retired.
    """
    new_keys = sorted(new_centroids)
    old_keys = sorted(old_centroids)
    ids = np.zeros(len(new_keys), dtype=int)
    matched: dict[int, tuple[int, float]] = {}
    if old_keys:
        cost = np.array(
            [
                [np.linalg.norm(new_centroids[n] - old_centroids[o]) for o in old_keys]
                for n in new_keys
            ]
        )
        rows, cols = linear_sum_assignment(cost)
        for r, c in zip(rows, cols, strict=True):
            if cost[r, c] <= max_distance:
                ids[r] = old_keys[c]
                matched[old_keys[c]] = (old_keys[c], float(cost[r, c]))
    minted = []
    for i in range(len(new_keys)):
        if ids[i] == 0:
            ids[i] = next_id
            minted.append(next_id)
            next_id += 1
    retired = tuple(o for o in old_keys if o not in matched)
    return Alignment(ids, matched, tuple(minted), retired)


def align_to_champion(
    challenger: FittedModel,
    champion: FittedModel,
    next_id: int,
    max_distance: float = 1.5,
) -> Alignment:
    """Align the challenger's clusters with the champion's segment ids.

    Both sets of centroids are compared in the challenger's space: the champion's centroids are
    mapped back to feature units and through the challenger's preprocessing (features the
    champion did not use are imputed). Comparing the models' own centroids, not today's
    customers as labelled by the champion, means a segment that vanished cannot hand its id to
    whatever new behaviour now sits nearest to it.
    """
    old = champion.raw_centroids()
    old_x = challenger.transform_partial(old)
    old_centroids = {int(sid): old_x[i] for i, sid in enumerate(old["segment_id"])}
    new_centroids = {i: c for i, c in enumerate(challenger.centroids)}
    return align(new_centroids, old_centroids, next_id, max_distance)


@dataclass(frozen=True)
class Decision:
    """Whether the challenger replaces the champion, and why."""

    promote: bool
    reason: str
    challenger_silhouette: float
    champion_silhouette: float | None


def compare(
    challenger: FittedModel,
    champion: FittedModel | None,
    features: pl.DataFrame,
    sample: int = 5_000,
    margin: float = 0.01,
    seed: int = 0,
) -> Decision:
    """Promote the challenger if there is no champion, the champion cannot score today's data,
    or the challenger's silhouette on today's customers beats the champion's by ``margin``
    (both labelings scored on the same sample in the challenger's space)."""
    idx = sample_idx(features.height, sample, seed)
    part = features[idx]
    x = challenger.transform(part)
    ch_labels, _, _ = challenger.cluster_index(x)
    ch_sil = float(silhouette_score(x, ch_labels)) if np.unique(ch_labels).size > 1 else -1.0
    if champion is None:
        return Decision(True, "no champion yet", ch_sil, None)
    try:
        old_labels, _, _ = champion.assign(part)
    except KeyError as e:
        return Decision(True, f"champion cannot score today's data ({e})", ch_sil, None)
    old_sil = float(silhouette_score(x, old_labels)) if np.unique(old_labels).size > 1 else -1.0
    if ch_sil > old_sil + margin:
        why = f"challenger silhouette {ch_sil:.3f} beats champion {old_sil:.3f} by > {margin}"
        return Decision(True, why, ch_sil, old_sil)
    why = (
        f"champion kept: challenger silhouette {ch_sil:.3f} vs champion {old_sil:.3f} "
        f"(margin {margin})"
    )
    return Decision(False, why, ch_sil, old_sil)


def migration_matrix(previous: pl.DataFrame, current: pl.DataFrame) -> pl.DataFrame:
    """Customers moving between segments: one row per (from, to) pair with a count.

    Both frames have ``customer_id`` and ``segment_id``. Customers only in ``current`` come
    from segment NULL (joined); only in ``previous`` go to NULL (left).
    """
    joined = previous.select("customer_id", from_segment="segment_id").join(
        current.select("customer_id", to_segment="segment_id"),
        on="customer_id",
        how="full",
        coalesce=True,
    )
    return (
        joined.group_by("from_segment", "to_segment")
        .agg(customers=pl.len())
        .sort("from_segment", "to_segment", nulls_last=True)
    )


def unchanged_share(previous: pl.DataFrame, current: pl.DataFrame) -> float:
    """Share of customers present in both whose segment id did not change."""
    j = previous.join(current, on="customer_id", how="inner", suffix="_now")
    return float((j["segment_id"] == j["segment_id_now"]).mean()) if j.height else float("nan")


def membership_changes(previous: pl.DataFrame, current: pl.DataFrame) -> pl.DataFrame:
    """Rows (customer_id, segment_id, change) for everyone who joined or left a segment."""
    both = previous.join(current, on="customer_id", how="full", coalesce=True, suffix="_now")
    moved = both.filter(pl.col("segment_id").ne_missing(pl.col("segment_id_now")))
    left = moved.filter(pl.col("segment_id").is_not_null()).select(
        "customer_id", "segment_id", change=pl.lit("left")
    )
    joined = moved.filter(pl.col("segment_id_now").is_not_null()).select(
        "customer_id", segment_id="segment_id_now", change=pl.lit("joined")
    )
    return pl.concat([left, joined]).sort("customer_id", "change")
