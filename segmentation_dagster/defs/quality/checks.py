"""Quality gates: every suite file in expectations/ becomes Dagster asset checks on its asset.

The adapter between GX 1.x and Dagster (dagster-ge only supports GX < 1.0). One check per
expectation; severity ``error`` makes it blocking (downstream assets of the checked asset do
not run when it fails), ``warn`` only reports. Every result goes to the audit trail and a
markdown report whose path is in the check metadata. The science is in core.quality.
"""

from pathlib import Path

import dagster as dg

from segmentation_dagster.core import audit, quality
from segmentation_dagster.core import reports as report_files
from segmentation_dagster.core.settings import EXPECTATIONS_DIR
from segmentation_dagster.defs.resources import DUCKDB_POOL, ReportsResource, WarehouseResource


def _severity(exp: quality.Expectation) -> dg.AssetCheckSeverity:
    return dg.AssetCheckSeverity.ERROR if exp.severity == "error" else dg.AssetCheckSeverity.WARN


def _result_metadata(o: quality.Outcome, report: str) -> dict[str, object]:
    meta: dict[str, object] = {
        "expectation": o.expectation.type,
        "kwargs": dg.MetadataValue.json(o.expectation.kwargs),
        "report": dg.MetadataValue.path(report),
    }
    if url := report_files.url_for(Path(report), Path(report).parent):
        meta["report_url"] = dg.MetadataValue.url(url)
    if o.observed is not None:
        meta["observed_value"] = str(o.observed)
    if o.unexpected_count is not None:
        meta["unexpected_count"] = o.unexpected_count
        meta["unexpected_percent"] = o.unexpected_percent
    if o.failing_rows:
        meta["failing_rows_sample"] = dg.MetadataValue.json(o.failing_rows)
    if o.error:
        meta["error"] = o.error
    return meta


def build_suite_checks(suite: quality.Suite) -> dg.AssetChecksDefinition:
    """Asset checks for one suite file."""
    specs = [
        dg.AssetCheckSpec(
            name=e.check_name,
            asset=suite.asset,
            blocking=e.severity == "error",
            description=f"[{e.severity}] {e.description or e.type}",
        )
        for e in suite.expectations
    ]

    @dg.multi_asset_check(
        name=f"gx_{suite.name}",
        specs=specs,
        description=f"Great Expectations suite {suite.path.name}",
        compute_kind="great_expectations",
        pool=DUCKDB_POOL,
    )
    def _checks(
        context: dg.AssetCheckExecutionContext,
        warehouse: WarehouseResource,
        reports: ReportsResource,
    ):
        with warehouse.connect() as con:
            df = quality.sample_frame(con, suite)
        outcomes = quality.validate(df, suite)  # GX runs without holding the warehouse lock
        report = quality.write_report(suite, outcomes, len(df), reports.dir, context.run.run_id)
        keep = report_files.keep_from_env()
        report_files.prune(Path(reports.dir), report_files.validation_pattern(suite.name), keep)
        with warehouse.connect() as con:
            audit.append_audit(con, quality.outcome_rows(suite, outcomes), context.run.run_id)
        for o in outcomes:
            yield dg.AssetCheckResult(
                asset_key=suite.asset,
                check_name=o.expectation.check_name,
                passed=o.success,
                severity=_severity(o.expectation),
                metadata=_result_metadata(o, str(report)),
            )

    return _checks


gx_checks = [build_suite_checks(s) for s in quality.load_suites(EXPECTATIONS_DIR)]
