"""Transform: the dbt project (staging -> intermediate -> customer_features) as Dagster assets.

The manifest is prepared at build/test time (`make manifest`, which runs
`dagster-dbt project prepare-and-package`), never by running dbt at import. dbt tests become
asset checks. dbt runs while holding the warehouse writer lock, so it queues behind other
writers instead of failing on DuckDB's file lock, and the database dbt opened is closed when the
invocation ends (``core.warehouse.close_dbt_duckdb``), so the file is closed by the time the
step lets go of the lock.

dbt runs inside the run's process (:mod:`segmentation_dagster.adapters.dbt_runner`), not as the
subprocess ``DbtCliResource.cli`` starts, which re-imports dbt and sets up a second adapter on
every run. Selection (a subset materialised in the UI) and the dbt-result -> Dagster-event
translation are dagster-dbt's own.
"""

import datetime as dt
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets
from pydantic import Field

from segmentation_dagster.adapters import dbt_runner
from segmentation_dagster.core import audit, project
from segmentation_dagster.core.project import DBT_VARS
from segmentation_dagster.core.settings import DuckDBSettings
from segmentation_dagster.core.warehouse import count_rows
from segmentation_dagster.defs.resources import DUCKDB_POOL, WarehouseResource
from segmentation_dagster.defs.transform.project import dbt_project

#: dbt's unit tests check the models' logic on fixed rows: they run in the test suite
#: (tests/test_behaviour_state.py), not on every pipeline run.
BUILD_FLAGS = ["--exclude-resource-type", "unit_test"]


class TransformTranslator(DagsterDbtTranslator):
    """dbt models land in the 'transform' group; sources map to raw_* via their meta."""

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "transform"

    def get_asset_check_spec(self, asset_spec, manifest, unique_id, project):  # noqa: ANN001, ANN201
        """dbt's generic tests have no description: say what each one checks."""
        spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
        if spec is None or spec.description:
            return spec
        test = manifest["nodes"][unique_id]
        return spec._replace(description=describe_test(test))


def describe_test(test: Mapping[str, Any]) -> str:
    """One sentence for a dbt test node of the manifest (generic tests by their kwargs)."""
    meta = test.get("test_metadata") or {}
    kwargs = meta.get("kwargs", {})
    col = f"`{kwargs.get('column_name') or test.get('column_name')}`"
    name = meta.get("name", "")
    text = {
        "not_null": f"{col} is never null",
        "unique": f"{col} is unique",
        "expression_is_true": f"{col} {kwargs.get('expression', '')} on every row",
        "accepted_values": f"{col} is one of {kwargs.get('values')}",
        "relationships": f"every {col} exists in {kwargs.get('field')} of {kwargs.get('to')}",
        "unique_in_new_rows": f"{col} is unique: the newly loaded rows checked against the rest",
        "unique_combination": "("
        + ", ".join(kwargs.get("columns", []))
        + ") is unique"
        + (
            f" for every {kwargs['latest_build_of']} the latest build wrote"
            if kwargs.get("latest_build_of")
            else " in the latest build's rows"
            if kwargs.get("latest_build_only")
            else ""
        ),
    }.get(name, f"dbt test {test.get('name')}")
    severity = (test.get("config") or {}).get("severity", "error").lower()
    return text + (" (warn: the run goes on)" if severity == "warn" else " (blocks downstream)")


def _dbt_var(description: str, var: str) -> Any:
    """A launchpad field for dbt var ``var``: empty keeps the dbt project's default."""
    return Field(default=None, description=f"{description} (default {DBT_VARS[var]}).")


