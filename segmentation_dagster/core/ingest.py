"""Landing files -> DuckDB raw tables, idempotently.

Layout of the landing folder (files are only ever read, never moved, changed or deleted)::

    <landing>/events/*.parquet|*.csv      behaviour events (one file per day, any names)
    <landing>/customers/*.parquet|*.csv   optional customer attributes
    <landing>/products/*.parquet|*.csv    optional product attributes

Every file is recorded in ``raw.load_manifest`` with its sha256. A file whose name and hash are
already loaded is skipped; a file re-delivered under the same name with new content replaces the
rows that came from it. Each file is loaded in its own transaction (delete its old rows, insert
the new ones, update the manifest), so a failure never leaves half a file behind.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from segmentation_dagster.core.warehouse import one

log = logging.getLogger(__name__)

RAW_SCHEMA = "raw"
MANIFEST = f"{RAW_SCHEMA}.load_manifest"
SUFFIXES = (".parquet", ".csv")


@dataclass(frozen=True)
class Contract:
    """Columns a landing file of one kind must / may have, with their warehouse types."""

    kind: str
    required: dict[str, str]
    optional: dict[str, str]

    @property
    def table(self) -> str:
        return f"{RAW_SCHEMA}.{self.kind}"

    @property
    def columns(self) -> dict[str, str]:
        return {**self.required, **self.optional}


CONTRACTS: dict[str, Contract] = {
    "events": Contract(
        "events",
        required={
            "event_id": "VARCHAR",
            "customer_id": "VARCHAR",
            "event_ts": "TIMESTAMP",
            "event_type": "VARCHAR",
        },
        optional={
            "session_id": "VARCHAR",
            "product_id": "VARCHAR",
            "category": "VARCHAR",
            "price": "DOUBLE",
            "discount": "DOUBLE",
            "quantity": "INTEGER",
            "search_query": "VARCHAR",
            "review_rating": "INTEGER",
            "review_text": "VARCHAR",
        },
    ),
    "customers": Contract(
        "customers",
        required={"customer_id": "VARCHAR"},
        optional={"signup_ts": "TIMESTAMP", "country": "VARCHAR"},
    ),
    "products": Contract(
        "products",
        required={"product_id": "VARCHAR"},
        optional={"category": "VARCHAR", "base_price": "DOUBLE"},
    ),
}


class LandingFileError(ValueError):
    """A landing file that cannot be loaded; the message names the file and the problem."""


@dataclass
class LoadReport:
    """What one ingestion pass did, for asset metadata and the CLI."""

    kind: str
    loaded: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)
    rows_inserted: int = 0
    table_rows: int = 0


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the raw schema, the manifest and every contract table if missing."""
    con.execute(f"create schema if not exists {RAW_SCHEMA}")
    con.execute(
        f"""create table if not exists {MANIFEST} (
            kind varchar not null,
            file_name varchar not null,
            sha256 varchar not null,
            size_bytes bigint not null,
            status varchar not null,       -- loaded | rejected
            rows_loaded bigint,
            error varchar,
            recorded_at timestamp not null,
            primary key (kind, file_name)
        )"""
    )
    for c in CONTRACTS.values():
        cols = ", ".join(f"{name} {typ}" for name, typ in c.columns.items())
        con.execute(
            f"create table if not exists {c.table} "
            f"({cols}, _source_file varchar not null, _loaded_at timestamp not null)"
        )


