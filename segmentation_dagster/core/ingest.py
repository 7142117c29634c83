"""Landing files -> DuckDB raw tables, idempotently, with row-level quarantine.

Layout of the landing folder (files are only ever read, never moved, changed or deleted)::

    <landing>/events/*.parquet|*.csv|*.csv.gz      behaviour events (one file per day, any names)
    <landing>/customers/*.parquet|*.csv|*.csv.gz   optional customer attributes
    <landing>/products/*.parquet|*.csv|*.csv.gz    optional product attributes

Every other entry is ignored with a reason in the manifest (see
:mod:`segmentation_dagster.core.landing`). Your own column names and formats map onto the
contract through a sources file (see :mod:`segmentation_dagster.core.sources`), not code.

Landing files and mapping expressions are untrusted, so files are read and mapped on a separate
in-memory DuckDB (:func:`file_reader`) that may open the files of this pass and nothing else on
disk (``allowed_paths``, ``enable_external_access = false``, configuration locked) and has no
access to the warehouse; its result (typed, rule-scored rows) is streamed into the warehouse
connection as Arrow. It runs in UTC, so a timestamp with an offset (``10:00+05:00``, ``Z``, a
Parquet TIMESTAMPTZ) is stored as its UTC time; a timestamp without one is taken as UTC.

Every file is recorded in ``raw.load_manifest`` with its sha256. A file whose name and hash are
already loaded is skipped; a file re-delivered under the same name with new content replaces the
rows (and quarantined rows) that came from it.

New files are checked one by one from their metadata (no scan), then loaded in batches of
about ``BATCH_ROWS`` rows: one multi-file scan that converts and rule-scores every row, one type
check, one duplicate probe, one insert and one commit per batch rather than per file (a
backfill is a few transactions, not one per day). A batch is all or nothing: a failure rolls it
back, the manifest does not list its files, and the next run loads them again.

Per file:

1. **File-level checks** reject the whole file, naming it and the problem: unreadable (corrupt
   Parquet, not UTF-8 without a declared encoding, ragged CSV), a required column missing or a
   mapped column the file lacks, a column whose values mostly cannot be read as the contract
   type, zero rows. The manifest records it as rejected; if a previously loaded version of the
   file exists, that version stays and the manifest row keeps the rejection beside it
   (``rejected_sha256``, ``rejected_error``, ``rejected_at``).
2. **Row-level rules** send each bad row to ``raw.quarantine`` with the file, the row number,
   the first rule it broke and its values (under ``from_file``, the file's own values of the
   columns a mapping expression read); the good rows load. The rules are the input
   contract's (:mod:`segmentation_dagster.core.contract`: ``Contract.rules`` and ``Limits``:
   non-finite numbers, absurd prices and quantities, timestamps too old) and, for a mapped
   column, a value its ``try_`` conversion could not read (``unparseable <column>``, never a
   silent NULL).
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import gzip
import hashlib
import logging
import re
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from segmentation_dagster.core import landing
from segmentation_dagster.core.contract import (
    CONTRACTS,
    RAW_SCHEMA,
    UNKNOWN_EVENT_TYPE,
    Contract,
    Limits,
)
from segmentation_dagster.core.settings import DuckDBSettings
from segmentation_dagster.core.sources import SourceMapping, UnknownColumnError
from segmentation_dagster.core.testhooks import pause_point
from segmentation_dagster.core.warehouse import one, quote_ident

log = logging.getLogger(__name__)

MANIFEST = f"{RAW_SCHEMA}.load_manifest"
QUARANTINE = f"{RAW_SCHEMA}.quarantine"
#: A file is rejected as "wrong types" when more than this share of a column's values cannot be
#: read as the contract type; below it, the offending rows are quarantined.
MAX_UNREADABLE_SHARE = 0.5
#: ... judged only on columns with at least this many values (a few bad values: quarantine).
MIN_VALUES_FOR_TYPE_CHECK = 20
#: Rows staged before a batch is written (bounds the memory a backfill takes).
BATCH_ROWS = 2_500_000
#: A batch position is file ordinal * POS_FILE + row number (rows per file < 10^12).
POS_FILE = 1_000_000_000_000
#: Rows per Arrow batch streamed from the file reader into the warehouse.
STREAM_ROWS = 1_000_000
#: Key of a quarantine record's file values read by mapping expressions.
FROM_FILE = "from_file"
#: Manifest kind of the entries at the top of the landing folder.
ROOT_KIND = "landing"


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
    #: files skipped because they were rejected before under the same mapping and limits
    #: (each is read again once ``sources.yml`` or the limits change), and why
    rejected_before: dict[str, str] = field(default_factory=dict)
    ignored: dict[str, str] = field(default_factory=dict)
    rows_inserted: int = 0
    rows_quarantined: int = 0
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)
    table_rows: int = 0
    #: rows of erased customers (core.privacy.forget) dropped, neither loaded nor kept
    rows_erased: int = 0


#: given a batch's customer ids, those of erased customers (core.privacy.forgotten_among)
Erased = Callable[[list[str]], list[str]]


_MANIFEST_COLUMNS = (
    "kind", "file_name", "sha256", "size_bytes", "status", "rows_loaded", "rows_quarantined",
    "error", "recorded_at",
)  # fmt: skip
_REJECTION_COLUMNS = {"rejected_sha256": "varchar", "rejected_error": "varchar",
                      "rejected_at": "timestamp"}  # fmt: skip
#: the fingerprint of the mapping and limits a file was last read under (:func:`rules_of`)
_RULES_COLUMN = "rules"


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the raw schema, the manifest, the quarantine and every contract table."""
    con.execute(f"create schema if not exists {RAW_SCHEMA}")
    con.execute(
        f"""create table if not exists {MANIFEST} (
            kind varchar not null,
            file_name varchar not null,
            sha256 varchar not null,
            size_bytes bigint not null,
            status varchar not null,       -- loaded | rejected | ignored
            rows_loaded bigint,
            rows_quarantined bigint,
            error varchar,
            recorded_at timestamp not null,
            primary key (kind, file_name)
        )"""
    )
    # a later delivery under a loaded file's name that was rejected (the loaded version stays);
    # added in place so warehouses created before keep working
    for col, typ in {**_REJECTION_COLUMNS, _RULES_COLUMN: "varchar"}.items():
        con.execute(f"alter table {MANIFEST} add column if not exists {col} {typ}")
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