class BehaviourConfig(dg.Config):
    """dbt vars of the behaviour features (launchpad-editable). Empty fields keep the dbt
    project's defaults (dbt_project.yml, where each is documented)."""

    snapshot_date: str | None = Field(
        default=None,
        description="Compute features as of this date (YYYY-MM-DD); empty = latest event date. "
        "An earlier date than the stored behaviour state needs a full refresh.",
        pattern=r"^\d{4}-\d{2}-\d{2}$",
    )
    full_refresh: bool = Field(
        default=False,
        description="Rebuild the behaviour state from every event instead of extending it: "
        "needed once after changing half_life_days, change_windows_days, change_alpha or "
        "session_gap_minutes, or for features as of an earlier snapshot_date (and once more, "
        "without it, to return to today).",
    )
    half_life_days: int | None = _dbt_var(
        "Evidence this many days old counts half", "half_life_days"
    )
    change_windows_days: list[int] | None = _dbt_var(
        "Recent windows (days) tested against the rest of a customer's behaviour",
        "change_windows_days",
    )
    change_alpha: float | None = _dbt_var(
        "Significance of that test per customer and active day", "change_alpha"
    )
    prior_sessions: int | None = _dbt_var("Pseudo-sessions rates are shrunk by", "prior_sessions")
    active_days: int | None = _dbt_var("Customers quiet for longer are out of scope", "active_days")

    def dbt_vars(self, base: Mapping[str, object] | None = None) -> dict[str, object]:
        """``base`` (the project file's features) with the fields set here, as dbt vars; the
        fields are checked by the project file's rules (run config is input too)."""
        fields = self.model_dump(exclude={"full_refresh"}, exclude_none=True)
        own = project.check_features("run config", fields)
        return {**(base or {}), **own}

    def dbt_args(self, base: Mapping[str, object] | None = None) -> list[str]:
        """The ``dbt build`` arguments for this configuration over ``base``."""
        refresh = ["--full-refresh"] if self.full_refresh else []
        return ["build", *BUILD_FLAGS, *refresh, "--vars", json.dumps(self.dbt_vars(base))]


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
    config: BehaviourConfig,
) -> Iterator[Any]:
    """dbt build: models and their tests, one invocation per run."""
    # profiles.yml reads the database path from this variable; dbt inherits our environment
    os.environ["SEGMENTATION_DUCKDB_PATH"] = warehouse.path
    DuckDBSettings.from_env()  # profiles.yml reads the same variables: refuse a bad value here
    checks: list[dg.AssetCheckResult | dg.AssetCheckEvaluation] = []
    suite = "dbt"
    try:
        with warehouse.lock() as waited:
            if waited > 1:
                context.log.info(f"waited {waited:.1f}s for the warehouse writer lock")
            # one target folder per warehouse, kept between runs: dbt then re-parses only
            # what changed (its partial-parse cache is keyed on the profile, i.e. the path)
            target = Path(warehouse.path).resolve().parent / "dbt_target"
            settings = project.load()
            base = dict(settings.features)
            whole = _whole_table_checks(context, warehouse)
            if whole:
                context.log.info(f"dbt's key tests check every row: {whole}")
                base["whole_table_checks"] = True
            args = config.dbt_args(base)
            context.log.info(
                f"dbt vars in effect (project file {settings.path or 'none'}): "
                + json.dumps({**DBT_VARS, **config.dbt_vars(settings.features)})
            )

            def row_counts(tables: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
                with warehouse.connect() as con:  # dbt has closed the file; the lock is ours
                    return {t: count_rows(con, *t) for t in tables}

            suite = audit.DBT_WHOLE if whole else "dbt"
            for event in dbt_runner.run(
                context, dbt, args, target, TransformTranslator(), row_counts
            ):
                if isinstance(event, dg.AssetCheckResult | dg.AssetCheckEvaluation):
                    checks.append(event)
                yield event
    finally:
        # a failing dbt test is exactly what the audit trail must keep: write it either way
        if checks:
            with warehouse.connect() as con:
                audit.append_audit(con, [_audit_row(c, suite) for c in checks], context.run_id)


def _whole_table_checks(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> str:
    """Why this build's key tests check every row ("": only the keys it wrote). The daily
    refresh (defs/jobs.py) checks the keys it wrote, unless a check is due; every other run
    (the full loop, a materialisation from the UI) checks every row."""
    if context.job_name != "daily_refresh_job":
        return f"{context.job_name} checks every row"
    with warehouse.connect() as con:
        return audit.whole_table_checks_due(con, dt.datetime.now()) or ""


def _audit_row(
    check: dg.AssetCheckResult | dg.AssetCheckEvaluation, suite: str = "dbt"
) -> audit.AuditRow:
    metadata = check.metadata or {}
    failed = metadata.get("dagster_dbt/failed_row_count")
    severity = getattr(check, "severity", None)
    return audit.AuditRow(
        asset=check.asset_key.to_user_string() if check.asset_key else "",
        source="dbt",
        suite=suite,
        check_name=check.check_name or "",
        success=bool(check.passed),
        expectation="dbt test",
        severity=severity.value.lower() if severity is not None else None,
        observed=getattr(failed, "value", failed),
    )
