"""Landing files -> DuckDB raw tables, idempotently, with row-level quarantine.

Layout of the landing folder (files are only ever read, never moved, changed or deleted)::

    <landing>/events/*.parquet|*.csv      behaviour events (one file per day, any names)
    <landing>/customers/*.parquet|*.csv   optional customer attributes
    <landing>/products/*.parquet|*.csv    optional product attributes

Your own column names and formats map onto the contract through a sources file (see
:mod:`segmentation_dagster.core.sources`), not code.

Every file is recorded in ``raw.load_manifest`` with its sha256. A file whose name and hash are
already loaded is skipped; a file re-delivered under the same name with new content replaces the
rows (and quarantined rows) that came from it.

New files are checked one by one from their metadata (no scan), then loaded in batches of
about ``BATCH_ROWS`` rows: one multi-file scan that converts and rule-scores every row, one type
check, one duplicate probe, one insert and one commit per batch rather than per file (a 90-day
backfill of 10M events is a few transactions). A batch is all or nothing: a failure rolls it
back, the manifest does not list its files, and the next run loads them again.

Per file:

1. **File-level checks** reject the whole file, naming it and the problem: unreadable (corrupt
   Parquet, bad CSV encoding, ragged CSV), a required column missing, a column whose values
   mostly cannot be read as the contract type, zero rows. The manifest records it as rejected;
   the previously loaded version of that file, if any, stays.
2. **Row-level rules** send each bad row to ``raw.quarantine`` with the file, the row number,
   the first rule it broke and its raw values; the good rows load. See ``Contract.rules``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from segmentation_dagster.core.sources import SourceMapping
from segmentation_dagster.core.testhooks import pause_point
from segmentation_dagster.core.warehouse import one

log = logging.getLogger(__name__)

RAW_SCHEMA = "raw"
MANIFEST = f"{RAW_SCHEMA}.load_manifest"
QUARANTINE = f"{RAW_SCHEMA}.quarantine"
SUFFIXES = (".parquet", ".csv")
EVENT_TYPES = ("view", "cart", "purchase", "search", "review")
#: A file is rejected as "wrong types" when more than this share of a column's values cannot be
#: read as the contract type; below it, the offending rows are quarantined.
MAX_UNREADABLE_SHARE = 0.5
#: ... judged only on columns with at least this many values (a few bad values: quarantine).
MIN_VALUES_FOR_TYPE_CHECK = 20
#: Rows staged before a batch is written (bounds the memory a backfill takes).
BATCH_ROWS = 2_500_000
#: A batch position is file ordinal * POS_FILE + row number (rows per file < 10^12).
POS_FILE = 1_000_000_000_000


@dataclass(frozen=True)
class Contract:
    """Columns a landing file of one kind must / may have, their warehouse types, the row
    rules (reason, SQL condition that is TRUE for a bad row; first match wins) and the key."""

    kind: str
    required: dict[str, str]
    optional: dict[str, str]
    key: str
    rules: tuple[tuple[str, str], ...] = ()
    unique_across_files: bool = False

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
        key="event_id",
        rules=(
            (
                "unknown event_type",
                "lower(trim(event_type)) not in (" + ", ".join(f"'{t}'" for t in EVENT_TYPES) + ")",
            ),
            ("event_ts in the future", "event_ts > cast(now() as timestamp) + interval 1 day"),
            ("negative price", "price < 0"),
            ("negative quantity", "quantity < 0"),
            ("discount outside 0..1", "discount < 0 or discount > 1"),
            ("review_rating outside 1..5", "review_rating < 1 or review_rating > 5"),
        ),
        unique_across_files=True,
    ),
    "customers": Contract(
        "customers",
        required={"customer_id": "VARCHAR"},
        optional={"signup_ts": "TIMESTAMP", "country": "VARCHAR"},
        key="customer_id",
        rules=(
            ("signup_ts in the future", "signup_ts > cast(now() as timestamp) + interval 1 day"),
        ),
    ),
    "products": Contract(
        "products",
        required={"product_id": "VARCHAR"},
        optional={"category": "VARCHAR", "base_price": "DOUBLE"},
        key="product_id",
        rules=(("negative base_price", "base_price < 0"),),
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
    rows_quarantined: int = 0
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)
    table_rows: int = 0


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the raw schema, the manifest, the quarantine and every contract table."""
    con.execute(f"create schema if not exists {RAW_SCHEMA}")
    con.execute(
        f"""create table if not exists {MANIFEST} (
            kind varchar not null,
            file_name varchar not null,
            sha256 varchar not null,
            size_bytes bigint not null,
            status varchar not null,       -- loaded | rejected
            rows_loaded bigint,
            rows_quarantined bigint,
            error varchar,
            recorded_at timestamp not null,
            primary key (kind, file_name)
        )"""
    )
    con.execute(
        f"""create table if not exists {QUARANTINE} (
            kind varchar not null,
            file_name varchar not null,
            row_number bigint not null,
            reason varchar not null,
            record json,
            quarantined_at timestamp not null
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


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _reader(path: Path, csv_options: dict[str, object]) -> str:
    if path.suffix.lower() == ".csv":
        opts = {"header": True, "all_varchar": True, **csv_options}
        rendered = ", ".join(
            f"{k} = {_sql_str(v) if isinstance(v, str) else str(v).lower()}"
            for k, v in opts.items()
        )
        return f"read_csv({_sql_str(str(path))}, {rendered})"
    return f"read_parquet({_sql_str(str(path))})"


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0]


@dataclass
class _Staged:
    """A new or changed landing file whose structure passed the file-level checks."""

    path: Path
    digest: str
    replace: bool  # a loaded version exists (its rows are replaced; a rejection keeps it)
    ordinal: int  # position in the batch
    sources: dict[str, str]  # contract column -> SQL expression over the file's columns
    reader: str  # DuckDB table function reading this file alone
    file_row_number: bool  # the reader can number rows itself (Parquet)


def _inspect(
    con: duckdb.DuckDBPyConnection, path: Path, contract: Contract, mapping: SourceMapping
) -> tuple[dict[str, str], str, bool]:
    """File-level checks that need no scan: readable, the header (CSV), every required column
    present or mapped, every mapped expression valid over the file's columns. Returns the
    source expression per contract column present, the file's reader and whether the reader
    can number rows itself (Parquet without a column of that name)."""
    if path.stat().st_size == 0:
        raise LandingFileError(f"{path.name}: file is empty (0 bytes)")
    reader = _reader(path, mapping.csv_options(contract.kind))
    try:
        described = con.execute(f"describe select * from {reader}").fetchall()
    except duckdb.Error as e:
        raise LandingFileError(f"{path.name}: cannot be read ({_first_line(e)})") from e
    if path.suffix.lower() == ".csv":
        _check_csv_header(path, len(described), mapping.csv_options(contract.kind))
    present = {row[0].lower(): row[0] for row in described}
    exprs = mapping.expressions(contract.kind)
    sources: dict[str, str] = {}
    for col in contract.columns:
        if col in exprs:
            sources[col] = exprs[col]
        elif col in present:
            sources[col] = '"' + present[col].replace('"', '""') + '"'
    missing = [c for c in contract.required if c not in sources]
    if missing:
        raise LandingFileError(
            f"{path.name}: missing required column(s) {', '.join(missing)} for "
            f"{contract.kind} (found: {', '.join(sorted(present)) or 'none'}; map your own "
            "names in the sources file)"
        )
    try:  # binds the mapped expressions against this file's columns (reads no rows)
        con.execute(f"describe select {_source_list(sources)} from {reader}").fetchall()
    except duckdb.Error as e:
        raise _read_error(con, path, reader, sources, e) from e
    numbered = path.suffix.lower() == ".parquet" and not {"file_row_number", "filename"} & set(
        present
    )
    return sources, reader, numbered


def _source_list(sources: dict[str, str]) -> str:
    return ", ".join(f"({expr}) as _src_{col}" for col, expr in sources.items())


def _read_error(
    con: duckdb.DuckDBPyConnection, path: Path, reader: str, sources: dict[str, str], e: Exception
) -> LandingFileError:
    """The error for a file a statement failed on, naming the first column that fails alone."""
    culprit = ""
    for col, expr in sources.items():
        try:
            con.execute(f"select count(({expr})) from {reader}").fetchall()
        except duckdb.Error:
            culprit = col
            break
    where = f"column {culprit} ({sources[culprit]})" if culprit else "the file"
    return LandingFileError(f"{path.name}: {where} cannot be read ({_first_line(e)})")


def _check_csv_header(path: Path, detected: int, options: dict[str, object]) -> None:
    """DuckDB's sniffer takes the widest row as the structure and silently skips the lines
    before it; a header with a different field count means a ragged or mis-delimited file."""
    delim = str(options.get("delim", options.get("sep", options.get("delimiter", ","))))
    with path.open("rb") as f:
        header = f.readline().decode("utf-8", errors="replace").rstrip("\r\n")
    fields = len(header.split(delim))
    if fields != detected:
        raise LandingFileError(
            f"{path.name}: cannot be read (header has {fields} fields separated by {delim!r} "
            f"but the rows have {detected}: a ragged or mis-delimited CSV)"
        )


def _rows_estimate(con: duckdb.DuckDBPyConnection, s: _Staged) -> int:
    """Rows in a staged file, for batch sizing: Parquet's footer, or ~64 bytes per CSV row."""
    if s.path.suffix.lower() == ".parquet":
        meta = f"parquet_file_metadata({_sql_str(str(s.path))})"
        return int(one(con, f"select coalesce(sum(num_rows), 0) from {meta}")[0])
    return s.path.stat().st_size // 64


def _unread(col: str) -> str:
    """SQL condition: the row has a value for ``col`` that could not be read as its type."""
    return f"_src_{col} is not null and {col} is null"


def _typed_columns(contract: Contract) -> list[str]:
    """Contract columns whose values are converted (judged by the type check), in bit order."""
    return [c for c, t in contract.columns.items() if t != "VARCHAR"]


def _reason_case(contract: Contract, cols: list[str]) -> str:
    """SQL CASE naming the first row rule a row breaks (NULL for a good row); duplicates are
    judged later, over the whole batch (:func:`_write_batch`)."""
    whens: list[tuple[str, str]] = []
    for col in contract.required:
        cond = f"{col} is null" + (
            f" or trim({col}) = ''" if contract.columns[col] == "VARCHAR" else ""
        )
        if contract.columns[col] != "VARCHAR":
            whens.append((f"unparseable {col}", _unread(col)))
        whens.append((f"missing {col}", cond))
    for col in cols:
        if col not in contract.required and contract.columns[col] != "VARCHAR":
            whens.append((f"unparseable {col}", _unread(col)))
    whens += list(contract.rules)
    body = " ".join(f"when {cond} then {_sql_str(reason)}" for reason, cond in whens)
    return f"case {body} end"


def _batch_table(con: duckdb.DuckDBPyConnection, contract: Contract) -> None:
    """``_batch``: one row per staged row, its position, typed values, first broken rule, raw
    values (bad rows only) and a bitmask of the typed columns whose value could not be read."""
    typed = ", ".join(f"{name} {typ}" for name, typ in contract.columns.items())
    con.execute(
        f"create or replace temp table _batch "
        f"(_pos bigint, {typed}, _reason varchar, _record json, _unreadable integer)"
    )


def _scan_into_batch(
    con: duckdb.DuckDBPyConnection, contract: Contract, group: list[_Staged]
) -> None:
    """Read, convert and rule-score ``group``'s files into ``_batch`` with one statement.

    Several Parquet files are read by one multi-file scan (``union_by_name``: a column a file
    lacks reads as NULL there), so DuckDB's threads share the work: 4x faster than a statement
    per file, whose single row group one thread reads. Each file's position comes from the
    scan's ``filename`` column."""
    sources: dict[str, str] = {}
    for s in group:
        sources.update({c: e for c, e in s.sources.items() if c not in sources})
    cols = list(sources)
    if len(group) == 1:
        s = group[0]
        ordinal = str(s.ordinal)
        reader = s.reader
        row = "row_number() over ()"
        if s.file_row_number:
            reader, row = reader[:-1] + ", file_row_number = true)", "file_row_number + 1"
        params: list[object] = []
    else:
        ordinal = "list_extract(?, list_position(?, filename))"
        reader = "read_parquet(?, filename = true, file_row_number = true, union_by_name = true)"
        row = "file_row_number + 1"
        paths = [str(s.path) for s in group]
        params = [[s.ordinal for s in group], paths, paths]
    typed = ", ".join(
        f"try_cast(_src_{col} as {typ}) as {col}"
        if col in sources
        else f"cast(null as {typ}) as {col}"
        for col, typ in contract.columns.items()
    )
    record = "to_json({" + ", ".join(f"'{c}': cast(_src_{c} as varchar)" for c in cols) + "})"
    unreadable = " + ".join(
        f"case when {_unread(col)} then {1 << bit} else 0 end"
        for bit, col in enumerate(_typed_columns(contract))
        if col in sources
    )
    con.execute(
        f"insert into _batch select _ord * {POS_FILE} + _row, {', '.join(contract.columns)}, "
        f"_reason, case when _reason is not null then {record} end, {unreadable or '0'} "
        f"from (select *, {_reason_case(contract, cols)} as _reason from (select *, {typed} "
        f"from (select {ordinal} as _ord, {row} as _row, {_source_list(sources)} "
        f"from {reader})))",
        params,
    )


def _scan_batch(
    con: duckdb.DuckDBPyConnection, contract: Contract, staged: list[_Staged]
) -> dict[int, LandingFileError]:
    """Fill ``_batch`` with the staged files; returns the files that could not be read, by
    ordinal. The Parquet files share one scan; when it fails, each file is read alone so the
    error names the file (and the column) it came from."""
    shared = [s for s in staged if s.file_row_number]
    if len(shared) < 2:
        shared = []
    groups = [shared] if shared else []
    groups += [[s] for s in staged if s not in shared]
    failed: dict[int, LandingFileError] = {}
    for group in groups:
        try:
            _scan_into_batch(con, contract, group)
            continue
        except duckdb.Error as e:  # an INSERT fails whole: nothing of the group was written
            if len(group) == 1:
                s = group[0]
                failed[s.ordinal] = _read_error(con, s.path, s.reader, s.sources, e)
                continue
        for s in group:
            failed.update(_scan_batch(con, contract, [s]))
    return failed


def _check_types(
    con: duckdb.DuckDBPyConnection, contract: Contract, staged: list[_Staged]
) -> dict[int, LandingFileError]:
    """Reject a file with zero rows, or a column whose values mostly cannot be read as its
    contract type (one pass over ``_batch``, by file). Returns the rejected files by ordinal."""
    typed = _typed_columns(contract)
    parts = [f"_pos // {POS_FILE}", "count(*)"]
    for bit, col in enumerate(typed):
        bad = f"_unreadable & {1 << bit} <> 0"
        parts += [f"count(*) filter (where {bad})", f"count({col})",
                  f"any_value(_record ->> '{col}') filter (where {bad})"]  # fmt: skip
    stats = {
        int(row[0]): row[1:]
        for row in con.execute(f"select {', '.join(parts)} from _batch group by 1").fetchall()
    }
    failed: dict[int, LandingFileError] = {}
    for s in staged:
        if s.ordinal not in stats:
            failed[s.ordinal] = LandingFileError(f"{s.path.name}: file has zero rows")
            continue
        row = stats[s.ordinal]
        for i, col in enumerate(typed):
            bad, readable, example = row[1 + 3 * i : 4 + 3 * i]
            total = bad + readable
            if total >= MIN_VALUES_FOR_TYPE_CHECK and bad / total > MAX_UNREADABLE_SHARE:
                failed[s.ordinal] = LandingFileError(
                    f"{s.path.name}: column {col}: {bad / total:.0%} of {total} values cannot "
                    f"be read as {contract.columns[col]} (e.g. {example!r})"
                )
                break
    return failed


@dataclass
class _Pass:
    """One load_kind call of a contract whose key is unique across files. Rows it inserts get
    a ``_loaded_at`` later than ``loaded_before`` (the table's latest at the start), so the rows
    that were there before are ``_loaded_at <= loaded_before``. The hashes of the keys it
    inserted are kept in ``_pass_keys`` (8 bytes a key)."""

    loaded_before: dt.datetime | None

    def now(self) -> dt.datetime:
        now = dt.datetime.now()
        if self.loaded_before is not None and now <= self.loaded_before:  # the clock went back
            now = self.loaded_before + dt.timedelta(microseconds=1)
        return now


def _start_pass(con: duckdb.DuckDBPyConnection, contract: Contract) -> _Pass | None:
    if not contract.unique_across_files:
        return None
    con.execute("create or replace temp table _pass_keys (h ubigint)")
    return _Pass(one(con, f"select max(_loaded_at) from {contract.table}")[0])


def _find_seen(
    con: duckdb.DuckDBPyConnection, contract: Contract, files: list[str], run: _Pass
) -> None:
    """``_seen``: the batch's keys already loaded from files outside the batch (a re-delivered
    file's own rows are about to be replaced).

    A backfill loads batch after batch, and probing the whole table's keys for each batch
    re-read every key loaded so far: 59 of 217 s loading 100M events. Rows from before this
    pass are probed by key (a daily load: the one scan it needs); rows of this pass's earlier
    batches by the key's 64-bit hash, and only hash matches are checked by key (26 s of 180 s
    at 100M; still a scan per batch, of 8-byte hashes instead of strings)."""
    key = contract.key
    con.execute(
        f"create or replace temp table _seen as select {key} as _seen_key "
        f"from {contract.table} limit 0"
    )
    if run.loaded_before is not None:
        con.execute(
            f"insert into _seen select distinct {key} from {contract.table} "
            f"where _loaded_at <= ? and {key} in (select {key} from _batch) "
            "and _source_file not in (select unnest(?))",
            [run.loaded_before, files],
        )
    # probe the pass's hashes (a scan) with the batch's (a hash table of the batch's size)
    con.execute(
        "create or replace temp table _hits as "
        f"select h from _pass_keys where h in (select hash({key}) from _batch)"
    )
    if one(con, "select count(*) from _hits")[0]:
        matches = f"select {key} from _batch where hash({key}) in (select h from _hits)"
        this_pass = "true" if run.loaded_before is None else "_loaded_at > ?"
        con.execute(
            f"insert into _seen select distinct {key} from {contract.table} "
            f"where {this_pass} and {key} in ({matches})",
            [] if run.loaded_before is None else [run.loaded_before],
        )


def _write_batch(
    con: duckdb.DuckDBPyConnection,
    contract: Contract,
    staged: list[_Staged],
    run: _Pass | None,
) -> dict[str, tuple[int, dict[str, int]]]:
    """Judge duplicates over the batch, then insert its good rows, quarantine the rest and
    record every file in the manifest, in one transaction. Returns per file (rows loaded,
    quarantined rows by reason)."""
    key = contract.key
    now = run.now() if run else dt.datetime.now()
    names = {s.ordinal: s.path.name for s in staged}
    name_of = "case _pos // " + str(POS_FILE) + " " + " ".join(
        f"when {o} then {_sql_str(n)}" for o, n in names.items()
    ) + " end"  # fmt: skip
    # the first occurrence of a key in the batch (file order, then row order) wins
    con.execute(
        f"create or replace temp table _dups as select {key} as _dup_key, min(_pos) as _first "
        f"from _batch where {key} is not null group by {key} having count(*) > 1"
    )
    seen = "false"
    if run:
        _find_seen(con, contract, list(names.values()), run)
        seen = f"{key} in (select _seen_key from _seen)"
    all_cols = "{" + ", ".join(f"'{c}': cast({c} as varchar)" for c in contract.columns) + "}"
    # a view, not a copy of the batch: read by the two inserts and the per-file counts
    con.execute(
        "create or replace temp view _scored as select _batch.* replace ("
        f"coalesce(_reason, case "
        f"when _first < _pos and _first // {POS_FILE} = _pos // {POS_FILE} "
        f"then 'duplicate {key} in file' "
        f"when _first < _pos or {seen} "
        f"then 'duplicate {key} already loaded from another file' end) as _reason), "
        f"{name_of} as _file "
        f"from _batch left join _dups on {key} = _dup_key"
    )
    replaced = [s.path.name for s in staged if s.replace]
    con.execute("begin transaction")
    try:
        if replaced:
            con.execute(
                f"delete from {contract.table} where _source_file in (select unnest(?))",
                [replaced],
            )
            con.execute(
                f"delete from {QUARANTINE} where kind = ? and file_name in (select unnest(?))",
                [contract.kind, replaced],
            )
        con.execute(
            f"insert into {contract.table} select {', '.join(contract.columns)}, _file, ? "
            "from _scored where _reason is null",
            [now],
        )
        if run:
            con.execute(
                f"insert into _pass_keys select hash({key}) from _scored where _reason is null"
            )
        con.execute(
            f"insert into {QUARANTINE} select ?, _file, _pos % {POS_FILE}, _reason, "
            f"coalesce(_record, to_json({all_cols})), ? from _scored where _reason is not null "
            "order by _pos",
            [contract.kind, now],
        )
        out: dict[str, tuple[int, dict[str, int]]] = {s.path.name: (0, {}) for s in staged}
        for name, reason, count in con.execute(
            "select _file, _reason, count(*) from _scored group by all"
        ).fetchall():
            good, reasons = out[name]
            if reason is None:
                out[name] = (int(count), reasons)
            else:
                reasons[str(reason)] = int(count)
        for s in staged:
            n, reasons = out[s.path.name]
            _record(con, contract.kind, s.path, s.digest, "loaded", n, sum(reasons.values()), None)
        pause_point("ingest.before_commit")
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    finally:
        con.execute("drop view if exists _scored")
        for tmp in ("_batch", "_dups", "_seen", "_hits"):
            con.execute(f"drop table if exists {tmp}")
    return out


def _reject(
    con: duckdb.DuckDBPyConnection, kind: str, path: Path, digest: str, replace: bool,
    error: LandingFileError, report: LoadReport,
) -> None:  # fmt: skip
    """Report a rejected file; the manifest records the rejection unless a previously loaded
    version of the file exists (that version stays)."""
    log.error("rejected landing file: %s", error)
    report.rejected[path.name] = str(error)
    if not replace:
        _record(con, kind, path, digest, "rejected", None, None, str(error))


def _flush(
    con: duckdb.DuckDBPyConnection,
    contract: Contract,
    staged: list[_Staged],
    report: LoadReport,
    run: _Pass | None,
) -> None:
    """Scan a staged batch, reject the files that fail the type check, write the rest and
    account for everything in ``report``."""
    if not staged:
        return
    _batch_table(con, contract)
    failed = _scan_batch(con, contract, staged)
    failed |= _check_types(con, contract, [s for s in staged if s.ordinal not in failed])
    if failed:
        con.execute(
            f"delete from _batch where _pos // {POS_FILE} in (select unnest(?))", [list(failed)]
        )
    for s in staged:
        if s.ordinal in failed:
            _reject(con, contract.kind, s.path, s.digest, s.replace, failed[s.ordinal], report)
    staged = [s for s in staged if s.ordinal not in failed]
    if not staged:
        con.execute("drop table _batch")
        return
    for n, reasons in _write_batch(con, contract, staged, run).values():
        report.rows_inserted += n
        report.rows_quarantined += sum(reasons.values())
        for reason, count in reasons.items():
            report.quarantined_by_reason[reason] = (
                report.quarantined_by_reason.get(reason, 0) + count
            )
    for s in staged:
        (report.replaced if s.replace else report.loaded).append(s.path.name)


def _record(
    con: duckdb.DuckDBPyConnection,
    kind: str,
    path: Path,
    digest: str,
    status: str,
    rows: int | None,
    quarantined: int | None,
    error: str | None,
) -> None:
    con.execute(
        f"insert or replace into {MANIFEST} values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            kind,
            path.name,
            digest,
            path.stat().st_size,
            status,
            rows,
            quarantined,
            error,
            dt.datetime.now(),
        ],
    )