landing_files = landing.landing_files


@contextlib.contextmanager
def file_reader(files: list[Path]) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB that may open ``files`` and nothing else.

    ``allowed_paths`` lists the files (links resolved), ``enable_external_access = false``
    closes every other file, URL, ``COPY``, ``ATTACH`` and extension install, and
    ``lock_configuration`` keeps any statement from undoing that. It has no access to the
    warehouse, and runs in UTC (timestamps with an offset convert to UTC time)."""
    con = duckdb.connect(
        ":memory:",
        config={"autoinstall_known_extensions": False, "autoload_known_extensions": False},
    )
    try:
        con.execute("set TimeZone = 'UTC'")
        DuckDBSettings.from_env().apply(con)
        con.execute("set allowed_paths = ?", [[str(f) for f in files]])
        con.execute("set enable_external_access = false")
        con.execute("set lock_configuration = true")
        yield con
    finally:
        con.close()


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


#: Checked CSV options that go to DuckDB's reader; the others guide the type conversion.
_READER_OPTIONS = ("delim", "quote", "escape", "header", "skip", "encoding", "compression")


def _compression(path: Path, options: dict[str, object]) -> str:
    default = "gzip" if path.name.lower().endswith(".gz") else "none"
    chosen = str(options.get("compression", "auto"))
    return default if chosen == "auto" else chosen


def _csv_options(path: Path, csv_options: dict[str, object]) -> dict[str, object]:
    opts: dict[str, object] = {"header": True, "all_varchar": True}
    opts |= {k: v for k, v in csv_options.items() if k in _READER_OPTIONS}
    opts["compression"] = _compression(path, csv_options)
    return opts


def _call(function: str, path: Path, opts: dict[str, object]) -> str:
    rendered = "".join(f", {k} = {_literal(v)}" for k, v in opts.items())
    return f"{function}({_sql_str(str(path))}{rendered})"


def _reader(path: Path, csv_options: dict[str, object]) -> str:
    """The DuckDB table function reading ``path`` alone. CSV options are checked, typed values
    (:func:`segmentation_dagster.core.sources.check_csv_options`) rendered as literals."""
    if not landing.is_csv(path.name):
        return f"read_parquet({_sql_str(str(path))})"
    return _call("read_csv", path, _csv_options(path, csv_options))


#: sniff_csv's result column -> read_csv's option; "(empty)" is its word for "none"
_SNIFFED = {"Delimiter": "delim", "Quote": "quote", "Escape": "escape",
            "NewLineDelimiter": "new_line", "SkipRows": "skip", "Comment": "comment"}  # fmt: skip


def _pinned_csv_reader(
    rcon: duckdb.DuckDBPyConnection, path: Path, csv_options: dict[str, object]
) -> tuple[str, dict[str, object]] | None:
    """A ``read_csv`` of ``path`` with the dialect and the columns DuckDB's sniffer found spelled
    out, so the file is sniffed once rather than by every statement that reads it (the sniff
    is most of the cost of a small file), and the options it reads with. Every value, the
    file's column names included, is a literal. None when the sniffer fails or its reading does
    not bind: the caller's own reader then reads the file, or reports why it cannot."""
    opts = _csv_options(path, csv_options)
    try:
        row = rcon.execute(
            f"select {', '.join(_SNIFFED)}, Columns from {_call('sniff_csv', path, opts)}"
        ).fetchone()
    except duckdb.Error:
        return None
    if row is None or not row[-1]:
        return None
    del opts["all_varchar"]
    for option, value in zip(_SNIFFED.values(), row, strict=False):
        if value != "(empty)" or option in ("quote", "escape"):
            opts.setdefault(option, "" if value == "(empty)" else value)
    names = ", ".join(f"{_sql_str(str(c['name']))}: 'VARCHAR'" for c in row[-1])
    reader = _call("read_csv", path, opts | {"auto_detect": False})
    reader = reader[:-1] + f", columns = {{{names}}})"
    try:  # e.g. a column name the struct cannot hold
        rcon.execute(f"describe select * from {reader}")
    except duckdb.Error:
        return None
    return reader, opts


