"""Starter configuration from a look at your files (``segmentation init``).

:func:`inspect` reads a sample of the landing folder (on the sandboxed reader of
:func:`segmentation_dagster.core.ingest.file_reader`): each kind's columns and types, which
event types occur, the date span and whether the log has browsing at all. :func:`sources_yml`
and :func:`project_yml` turn that into a commented ``sources.yml`` (your columns mapped onto
the contract by name, what could not be mapped said so) and ``segmentation.yml`` (a feature
window that fits the data's span). Both are starting points to read and edit: every guess is
marked.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path

from segmentation_dagster.core import ingest, landing
from segmentation_dagster.core.contract import (
    CONTRACTS,
    EVENT_TYPE_SYNONYMS,
    EVENT_TYPES,
    Limits,
)
from segmentation_dagster.core.warehouse import quote_ident

#: Column names (lower-cased, without punctuation) other systems use for each contract column.
NAMES: dict[str, tuple[str, ...]] = {
    "event_id": ("eventid", "id", "evt", "eventuuid", "uuid", "rowid", "lineid", "orderlineid",
                 "evtid", "evtuuid", "eventguid", "guid"),
    "customer_id": ("customerid", "customer", "custid", "custno", "userid", "user", "clientid",
                    "visitorid", "accountid", "memberid", "buyerid", "clientref", "customerref",
                    "customernumber", "client", "shopper", "shopperid", "consumer",
                    "consumerid", "purchaser", "buyer"),
    "event_ts": ("eventts", "timestamp", "ts", "eventtime", "time", "datetime", "createdat",
                 "occurredat", "eventdate", "orderdate", "invoicedate", "orderedat",
                 "purchasedat", "ordertime", "date", "happenedat", "eventat", "loggedat",
                 "recordedat", "eventtimestamp", "placedat", "orderplacedat", "placedon",
                 "orderedon", "orderdatetime", "ordertimestamp", "purchasedate", "purchasetime",
                 "transactiondate", "transactiontime", "saledate", "soldat", "paidat",
                 "boughtat", "createdon"),
    "event_type": ("eventtype", "type", "action", "event", "eventname", "activity", "kind",
                   "eventkind", "actiontype", "interaction", "interactiontype"),
    "session_id": ("sessionid", "session", "visitid", "visit", "sessionkey", "visitkey"),
    "product_id": ("productid", "product", "sku", "itemid", "item", "article", "stockcode"),
    "category": ("category", "dept", "department", "categorycode", "productcategory", "cat",
                 "family", "categoryname", "categorylabel", "productcategoryname", "catname",
                 "departmentname"),
    # a unit price first; then a line's total (:data:`TOTALS`), which init divides by the quantity
    "price": ("price", "unitprice", "itemprice", "amount", "linetotal", "lineamount", "linevalue",
              "total", "subtotal"),
    "discount": ("discount", "markdown", "discountrate"),
    "quantity": ("quantity", "qty", "units", "count"),
    "search_query": ("searchquery", "query", "searchterm", "querytext", "searchtext", "search",
                     "searchstring", "keywords"),
    "review_rating": ("reviewrating", "rating", "stars", "score"),
    "review_text": ("reviewtext", "review", "comment", "reviewbody", "reviewcomment",
                    "reviewcontent", "body"),
    "signup_ts": ("signupts", "signupdate", "registeredat", "createdat", "signup"),
    "country": ("country", "countrycode"),
    "base_price": ("baseprice", "listprice", "price"),
}  # fmt: skip
#: price names that mean a line's total (the unit price times the quantity): mapped as the
#: total over the quantity, or a quantity above one would count twice in the revenue
TOTALS = frozenset({"amount", "linetotal", "lineamount", "linevalue", "total", "subtotal"})
#: the last guess for an order log's quantity and money when no known name matched: a column
#: of numbers (:data:`READS` of the sample) whose name has one of these words (``number_of_cds``,
#: ``items_ordered``; ``dollar_value``, ``amount_paid``), never one that also has a word of
#: :data:`NOT_LOOSE`, and money never a name with a count word (``total_items``). Money found
#: this way is a line's total, unless a word says per unit (``unit_value``).
LOOSE = {
    "quantity": ("quantity", "qty", "units", "items", "pieces", "number", "count"),
    "price": ("amount", "value", "revenue", "sales", "total", "spend", "spent", "paid"),
}
NOT_LOOSE = frozenset({"discount", "tax", "vat", "shipping", "ship", "fee", "fees", "refund",
                       "cost", "id", "customer", "lifetime", "clv", "ltv", "score", "rate",
                       "pct", "percent", "ratio"})  # fmt: skip
PER_UNIT = frozenset({"unit", "item", "per", "each"})
#: an order number and a line number within it: together, an id for an order-line export
ORDER_KEY = (("orderid", "orderno", "ordernumber", "order", "invoiceid", "invoiceno", "invoice",
              "transactionid"),
             ("lineno", "line", "linenumber", "lineid", "position", "pos", "itemno"))  # fmt: skip
#: what may follow a known name: a currency, a time zone, a tax basis, an id's kind
SUFFIXES = frozenset({"eur", "usd", "gbp", "chf", "utc", "local", "gross", "net", "incvat",
                      "exvat", "id", "no", "code", "ref", "num", "number"})  # fmt: skip
SAMPLE_FILES = 5
SAMPLE_ROWS = 50_000


@dataclass
class KindLook:
    """What one kind's files look like: their columns (name -> type), the mapping guessed
    (contract column -> your column), and the files and rows looked at."""

    files: int
    columns: dict[str, str]
    mapped: dict[str, str]
    csv_delim: str | None = None
    #: CSV options the values need (``timestampformat``, ``decimal_separator``), as guessed
    csv_formats: dict[str, str] = field(default_factory=dict)
    #: a timestamp value no known format reads (shown to the user), if any
    unreadable_ts: str | None = None
    #: contract columns mapped by what the values look like, not by the column's name
    by_values: set[str] = field(default_factory=set)


@dataclass
class Inspection:
    """What :func:`inspect` found in the landing folder."""

    kinds: dict[str, KindLook] = field(default_factory=dict)
    event_types: dict[str, int] = field(default_factory=dict)  # as landed -> rows
    first_date: str | None = None
    last_date: str | None = None

    @property
    def span_days(self) -> int | None:
        if not (self.first_date and self.last_date):
            return None
        from datetime import date

        return (date.fromisoformat(self.last_date) - date.fromisoformat(self.first_date)).days + 1

    def contract_type(self, landed: str) -> str | None:
        name = landed.strip().lower()
        return name if name in EVENT_TYPES else EVENT_TYPE_SYNONYMS.get(name)

    @property
    def browsing(self) -> bool:
        """Whether the log has more than purchases (views, carts, searches)."""
        found = {self.contract_type(t) for t in self.event_types}
        return bool(found & {"view", "cart", "search"})


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _guess(kind: str, columns: dict[str, str]) -> dict[str, str]:
    """Contract column -> your column: a known name, else a known name followed by a known
    suffix (``unit_price_eur``, ``ordered_at_utc``)."""
    by_norm = {_norm(c): c for c in columns}
    out: dict[str, str] = {}
    for exact in (True, False):
        for target in CONTRACTS[kind].columns:
            for candidate in (_norm(target), *NAMES.get(target, ())):
                found = by_norm.get(candidate) if exact else next(
                    (c for n, c in by_norm.items()
                     if n.startswith(candidate) and n[len(candidate):] in SUFFIXES), None,
                )  # fmt: skip
                if target not in out and found is not None and found not in out.values():
                    out[target] = found
                    break
    return out


def _words(column: str) -> set[str]:
    """A column name's words: split at anything not a letter or digit and where a lower-case
    letter meets an upper-case one (``dollar_value``, ``DollarValue``, ``number-of-cds``)."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", column)
    return {w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w}


