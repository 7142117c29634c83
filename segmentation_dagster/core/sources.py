"""Bring your own data: map your files' columns and formats onto the contract in a YAML file.

The sources file is project configuration, never a landing file: ``$SEGMENTATION_SOURCES`` or,
if that is unset, ``$SEGMENTATION_CONFIG_DIR/sources.yml`` (the config folder defaults to the
repository root; see :mod:`segmentation_dagster.core.settings`). A ``sources.yml`` found in the
landing folder is never used (the ingestion records it as ignored), and a sources file inside
the landing folder is refused: outside systems write there.

Every entry under ``columns`` is one scalar SQL expression (DuckDB syntax) over the columns of
your file that yields the contract column; contract columns you do not map are taken from a
same-named column if the file has one. CSV files are read as text, so conversions are explicit.
A plain orders export::

    events:
      csv: {delim: ";"}                    # optional reader options, see CSV_OPTIONS
      columns:
        event_id: "order_id || '-' || line_no"
        customer_id: "cust_no"
        event_ts: "try_strptime(order_date, '%Y%m%d')"   # YYYYMMDD text
        event_type: "'purchase'"
        quantity: "qty"
        price: "try_cast(replace(amount, ',', '.') as double) / try_cast(qty as double)"

Use ``try_``-functions (``try_strptime``, ``try_cast``) so one bad value quarantines one row
instead of rejecting the whole file.

An expression is parsed with sqlglot and checked node by node: column names (of columns the
file has), literals, arithmetic, comparison and boolean operators, ``CASE``, ``CAST`` /
``TRY_CAST`` to a scalar type, and the functions in :data:`ALLOWED_FUNCTIONS`. Anything else
(statements, ``;``, subqueries, table functions, file access, other functions, window functions
other than ``row_number() over ()``, ``*``) is a :class:`SourceConfigError` naming the file and
the key. What runs is the checked tree rendered back to SQL, with every column name quoted;
the text of the file is never pasted into SQL.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.tokens import TokenType

from segmentation_dagster.core.contract import CONTRACTS
from segmentation_dagster.core.landing import KINDS
from segmentation_dagster.core.settings import read_yaml_mapping

DIALECT = "duckdb"
#: Longest expression accepted (a mapping is a line, not a program).
MAX_EXPRESSION_CHARS = 2_000
MAX_TRY_NESTING = 3

#: Functions a mapping may call, by family, each with an example over a text column ``a``, a
#: timestamp ``b`` and a number ``n`` (parsed at import: the examples define which parsed
#: function nodes are allowed, so the list and the check agree).
ALLOWED_FUNCTIONS: dict[str, dict[str, str]] = {
    "text": {
        "lower": "lower(a)", "upper": "upper(a)", "trim": "trim(a)", "ltrim": "ltrim(a)",
        "rtrim": "rtrim(a)", "replace": "replace(a, ',', '.')", "concat": "concat(a, '-', b)",
        "concat_ws": "concat_ws('-', a, b)", "substr": "substr(a, 1, 3)",
        "substring": "substring(a, 1, 3)", "split_part": "split_part(a, '-', 1)",
        "regexp_replace": "regexp_replace(a, '[^0-9]', '', 'g')",
        "regexp_extract": "regexp_extract(a, '([0-9]+)', 1)",
        "regexp_matches": "regexp_matches(a, '^x')", "lpad": "lpad(a, 8, '0')",
        "rpad": "rpad(a, 8, '0')", "left": "left(a, 2)", "right": "right(a, 2)",
        "length": "length(a)", "strpos": "strpos(a, 'x')", "starts_with": "starts_with(a, 'x')",
        "contains": "contains(a, 'x')",
    },
    "date and time": {
        "strptime": "strptime('20260801', '%Y%m%d')",
        "try_strptime": "try_strptime(a, '%Y%m%d')",
        "strftime": "strftime(b, '%Y')", "make_date": "make_date(2026, 1, 2)",
        "make_timestamp": "make_timestamp(2026, 1, 2, 3, 4, 5.0)",
        "date_trunc": "date_trunc('day', b)", "date_part": "date_part('year', b)",
        "extract": "extract(year from b)", "epoch_ms": "epoch_ms(1700000000000)",
        "to_timestamp": "to_timestamp(1700000000)", "timezone": "timezone('UTC', b)",
    },
    "numbers": {
        "round": "round(n, 2)", "abs": "abs(n)", "floor": "floor(n)", "ceil": "ceil(n)",
        "ceiling": "ceiling(n)", "greatest": "greatest(n, 0)", "least": "least(n, 0)",
    },
    "hashing": {"md5": "md5(a)", "sha256": "sha256(a)", "hash": "hash(a)"},
    "conditions": {
        "coalesce": "coalesce(a, 'none')", "nullif": "nullif(a, '')",
        "ifnull": "ifnull(a, 'none')",
        "if": "if(a = 'x', 1, 2)", "case": "case when a = 'x' then 1 else 0 end",
        "cast": "cast(n as varchar)", "try_cast": "try_cast(a as double)",
    },
    "ids": {"row_number() over ()": "row_number() over ()"},
}  # fmt: skip

#: Operators and leaves a mapping may use besides the functions above.
_ALLOWED_NODES: tuple[type[exp.Expression], ...] = (
    exp.Column, exp.Identifier, exp.Literal, exp.Null, exp.Boolean, exp.Paren, exp.Neg,
    exp.Not, exp.And, exp.Or, exp.Add, exp.Sub, exp.Mul, exp.Div, exp.IntDiv, exp.Mod,
    exp.DPipe, exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Is, exp.In,
    exp.Between, exp.Like, exp.ILike, exp.Escape, exp.Case, exp.If, exp.Cast, exp.TryCast,
    exp.DataType, exp.DataTypeParam, exp.Interval,
)  # fmt: skip
#: Scalar types a value may be cast to (as written in DuckDB; parsed at import).
CAST_TYPES = (
    "varchar", "text", "boolean", "tinyint", "smallint", "integer", "int", "bigint", "hugeint",
    "ubigint", "float", "real", "double", "decimal", "numeric", "date", "time", "timestamp",
    "timestamptz", "timestamp with time zone", "interval",
)  # fmt: skip
_CAST_TYPES = {sqlglot.parse_one(f"cast(a as {t})", read=DIALECT).to.this for t in CAST_TYPES}
#: Keyword-like arguments (a date part, an interval unit) parse as Var: allowed only there.
_VAR_PARENTS = (exp.Interval, exp.Extract, exp.TimestampTrunc, exp.DateTrunc)


def _allowed_functions() -> tuple[frozenset[type[exp.Func]], frozenset[str]]:
    classes: set[type[exp.Func]] = set()
    names: set[str] = set()
    for family in ALLOWED_FUNCTIONS.values():
        for example in family.values():
            for node in sqlglot.parse_one(example, read=DIALECT).walk():
                if isinstance(node, exp.Anonymous):
                    names.add(node.name.lower())
                elif isinstance(node, exp.Func) and not isinstance(node, exp.RowNumber):
                    classes.add(type(node))
    return frozenset(classes), frozenset(names)


_FUNC_CLASSES, _FUNC_NAMES = _allowed_functions()
_ALLOWED_LIST = ", ".join(n for family in ALLOWED_FUNCTIONS.values() for n in family)


class SourceConfigError(ValueError):
    """The sources file is malformed or unsafe; the message names the file and the entry."""


class UnknownColumnError(ValueError):
    """A mapping expression names a column the file does not have."""


@dataclass(frozen=True)
class Expression:
    """One checked mapping expression: where it came from, its text and its parsed tree."""

    key: str  # e.g. "events.columns.customer_id"
    text: str
    tree: exp.Expression

    @property
    def numbers_rows(self) -> bool:
        """Whether it uses ``row_number() over ()`` (the file must be read on its own)."""
        return any(isinstance(n, exp.RowNumber) for n in self.tree.walk())

    def render(self, columns: Mapping[str, str]) -> str:
        """The expression as DuckDB SQL over a file whose columns are ``columns`` (lower-case
        name -> name as in the file): every column reference becomes the file's own name,
        quoted. Raises :class:`UnknownColumnError` for a column the file lacks."""
        return _sql(self._bound(columns))

    def inputs(self, columns: Mapping[str, str]) -> list[str]:
        """The file's columns the expression reads, by their names in the file, once each."""
        names = (c.name for c in self._bound(columns).find_all(exp.Column, bfs=False))
        return list(dict.fromkeys(names))

    def lost(self, columns: Mapping[str, str]) -> str | None:
        """SQL condition over the file's columns: the expression came out NULL because one of
        its ``try_`` conversions met a value (not NULL, not blank) it could not read. Such a
        row is quarantined as unparseable rather than loaded with a NULL. None when the
        expression has no ``try_`` conversion.

        Judged by the expression itself: it is NULL, and it would not be had every failed
        conversion read a stand-in value instead. So a failure that a ``coalesce`` covers, or
        one in a ``CASE`` branch not taken (``case when x = 'n/a' then null else
        try_cast(x as double) end``), loses nothing."""
        tree = self._bound(columns)
        tries = [n for n in tree.find_all(exp.TryCast, exp.Anonymous, bfs=False) if _is_try(n)]
        if not tries:
            return None
        stood_in = tree.copy()
        found = stood_in.find_all(exp.TryCast, exp.Anonymous, bfs=False)
        for node in reversed([n for n in found if _is_try(n)]):
            arg = node.this if isinstance(node, exp.TryCast) else node.expressions[0]
            value = _sql(arg)
            failed = (
                f"({value}) is not null and trim(cast(({value}) as varchar)) <> '' "
                f"and ({_sql(node)}) is null"
            )
            case = sqlglot.parse_one(
                f"case when {failed} then {_stand_in(node)} else {_sql(node)} end", read=DIALECT
            )
            if node is stood_in:
                stood_in = case
            else:
                node.replace(case)
        return f"(({_sql(tree)}) is null and ({_sql(stood_in)}) is not null)"

    def _bound(self, columns: Mapping[str, str]) -> exp.Expression:
        def quoted(node: exp.Expression) -> exp.Expression:
            if not isinstance(node, exp.Column):
                return node
            actual = columns.get(node.name.lower())
            if actual is None:
                raise UnknownColumnError(
                    f"{self.key}: column {node.name} is not in the file "
                    f"(columns: {', '.join(columns.values()) or 'none'})"
                )
            return exp.Column(this=exp.Identifier(this=actual, quoted=True))

        return self.tree.transform(quoted)  # a copy; the checked tree stays as it is


