"""The drift sensor: reads the behaviour_drift monitor's metadata, applies the hysteresis
policy (core.policy; its state lives in the cursor) and requests re-segmentation.

It computes nothing heavy: one event-log read per tick. The run_key is deterministic per
decision (reference version + snapshot date), so two ticks over the same decision request one
run. It never triggers while a blocking quality check on the latest data is failing; it then
leaves the cursor as it was, so the decision is taken again once the data is fixed.
"""

import dagster as dg

from segmentation_dagster.adapters import dagster_internals
from segmentation_dagster.core import policy, project, settings
from segmentation_dagster.defs.jobs import resegmentation_job

MONITOR = dg.AssetKey("behaviour_drift")
GATED_ASSETS = {"raw_events", "customer_features", "stg_shop__events"}


def failing_blocking_checks(context: dg.SensorEvaluationContext) -> list[str]:
    """Names of error-severity checks on the gated assets whose latest execution failed."""
    graph = context.repository_def.asset_graph if context.repository_def else None
    if graph is None:
        return []
    keys = [k for k in graph.asset_check_keys if k.asset_key.to_user_string() in GATED_ASSETS]
    failing = dagster_internals.failed_error_checks(context.instance, keys)
    return sorted(f"{key.asset_key.to_user_string()}:{key.name}" for key in failing)


def observation(record: dg.EventLogRecord) -> policy.Observation:
    """The policy's view of one behaviour_drift materialisation."""
    meta = record.asset_materialization.metadata
    return policy.Observation(
        check_id=record.storage_id,
        snapshot_date=str(meta["snapshot_date"].value),
        score=float(meta["drift_score"].value),
        n_customers=int(meta["n_current"].value),
        reference_version=int(meta["reference_version"].value),
        reference_snapshot=str(meta["reference_snapshot"].value)
        if "reference_snapshot" in meta
        else None,
    )


@dg.sensor(
    job=resegmentation_job,
    # the Spark engine re-segments on every run of its own job: this DuckDB sensor stays off
    default_status=dg.DefaultSensorStatus.RUNNING
    if settings.engine() == "duckdb"
    else dg.DefaultSensorStatus.STOPPED,
    minimum_interval_seconds=60,
    description="Re-segment when behaviour has really shifted (hysteresis, cooldown).",
)
def drift_sensor(context: dg.SensorEvaluationContext):
    records = context.instance.fetch_materializations(MONITOR, limit=1).records
    if not records:
        return dg.SkipReason("behaviour_drift has not been materialised yet")
    obs = observation(records[0])
    decision = policy.step(policy.PolicyState.from_json(context.cursor), obs, project.load().policy)
    if decision.trigger:
        failing = failing_blocking_checks(context)
        if failing:
            return dg.SkipReason(f"drift, but blocking checks fail: {', '.join(failing)}")
    context.update_cursor(decision.state.to_json())
    if not decision.trigger:
        return dg.SkipReason(decision.reason)
    return dg.RunRequest(
        run_key=f"resegment-ref{obs.reference_version}-{obs.snapshot_date}",
        tags={
            "segmentation/trigger": "drift",
            "segmentation/reason": decision.reason[:250],
            "segmentation/reference_version": str(obs.reference_version),
            "segmentation/snapshot_date": obs.snapshot_date,
        },
    )
