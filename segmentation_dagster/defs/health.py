"""Health rules (core.health) as Dagster asset checks: warn severity, so a failing rule shows
on the asset (and its history plots) without stopping the run."""

import dagster as dg

from segmentation_dagster.core import health

#: rule name -> what it checks (the check's description in the UI)
DESCRIPTIONS = {
    "behaviour_drift_below_trigger": "The behaviour drift score is below the drift policy's "
    "trigger (no feature moved more than chance allows).",
    "segment_shares_stable": "Segment shares have not moved far from the fit (PSI at most "
    f"{health.HealthConfig.max_share_psi}).",
    "model_still_fits": "Customers are not much farther from their centroids than at the fit "
    f"(mean distance at most x{health.HealthConfig.max_distance_ratio}).",
    "segment_count_and_smallest_share": f"At least {health.HealthConfig.min_segments} "
    f"segments, none smaller than {health.HealthConfig.min_segment_share:.0%} of the customers.",
    "every_customer_has_a_segment": "Every customer with features has a segment.",
    "forecasts_held_up": "The last forecasts met with what happened (a horizon after they "
    "were made) missed no segment's spend by more than 20 % and twice its noise.",
}


def specs(asset: str, *names: str) -> list[dg.AssetCheckSpec]:
    """The check specs of ``asset`` for the rules ``names``."""
    return [dg.AssetCheckSpec(n, asset=asset, description=DESCRIPTIONS[n]) for n in names]


def result(h: health.Health) -> dg.AssetCheckResult:
    """A rule's verdict as a warn-severity check result, with its value and limit."""
    return dg.AssetCheckResult(
        check_name=h.name,
        passed=h.passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=h.description,
        metadata={"value": h.value, "limit": h.limit},
    )
