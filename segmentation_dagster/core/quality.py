"""Great Expectations 1.x suites as files, validated on pandas frames.

A suite file (``expectations/<name>.json``) names the asset it gates and lists expectations in
GX's own configuration form, plus a ``severity`` in each expectation's ``meta``::

    {"name": "raw_events", "asset": "raw_events", "sample_rows": 100000,
     "table": "raw.events",
     "expectations": [
       {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "customer_id"},
        "meta": {"severity": "error", "description": "every event has a customer"}}]}

``severity`` is ``error`` (a blocking Dagster check: downstream assets do not run) or ``warn``
(reported only). A row-count expectation (at least one row, severity error) is added to every
suite that lacks one, so empty data never passes.

GX 1.x cannot validate DuckDB through SQLAlchemy here, so a fixed-seed sample of the table (at
most ``sample_rows``; row-level rules already ran on every row at ingestion) is pulled into
pandas and validated there (through :mod:`segmentation_dagster.adapters.gx`; GX is imported
only then, with analytics disabled).
GX result formats do not reliably give row indices, so the failing-row sample is built here
from the reported unexpected values.
"""

from __future__ import annotations

import ast
import datetime as dt
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from segmentation_dagster.adapters import gx
from segmentation_dagster.core.audit import AuditRow

ROW_COUNT = "expect_table_row_count_to_be_between"
SEVERITIES = ("error", "warn")


class SuiteError(ValueError):
    """A suite file is malformed; the message names the file and the entry."""


@dataclass(frozen=True)
class Expectation:
    """One expectation of a suite, with the Dagster check name derived from it."""

    type: str
    kwargs: dict[str, Any]
    severity: str
    description: str
    check_name: str

    @property
    def column(self) -> str | None:
        return self.kwargs.get("column")


@dataclass(frozen=True)
class Suite:
    """A suite file: which asset and table it gates, its expectations."""

    name: str
    asset: str
    table: str
    sample_rows: int
    expectations: tuple[Expectation, ...]
    path: Path
    #: an optional input (``"optional": true``): absent data passes every check as "not
    #: supplied" instead of failing them
    optional: bool = False


@dataclass
class Outcome:
    """The result of one expectation on one batch."""

    expectation: Expectation
    success: bool
    observed: Any = None
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    failing_rows: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


def _check_name(type_: str, kwargs: dict[str, Any], seen: set[str]) -> str:
    base = type_.removeprefix("expect_")
    if kwargs.get("column"):
        base = f"{kwargs['column']}__{base}"
    base = re.sub(r"[^A-Za-z0-9_]", "_", base)
    name, n = base, 2
    while name in seen:
        name, n = f"{base}_{n}", n + 1
    seen.add(name)
    return name


#: A suite's table: ``schema.table``, plain identifiers (it is named in SQL).
_TABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*")
_CONDITION_NODES = (
    ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.Compare, ast.Eq,
    ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn, ast.Name, ast.Load,
    ast.Constant, ast.List, ast.Tuple, ast.BinOp, ast.BitAnd, ast.BitOr, ast.USub,
)  # fmt: skip


def check_row_condition(condition: object) -> str:
    """A ``row_condition`` (GX's pandas parser, i.e. ``DataFrame.query``) limited to comparisons
    of columns with literals joined by and/or/not: pandas would otherwise evaluate attribute
    access, calls and local variables. Raises ValueError naming what is not allowed."""
    if not isinstance(condition, str):
        raise ValueError("row_condition must be a string")
    try:
        tree = ast.parse(condition, mode="eval")
    except SyntaxError as e:
        raise ValueError(f"row_condition is not an expression ({e.msg})") from e
    for node in ast.walk(tree):
        if not isinstance(node, _CONDITION_NODES):
            raise ValueError(
                f"row_condition may only compare columns with literals (and, or, not, ==, !=, "
                f"<, <=, >, >=, in); {type(node).__name__} is not allowed"
            )
        if isinstance(node, ast.Name) and node.id.startswith("_"):
            raise ValueError(f"row_condition: column {node.id!r} is not allowed")
    return condition