def load_kind(
    con: duckdb.DuckDBPyConnection,
    landing_dir: Path,
    kind: str,
    mapping: SourceMapping | None = None,
) -> LoadReport:
    """Load every new or changed landing file of ``kind`` into ``raw.<kind>``."""
    contract = CONTRACTS[kind]
    mapping = mapping or SourceMapping()
    ensure_schema(con)
    report = LoadReport(kind)
    known = {
        name: (digest, status)
        for name, digest, status in con.execute(
            f"select file_name, sha256, status from {MANIFEST} where kind = ?", [kind]
        ).fetchall()
    }
    run = _start_pass(con, contract)
    staged: list[_Staged] = []
    batch_rows = 0
    for path in landing_files(landing_dir, kind):
        digest = sha256_of(path)
        previous = known.get(path.name)
        if previous is not None and previous[0] == digest:
            report.skipped.append(path.name)
            continue
        replace = previous is not None and previous[1] == "loaded"
        try:
            sources, reader, numbered = _inspect(con, path, contract, mapping)
        except LandingFileError as e:
            _reject(con, kind, path, digest, replace, e, report)
            continue
        s = _Staged(path, digest, replace, len(staged), sources, reader, numbered)
        staged.append(s)
        batch_rows += _rows_estimate(con, s)
        if batch_rows >= BATCH_ROWS:
            _flush(con, contract, staged, report, run)
            staged, batch_rows = [], 0
    _flush(con, contract, staged, report, run)
    if run:
        con.execute("drop table _pass_keys")
    report.table_rows = int(one(con, f"select count(*) from {contract.table}")[0])
    return report
