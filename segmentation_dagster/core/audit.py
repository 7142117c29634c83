"""The data-quality audit trail: every validation result (GX expectations and dbt tests) in
``audit.validations``, and the summary ``segmentation audit`` prints from it together with the
ingestion's quarantine, rejected files and ignored landing entries."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import duckdb

from segmentation_dagster.core.ingest import MANIFEST, QUARANTINE, ensure_schema

AUDIT_SCHEMA = "audit"
AUDIT_TABLE = f"{AUDIT_SCHEMA}.validations"


def ensure_audit(con: duckdb.DuckDBPyConnection) -> None:
    """Create the audit table if missing."""
    con.execute(f"create schema if not exists {AUDIT_SCHEMA}")
    con.execute(
        f"""create table if not exists {AUDIT_TABLE} (
            run_id varchar,
            validated_at timestamp not null,
            asset varchar not null,
            partition_key varchar,
            source varchar not null,        -- gx | dbt
            suite varchar not null,
            check_name varchar not null,
            expectation varchar,
            column_name varchar,
            severity varchar,
            success boolean not null,
            observed_value varchar,
            unexpected_count bigint,
            details json
        )"""
    )


@dataclass(frozen=True)
class AuditRow:
    """One validation result for the audit trail (GX expectation or dbt test)."""

    asset: str
    source: str
    suite: str
    check_name: str
    success: bool
    expectation: str | None = None
    column: str | None = None
    severity: str | None = None
    observed: Any = None
    unexpected_count: int | None = None
    details: dict[str, Any] | None = None


def append_audit(
    con: duckdb.DuckDBPyConnection,
    rows: list[AuditRow],
    run_id: str | None,
    partition_key: str | None = None,
) -> None:
    """Append validation results to the audit trail (one transaction)."""
    ensure_audit(con)
    now = dt.datetime.now()
    con.executemany(
        f"insert into {AUDIT_TABLE} values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            [
                run_id,
                now,
                r.asset,
                partition_key,
                r.source,
                r.suite,
                r.check_name,
                r.expectation,
                r.column,
                r.severity,
                r.success,
                None if r.observed is None else json.dumps(r.observed, default=str),
                r.unexpected_count,
                None if r.details is None else json.dumps(r.details, default=str),
            ]  # fmt: skip
            for r in rows
        ],
    )


#: the suite of dbt tests that checked every row (``whole_table_checks``), not only the keys
#: the latest build wrote
DBT_WHOLE = "dbt: whole tables"


def whole_table_checks_due(
    con: duckdb.DuckDBPyConnection, now: dt.datetime, every_days: int = 7
) -> str | None:
    """Why the daily dbt build should check every key of its tables, not only those it wrote
    (None: it need not): the last audited dbt build had a failing test (a duplicate its
    scoped check found stays in the table), or no build checked every row in ``every_days``
    days (a killed build's rows were never checked)."""
    ensure_audit(con)
    last_failed, last_whole = con.execute(
        f"""select
            (select bool_or(not success) from {AUDIT_TABLE} where source = 'dbt' and run_id = (
                select run_id from {AUDIT_TABLE} where source = 'dbt'
                order by validated_at desc limit 1)),
            (select max(validated_at) from {AUDIT_TABLE} where suite = ?)""",
        [DBT_WHOLE],
    ).fetchall()[0]
    if last_failed:
        return "the last dbt build had a failing test"
    if last_whole is None or last_whole < now - dt.timedelta(days=every_days):
        return f"no dbt build checked every row in the last {every_days} days"
    return None


@dataclass(frozen=True)
class AuditSummary:
    """What `segmentation audit` prints, as plain tables (lists of tuples)."""

    pass_rates: list[tuple]  # source, suite, checks, passed, pass rate
    failures: list[tuple]  # validated_at, asset, check, severity, observed, unexpected
    quarantine: list[tuple]  # kind, reason, rows, files
    rejected_files: list[tuple]  # kind, file, error
    ignored_entries: list[tuple] = ()  # kind, entry, reason


def audit_summary(
    con: duckdb.DuckDBPyConnection, since: dt.datetime, until: dt.datetime
) -> AuditSummary:
    """Validations, quarantined rows, rejected files and ignored landing entries recorded
    between ``since`` and ``until`` (by validation / load time). A rejected re-delivery of a
    loaded file (the loaded version stays) is listed with the rejected files."""
    ensure_audit(con)
    ensure_schema(con)
    window = [since, until]
    return AuditSummary(
        pass_rates=con.execute(
            f"select source, suite, count(*), count(*) filter (where success), "
            f"round(100.0 * count(*) filter (where success) / count(*), 1) from {AUDIT_TABLE} "
            "where validated_at between ? and ? group by all order by all",
            window,
        ).fetchall(),
        failures=con.execute(
            f"select strftime(validated_at, '%Y-%m-%d %H:%M'), asset, check_name, severity, "
            f"observed_value, unexpected_count from {AUDIT_TABLE} "
            "where not success and validated_at between ? and ? order by validated_at, asset",
            window,
        ).fetchall(),
        quarantine=con.execute(
            f"select kind, reason, count(*), count(distinct file_name) from {QUARANTINE} "
            "where quarantined_at between ? and ? group by all order by 3 desc",
            window,
        ).fetchall(),
        rejected_files=con.execute(
            f"select kind, file_name, error from {MANIFEST} "
            "where status = 'rejected' and recorded_at between ? and ? "
            f"union all select kind, file_name, rejected_error || ' (the loaded version stays)' "
            f"from {MANIFEST} where status = 'loaded' and rejected_sha256 <> '' "
            "and rejected_at between ? and ? order by all",
            window + window,
        ).fetchall(),
        ignored_entries=con.execute(
            f"select kind, file_name, error from {MANIFEST} "
            "where status = 'ignored' and recorded_at between ? and ? "
            f"union all select kind, file_name, rejected_error || ' (the loaded version stays)' "
            f"from {MANIFEST} where status = 'loaded' and rejected_sha256 = '' "
            "and rejected_at between ? and ? order by all",
            window + window,
        ).fetchall(),
    )