def load_suite(path: Path) -> Suite:
    """Read and check a suite file (plain JSON; GX itself is not imported here)."""
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise SuiteError(f"{path}: not valid JSON ({e})") from e
    for key in ("name", "asset", "table", "expectations"):
        if key not in raw:
            raise SuiteError(f"{path}: missing key {key!r}")
    seen: set[str] = set()
    exps: list[Expectation] = []
    entries = list(raw["expectations"])
    optional = raw.get("optional", False)
    if not isinstance(optional, bool):
        raise SuiteError(f"{path}: 'optional' must be true or false")
    if not optional and not any(e.get("type") == ROW_COUNT for e in entries):
        entries.insert(
            0,
            {
                "type": ROW_COUNT,
                "kwargs": {"min_value": 1},
                "meta": {"severity": "error", "description": "empty data never passes a gate"},
            },
        )
    for i, e in enumerate(entries):
        meta = e.get("meta") or {}
        severity = meta.get("severity", "error")
        if severity not in SEVERITIES:
            raise SuiteError(f"{path}: expectation {i}: severity must be one of {SEVERITIES}")
        if not str(e.get("type", "")).startswith("expect_"):
            raise SuiteError(f"{path}: expectation {i}: 'type' must be a GX expectation type")
        kwargs = dict(e.get("kwargs") or {})
        if "row_condition" in kwargs:
            if kwargs.get("condition_parser") != "pandas":
                raise SuiteError(f"{path}: expectation {i}: condition_parser must be 'pandas'")
            try:
                check_row_condition(kwargs["row_condition"])
            except ValueError as err:
                raise SuiteError(f"{path}: expectation {i}: {err}") from err
        exps.append(
            Expectation(
                type=e["type"],
                kwargs=kwargs,
                severity=severity,
                description=meta.get("description", ""),
                check_name=_check_name(e["type"], kwargs, seen),
            )
        )
    if not isinstance(raw["name"], str) or not re.fullmatch(r"[A-Za-z0-9_]+", raw["name"]):
        raise SuiteError(f"{path}: 'name' must be letters, digits and underscores")
    if not isinstance(raw["asset"], str) or not re.fullmatch(r"[A-Za-z0-9_]+", raw["asset"]):
        raise SuiteError(f"{path}: 'asset' must be letters, digits and underscores")
    if not isinstance(raw["table"], str) or not _TABLE.fullmatch(raw["table"]):
        raise SuiteError(f"{path}: 'table' must be schema.table (letters, digits, underscores)")
    return Suite(
        name=raw["name"],
        asset=raw["asset"],
        table=raw["table"],
        sample_rows=int(raw.get("sample_rows", 100_000)),
        expectations=tuple(exps),
        path=path,
        optional=optional,
    )


def load_suites(folder: Path) -> list[Suite]:
    """Every suite file in ``folder``, in name order."""
    return [load_suite(p) for p in sorted(folder.glob("*.json"))]


def sample_frame(con: duckdb.DuckDBPyConnection, suite: Suite, seed: int = 42) -> pd.DataFrame:
    """A fixed-seed sample of the suite's table as pandas (all rows if the table is small).

    From a table, the rows at ``sample_rows`` row ids drawn at random (seeded) from the table's
    row-id range, in table order: the same rows whatever order a scan meets them in, and no
    sort of every row (the daily refresh gates a history of 100M events; the join still scans
    the table once). A view, or a table whose row ids are far sparser than its rows (rows of
    an open transaction), gets a reservoir sample.
    """
    table = suite.table
    n = con.execute(f"select count(*) from {table}").fetchall()[0][0]
    df = _sample_of(con, suite, n, seed)
    df.attrs["table_rows"] = int(n)  # the row-count expectation is judged on the table
    return df


#: the registered relation of drawn row ids and its columns (names no table of ours uses)
_DRAWN, _ROWID, _ORDER = "__quality_sample_ids", "__sample_rowid", "__sample_order"