def sha256_of(path: Path) -> str:
    """Content hash of a landing file (streamed, constant memory)."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def landing_files(landing_dir: Path, kind: str) -> list[Path]:
    """Landing files of ``kind`` in name order (hidden and temporary files ignored)."""
    folder = landing_dir / kind
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in SUFFIXES and not p.name.startswith(".")
    )


def _reader(path: Path) -> str:
    p = str(path).replace("'", "''")
    if path.suffix.lower() == ".csv":
        return f"read_csv('{p}', header = true, auto_detect = true)"
    return f"read_parquet('{p}')"


def _select_list(con: duckdb.DuckDBPyConnection, path: Path, contract: Contract) -> str:
    """Cast the file's columns onto the contract; optional columns it lacks become NULL."""
    try:
        described = con.execute(f"describe select * from {_reader(path)}").fetchall()
    except duckdb.Error as e:
        raise LandingFileError(f"{path.name}: cannot be read ({str(e).splitlines()[0]})") from e
    present = {row[0].lower(): row[0] for row in described}
    missing = [c for c in contract.required if c not in present]
    if missing:
        raise LandingFileError(
            f"{path.name}: missing required column(s) {', '.join(missing)} "
            f"for {contract.kind} (found: {', '.join(sorted(present)) or 'none'})"
        )
    parts = []
    for name, typ in contract.columns.items():
        if name in present:
            parts.append(f'cast("{present[name]}" as {typ}) as {name}')
        else:
            parts.append(f"cast(null as {typ}) as {name}")
    return ", ".join(parts)


def _load_one(
    con: duckdb.DuckDBPyConnection, path: Path, contract: Contract, digest: str, replace: bool
) -> int:
    select = _select_list(con, path, contract)
    now = dt.datetime.now()
    con.execute("begin transaction")
    try:
        if replace:
            con.execute(f"delete from {contract.table} where _source_file = ?", [path.name])
        try:
            con.execute(
                f"insert into {contract.table} select {select}, ? as _source_file, "
                f"? as _loaded_at from {_reader(path)}",
                [path.name, now],
            )
        except duckdb.Error as e:
            raise LandingFileError(
                f"{path.name}: values do not fit the {contract.kind} contract "
                f"({str(e).splitlines()[0]})"
            ) from e
        n = one(con, f"select count(*) from {contract.table} where _source_file = ?", [path.name])[
            0
        ]
        if n == 0:
            raise LandingFileError(f"{path.name}: file has zero rows")
        _record(con, contract.kind, path, digest, "loaded", n, None)
        con.execute("commit")
        return int(n)
    except BaseException:
        con.execute("rollback")
        raise


def _record(
    con: duckdb.DuckDBPyConnection,
    kind: str,
    path: Path,
    digest: str,
    status: str,
    rows: int | None,
    error: str | None,
) -> None:
    con.execute(
        f"insert or replace into {MANIFEST} values (?, ?, ?, ?, ?, ?, ?, ?)",
        [kind, path.name, digest, path.stat().st_size, status, rows, error, dt.datetime.now()],
    )


def load_kind(con: duckdb.DuckDBPyConnection, landing_dir: Path, kind: str) -> LoadReport:
    """Load every new or changed landing file of ``kind`` into ``raw.<kind>``."""
    contract = CONTRACTS[kind]
    ensure_schema(con)
    report = LoadReport(kind)
    known = {
        name: (digest, status)
        for name, digest, status in con.execute(
            f"select file_name, sha256, status from {MANIFEST} where kind = ?", [kind]
        ).fetchall()
    }
    for path in landing_files(landing_dir, kind):
        digest = sha256_of(path)
        previous = known.get(path.name)
        if previous is not None and previous[0] == digest:
            report.skipped.append(path.name)
            continue
        replace = previous is not None and previous[1] == "loaded"
        try:
            n = _load_one(con, path, contract, digest, replace)
        except LandingFileError as e:
            log.error("rejected landing file: %s", e)
            report.rejected[path.name] = str(e)
            # the previously loaded version (if any) stays; the rejection is recorded
            if previous is None or previous[1] == "rejected":
                _record(con, kind, path, digest, "rejected", None, str(e))
            continue
        report.rows_inserted += n
        (report.replaced if replace else report.loaded).append(path.name)
    report.table_rows = int(one(con, f"select count(*) from {contract.table}")[0])
    return report