def _loose(column: str, target: str) -> bool:
    """Whether ``column``'s words say ``target`` (:data:`LOOSE`)."""
    words = _words(column)
    if words & NOT_LOOSE or not words & set(LOOSE[target]):
        return False
    return target != "price" or not words & set(LOOSE["quantity"])


def _order_line_key(columns: dict[str, str]) -> tuple[str, str] | None:
    """Your order-number and line-number columns, when the file has both."""
    by_norm = {_norm(c): c for c in columns}
    found = [next((by_norm[n] for n in names if n in by_norm), None) for names in ORDER_KEY]
    return (found[0], found[1]) if found[0] and found[1] else None


def _ref(column: str) -> str:
    """Your column as a mapping expression reads it: a plain name as it is, any other quoted."""
    return column if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", column) else quote_ident(column)


def _event_id_guess(look: KindLook) -> list[str]:
    """The commented ``event_id`` lines for a log without an id column: it must be unique
    across every file (a repeated id is quarantined as a duplicate), so never a row number."""
    key = _order_line_key(look.columns)
    if key is not None:
        order_line = "concat_ws('-', " + ", ".join(_ref(c) for c in key) + ")"
        return ["    # GUESS: no id column; the order and line numbers make one",
                f"    event_id: {_yaml_str(order_line)}"]  # fmt: skip
    content = "md5(concat_ws('|', " + ", ".join(_ref(c) for c in look.columns) + "))"
    return ["    # GUESS: no id column; each line's content is hashed, so a line has the same id",
            "    # whichever file carries it (identical lines count once: the copies are",
            "    # quarantined as duplicates). Map an order and line number if you have them.",
            f"    event_id: {_yaml_str(content)}"]  # fmt: skip


