"""Transform: the dbt project (staging -> intermediate -> customer_features) as Dagster assets.

The manifest is prepared at build/test time (`make manifest`, which runs
`dagster-dbt project prepare-and-package`), never by running dbt at import. dbt tests become
asset checks. dbt runs while holding the warehouse writer lock, so it queues behind other
writers instead of failing on DuckDB's file lock, and dbt-duckdb closes the database when the
invocation ends (``keep_open: false`` in profiles.yml), so the file is closed by the time the
step lets go of the lock.

dbt runs inside the run's process (dbt's programmatic ``dbtRunner``), not as the subprocess
``DbtCliResource.cli`` starts: the subprocess re-imports dbt and sets up a second adapter, about
8 s per run, more than the models take on a 1M-event shop. Selection (a subset materialised in
the UI) and the dbt-result -> Dagster-event translation are dagster-dbt's own.
"""

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import yaml
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets
from dagster_dbt.asset_utils import get_updated_cli_invocation_params_for_context
from dagster_dbt.core.dbt_cli_event import DbtCoreCliEventMessage
from dagster_dbt.errors import DagsterDbtCliRuntimeError
from pydantic import Field

from segmentation_dagster.core import audit
from segmentation_dagster.core.settings import DBT_PROJECT_DIR
from segmentation_dagster.defs.resources import DUCKDB_POOL, WarehouseResource
from segmentation_dagster.defs.transform.project import dbt_project

#: dbt's unit tests check the models' logic on fixed rows: they run in the test suite
#: (tests/test_dbt_unit.py), not on every pipeline run.
BUILD_FLAGS = ["--exclude-resource-type", "unit_test"]


class TransformTranslator(DagsterDbtTranslator):
    """dbt models land in the 'transform' group; sources map to raw_* via their meta."""

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "transform"


#: The dbt project's vars and their defaults (dbt_project.yml, where each is documented).
DBT_VARS: dict[str, Any] = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())["vars"]


def _dbt_var(description: str, var: str) -> Any:
    """A launchpad field for dbt var ``var``: empty keeps the dbt project's default."""
    return Field(default=None, description=f"{description} (default {DBT_VARS[var]}).")


class BehaviourConfig(dg.Config):
    """dbt vars of the behaviour features (launchpad-editable). Empty fields keep the dbt
    project's defaults (dbt_project.yml, where each is documented)."""

    snapshot_date: str | None = Field(
        default=None,
        description="Compute features as of this date (YYYY-MM-DD); empty = latest event date. "
        "An earlier date than the stored behaviour state needs a full refresh of the state.",
    )
    half_life_days: float | None = _dbt_var(
        "Evidence this many days old counts half", "half_life_days"
    )
    change_windows_days: list[int] | None = _dbt_var(
        "Recent windows (days) tested against the rest of a customer's behaviour",
        "change_windows_days",
    )
    change_alpha: float | None = _dbt_var(
        "Significance of that test per customer and active day", "change_alpha"
    )
    prior_sessions: float | None = _dbt_var("Pseudo-sessions rates are shrunk by", "prior_sessions")
    active_days: int | None = _dbt_var("Customers quiet for longer are out of scope", "active_days")

    def dbt_vars(self) -> dict[str, object]:
        """The fields that are set, as dbt vars."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


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
    dbt_vars = config.dbt_vars()
    # profiles.yml reads the database path from this variable; dbt inherits our environment
    os.environ["SEGMENTATION_DUCKDB_PATH"] = warehouse.path
    checks: list[dg.AssetCheckResult | dg.AssetCheckEvaluation] = []
    try:
        with warehouse.lock() as waited:
            if waited > 1:
                context.log.info(f"waited {waited:.1f}s for the warehouse writer lock")
            # one target folder per warehouse, kept between runs: dbt then re-parses only
            # what changed (its partial-parse cache is keyed on the profile, i.e. the path)
            target = Path(warehouse.path).resolve().parent / "dbt_target"
            for event in dbt_in_process(
                context, dbt, ["build", *BUILD_FLAGS, "--vars", json.dumps(dbt_vars)], target
            ):
                if isinstance(event, dg.AssetCheckResult | dg.AssetCheckEvaluation):
                    checks.append(event)
                yield event
    finally:
        # a failing dbt test is exactly what the audit trail must keep: write it either way
        if checks:
            with warehouse.connect() as con:
                audit.append_audit(con, [_audit_row(c) for c in checks], context.run_id)


def dbt_in_process(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, args: list[str], target_path: Path
) -> Iterator[Any]:
    """Run dbt ``args`` in this process for the assets selected in ``context``; yield the
    Dagster events of every node result, then raise (naming the failed nodes) if dbt failed.

    dbt prints its usual log to stdout (the step's compute log) and writes ``dbt.log`` into
    ``target_path``, which also keeps the partial-parse cache between runs."""
    from dbt.cli.main import dbtRunner  # ~0.6 s on top of what dagster-dbt already imported
    from dbt_common.events.functions import msg_to_dict

    params = get_updated_cli_invocation_params_for_context(
        context=context, manifest={}, dagster_dbt_translator=TransformTranslator()
    )
    project_dir = params.dbt_project.project_dir if params.dbt_project else dbt.project_dir
    argv = [*args, "--project-dir", str(project_dir), "--target-path", str(target_path),
            "--log-path", str(target_path), "--no-send-anonymous-usage-stats",
            *(["--profiles-dir", str(dbt.profiles_dir)] if dbt.profiles_dir else []),
            *params.selection_args]  # fmt: skip
    if params.indirect_selection:
        argv += ["--indirect-selection", params.indirect_selection]
    results: list[DbtCoreCliEventMessage] = []

    def keep(msg: Any) -> None:
        # the same dict as a line of dbt's JSON log (~900 a build, 0.07 s in all);
        # dagster-dbt decides which carry a node's result
        event = DbtCoreCliEventMessage(msg_to_dict(msg), {})
        if event.is_result_event:
            results.append(event)

    outcome = dbtRunner(callbacks=[keep]).invoke(argv)
    for event in results:
        yield from event.to_default_asset_events(
            manifest=params.manifest,
            dagster_dbt_translator=params.dagster_dbt_translator,
            context=context,
            target_path=target_path,
            project=params.dbt_project,
        )
    if not outcome.success:
        failed = [
            f"{info['unique_id']} ({info.get('node_status')})"
            for info in (r.raw_event["data"]["node_info"] for r in results)
            if info.get("node_status") not in ("success", "pass", "warn")
        ]
        raise DagsterDbtCliRuntimeError(
            description=f"dbt {' '.join(args[:1])} failed"
            + (f": {outcome.exception}" if outcome.exception else "")
            + ("; failed nodes: " + ", ".join(failed) if failed else "")
            + f". See {target_path / 'dbt.log'}"
        )


def _audit_row(check: dg.AssetCheckResult | dg.AssetCheckEvaluation) -> audit.AuditRow:
    metadata = check.metadata or {}
    failed = metadata.get("dagster_dbt/failed_row_count")
    severity = getattr(check, "severity", None)
    return audit.AuditRow(
        asset=check.asset_key.to_user_string() if check.asset_key else "",
        source="dbt",
        suite="dbt",
        check_name=check.check_name or "",
        success=bool(check.passed),
        expectation="dbt test",
        severity=severity.value.lower() if severity is not None else None,
        observed=getattr(failed, "value", failed),
    )