def _sql(tree: exp.Expression) -> str:
    return tree.sql(dialect=DIALECT, identify=True, comments=False)


def _is_try(node: exp.Expression) -> bool:
    """A conversion that yields NULL for a value it cannot read (``try_cast``, ``try_*``)."""
    if isinstance(node, exp.TryCast):
        return True
    return isinstance(node, exp.Anonymous) and node.name.lower().startswith("try_")


#: A value every scalar type reads, so that a stand-in neither fails nor divides by zero.
_STAND_INS = {
    exp.DataType.Type.DATE: "2000-01-01", exp.DataType.Type.TIME: "00:00:00",
    exp.DataType.Type.TIMESTAMP: "2000-01-01 00:00:00",
    exp.DataType.Type.TIMESTAMPTZ: "2000-01-01 00:00:00+00", exp.DataType.Type.INTERVAL: "1 day",
}  # fmt: skip


def _stand_in(node: exp.Expression) -> str:
    """SQL for a non-NULL value of the type ``node`` yields (``try_strptime``: a timestamp).
    The stand-in is itself a ``try_cast``: a type none of the values fits (a UUID) gives NULL,
    and the failure is then not told from an intended NULL, as before this check existed."""
    if not isinstance(node, exp.TryCast):
        return "cast('2000-01-01 00:00:00' as timestamp)"
    to = node.to
    value = _STAND_INS.get(to.this, "1")
    scale = to.expressions[1].name if len(to.expressions) == 2 else ""
    if to.this == exp.DataType.Type.DECIMAL and scale.isdigit() and int(scale):
        value = f"0.{'0' * (int(scale) - 1)}1"  # decimal(2, 2) holds 0.01, not 1
    return f"try_cast('{value}' as {to.sql(dialect=DIALECT)})"