def _sample_of(con: duckdb.DuckDBPyConnection, suite: Suite, n: int, seed: int) -> pd.DataFrame:
    table, want = suite.table, int(suite.sample_rows)
    if n <= want:
        return con.sql(f"select * from {table}").df()
    schema, _, name = table.rpartition(".")
    is_table = con.execute(
        "select count(*) from duckdb_tables() where table_name = ? and (? = '' or schema_name = ?)",
        [name, schema, schema],
    ).fetchall()[0][0]
    lo, hi = (0, 0)
    if is_table:
        lo, hi = con.execute(f"select min(rowid), max(rowid) from {table}").fetchall()[0]
    span = hi - lo + 1
    if not is_table or span > 20 * n:
        return con.sql(
            f"select * from {table} using sample reservoir({want} rows) repeatable ({int(seed)})"
        ).df()
    import numpy as np
    import pyarrow as pa

    # deleted rows (a customer erased) leave gaps in the range: draw enough ids that ``want``
    # rows survive them, keep the first ``want`` in the order drawn
    draw = min(span, want + int(want * (span / n - 1) * 1.2) + 1000)
    rng = np.random.default_rng(abs(seed))
    if span <= 4 * draw:
        ids = rng.permutation(span)[:draw]
    else:  # distinct ids without a permutation of the whole range (memory: the draw only)
        ids = rng.integers(0, span, size=draw + draw // 4 + 100)
        ids = ids[np.sort(np.unique(ids, return_index=True)[1])][:draw]
    drawn = pa.table({_ROWID: ids + lo, _ORDER: np.arange(len(ids))})
    con.register(_DRAWN, drawn)
    try:
        df = con.sql(
            f'select * from (select t.*, s."{_ROWID}" from {table} as t join {_DRAWN} as s '
            f'on t.rowid = s."{_ROWID}" order by s."{_ORDER}" limit {want}) order by "{_ROWID}"'
        ).df()
    finally:
        con.unregister(_DRAWN)
    return df.drop(columns=_ROWID)


def _failing_rows(df: pd.DataFrame, exp: Expectation, result: dict[str, Any], n: int = 5):
    col = exp.column
    if not col or col not in df.columns:
        return []
    condition = exp.kwargs.get("row_condition")
    if condition:  # the expectation judged only these rows (GX evaluates it the same way)
        if exp.kwargs.get("condition_parser") != "pandas":
            return []
        df = df.query(condition)
    values = result.get("partial_unexpected_list") or []
    if exp.type == "expect_column_values_to_not_be_null":
        rows = df[df[col].isna()]
    elif values:
        rows = df[df[col].isin([v for v in values if v is not None])]
    else:
        return []
    return json.loads(rows.head(n).to_json(orient="records", date_format="iso"))


def _exception_message(info: dict[str, Any] | None) -> str | None:
    """The message of an expectation that raised: GX puts it at the top of ``exception_info``
    or, for a failed metric (e.g. a column the frame lacks), under that metric's id."""
    if not info:
        return None
    if info.get("exception_message"):
        return str(info["exception_message"])
    nested = [v.get("exception_message") for v in info.values() if isinstance(v, dict)]
    return next((str(m) for m in nested if m), None)


def validate(df: pd.DataFrame, suite: Suite) -> list[Outcome]:
    """Run the suite with GX on ``df``; one outcome per expectation. An optional input that was
    not supplied (no rows) passes every expectation, observed as "no rows"."""
    if suite.optional and len(df) == 0:
        return [Outcome(expectation=e, success=True, observed="no rows (optional input)")
                for e in suite.expectations]  # fmt: skip
    results = gx.validate_each(df, suite.name, [(e.type, e.kwargs) for e in suite.expectations])
    table_rows = df.attrs.get("table_rows")
    outcomes = []
    for exp, r in zip(suite.expectations, results, strict=True):
        res = r.result
        if exp.type == ROW_COUNT and table_rows is not None and table_rows != len(df):
            # a sample's size says nothing of the table's: judge the bounds on the table
            low, high = exp.kwargs.get("min_value"), exp.kwargs.get("max_value")
            ok = (low is None or table_rows >= low) and (high is None or table_rows <= high)
            outcomes.append(Outcome(expectation=exp, success=ok, observed=table_rows))
            continue
        outcomes.append(
            Outcome(
                expectation=exp,
                success=r.success,
                observed=res.get("observed_value"),
                unexpected_count=res.get("unexpected_count"),
                unexpected_percent=res.get("unexpected_percent"),
                failing_rows=[] if r.success else _failing_rows(df, exp, res),
                error=_exception_message(r.exception_info) if not r.success else None,
            )
        )
    return outcomes


def outcome_rows(suite: Suite, outcomes: list[Outcome]) -> list[AuditRow]:
    """Audit rows for a GX validation."""
    return [
        AuditRow(
            asset=suite.asset,
            source="gx",
            suite=suite.name,
            check_name=o.expectation.check_name,
            success=o.success,
            expectation=o.expectation.type,
            column=o.expectation.column,
            severity=o.expectation.severity,
            observed=o.observed,
            unexpected_count=o.unexpected_count,
            details={"failing_rows": o.failing_rows, "error": o.error} if not o.success else None,
        )
        for o in outcomes
    ]


def write_report(suite: Suite, outcomes: list[Outcome], n_rows: int, folder: Path, run_id: str):
    """A human-readable markdown report of one validation; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{suite.name}_{dt.datetime.now():%Y%m%dT%H%M%S}_{run_id[:8]}.md"
    failed = [o for o in outcomes if not o.success]
    lines = [
        f"# Validation of `{suite.asset}` with suite `{suite.name}`",
        "",
        f"- run: `{run_id}`  ",
        f"- rows validated: {n_rows} (sample of at most {suite.sample_rows} from `{suite.table}`)",
        f"- result: {len(outcomes) - len(failed)} of {len(outcomes)} expectations passed",
        "",
        "| check | severity | passed | observed | unexpected |",
        "|---|---|---|---|---|",
    ]
    for o in outcomes:
        unexpected = "" if o.unexpected_count is None else f"{o.unexpected_count}"
        lines.append(
            f"| {o.expectation.check_name} | {o.expectation.severity} | "
            f"{'yes' if o.success else '**no**'} | {o.observed if o.observed is not None else ''}"
            f" | {unexpected} |"
        )
    for o in failed:
        lines += ["", f"## {o.expectation.check_name} failed", ""]
        if o.expectation.description:
            lines.append(o.expectation.description)
        if o.error:
            lines.append(f"Error: {o.error}")
        if o.failing_rows:
            lines += ["", "Sample of failing rows:", "", "```json"]
            lines += [json.dumps(r, default=str) for r in o.failing_rows]
            lines.append("```")
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.unlink(missing_ok=True)  # never write through a link left in the folder
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
    return path
