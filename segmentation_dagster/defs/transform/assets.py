"""Transform: the dbt project (staging -> intermediate -> customer_features) as Dagster assets.

The manifest is prepared at build/test time (`make manifest`, which runs
`dagster-dbt project prepare-and-package`), never by running dbt at import. dbt tests become
asset checks. dbt runs while holding the warehouse writer lock, so it queues behind other
writers instead of failing on DuckDB's file lock.
"""

import json
import os
import shutil
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets
from pydantic import Field

from segmentation_dagster.core import quality
from segmentation_dagster.defs.ingestion.assets import DUCKDB_POOL
from segmentation_dagster.defs.transform.project import dbt_project
from segmentation_dagster.resources import WarehouseResource


class TransformTranslator(DagsterDbtTranslator):
    """dbt models land in the 'transform' group; sources map to raw_* via their meta."""

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "transform"


class FeatureWindowConfig(dg.Config):
    """dbt vars for the customer_features snapshot (launchpad-editable)."""

    snapshot_date: str | None = Field(
        default=None,
        description="Compute features as of this date (YYYY-MM-DD); empty = latest event date.",
    )
    window_days: int = Field(default=90, description="Trailing window of the features, in days.")
    trend_recent_days: int = Field(
        default=30, description="Length of the 'recent' part of the window for activity_trend."
    )
    monitor_window_days: int = Field(
        default=7,
        description="Window of customer_recent_activity, what the drift monitor compares "
        "(at most window_days).",
    )


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    dagster_dbt_translator=TransformTranslator(),
    pool=DUCKDB_POOL,
)
def dbt_models(
    context: dg.AssetExecutionContext,
    dbt: DbtCliResource,
    warehouse: WarehouseResource,
    config: FeatureWindowConfig,
) -> Iterator[Any]:
    """dbt build: models and their tests, one invocation per run."""
    dbt_vars = {
        "snapshot_date": config.snapshot_date,
        "window_days": config.window_days,
        "trend_recent_days": config.trend_recent_days,
        "monitor_window_days": config.monitor_window_days,
    }
    # profiles.yml reads the database path from this variable; dbt inherits our environment
    os.environ["SEGMENTATION_DUCKDB_PATH"] = warehouse.path
    checks: list[dg.AssetCheckResult | dg.AssetCheckEvaluation] = []
    try:
        with warehouse.lock() as waited:
            if waited > 1:
                context.log.info(f"waited {waited:.1f}s for the warehouse writer lock")
            # one target folder per warehouse, kept between runs: dbt then re-parses only
            # what changed (its partial-parse cache is keyed on the profile, i.e. the path)
            invocation = dbt.cli(
                ["build", "--vars", json.dumps(dbt_vars)],
                context=context,
                target_path=Path(warehouse.path).resolve().parent / "dbt_target",
            )
            for event in invocation.stream():
                if isinstance(event, dg.AssetCheckResult | dg.AssetCheckEvaluation):
                    checks.append(event)
                yield event
    finally:
        # a failing dbt test is exactly what the audit trail must keep: write it either way
        if checks:
            with warehouse.connect() as con:
                quality.append_audit(con, [_audit_row(c) for c in checks], context.run_id)


def _audit_row(check: dg.AssetCheckResult | dg.AssetCheckEvaluation) -> quality.AuditRow:
    metadata = check.metadata or {}
    failed = metadata.get("dagster_dbt/failed_row_count")
    severity = getattr(check, "severity", None)
    return quality.AuditRow(
        asset=check.asset_key.to_user_string() if check.asset_key else "",
        source="dbt",
        suite="dbt",
        check_name=check.check_name or "",
        success=bool(check.passed),
        expectation="dbt test",
        severity=severity.value.lower() if severity is not None else None,
        observed=getattr(failed, "value", failed),
    )


def dbt_resource() -> DbtCliResource:
    """The dbt CLI resource for this project."""
    # the dbt installed next to this interpreter, so an un-activated venv works too
    beside = Path(sys.executable).parent / "dbt"
    executable = str(beside) if beside.exists() else (shutil.which("dbt") or "dbt")
    return DbtCliResource(project_dir=dbt_project, dbt_executable=executable)