def parse_expression(text: str, where: str) -> Expression:
    """Parse and check one mapping expression; ``where`` names it in errors
    (``<file>: <kind>.columns.<column>``)."""
    key = where.rsplit(": ", 1)[-1]
    if not text.strip():
        raise SourceConfigError(f"{where}: empty expression")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise SourceConfigError(f"{where}: expression longer than {MAX_EXPRESSION_CHARS} chars")
    try:
        tokens = sqlglot.tokenize(text, read=DIALECT)
        if any(t.token_type == TokenType.SEMICOLON for t in tokens):
            raise SourceConfigError(f"{where}: must be one expression; ';' is not allowed")
        trees = [t for t in sqlglot.parse(text, read=DIALECT) if t is not None]
    except SqlglotError as e:
        first = str(e).strip().splitlines()[0]
        raise SourceConfigError(f"{where}: not a valid SQL expression ({first})") from e
    if len(trees) != 1:
        raise SourceConfigError(f"{where}: must be exactly one expression")
    tree = trees[0]
    for node in tree.walk():
        problem = _problem(node)
        if problem:
            raise SourceConfigError(f"{where}: {problem}")
    deepest = max((_try_depth(n) for n in tree.walk() if _is_try(n)), default=0)
    if deepest > MAX_TRY_NESTING:  # the lost-value check copies each level's input: 3 ** depth
        raise SourceConfigError(
            f"{where}: try_ conversions nested {deepest} deep (at most {MAX_TRY_NESTING})"
        )
    return Expression(key, text, tree)


