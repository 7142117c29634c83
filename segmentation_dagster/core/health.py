"""Health rules: is today's segmentation something to act on? Each rule reads numbers the
monitors and the assignment already computed and says pass or fail, with the value and the
limit, so the UI shows the answer (asset checks) and the history plots it.

The rules warn; none stops a run (a drifted shop still needs today's segments). The drift rule
uses the drift policy's own trigger, so "failing" here means what the sensor acts on.
"""

from __future__ import annotations

from dataclasses import dataclass

from segmentation_dagster.core.policy import PolicyConfig


@dataclass(frozen=True)
class HealthConfig:
    """Limits of the rules that have no policy of their own."""

    #: segment-share PSI above this is a real shift of the mix (rule of thumb: 0.1 moderate)
    max_share_psi: float = 0.25
    #: customers this much farther from their centroid than at the fit: the model fits worse
    max_distance_ratio: float = 1.25
    #: fewer segments than this is no segmentation
    min_segments: int = 2
    #: a segment smaller than this share of the customers is too small to act on
    min_segment_share: float = 0.01


@dataclass(frozen=True)
class Health:
    """One rule's verdict."""

    name: str
    passed: bool
    value: float
    limit: float
    description: str


def drift(score: float, policy: PolicyConfig) -> Health:
    """Behaviour drift score below the policy's trigger (``enter_threshold``)."""
    return Health(
        "behaviour_drift_below_trigger",
        score < policy.enter_threshold,
        round(score, 4),
        policy.enter_threshold,
        f"drift score {score:.2f} (trigger {policy.enter_threshold:g}: a feature moved more "
        "than chance allows)",
    )


def share_drift(psi: float, config: HealthConfig) -> Health:
    """Segment-share PSI against the fit at most ``max_share_psi``."""
    return Health(
        "segment_shares_stable",
        psi <= config.max_share_psi,
        round(psi, 4),
        config.max_share_psi,
        f"segment-share PSI {psi:.3f} against the fit (limit {config.max_share_psi:g})",
    )


def model_fit(distance_ratio: float, config: HealthConfig) -> Health:
    """Customers' mean distance to their centroid, today over at the fit, at most
    ``max_distance_ratio``."""
    return Health(
        "model_still_fits",
        distance_ratio <= config.max_distance_ratio,
        round(distance_ratio, 4),
        config.max_distance_ratio,
        f"mean distance to the centroid x{distance_ratio:.2f} of the fit's "
        f"(limit x{config.max_distance_ratio:g})",
    )


def segment_mix(shares: dict[int, float], config: HealthConfig) -> Health:
    """At least ``min_segments`` segments, the smallest holding ``min_segment_share``."""
    smallest = min(shares.values(), default=0.0)
    passed = len(shares) >= config.min_segments and smallest >= config.min_segment_share
    return Health(
        "segment_count_and_smallest_share",
        passed,
        round(smallest, 4),
        config.min_segment_share,
        f"{len(shares)} segments (at least {config.min_segments}), the smallest "
        f"{smallest:.1%} of the customers (at least {config.min_segment_share:.0%})",
    )


def coverage(with_features: int, without_segment: int) -> Health:
    """Every customer with features has a segment."""
    return Health(
        "every_customer_has_a_segment",
        without_segment == 0,
        float(without_segment),
        0.0,
        f"{without_segment:,} of {with_features:,} customers with features have no segment",
    )


def forecasts_held(summary: str | None, missed: int, judged: int) -> Health:
    """The last forecasts met with what happened missed no segment's spend by more than 20 %
    and twice its noise (core.forecasts); ``summary`` None: none met yet."""
    if summary is None:
        return Health("forecasts_held_up", True, 0.0, 0.0,
                      "no forecast met yet: each is met once its horizon has passed "
                      "(customer_value's forecasts_waiting)")  # fmt: skip
    return Health(
        "forecasts_held_up",
        missed == 0,
        float(missed),
        0.0,
        f"{summary}; spend off by more than 20 % and twice its noise on {missed} of {judged} "
        "segments (those smaller than privacy.min_group_size are not judged)",
    )


def forecasts_failed(error: str) -> Health:
    """The forecasts could not be kept or met: the check fails with why."""
    return Health("forecasts_held_up", False, float("nan"), 0.0, error)
