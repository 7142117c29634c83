"""DuckDB access behind an inter-process lock.

DuckDB lets one process hold a read-write connection to a database file at a time; a second
process that tries gets ``IOException: Could not set lock on file``. Every connection this
project opens (Dagster steps, dbt runs, the CLI, tests) goes through :func:`locked` or
:func:`connect`, which take an exclusive ``flock`` on ``<db>.lock`` first and wait for it, so
overlapping runs queue instead of crashing.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb

log = logging.getLogger(__name__)

DEFAULT_LOCK_TIMEOUT_S = 3600.0


class WarehouseLockTimeout(TimeoutError):
    """Raised when the single-writer lock could not be taken in time."""


def lock_path(db_path: str | os.PathLike[str]) -> Path:
    """The lock file that guards ``db_path``."""
    p = Path(db_path)
    return p.with_name(p.name + ".lock")


@contextlib.contextmanager
def locked(
    db_path: str | os.PathLike[str], timeout_s: float = DEFAULT_LOCK_TIMEOUT_S
) -> Iterator[float]:
    """Hold the single-writer lock for ``db_path``; yields the seconds spent waiting.

    Use it around anything that opens the database file, including dbt.
    """
    path = lock_path(db_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    start = time.monotonic()
    try:
        announced = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - start
                if waited > timeout_s:
                    raise WarehouseLockTimeout(
                        f"waited {waited:.0f}s for the DuckDB writer lock {path}; "
                        "another run is still writing the warehouse"
                    ) from None
                if not announced:
                    log.info("warehouse %s is busy; queueing for the writer lock", db_path)
                    announced = True
                time.sleep(0.1)
        yield time.monotonic() - start
    finally:
        # closing the descriptor releases the flock
        os.close(fd)


@contextlib.contextmanager
def connect(
    db_path: str | os.PathLike[str],
    read_only: bool = False,
    timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open ``db_path`` under the single-writer lock and close it afterwards."""
    Path(db_path).parent.mkdir(parents=True, exist_ok=True)
    with locked(db_path, timeout_s):
        con = duckdb.connect(str(db_path), read_only=read_only)
        if not read_only:
            # commit appends to the WAL; checkpoint when it reaches 1 GB or on close, not after
            # every small per-file transaction (that was ~40 % of ingestion time)
            con.execute("set checkpoint_threshold = '1GB'")
        try:
            yield con
        finally:
            con.close()


def one(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> tuple | None:
    """The first row of ``sql`` (or None), with the result fully consumed.

    DuckDB >= 2.0 keeps a result open after ``fetchone()``, and the next relation query on the
    connection then fails with "connection has an unfinished result"; fetch everything instead.
    """
    rows = con.execute(sql, params or []).fetchall()
    return rows[0] if rows else None


def table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    """Whether ``schema.table`` exists (table or view)."""
    row = one(
        con,
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
        [schema, table],
    )
    return bool(row and row[0])


def md_table(df: object, float_fmt: str = "{:.3g}") -> str:
    """A polars frame as a markdown table (for Dagster UI metadata)."""

    def fmt(v: object) -> str:
        if v is None:
            return ""
        return float_fmt.format(v) if isinstance(v, float) else str(v)

    head = "| " + " | ".join(df.columns) + " |\n|" + "---|" * df.width + "\n"
    return head + "\n".join("| " + " | ".join(fmt(v) for v in r) + " |" for r in df.iter_rows())


def markdown_preview(con: duckdb.DuckDBPyConnection, sql: str, limit: int = 10) -> str:
    """A markdown table of the first ``limit`` rows of ``sql``."""
    return md_table(con.sql(f"select * from ({sql}) limit {int(limit)}").pl())


def replace_table(con: duckdb.DuckDBPyConnection, name: str, df: object) -> int:
    """Atomically replace table ``name`` with the rows of a polars/pandas/arrow frame.

    ``create or replace table ... as`` is one statement, hence one transaction: readers see
    either the old table or the new one, never a half-written one.
    """
    schema = name.split(".")[0] if "." in name else None
    if schema:
        con.execute(f"create schema if not exists {schema}")
    con.register("_replace_table_src", df)
    try:
        con.execute(f"create or replace table {name} as select * from _replace_table_src")
    finally:
        con.unregister("_replace_table_src")
    return int(one(con, f"select count(*) from {name}")[0])