def _try_depth(node: exp.Expression) -> int:
    """How many ``try_`` conversions enclose ``node``, itself included."""
    depth = 0
    while node is not None:
        depth += _is_try(node)
        node = node.parent
    return depth


def _problem(node: exp.Expression) -> str | None:
    """Why ``node`` may not appear in a mapping expression (None: it may)."""
    if isinstance(node, exp.Subquery | exp.Query | exp.Exists):
        return "subqueries and statements are not allowed"
    if isinstance(node, exp.Window):
        bare = isinstance(node.this, exp.RowNumber) and not any(
            node.args.get(a) for a in ("partition_by", "order", "spec", "alias", "first")
        )
        return None if bare else "window functions are not allowed except row_number() over ()"
    if isinstance(node, exp.RowNumber):
        return None if isinstance(node.parent, exp.Window) else "row_number() needs over ()"
    if isinstance(node, exp.Anonymous):
        if node.name.lower() in _FUNC_NAMES:
            return None
        return f"function {node.name.lower()} is not allowed (allowed: {_ALLOWED_LIST})"
    if isinstance(node, exp.Func) and not isinstance(node, _ALLOWED_NODES):
        if type(node) in _FUNC_CLASSES:
            return None
        return f"function {_func_name(node)} is not allowed (allowed: {_ALLOWED_LIST})"
    if isinstance(node, exp.Column):
        if node.table or isinstance(node.this, exp.Star):
            return f"{node.sql(dialect=DIALECT)}: use a plain column name"
        return None
    if isinstance(node, exp.DataType):
        if node.this in _CAST_TYPES and not node.args.get("nested"):
            return None
        return f"cast to {node.sql(dialect=DIALECT)} is not allowed (scalar types only)"
    if isinstance(node, exp.Var):
        return None if isinstance(node.parent, _VAR_PARENTS) else f"{node.name} is not allowed"
    if isinstance(node, _ALLOWED_NODES):
        return None
    if isinstance(node, exp.Star):
        return "* is not allowed"
    return f"{node.key} ({node.sql(dialect=DIALECT)[:60]}) is not allowed"