def inspect(landing_dir: Path) -> Inspection:
    """Look at up to ``SAMPLE_FILES`` files of each kind (``SAMPLE_ROWS`` rows each)."""
    found = Inspection()
    for kind in CONTRACTS:
        files = landing.landing_files(landing_dir, kind)
        if not files:
            continue
        # spread over the folder, the last file included (the date span)
        step = max(1, len(files) // SAMPLE_FILES)
        sample = sorted({*files[::step][: SAMPLE_FILES - 1], files[-1]})
        with ingest.file_reader(sample) as con:
            first = sample[0]
            delim = None
            if landing.is_csv(first.name):
                delim = con.execute(f"select delimiter from sniff_csv({_lit(first)})").fetchone()[0]
            reader = _read(first)
            columns = {
                str(r[0]): str(r[1])
                for r in con.execute(f"describe select * from {reader}").fetchall()
            }
            look = KindLook(len(files), columns, _guess(kind, columns), delim)
            found.kinds[kind] = look
            if kind == "events":
                _events(con, sample, look, found)
    return found


def before_limit(found: Inspection, limits: Limits) -> str:
    """What to set when the events begin before the earliest timestamp a load accepts (every
    row before it is quarantined), or "" when they do not."""
    if found.first_date is None:
        return ""
    first = dt.date.fromisoformat(found.first_date)
    if first >= limits.earliest_ts.date():
        return ""
    return (f"your events begin on {first}, before {limits.earliest_ts.date()}: the load "
            "quarantines every row before that date as implausible ('event_ts before ...'); "
            f'if they are real, set limits: earliest_ts: "{first}" '
            "in segmentation.yml")  # fmt: skip


def _lit(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _read(path: Path) -> str:
    """A file as ingestion reads it: a CSV as text (ingestion's ``all_varchar``; the sniffer's
    own typing took day-first dates that the load then could not read)."""
    if landing.is_csv(path.name):
        return f"read_csv({_lit(path)}, sample_size = {SAMPLE_ROWS}, all_varchar = true)"
    return f"read_parquet({_lit(path)})"


def _events(con, sample: list[Path], look: KindLook, found: Inspection) -> None:  # noqa: ANN001
    union = " union all by name ".join(
        f"(select * from {_read(p)} limit {SAMPLE_ROWS})" for p in sample
    )
    if "event_ts" not in look.mapped:
        stamps = _timestamp_column(con, union, look)
        if stamps is not None:
            look.mapped["event_ts"] = stamps
            look.by_values.add("event_ts")
    for target in LOOSE:
        if target not in look.mapped:
            column = _number_column(con, union, look, target)
            if column is not None:
                look.mapped[target] = column
                look.by_values.add(target)
    if "event_type" in look.mapped:
        col = quote_ident(look.mapped["event_type"])
        for value, n in con.execute(
            f"select cast({col} as varchar), count(*) from ({union}) group by 1 order by 2 desc "
            "limit 50"
        ).fetchall():
            if value is not None:
                found.event_types[value] = n
    if "event_ts" in look.mapped:
        col = quote_ident(look.mapped["event_ts"])
        first, last = con.execute(
            f"select min(try_cast({col} as date)), max(try_cast({col} as date)) from ({union})"
        ).fetchone()
        # the sample spans the first and the last file of the folder
        found.first_date = None if first is None else str(first)
        found.last_date = None if last is None else str(last)
    if look.csv_delim is not None:
        _text_formats(con, union, look, found)


#: day-first before month-first: where a day above 12 does not decide, the European reading
TS_FORMATS = (
    "%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M", "%d.%m.%Y", "%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M",
    "%d/%m/%Y", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M", "%m/%d/%Y", "%d-%m-%Y %H:%M:%S",
    "%d-%m-%Y %H:%M", "%d-%m-%Y", "%Y/%m/%d %H:%M:%S", "%Y/%m/%d", "%Y%m%d",
)  # fmt: skip
#: a format (or a decimal comma) is proposed when it reads this share of the sampled values
READS = 0.9


def _timestamp_column(con, union: str, look: KindLook) -> str | None:  # noqa: ANN001
    """The first unmapped column whose sampled values read as timestamps (as they are, or in
    one of :data:`TS_FORMATS`): a log whose time column has a name init does not know."""
    for column in look.columns:
        if column in look.mapped.values():
            continue
        col = f"cast({quote_ident(column)} as varchar)"
        reads = ", ".join(f"count(try_strptime({col}, ?))" for _ in TS_FORMATS)
        total, plain, *by_format = con.execute(
            f"select count({col}), count(try_cast({col} as timestamp)), {reads} from ({union})",
            list(TS_FORMATS),
        ).fetchall()[0]
        if total and max(plain, *by_format) >= READS * total:
            return column
    return None


def _number_column(con, union: str, look: KindLook, target: str) -> str | None:  # noqa: ANN001
    """The first unmapped column whose name says ``target`` (:func:`_loose`) and whose
    sampled values read as numbers (a decimal comma too)."""
    for column in look.columns:
        if column in look.mapped.values() or not _loose(column, target):
            continue
        col = f"replace(cast({quote_ident(column)} as varchar), ',', '.')"
        total, numbers = con.execute(
            f"select count({col}), count(try_cast({col} as double)) from ({union})"
        ).fetchall()[0]
        if total and numbers >= READS * total:
            return column
    return None


def _text_formats(con, union: str, look: KindLook, found: Inspection) -> None:  # noqa: ANN001
    """Timestamps the reader does not take as dates, and prices with a decimal comma: the CSV
    option that reads them (checked on the sample), or the value that nothing reads."""
    ts = look.mapped.get("event_ts")
    if ts is not None and found.first_date is None:
        col = f"cast({quote_ident(ts)} as varchar)"
        reads = ", ".join(f"count(try_strptime({col}, ?))" for _ in TS_FORMATS)
        counts = con.execute(
            f"select count({col}), {reads}, any_value({col}) from ({union})", list(TS_FORMATS)
        ).fetchall()[0]
        total, by_format, example = counts[0], counts[1:-1], counts[-1]
        best = max(range(len(TS_FORMATS)), key=lambda i: by_format[i])  # first of equals
        if total and by_format[best] >= READS * total:
            fmt = TS_FORMATS[best]
            look.csv_formats["timestampformat"] = fmt
            first, last = con.execute(
                f"select min(try_strptime({col}, ?))::date, max(try_strptime({col}, ?))::date "
                f"from ({union})",
                [fmt, fmt],
            ).fetchall()[0]
            found.first_date, found.last_date = str(first), str(last)
        elif total:
            look.unreadable_ts = str(example)
    price = look.mapped.get("price")
    if price is not None and look.columns.get(price) == "VARCHAR":
        col = f"cast({quote_ident(price)} as varchar)"
        total, dot, comma = con.execute(
            f"select count({col}), count(try_cast({col} as double)), "
            f"count(try_cast(replace({col}, ',', '.') as double)) from ({union})"
        ).fetchall()[0]
        if total and comma >= READS * total > dot:
            look.csv_formats["decimal_separator"] = ","


def _yaml_str(s: str) -> str:
    """A double-quoted YAML scalar that reads back as ``s``: printable characters as they are
    (an emoji too: JSON would split it into two escaped halves YAML reads as other text), the
    quote, the backslash and everything YAML may not hold raw as escapes."""
    out = []
    for ch in s:
        o = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= o <= 0x7E or 0xA0 <= o <= 0xD7FF or 0xE000 <= o <= 0xFFFD or o > 0xFFFF:
            out.append(ch)
        else:
            out.append(f"\\x{o:02x}" if o <= 0xFF else f"\\u{o:04x}")
    return '"' + "".join(out) + '"'


def _shown(s: object, limit: int = 40) -> str:
    """A landed name or value as it may appear in a comment: printable, one line, short."""
    text = "".join(c if c.isprintable() else "?" for c in str(s))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def sources_yml(found: Inspection) -> str:
    """A commented sources.yml mapping the files found onto the contract."""
    lines = ["# Written by `segmentation init` from a sample of the landing folder: read it,",
             "# fix what it guessed, delete what you do not need. Each value is one SQL",
             "# expression over your file's columns (see docs/data-quality.md)."]  # fmt: skip
    for kind, look in found.kinds.items():
        contract = CONTRACTS[kind]
        header = f"{kind}:   # {look.files} file(s); columns: " + ", ".join(
            _shown(c) for c in look.columns
        )
        renamed = {t: c for t, c in look.mapped.items() if t != c}
        if not renamed and kind != "events" and set(contract.required) <= set(look.mapped):
            lines += ["", f"# {header.replace(':   #', ': every column has its contract name;')}"]
            lines += [line.strip() for line in _not_mapped(look, contract.columns, "")]
            continue
        lines += ["", header]
        options = {"delim": look.csv_delim} if look.csv_delim and look.csv_delim != "," else {}
        options |= look.csv_formats
        if look.csv_formats:
            lines.append("  # GUESS: " + ", ".join(f"{k} {_yaml_str(v)}" for k, v in
                                                  look.csv_formats.items())
                         + " read the sampled values")  # fmt: skip
        if options:
            shown = ", ".join(f"{k}: {_yaml_str(v)}" for k, v in options.items())
            lines.append(f"  csv: {{{shown}}}")
        lines.append("  columns:")
        first = len(lines)
        for target in contract.columns:
            source = look.mapped.get(target)
            required = target in contract.required
            if source is not None:
                expr = None if source == target else _ref(source)
                if (
                    target == "event_type"
                    and found.event_types
                    and not all(found.contract_type(t) for t in found.event_types)
                ):
                    guessed = {"checkout"} if _checkout_is_the_purchase(found) else set()
                    unknown = [t for t in found.event_types if not found.contract_type(t)
                               and t.strip().lower() not in guessed]  # fmt: skip
                    shown = ", ".join(_shown(u) for u in unknown[:10])
                    if unknown:
                        lines.append(f"    # event types not understood (quarantined unless "
                                     f"mapped with a CASE): {shown}")  # fmt: skip
                if target == "event_ts" and look.unreadable_ts is not None:
                    example = _yaml_str(_shown(look.unreadable_ts))
                    lines.append(f"    # NOT READ: values like {example} are in no timestamp "
                                 "format init knows: set csv timestampformat "
                                 "(docs/data-quality.md)")  # fmt: skip
                if target == "event_type" and _checkout_is_the_purchase(found):
                    column = _ref(source)
                    lines.append("    # GUESS: none of your event types is a purchase, and "
                                 "'checkout' is there: taken as the purchase")  # fmt: skip
                    expr = (f"case lower(trim({column})) when 'checkout' then 'purchase' "
                            f"else {column} end")  # fmt: skip
                if target in look.by_values:
                    shown = _yaml_str(_shown(source))
                    lines.append(
                        f"    # GUESS: no column has a known name for it; {shown}'s values "
                        "read as timestamps" if target == "event_ts" else
                        f"    # GUESS: {shown} holds numbers and its name says {target}"
                    )  # fmt: skip
                if target == "price" and "quantity" in look.mapped and _is_total(source):
                    lines.append(
                        f"    # GUESS: {_yaml_str(_shown(source))} reads as a line's "
                        "total: the unit price is it over the quantity"
                    )
                    expr = _unit_price(source, look)
                if expr is not None:
                    lines.append(f"    {target}: {_yaml_str(expr)}")
                elif required:
                    lines.append(f"    # {target}: taken from your column of the same name")
            elif required and kind == "events" and target == "event_id":
                lines += _event_id_guess(look)
            elif required and kind == "events" and target == "event_type":
                lines.append("    # GUESS: no event type column: a purchases-only log")
                lines.append("    event_type: \"'purchase'\"")
            elif required:
                lines.append(f"    # {target}: NOT FOUND - map it, the files are rejected "
                             "without it")  # fmt: skip
        mapped = [line for line in lines[first:] if not line.lstrip().startswith("#")]
        lines += _not_mapped(look, contract.columns, "\n".join(mapped))
    return "\n".join(lines) + "\n"


def _is_total(column: str) -> bool:
    """Whether a price column's name says it is a line's total (``line_total``, ``amount_eur``)."""
    name = _norm(column)
    if any(name == t or (name.startswith(t) and name[len(t) :] in SUFFIXES) for t in TOTALS):
        return True
    return _loose(column, "price") and not _words(column) & (PER_UNIT | {"price"})


def _unit_price(total: str, look: KindLook) -> str:
    """A line's total over its quantity, read as numbers (text with a decimal comma too);
    no price where the quantity is 0."""

    def number(column: str) -> str:
        ref = _ref(column)
        if look.csv_formats.get("decimal_separator") == ",":
            return f"try_cast(replace(cast({ref} as varchar), ',', '.') as double)"
        return f"try_cast({ref} as double)"

    return f"{number(total)} / nullif({number(look.mapped['quantity'])}, 0)"


def _read_by(written: str, columns: dict[str, str]) -> set[str]:
    """The file's columns the expressions of ``written`` read (as the mapping parses them)."""
    import yaml

    from segmentation_dagster.core.sources import SourceConfigError, parse_expression

    present = {c.lower(): c for c in columns}
    read: set[str] = set()
    for line in written.splitlines():
        key, sep, value = line.strip().partition(": ")
        if not sep or key.startswith("#"):
            continue
        try:
            expr = parse_expression(str(yaml.safe_load(value)), f"init: {key}")
            read.update(expr.inputs(present))
        except (yaml.YAMLError, SourceConfigError, ValueError):
            continue
    return read


def _checkout_is_the_purchase(found: Inspection) -> bool:
    """A log whose event types name no purchase but a 'checkout': there the checkout is the
    purchase (elsewhere it is the step before it, which the contract does not take for one)."""
    types = {t.strip().lower() for t in found.event_types}
    return "checkout" in types and "purchase" not in {found.contract_type(t) for t in types}


def _not_mapped(look: KindLook, targets: tuple[str, ...], written: str) -> list[str]:
    """Comments naming your columns the mapping does not read (left out of the warehouse)
    and the optional contract columns nothing was found for: one may be the other.
    ``written``: the mapping's lines (``    target: "expression"``) as init wrote them."""
    read = set(look.mapped.values()) | _read_by(written, look.columns)
    unread = [c for c in look.columns if c not in read]
    if not unread:
        return []
    missing = [t for t in targets if t not in look.mapped
               and not re.search(rf"^    {t}:", written, re.MULTILINE)]  # fmt: skip
    return [f"    # NOT MAPPED, so not loaded: {', '.join(_shown(c) for c in unread)}",
            *([f"    # (contract columns nothing was found for: {', '.join(missing)})"]
              if missing else [])]  # fmt: skip


def project_yml(found: Inspection) -> str:
    """A commented segmentation.yml whose feature window fits the data."""
    span = found.span_days
    lines = ["# Written by `segmentation init`: every run reads this file (see README,",
             "# Configuration). Values left out keep their defaults."]  # fmt: skip
    if span is not None:
        lines.append(f"# data seen: {found.first_date} .. {found.last_date} ({span} days)")
    lines.append("features:")
    if not found.browsing and span is not None and span > 90:
        active = min(max(span, 90), 730)
        lines += ["  # a purchases-only log: customers buy a few times a year, so a customer",
                  "  # stays in scope for longer than the 90-day default",
                  f"  active_days: {active}",
                  f"  half_life_days: {max(30, min(180, active // 4))}"]  # fmt: skip
    else:
        lines += ["  active_days: 90      # customers quiet for longer are out of scope",
                  "  half_life_days: 30   # evidence this many days old counts half"]  # fmt: skip
    lines += ["policy:", "  cooldown_days: 7         # days between a refit and the next",
              "schedules:", '  refresh_cron: "0 6 * * *"']  # fmt: skip
    floor = Limits.from_env().earliest_ts.date()
    if before_limit(found, Limits.from_env()):
        lines += ["limits:",
                  f"  # GUESS: the events sampled begin on {found.first_date}, before {floor},",
                  "  # where rows are otherwise quarantined as implausible; from January 1st of",
                  "  # that year, as the sample may have missed an earlier day",
                  f'  earliest_ts: "{str(found.first_date)[:4]}-01-01"']  # fmt: skip
    return "\n".join(lines) + "\n"
