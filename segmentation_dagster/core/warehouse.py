"""DuckDB access behind an inter-process lock.

DuckDB lets one process hold a read-write connection to a database file at a time; a second
process that tries gets ``IOException: Could not set lock on file``. Every connection this
project opens (Dagster steps, dbt runs, the CLI, tests) goes through :func:`locked` or
:func:`connect`, which take an exclusive ``flock`` on ``<db>.lock`` first and wait for it, so
overlapping runs queue instead of crashing.

The lock belongs to the process, not to one ``with`` block: nested :func:`locked` /
:func:`connect` calls in the thread that holds it re-enter it (other threads of the process
wait), and the ``flock`` is let go only when the outermost block ends *and* the process has no
descriptor left open on the database file. Anything that opened the file inside the lock and
kept it open (dbt-duckdb caches its DuckDB instance between invocations, for one) keeps the
lock held until it closes the file or the process exits, so another process waits instead of
failing on DuckDB's own lock. Open descriptors are read from ``/proc/self/fd`` (Linux); where
that does not exist, the lock is released when the outermost block ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from segmentation_dagster.core.settings import DuckDBSettings

log = logging.getLogger(__name__)

DEFAULT_LOCK_TIMEOUT_S = 3600.0


class WarehouseLockTimeout(TimeoutError):
    """Raised when the single-writer lock could not be taken in time."""


def lock_path(db_path: str | os.PathLike[str]) -> Path:
    """The lock file that guards ``db_path``."""
    p = Path(db_path)
    return p.with_name(p.name + ".lock")


def open_descriptors(db_path: str | os.PathLike[str]) -> list[str]:
    """The files of ``db_path`` (the database and its WAL) this process has open, per
    ``/proc/self/fd``; empty where /proc is not available."""
    db = str(Path(db_path).resolve())
    targets = {db, db + ".wal"}
    found = []
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return []
    for fd in fds:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed since the listing
            continue
        if target in targets:
            found.append(target)
    return found


@dataclass
class _Holder:
    """This process's share of the lock on one database file."""

    mutex: threading.RLock = field(default_factory=threading.RLock)
    depth: int = 0  # nesting of locked() blocks in the thread holding ``mutex``
    fd: int | None = None  # the flock'ed lock file, while this process holds the lock


_holders: dict[Path, _Holder] = {}
_holders_guard = threading.Lock()


def _holder(db_path: str | os.PathLike[str]) -> tuple[Path, _Holder]:
    key = Path(db_path).resolve()
    with _holders_guard:
        return key, _holders.setdefault(key, _Holder())


def _flock(path: Path, db_path: object, deadline: float, timeout_s: float) -> int:
    """Open ``path`` and take an exclusive flock on it, waiting until ``deadline``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    announced = False
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
                    raise WarehouseLockTimeout(
                        f"waited {timeout_s:.0f}s for the DuckDB writer lock {path}; "
                        "another run is still writing the warehouse"
                        + (f" (process {holder})" if holder else "")
                    ) from None
                if not announced:
                    log.info("warehouse %s is busy; queueing for the writer lock", db_path)
                    announced = True
                time.sleep(0.1)
        # who holds it, for the message of whoever waits too long
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd
    except BaseException:
        os.close(fd)
        raise


def _release(db_path: Path, holder: _Holder) -> None:
    """Let go of the flock unless the database file is still open in this process."""
    still_open = open_descriptors(db_path)
    if still_open:
        gc.collect()  # a connection only dropped, not closed, is closed by its finaliser
        still_open = open_descriptors(db_path)
    if still_open:
        log.warning(
            "%s is still open in this process after the warehouse block ended; keeping the "
            "writer lock until it is closed (or the process exits)",
            db_path,
        )
        return
    fd, holder.fd = holder.fd, None
    if fd is not None:
        os.close(fd)  # closing the descriptor releases the flock


@contextlib.contextmanager
def locked(
    db_path: str | os.PathLike[str], timeout_s: float = DEFAULT_LOCK_TIMEOUT_S
) -> Iterator[float]:
    """Hold the single-writer lock for ``db_path``; yields the seconds spent waiting.

    Use it around anything that opens the database file, including dbt. Re-entrant in the
    thread that holds it; see the module docstring for when the lock is let go.
    """
    start = time.monotonic()
    deadline = start + timeout_s
    key, holder = _holder(db_path)
    if not holder.mutex.acquire(timeout=max(timeout_s, 0)):
        raise WarehouseLockTimeout(
            f"waited {timeout_s:.0f}s for the DuckDB writer lock on {db_path}; another thread "
            "of this process holds it"
        )
    try:
        if holder.fd is None:
            holder.fd = _flock(lock_path(db_path), db_path, deadline, timeout_s)
        holder.depth += 1
        try:
            yield time.monotonic() - start
        finally:
            holder.depth -= 1
            if holder.depth == 0:
                _release(key, holder)
    finally:
        holder.mutex.release()


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
        DuckDBSettings.from_env(Path(db_path)).apply(con)
        if not read_only:
            # commit appends to the WAL; checkpoint when it reaches 1 GB or on close, not after
            # every small per-file transaction
            con.execute("set checkpoint_threshold = '1GB'")
        try:
            yield con
        finally:
            con.close()


def close_dbt_duckdb() -> None:
    """Close the DuckDB database dbt-duckdb holds open in this process, if any: call it when a
    dbt invocation in this process (``dbtRunner``) returns, failed or not.

    dbt_project/profiles.yml has ``keep_open: true``: with ``false`` dbt-duckdb closes the
    database whenever its last connection is released, i.e. after every node, and opens it
    again for the next one, each close checkpointing the file. Kept open, the file must be
    closed here before the warehouse lock is let go (another process needs to open it) and
    before this process opens it with its own settings (DuckDB refuses a second instance of
    one file with a different configuration)."""
    if "dbt.adapters.duckdb.connections" not in sys.modules:
        return  # dbt never opened DuckDB in this process
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    with DuckDBConnectionManager._LOCK:
        env = DuckDBConnectionManager._ENV
        if env is None:
            return
        try:
            env.close()
        finally:  # a failed close (its checkpoint) must not leave a handle that looks open
            if hasattr(env, "conn"):
                env.conn = None


def one(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> tuple | None:
    """The first row of ``sql`` (or None), with the result fully consumed.

    DuckDB >= 2.0 keeps a result open after ``fetchone()``, and the next relation query on the
    connection then fails with "connection has an unfinished result"; fetch everything instead.
    """
    rows = con.execute(sql, params or []).fetchall()
    return rows[0] if rows else None


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """One transaction around the block: committed at its end, rolled back if it raises (or is
    killed: DuckDB's log drops what was not committed), so readers never see half of it."""
    con.execute("begin transaction")
    try:
        yield con
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise


def table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    """Whether ``schema.table`` exists (table or view)."""
    row = one(
        con,
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
        [schema, table],
    )
    return bool(row and row[0])


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


def quote_ident(name: str) -> str:
    """A SQL identifier, quoted (for names that cannot be bound as parameters)."""
    return '"' + name.replace('"', '""') + '"'


def count_rows(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> int | None:
    """Rows of ``schema.table``, or None when there is no such table (the names are looked up
    as bound values first, then quoted)."""
    found = one(
        con,
        "select 1 from duckdb_tables() where schema_name = ? and table_name = ?",
        [schema, table],
    )
    if found is None:
        return None
    return one(con, f"select count(*) from {quote_ident(schema)}.{quote_ident(table)}")[0]  # type: ignore[index]