def _func_name(node: exp.Func) -> str:
    """The name DuckDB would call ``node`` by (as rendered), else the parser's name for it."""
    rendered = node.sql(dialect=DIALECT)
    head = re.match(r"([A-Za-z_]\w*)\(", rendered)
    first = node.this.sql(dialect=DIALECT) if isinstance(node.this, exp.Expression) else ""
    if head and not (first and rendered.startswith(first)):
        return head.group(1).lower()
    return node.key


# --- CSV reader options ------------------------------------------------------------------------

#: DuckDB read_csv options a sources file may set: name -> (what is accepted, check).
#: Options that drop or pad values without a word (ignore_errors, null_padding) are refused:
#: a bad row is quarantined, a bad file rejected by name, never silently repaired.
ENCODINGS = ("utf-8", "utf-16", "latin-1")
CSV_OPTIONS: dict[str, str] = {
    "delim": "one character", "sep": "one character (same as delim)",
    "quote": "one character or ''", "escape": "one character or ''",
    "header": "true or false", "skip": "an integer >= 0 (lines before the header)",
    "dateformat": "a strptime format for timestamp columns given as dates, e.g. '%d.%m.%Y'",
    "timestampformat": "a strptime format for timestamp columns, e.g. '%d/%m/%Y %H:%M'",
    "decimal_separator": "'.' or ','", "encoding": " or ".join(ENCODINGS),
    "compression": "auto, gzip or none",
}  # fmt: skip
_REFUSED_CSV_OPTIONS = {
    "ignore_errors": "it drops unreadable rows without a trace (they are quarantined instead)",
    "null_padding": "it pads short rows with NULLs (a ragged file is rejected instead)",
    "all_varchar": "CSV files are always read as text",
    "columns": "map columns under 'columns:' instead",
    "types": "map and convert columns under 'columns:' instead",
}