def _literal(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(int(v))
    return _sql_str(str(v))


_STREAM_ERROR = re.compile(r"^.*reading the stream registered as '\w+' failed: (IOError: )?")


def _first_line(e: Exception) -> str:
    """The first line of a DuckDB error, without the wrapper of an error in a streamed scan."""
    return _STREAM_ERROR.sub("", str(e).strip()).splitlines()[0]


_NOT_UTF8 = re.compile(r"not utf-8 encoded|invalid unicode", re.IGNORECASE)


def _cannot_read(
    name: str,
    kind: str,
    e: Exception,
    path: Path | None = None,
    options: dict[str, object] | None = None,
) -> LandingFileError:
    """The error for a file DuckDB could not read; an encoding problem says how to declare it,
    a CSV whose dialect could not be detected what the sniffer tripped on when we can tell."""
    if _NOT_UTF8.search(str(e)):
        line = re.search(r"CSV Error on Line: (\d+)", str(e))
        at = f" (line {line.group(1)})" if line else ""
        return LandingFileError(
            f"{name}: not UTF-8{at}; declare the file's encoding in the sources file, e.g. "
            f"{kind}: {{csv: {{encoding: latin-1}}}} (utf-8, utf-16 or latin-1)"
        )
    if "Error when sniffing file" in str(e):
        mixed = _mixed_line_ends(path, options or {}) if path is not None else None
        if mixed:
            return LandingFileError(
                f"{name}: cannot be read as CSV: {mixed}; save it with one "
                "kind of line end (the landed file is left as it is)"
            )
        return LandingFileError(
            f"{name}: cannot be read as CSV: its dialect (delimiter, quote, escape, header) "
            f"could not be detected; declare it in the sources file, e.g. {kind}: {{csv: "
            "{delim: ';', quote: '\"'}} (docs/data-quality.md)"
        )  # fmt: skip
    return LandingFileError(f"{name}: cannot be read ({_first_line(e)})")


#: how much of a file :func:`_mixed_line_ends` looks at
_LINE_END_SAMPLE = 4 << 20


def _mixed_line_ends(path: Path, options: dict[str, object]) -> str | None:
    """Where the first ``_LINE_END_SAMPLE`` bytes of a text file (decompressed as it is read)
    mix Windows (CRLF) and Unix (LF) line ends, which no CSV dialect reads: the first line of
    each kind. None when they do not, or when the file is not text (a NUL byte)."""
    try:
        if _compression(path, options) == "gzip":
            with gzip.open(path) as f:
                head = f.read(_LINE_END_SAMPLE)
        else:
            with path.open("rb") as f:
                head = f.read(_LINE_END_SAMPLE)
    except (OSError, EOFError):  # not gzip after all: the reader's own error stands
        return None
    if b"\0" in head:
        return None
    first: dict[str, int] = {}
    for number, line in enumerate(head.split(b"\n")[:-1], 1):
        first.setdefault("CRLF" if line.endswith(b"\r") else "LF", number)
        if len(first) == 2:
            a, b = sorted(first, key=first.__getitem__)
            return (f"it mixes Windows (CRLF) and Unix (LF) line ends: line {first[a]} ends "
                    f"with {a}, line {first[b]} with {b}")  # fmt: skip
    return None


#: ``check_landed`` looks at this many of each kind's newest files
CHECKED_FILES = 20


def check_landed(
    landing_dir: Path, mapping: SourceMapping, per_kind: int = CHECKED_FILES
) -> tuple[list[str], list[str]]:
    """The file-level problems a run would reject landed files for, found without loading
    anything: each kind's ``per_kind`` newest files (by modification time) are opened
    read-only and checked as a run checks them before it scans (readable, the header, every
    required column present or mapped, every mapped expression valid over the file's
    columns). Returns the problems, one line per reason (with the files it holds for), and
    notes: the entries a run would not read (a link out of the folder, a file at its top) and
    the event types of a sample of each event file's rows that no contract type or synonym
    names (a run quarantines those rows: a 'checkout' that is your purchase needs a CASE)."""
    problems: dict[str, list[str]] = {}
    notes = [f"not read by a run: {e.name}: {e.reason}"
             for e in landing.root_entries(landing_dir, mapping.path)]  # fmt: skip
    unknown: dict[str, int] = {}
    sampled = 0
    for kind, contract in CONTRACTS.items():
        entries = landing.kind_entries(landing_dir, kind)
        notes += [f"not read by a run: {kind}/{e.name}: {e.reason}"
                  for e in entries if e.real is None]  # fmt: skip
        readable = sorted((e for e in entries if e.real is not None),
                          key=lambda e: e.real.stat().st_mtime)[-per_kind:]  # fmt: skip
        if not readable:
            continue
        with file_reader([e.real for e in readable]) as rcon:
            for e in readable:
                try:
                    sources, labels, _, reader = _inspect(rcon, e.name, e.real, contract,
                                                          mapping)[:4]  # fmt: skip
                    if kind == "events":  # reads rows: a value may fail where binding did not
                        try:
                            n, found = _event_types(rcon, sources["event_type"], reader)
                        except duckdb.Error as err:
                            raise _read_error(rcon, e.name, kind, reader, sources, labels,
                                              err) from err  # fmt: skip
                        sampled += n
                        for t, count in found.items():
                            unknown[t] = unknown.get(t, 0) + count
                except LandingFileError as err:
                    why = str(err).removeprefix(f"{e.name}: ")
                    problems.setdefault(f"{kind}: {why}", []).append(e.name)
    if unknown:
        shown = ", ".join(
            f"{t!r} ({n:,})" for t, n in sorted(unknown.items(), key=lambda x: -x[1])[:8]
        )
        notes.append(
            f"event types no contract type or synonym names, in {sampled:,} sampled rows: "
            f"{shown}; a run quarantines their rows (unknown event_type): map yours with a "
            "CASE in sources.yml, e.g. event_type: \"case lower(kind) when 'checkout' then "
            "'purchase' else kind end\" (docs/data-quality.md)"
        )
    lines = []
    for why, names in problems.items():
        kind, _, reason = why.partition(": ")
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        lines.append(f"{kind}/{names[0]}: {reason}" if len(names) == 1
                     else f"{kind}: {len(names)} files ({shown}): {reason}")  # fmt: skip
    return lines, notes


#: rows of each event file :func:`check_landed` reads the event types of
_TYPE_SAMPLE = 50_000


def _event_types(
    rcon: duckdb.DuckDBPyConnection, expr: str, reader: str
) -> tuple[int, dict[str, int]]:
    """The rows sampled from the start of a file, and their event types the contract's rule
    quarantines as ``unknown event_type`` (its own condition, trimmed and lower-cased)."""
    n, found = rcon.execute(
        f"with s as (select cast(({expr}) as varchar) as event_type "
        f"from (select * from {reader} limit {_TYPE_SAMPLE})) "
        "select (select count(*) from s), (select coalesce(list(struct_pack(t, n)), []) from "
        f"(select lower(trim(event_type)) as t, count(*) as n from s "
        f"where {UNKNOWN_EVENT_TYPE} group by 1))"
    ).fetchall()[0]
    return n, {r["t"]: r["n"] for r in found}


@dataclass
class _Staged:
    """A new or changed landing file whose structure passed the file-level checks."""

    name: str  # as in the landing folder (the manifest's file_name)
    path: Path  # the file read (a link resolved)
    size: int
    digest: str
    replace: bool  # a loaded version exists (its rows are replaced; a rejection keeps it)
    ordinal: int  # position in the batch
    sources: dict[str, str]  # contract column -> checked SQL expression over the file's columns
    labels: dict[str, str]  # contract column -> what the user wrote (for errors)
    types: dict[str, str]  # contract column -> DuckDB type of its source expression
    reader: str  # DuckDB table function reading this file alone
    file_row_number: bool  # the reader can number rows itself (Parquet), may share a scan
    conversions: dict[str, object]  # CSV options that guide the type conversion
    lost: dict[str, str]  # contract column -> SQL: its mapping's try_ conversion lost a value
    inputs: dict[str, list[str]]  # contract column -> the file's columns its mapping reads


def _inspect(
    rcon: duckdb.DuckDBPyConnection,
    name: str,
    path: Path,
    contract: Contract,
    mapping: SourceMapping,
) -> tuple[
    dict[str, str], dict[str, str], dict[str, str], str, bool, dict[str, object],
    dict[str, str], dict[str, list[str]],
]:  # fmt: skip
    """File-level checks that need no scan: readable, the header (CSV), every required column
    present or mapped, every mapped expression valid over the file's columns. Returns the
    source expression, its label and its type per contract column present, the file's reader,
    whether the reader can number rows itself (Parquet without a column of that name, and no
    mapping numbering rows), the CSV options that guide conversion, the condition under which
    a mapping lost a value per contract column (:meth:`~sources.Expression.lost`) and the
    file's columns the mapping reads."""
    if path.stat().st_size == 0:
        raise LandingFileError(f"{name}: file is empty (0 bytes)")
    csv_file = landing.is_csv(name)
    options = mapping.csv_options(contract.kind) if csv_file else {}
    reader, dialect = _reader(path, options), options
    pinned = _pinned_csv_reader(rcon, path, options) if csv_file else None
    if pinned is not None:
        reader, read_with = pinned
        # the header is split as the sniffer split the rows (a declared option wins there)
        found = ("delim", "quote", "escape")
        dialect = options | {k: read_with[k] for k in found if k in read_with}
    try:
        described = rcon.execute(f"describe select * from {reader}").fetchall()
    except duckdb.Error as e:
        raise _cannot_read(name, contract.kind, e, path, options) from e
    if csv_file:
        _check_csv_header(name, path, len(described), dialect)
    present = {row[0].lower(): row[0] for row in described}
    exprs = mapping.expressions(contract.kind)
    sources: dict[str, str] = {}
    labels: dict[str, str] = {}
    lost: dict[str, str] = {}
    inputs: dict[str, list[str]] = {}
    for col in contract.columns:
        if col in exprs:
            try:
                sources[col] = exprs[col].render(present)
            except UnknownColumnError as e:
                raise LandingFileError(f"{name}: {e} (mapping: {mapping.path})") from e
            labels[col] = exprs[col].text
            if (condition := exprs[col].lost(present)) is not None:
                lost[col] = condition
            inputs[col] = exprs[col].inputs(present)
        elif col in present:
            sources[col] = labels[col] = quote_ident(present[col])
    missing = [c for c in contract.required if c not in sources]
    if missing:
        raise LandingFileError(
            f"{name}: missing required column(s) {', '.join(missing)} for "
            f"{contract.kind} (found: {', '.join(sorted(present)) or 'none'}; map your own "
            "names in the sources file)"
        )
    try:  # binds the mapped expressions against this file's columns (reads no rows)
        bound = rcon.execute(f"describe select {_source_list(sources)} from {reader}").fetchall()
    except duckdb.Error as e:
        raise _read_error(rcon, name, contract.kind, reader, sources, labels, e) from e
    numbered = (
        not csv_file
        and not mapping.numbers_rows(contract.kind)
        and not {"file_row_number", "filename"} & set(present)
    )
    types = {str(row[0]).removeprefix("_src_"): str(row[1]) for row in bound}
    return sources, labels, types, reader, numbered, options, lost, inputs


def _source_list(sources: dict[str, str]) -> str:
    return ", ".join(f"({expr}) as _src_{col}" for col, expr in sources.items())


def _read_error(
    rcon: duckdb.DuckDBPyConnection,
    name: str,
    kind: str,
    reader: str,
    sources: dict[str, str],
    labels: dict[str, str],
    e: Exception,
) -> LandingFileError:
    """The error for a file a statement failed on, naming the first column that fails alone."""
    if _NOT_UTF8.search(str(e)):
        return _cannot_read(name, kind, e)
    culprit = ""
    try:  # a row the reader itself cannot split (a CSV's short row) is no column's fault
        rcon.execute(f"select count(*) from {reader}").fetchall()
    except duckdb.Error:
        sources = {}
    for col, expr in sources.items():
        try:  # every value hashed: a count() of an expression that is never NULL skips it
            rcon.execute(f"select bit_xor(hash(({expr}))) from {reader}").fetchall()
        except duckdb.Error:
            culprit = col
            break
    where = f"column {culprit} ({labels[culprit]})" if culprit else "the file"
    return LandingFileError(f"{name}: {where} cannot be read ({_first_line(e)})")


_ENCODINGS = {"utf-8": "utf-8-sig", "utf-16": "utf-16", "latin-1": "latin-1"}


def _check_csv_header(name: str, path: Path, detected: int, options: dict[str, object]) -> None:
    """DuckDB's sniffer takes the widest row as the structure and silently skips the lines
    before it; a header with a different field count means a ragged or mis-delimited file.
    The header is split by Python's CSV reader (a quoted field may hold the delimiter)."""
    if options.get("header") is False:
        return
    delim = str(options.get("delim", ","))
    quote = str(options.get("quote", '"'))
    escape = str(options.get("escape", "")) or None
    opener = gzip.open if _compression(path, options) == "gzip" else open
    encoding = _ENCODINGS[str(options.get("encoding", "utf-8"))]
    try:
        with opener(path, "rt", encoding=encoding, errors="replace", newline="") as f:
            for _ in range(int(options.get("skip", 0))):  # type: ignore[call-overload]
                f.readline()
            header = next(
                csv.reader(
                    f,
                    delimiter=delim,
                    quotechar=quote or None,
                    quoting=csv.QUOTE_MINIMAL if quote else csv.QUOTE_NONE,
                    escapechar=escape if escape != quote else None,
                    doublequote=escape in (None, quote),
                ),
                [],
            )
    except (OSError, EOFError, csv.Error) as e:
        raise LandingFileError(f"{name}: cannot be read (header: {e})") from e
    if len(header) != detected:
        raise LandingFileError(
            f"{name}: cannot be read (header has {len(header)} fields separated by {delim!r} "
            f"but the rows have {detected}: a ragged or mis-delimited CSV; declare another "
            "delimiter in the sources file, e.g. csv: {delim: ';'})"
        )


def _rows_estimate(rcon: duckdb.DuckDBPyConnection, s: _Staged) -> int:
    """Rows in a staged file, for batch sizing: Parquet's footer, or ~64 bytes per CSV row
    (~16 compressed bytes)."""
    if not landing.is_csv(s.name):
        meta = f"parquet_file_metadata({_sql_str(str(s.path))})"
        return int(one(rcon, f"select coalesce(sum(num_rows), 0) from {meta}")[0])
    return s.size // (16 if s.name.lower().endswith(".gz") else 64)


def _unread(col: str, lost: Collection[str] = ()) -> str:
    """SQL condition: the row has a value for ``col`` that could not be read as its type, or
    (``col`` in ``lost``) that its mapping's ``try_`` conversion could not read."""
    typed = f"_src_{col} is not null and {col} is null"
    return f"({typed} or _lost_{col})" if col in lost else typed


def _typed_columns(contract: Contract) -> list[str]:
    """Contract columns whose values are converted (judged by the type check), in bit order."""
    return [c for c, t in contract.columns.items() if t != "VARCHAR"]


#: Source types that hold no offset: converted to TIMESTAMP by a plain cast.
_NAIVE_TIMES = {"TIMESTAMP", "TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S", "DATE"}


def _converted(col: str, typ: str, conversions: dict[str, object], source_types: set[str]) -> str:
    """SQL converting ``_src_<col>`` to the contract type (NULL when it cannot be read).

    Timestamps from text go through TIMESTAMPTZ on the UTC reader: a value with an offset
    becomes its UTC time, one without is taken as UTC (a plain cast would drop the offset); a
    TIMESTAMPTZ casts to its UTC time. A CSV's declared ``timestampformat`` / ``dateformat``
    and ``decimal_separator`` are tried first."""
    src = f"_src_{col}"
    if typ == "TIMESTAMP" and not conversions and source_types <= _NAIVE_TIMES:
        return f"try_cast({src} as timestamp)"
    if typ == "TIMESTAMP":
        tries = [
            f"try_cast(try_strptime(cast({src} as varchar), {_sql_str(str(conversions[k]))}) "
            "as timestamp)"
            for k in ("timestampformat", "dateformat")
            if k in conversions
        ]
        tries.append(f"try_cast(try_cast({src} as timestamptz) as timestamp)")
        return tries[0] if len(tries) == 1 else f"coalesce({', '.join(tries)})"
    if typ == "DOUBLE" and conversions.get("decimal_separator") == ",":
        return f"try_cast(replace(cast({src} as varchar), ',', '.') as double)"
    if typ in ("INTEGER", "BIGINT"):  # a cast would round 2.5 to 3: a fraction is unreadable
        number = f"try_cast({src} as double)"
        return f"case when {number} = trunc({number}) then try_cast({src} as {typ}) end"
    return f"try_cast({src} as {typ})"


def _reason_case(
    contract: Contract, cols: list[str], limits: Limits, lost: Collection[str] = ()
) -> str:
    """SQL CASE naming the first row rule a row breaks (NULL for a good row); duplicates are
    judged later, over the whole batch (:func:`_write_batch`). ``lost``: the columns whose
    mapping can lose a value (a ``_lost_<col>`` flag in the scan)."""
    whens: list[tuple[str, str]] = []
    for col in contract.required:
        cond = f"{col} is null" + (
            f" or trim({col}) = ''" if contract.columns[col] == "VARCHAR" else ""
        )
        if contract.columns[col] != "VARCHAR" or col in lost:
            whens.append((f"unparseable {col}", _unread(col, lost)))
        whens.append((f"missing {col}", cond))
    for col in cols:
        if col not in contract.required and (contract.columns[col] != "VARCHAR" or col in lost):
            whens.append((f"unparseable {col}", _unread(col, lost)))
    whens += [
        (f"non-finite {col}", f"not isfinite({col})")
        for col, typ in contract.columns.items()
        if typ == "DOUBLE"
    ]
    whens += list(contract.rules) + limits.rules(contract)
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
    con: duckdb.DuckDBPyConnection,
    rcon: duckdb.DuckDBPyConnection,
    contract: Contract,
    group: list[_Staged],
    limits: Limits,
) -> None:
    """Read, convert and rule-score ``group``'s files on the file reader, streamed as Arrow
    into the warehouse's ``_batch`` by one statement (it fails whole, writing nothing).

    Several Parquet files are read by one multi-file scan (``union_by_name``: a column a file
    lacks reads as NULL there), so DuckDB's threads share the work; a statement per file would
    leave each file's single row group to one thread. Each file's position comes from the
    scan's ``filename`` column."""
    sources: dict[str, str] = {}
    lost: dict[str, str] = {}
    inputs: dict[str, None] = {}
    for s in group:
        sources.update({c: e for c, e in s.sources.items() if c not in sources})
        lost.update({c: e for c, e in s.lost.items() if c not in lost})
        inputs.update(dict.fromkeys(n for names in s.inputs.values() for n in names))
    cols = list(sources)
    conversions: dict[str, object] = {}
    if len(group) == 1:
        s = group[0]
        ordinal = str(s.ordinal)
        reader = s.reader
        row = "row_number() over ()"
        if s.file_row_number:
            reader, row = reader[:-1] + ", file_row_number = true)", "file_row_number + 1"
        params: list[object] = []
        conversions = s.conversions
    else:
        ordinal = "list_extract(?, list_position(?, filename))"
        reader = "read_parquet(?, filename = true, file_row_number = true, union_by_name = true)"
        row = "file_row_number + 1"
        paths = [str(s.path) for s in group]
        params = [[s.ordinal for s in group], paths, paths]
    types = {col: {g.types[col] for g in group if col in g.types} for col in cols}
    typed = ", ".join(
        f"{_converted(col, typ, conversions, types[col])} as {col}"
        if col in sources
        else f"cast(null as {typ}) as {col}"
        for col, typ in contract.columns.items()
    )
    # the mapped values, and the file's own values that the mapping read
    raw = [f"{_sql_str(n)}: cast(_raw_{i} as varchar)" for i, n in enumerate(inputs)]
    record = "to_json({" + ", ".join(
        [f"'{c}': cast(_src_{c} as varchar)" for c in cols]
        + ([f"'{FROM_FILE}': {{{', '.join(raw)}}}"] if raw else [])
    ) + "})"  # fmt: skip
    unreadable = " + ".join(
        f"case when {_unread(col, lost)} then {1 << bit} else 0 end"
        for bit, col in enumerate(_typed_columns(contract))
        if col in sources
    )
    extra = "".join(f", ({cond}) as _lost_{col}" for col, cond in lost.items()) + "".join(
        f", {quote_ident(n)} as _raw_{i}" for i, n in enumerate(inputs)
    )
    scored = rcon.sql(
        f"select _ord * {POS_FILE} + _row, {', '.join(contract.columns)}, "
        f"_reason, case when _reason is not null then {record} end, {unreadable or '0'} "
        f"from (select *, {_reason_case(contract, cols, limits, lost)} as _reason from "
        f"(select *, {typed} from (select {ordinal} as _ord, {row} as _row, "
        f"{_source_list(sources)}{extra} from {reader})))",
        params=params,
    )
    con.register("_scored_stream", scored.to_arrow_reader(STREAM_ROWS))
    try:
        con.execute("insert into _batch select * from _scored_stream")
    finally:
        con.unregister("_scored_stream")