def check_csv_options(raw: object, where: str) -> dict[str, object]:
    """Typed, checked CSV options (``sep`` becomes ``delim``); raises naming the option."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SourceConfigError(f"{where}: expected a mapping of options")
    out: dict[str, object] = {}
    problems: list[str] = []  # every broken option named
    for key, value in raw.items():
        name = str(key).lower()
        at = f"{where}.{key}"
        if name in _REFUSED_CSV_OPTIONS:
            problems.append(f"{at}: not allowed: {_REFUSED_CSV_OPTIONS[name]}")
        elif name not in CSV_OPTIONS:
            problems.append(f"{at}: unknown CSV option (allowed: {', '.join(CSV_OPTIONS)})")
        elif not _csv_value_ok(name, value):
            problems.append(f"{at}: expected {CSV_OPTIONS[name]}, got {value!r}")
        else:
            if isinstance(value, str) and name in ("encoding", "compression"):
                value = value.lower()
            out["delim" if name == "sep" else name] = value
    if problems:
        raise SourceConfigError("\n".join(problems))
    return out


def _csv_value_ok(name: str, value: object) -> bool:
    if name in ("delim", "sep"):
        return isinstance(value, str) and len(value) == 1 and value not in "\r\n\"'"
    if name in ("quote", "escape"):
        return isinstance(value, str) and len(value) <= 1 and value not in "\r\n"
    if name == "header":
        return isinstance(value, bool)
    if name == "skip":
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    if name in ("dateformat", "timestampformat"):
        return (
            isinstance(value, str) and 0 < len(value) <= 64 and value.isprintable() and "%" in value
        )
    if name == "decimal_separator":
        return value in (".", ",")
    if name == "encoding":
        return isinstance(value, str) and value.lower() in ENCODINGS
    if name == "compression":
        return isinstance(value, str) and value.lower() in ("auto", "gzip", "none")
    return False


# --- the sources file --------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceMapping:
    """Per kind: contract column -> checked expression, and checked CSV reader options."""

    columns: dict[str, dict[str, Expression]] = field(default_factory=dict)
    csv: dict[str, dict[str, object]] = field(default_factory=dict)
    path: Path | None = None

    def expressions(self, kind: str) -> dict[str, Expression]:
        return self.columns.get(kind, {})

    def csv_options(self, kind: str) -> dict[str, object]:
        return self.csv.get(kind, {})

    def numbers_rows(self, kind: str) -> bool:
        """Whether a mapping of ``kind`` numbers rows (its files are read one at a time)."""
        return any(e.numbers_rows for e in self.expressions(kind).values())


def load_mapping(path: Path | None) -> SourceMapping:
    """Read and check a sources file; ``None`` or a missing default means identity mapping."""
    if path is None or not path.exists():
        return SourceMapping()
    raw = read_yaml_mapping(path, SourceConfigError, f"kinds ({', '.join(KINDS)})")
    columns: dict[str, dict[str, Expression]] = {}
    csv: dict[str, dict[str, object]] = {}
    problems: list[str] = []  # every broken entry of the file, not the first only
    for kind, spec in raw.items():
        try:
            columns[kind], csv[kind] = _kind(path, kind, spec)
        except SourceConfigError as e:
            problems.append(str(e))
    if problems:
        raise SourceConfigError("\n".join(problems))
    return SourceMapping(columns, csv, path)


def _kind(path: Path, kind: str, spec: object) -> tuple[dict[str, Expression], dict[str, object]]:
    """One kind's checked expressions and CSV options; raises naming every broken entry."""
    if kind not in KINDS:
        raise SourceConfigError(f"{path}: unknown kind {kind!r}; use one of {KINDS}")
    spec = spec or {}
    if not isinstance(spec, dict):
        raise SourceConfigError(f"{path}: {kind}: expected 'columns:' and/or 'csv:'")
    unknown = set(spec) - {"columns", "csv"}
    if unknown:
        raise SourceConfigError(f"{path}: {kind}: unknown key(s) {sorted(unknown)}")
    cols = spec.get("columns") or {}
    if not isinstance(cols, dict):
        raise SourceConfigError(f"{path}: {kind}.columns: expected column: expression")
    problems: list[str] = []
    bad = sorted(str(c) for c in set(cols) - set(CONTRACTS[kind].columns))
    if bad:
        problems.append(
            f"{path}: {kind}.columns: {bad} are not contract columns "
            f"({', '.join(CONTRACTS[kind].columns)})"
        )
    expressions: dict[str, Expression] = {}
    for col, text in cols.items():
        try:
            if not isinstance(text, str | int | float) or isinstance(text, bool):
                raise SourceConfigError(
                    f"{path}: {kind}.columns.{col}: expected an SQL expression as text"
                )
            expressions[str(col)] = parse_expression(str(text), f"{path}: {kind}.columns.{col}")
        except SourceConfigError as e:
            problems.append(str(e))
    try:
        options = check_csv_options(spec.get("csv"), f"{path}: {kind}.csv")
    except SourceConfigError as e:
        problems.append(str(e))
    if problems:
        raise SourceConfigError("\n".join(problems))
    return expressions, options


def mapping_path(landing_dir: Path) -> Path:
    """Where the sources file is read from: ``$SEGMENTATION_SOURCES``, else
    ``$SEGMENTATION_CONFIG_DIR/sources.yml``. Refuses a path inside the landing folder."""
    from segmentation_dagster.core.settings import config_dir

    env = os.environ.get("SEGMENTATION_SOURCES")
    path = Path(env) if env else config_dir() / "sources.yml"
    if path.resolve().is_relative_to(landing_dir.resolve()):
        raise SourceConfigError(
            f"{path}: the sources file must not be in the landing folder {landing_dir} (outside "
            "systems write there); keep it with the project's configuration "
            "($SEGMENTATION_CONFIG_DIR/sources.yml or $SEGMENTATION_SOURCES)"
        )
    return path