def _scan_batch(
    con: duckdb.DuckDBPyConnection,
    rcon: duckdb.DuckDBPyConnection,
    contract: Contract,
    staged: list[_Staged],
    limits: Limits,
) -> dict[int, LandingFileError]:
    """Fill ``_batch`` with the staged files; returns the files that could not be read, by
    ordinal. The Parquet files share one scan; when it fails, each file is read alone
    so the error names the file (and the column) it came from."""
    shared = [s for s in staged if s.file_row_number]
    if len(shared) < 2:
        shared = []
    groups = [shared] if shared else []
    groups += [[s] for s in staged if s not in shared]
    failed: dict[int, LandingFileError] = {}
    for group in groups:
        try:
            _scan_into_batch(con, rcon, contract, group, limits)
            continue
        except duckdb.Error as e:  # an INSERT fails whole: nothing of the group was written
            if len(group) == 1:
                s = group[0]
                failed[s.ordinal] = _read_error(
                    rcon, s.name, contract.kind, s.reader, s.sources, s.labels, e
                )
                continue
        for s in group:
            failed.update(_scan_batch(con, rcon, contract, [s], limits))
    return failed


def _check_types(
    con: duckdb.DuckDBPyConnection, contract: Contract, staged: list[_Staged]
) -> dict[int, LandingFileError]:
    """Reject a file with zero rows, or a column whose values mostly cannot be read as its
    contract type (one pass over ``_batch``, by file). Returns the rejected files by ordinal."""
    typed = _typed_columns(contract)
    parts = [f"_pos // {POS_FILE}", "count(*)"]
    # the file's own values the mapping read, by their names in each file (a header may be
    # spelt differently from file to file); looked up in a map, so a name is a string literal
    # and never JSON path syntax ('$amount', '/x')
    inputs: dict[str, list[str]] = {}
    for s in staged:
        for c, names in s.inputs.items():
            inputs[c] = list(dict.fromkeys([*inputs.get(c, []), *names]))
    from_file = f"cast(_record -> '{FROM_FILE}' as map(varchar, varchar))"
    for bit, col in enumerate(typed):
        bad = f"_unreadable & {1 << bit} <> 0"
        # the value that failed: the file's own values the mapping read, else the value
        read = {n: f"{from_file}[{_sql_str(n)}]" for n in inputs.get(col, [])}
        if not read:
            value = f"_record ->> '{col}'"
        elif max(len(s.inputs.get(col, [])) for s in staged) == 1:
            value = f"coalesce({', '.join(read.values())})"  # one column of each file
        else:
            fields = ", ".join(f"{_sql_str(n)}: {v}" for n, v in read.items())
            value = f"cast({{{fields}}} as varchar)"
        parts += [f"count(*) filter (where {bad})", f"count({col})",
                  f"any_value({value}) filter (where {bad})"]  # fmt: skip
    stats = {
        int(row[0]): row[1:]
        for row in con.execute(f"select {', '.join(parts)} from _batch group by 1").fetchall()
    }
    failed: dict[int, LandingFileError] = {}
    for s in staged:
        if s.ordinal not in stats:
            failed[s.ordinal] = LandingFileError(f"{s.name}: file has zero rows")
            continue
        row = stats[s.ordinal]
        for i, col in enumerate(typed):
            bad, readable, example = row[1 + 3 * i : 4 + 3 * i]
            total = bad + readable
            if total >= MIN_VALUES_FOR_TYPE_CHECK and bad / total > MAX_UNREADABLE_SHARE:
                failed[s.ordinal] = LandingFileError(
                    f"{s.name}: column {col}: {bad / total:.0%} of {total} values cannot "
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

    A backfill loads batch after batch; probing the whole table's keys for each batch would
    re-read every key loaded so far. Rows from before this pass are probed by key (a daily
    load: the one scan it needs); rows of this pass's earlier batches by the key's 64-bit hash,
    and only hash matches are checked by key (still a scan per batch, but of 8-byte hashes
    instead of strings)."""
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
    names = {s.ordinal: s.name for s in staged}
    name_of = "case _pos // " + str(POS_FILE) + " " + " ".join(
        f"when {o} then {_sql_str(n)}" for o, n in names.items()
    ) + " end"  # fmt: skip
    file_of = f"_pos // {POS_FILE}"
    if run:  # unique across files: the first occurrence in the batch (file, then row) wins
        con.execute(
            f"create or replace temp table _dups as select {key} as _dup_key, "
            f"min(_pos) as _first from _batch where {key} is not null "
            f"group by {key} having count(*) > 1"
        )
        _find_seen(con, contract, list(names.values()), run)
        join = f"{key} = _dup_key"
        across = (
            f"when _first < _pos or {key} in (select _seen_key from _seen) "
            f"then 'duplicate {key} already loaded from another file' "
        )
    else:  # a later file is a newer version of the row (staging keeps the latest), whether
        # it lands in the same load or a later one: only a repeat inside one file is ambiguous
        con.execute(
            f"create or replace temp table _dups as select {key} as _dup_key, "
            f"{file_of} as _dup_file, min(_pos) as _first from _batch "
            f"where {key} is not null group by {key}, {file_of} having count(*) > 1"
        )
        join = f"{key} = _dup_key and {file_of} = _dup_file"
        across = ""
    all_cols = "{" + ", ".join(f"'{c}': cast({c} as varchar)" for c in contract.columns) + "}"
    # a view, not a copy of the batch: read by the two inserts and the per-file counts
    con.execute(
        "create or replace temp view _scored as select _batch.* replace ("
        f"coalesce(_reason, case "
        f"when _first < _pos and _first // {POS_FILE} = {file_of} "
        f"then 'duplicate {key} in file' {across}end) as _reason), "
        f"{name_of} as _file "
        f"from _batch left join _dups on {join}"
    )
    replaced = [s.name for s in staged if s.replace]
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
            f"insert into {contract.table} select "
            + ", ".join(f"{contract.normalised.get(c, c)} as {c}" for c in contract.columns)
            + ", _file, ? from _scored where _reason is null",
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
        out: dict[str, tuple[int, dict[str, int]]] = {s.name: (0, {}) for s in staged}
        for name, reason, count in con.execute(
            "select _file, _reason, count(*) from _scored group by all"
        ).fetchall():
            good, reasons = out[name]
            if reason is None:
                out[name] = (int(count), reasons)
            else:
                reasons[str(reason)] = int(count)
        for s in staged:
            n, reasons = out[s.name]
            _record(con, contract.kind, s.name, s.size, s.digest, "loaded", n,
                    sum(reasons.values()), None)  # fmt: skip
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
    con: duckdb.DuckDBPyConnection, kind: str, s: _Staged | _Todo, error: LandingFileError,
    report: LoadReport,
) -> None:  # fmt: skip
    """Report a rejected file and record it: as rejected in the manifest, or, when a loaded
    version of the file exists (it stays), as that row's latest rejection."""
    log.error("rejected landing file: %s", error)
    report.rejected[s.name] = str(error)
    if s.replace:
        _note_rejection(con, kind, s.name, s.digest, str(error))
    else:
        _record(con, kind, s.name, s.size, s.digest, "rejected", None, None, str(error))


def _note_rejection(
    con: duckdb.DuckDBPyConnection, kind: str, name: str, digest: str | None, error: str | None
) -> None:
    """Keep (or clear, with None) the latest rejected delivery beside a loaded file's row."""
    con.execute(
        f"update {MANIFEST} set rejected_sha256 = ?, rejected_error = ?, rejected_at = ? "
        "where kind = ? and file_name = ?",
        [digest, error, dt.datetime.now() if error else None, kind, name],
    )


@dataclass(frozen=True)
class _Known:
    """A manifest row, as the next pass needs it."""

    sha256: str
    status: str
    error: str | None
    rejected_sha256: str | None
    rejected_error: str | None
    rules: str | None

    def rejected(self, digest: str) -> str | None:
        """Why the content ``digest`` was rejected under this name (None: it was not)."""
        if self.status == "rejected" and digest == self.sha256:
            return self.error or "rejected"
        return self.rejected_error if digest == self.rejected_sha256 else None


def rules_of(kind: str, mapping: SourceMapping, limits: Limits) -> str:
    """A fingerprint of what decides whether a file of ``kind`` is accepted: its mapping
    expressions, its CSV options and the limits."""
    what = (
        kind,
        sorted((col, e.text) for col, e in mapping.expressions(kind).items()),
        sorted((k, repr(v)) for k, v in mapping.csv_options(kind).items()),
        repr(limits),
    )
    return hashlib.sha256(repr(what).encode()).hexdigest()[:16]


def _known(con: duckdb.DuckDBPyConnection, kind: str) -> dict[str, _Known]:
    return {
        row[0]: _Known(*row[1:])
        for row in con.execute(
            f"select file_name, sha256, status, error, rejected_sha256, rejected_error, "
            f"{_RULES_COLUMN} from {MANIFEST} where kind = ?",
            [kind],
        ).fetchall()
    }


def _ignore(
    con: duckdb.DuckDBPyConnection, kind: str, entry: landing.Entry, known: dict[str, _Known],
    report: LoadReport, label: str,
) -> None:  # fmt: skip
    """Report an entry that is not read and record it once: as ignored in the manifest, or, when
    a loaded file of that name exists (its rows stay), as that row's latest rejection."""
    reason = str(entry.reason)
    report.ignored[label] = reason
    prev = known.get(entry.name)
    if prev is not None and prev.status == "loaded":
        if prev.rejected_error != reason:
            log.warning("landing entry %s (loaded earlier) %s", label, reason)
            _note_rejection(con, kind, entry.name, "", reason)
        return
    if prev is None or prev.status != "ignored" or prev.error != reason:
        log.warning("landing entry %s %s", label, reason)
        _record(con, kind, entry.name, entry.size, "", "ignored", None, None, reason)


def _check_root(
    con: duckdb.DuckDBPyConnection, landing_dir: Path, mapping: SourceMapping, report: LoadReport
) -> None:
    """Record the entries at the top of the landing folder that are not read."""
    entries = landing.root_entries(landing_dir, mapping.path)
    known = _known(con, ROOT_KIND) if entries else {}
    for entry in entries:
        _ignore(con, ROOT_KIND, entry, known, report, f"{ROOT_KIND}/{entry.name}")


def _drop_erased(con: duckdb.DuckDBPyConnection, erased: Erased) -> int:
    """Drop the batch's rows of erased customers (before anything is written or quarantined:
    nothing of theirs is kept); returns how many."""
    ids = [r[0] for r in con.execute(
        "select distinct cast(customer_id as varchar) from _batch where customer_id is not null"
    ).fetchall()]  # fmt: skip
    gone = erased(ids)
    if not gone:
        return 0
    return int(con.execute(
        "delete from _batch where cast(customer_id as varchar) in (select unnest(?))", [gone]
    ).fetchall()[0][0])  # fmt: skip


def _flush(
    con: duckdb.DuckDBPyConnection,
    rcon: duckdb.DuckDBPyConnection,
    contract: Contract,
    staged: list[_Staged],
    report: LoadReport,
    run: _Pass | None,
    limits: Limits,
    erased: Erased | None = None,
) -> None:
    """Scan a staged batch (on the file reader, streamed into the warehouse), reject the files
    that fail the type check, write the rest and account for everything in ``report``."""
    if not staged:
        return
    _batch_table(con, contract)
    failed = _scan_batch(con, rcon, contract, staged, limits)
    failed |= _check_types(con, contract, [s for s in staged if s.ordinal not in failed])
    if failed:
        con.execute(
            f"delete from _batch where _pos // {POS_FILE} in (select unnest(?))", [list(failed)]
        )
    for s in staged:
        if s.ordinal in failed:
            _reject(con, contract.kind, s, failed[s.ordinal], report)
    staged = [s for s in staged if s.ordinal not in failed]
    if not staged:
        con.execute("drop table _batch")
        return
    if erased is not None and "customer_id" in contract.columns:
        report.rows_erased += _drop_erased(con, erased)
    for n, reasons in _write_batch(con, contract, staged, run).values():
        report.rows_inserted += n
        report.rows_quarantined += sum(reasons.values())
        for reason, count in reasons.items():
            report.quarantined_by_reason[reason] = (
                report.quarantined_by_reason.get(reason, 0) + count
            )
    for s in staged:
        (report.replaced if s.replace else report.loaded).append(s.name)


def _record(
    con: duckdb.DuckDBPyConnection,
    kind: str,
    name: str,
    size: int,
    digest: str,
    status: str,
    rows: int | None,
    quarantined: int | None,
    error: str | None,
) -> None:
    """Write a file's manifest row (replacing the one of its name; no rejection kept)."""
    cols = (*_MANIFEST_COLUMNS, *_REJECTION_COLUMNS)
    values = [kind, name, digest, size, status, rows, quarantined, error, dt.datetime.now()]
    con.execute(
        f"insert or replace into {MANIFEST} ({', '.join(cols)}) "
        f"values ({', '.join('?' * len(cols))})",
        values + [None] * len(_REJECTION_COLUMNS),
    )


@dataclass
class _Todo:
    """A landing file whose content is new under its name."""

    name: str
    path: Path
    size: int
    digest: str
    replace: bool


def load_kind(
    con: duckdb.DuckDBPyConnection,
    landing_dir: Path,
    kind: str,
    mapping: SourceMapping | None = None,
    limits: Limits | None = None,
    erased: Erased | None = None,
    reload: str | None = None,
) -> LoadReport:
    """Load every new or changed landing file of ``kind`` into ``raw.<kind>``; record every
    entry that is not read (the events pass also checks the top of the landing folder).
    ``erased`` names the customers whose rows are dropped on the way in. ``reload`` names one
    file of the folder to read again even if it has not changed (its rows replaced, e.g. after
    a change of the mapping or the limits), and nothing else."""
    contract = CONTRACTS[kind]
    mapping = mapping or SourceMapping()
    limits = limits or Limits.from_env()
    ensure_schema(con)
    report = LoadReport(kind)
    if kind == "events" and reload is None:
        _check_root(con, landing_dir, mapping, report)
    known = _known(con, kind)
    rules = rules_of(kind, mapping, limits)
    todo: list[_Todo] = []
    entries = landing.kind_entries(landing_dir, kind)
    if reload is not None:
        entries = [e for e in entries if e.name == reload and e.real is not None]
        if not entries:
            raise LandingFileError(
                f"{landing_dir / kind}: no readable landing file named {reload!r} to reload"
            )
    for entry in entries:
        if entry.real is None:
            _ignore(con, kind, entry, known, report, entry.name)
            continue
        digest = sha256_of(entry.real)
        prev = known.get(entry.name)
        # a rejected content is read again once the mapping or the limits change
        why = prev.rejected(digest) if prev is not None else None
        if reload is None and prev is not None and why is not None and prev.rules == rules:
            report.rejected_before[entry.name] = why
            report.skipped.append(entry.name)
            continue
        if reload is None and prev is not None and why is None and digest == prev.sha256:
            if prev.rejected_error is not None:
                _note_rejection(con, kind, entry.name, None, None)  # the loaded one is back
            report.skipped.append(entry.name)
            continue
        replace = prev is not None and prev.status == "loaded"
        todo.append(_Todo(entry.name, entry.real, entry.size, digest, replace))
    run = _start_pass(con, contract)
    with file_reader([t.path for t in todo]) as rcon:
        staged: list[_Staged] = []
        batch_rows = 0
        for t in todo:
            try:
                sources, labels, types, reader, numbered, conv, lost, inputs = _inspect(
                    rcon, t.name, t.path, contract, mapping
                )
            except LandingFileError as e:
                _reject(con, kind, t, e, report)
                continue
            s = _Staged(t.name, t.path, t.size, t.digest, t.replace, len(staged), sources,
                        labels, types, reader, numbered, conv, lost, inputs)  # fmt: skip
            staged.append(s)
            batch_rows += _rows_estimate(rcon, s)
            if batch_rows >= BATCH_ROWS:
                _flush(con, rcon, contract, staged, report, run, limits, erased)
                staged, batch_rows = [], 0
        _flush(con, rcon, contract, staged, report, run, limits, erased)
    if run:
        con.execute("drop table _pass_keys")
    if todo:  # the rules every file read in this pass was judged under
        con.execute(
            f"update {MANIFEST} set {_RULES_COLUMN} = ? where kind = ? and file_name in "
            "(select unnest(?::varchar[]))",
            [rules, kind, [t.name for t in todo]],
        )
    report.table_rows = int(one(con, f"select count(*) from {contract.table}")[0])
    return report
