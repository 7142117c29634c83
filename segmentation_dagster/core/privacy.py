"""Privacy: keyed pseudonyms in exports, small groups suppressed, and erasure that lasts.

- **Pseudonyms.** Exports carry ``customer_pseudonym`` = HMAC-SHA256(key, customer id) (128
  bits, hex) instead of the customer id. The key comes from ``$SEGMENTATION_PSEUDONYM_KEY``,
  else from ``<data>/privacy/pseudonym.key``, created (random, mode 0600) on first use; it is
  never in the repository. The shop, holding the key, maps its ids to pseudonyms
  (``segmentation pseudonym ID...``); nobody else can.
- **Small groups.** Segment statistics (means, descriptions, rules, top items, playbook
  evidence, sizes) of a segment with fewer than ``min_group_size`` customers are suppressed
  wherever they leave the warehouse: the UI's metadata, pictures, the CLI summary.
- **Erasure.** :func:`forget` deletes a customer from every warehouse table that has a
  ``customer_id`` (raw, dbt models, segments, history), from quarantined records, model
  snapshots and export files, and adds their pseudonym to ``<data>/privacy/forgotten.txt``.
  Ingestion drops the rows of a forgotten customer whenever a landed file is read again
  (landed files are never edited), so they stay erased after a full re-ingest. Only
  pseudonyms are kept, never the ids.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import duckdb
import polars as pl

from segmentation_dagster.core import checks
from segmentation_dagster.core.settings import DuckDBSettings
from segmentation_dagster.core.warehouse import quote_ident, transaction

KEY_ENV = "SEGMENTATION_PSEUDONYM_KEY"
PSEUDONYM = "customer_pseudonym"
SUPPRESSED = "suppressed: fewer customers than privacy.min_group_size"


class PrivacyError(ValueError):
    """A privacy setting or request is not valid."""


@dataclass(frozen=True)
class PrivacyConfig:
    """The project file's ``privacy`` section."""

    #: segments with fewer customers have their statistics suppressed outside the warehouse
    min_group_size: int = 10
    #: what identifies a customer in exports: the keyed pseudonym, or the raw id (when the
    #: activation tool must have it and the export's readers may see it)
    export_ids: Literal["pseudonym", "raw"] = "pseudonym"

    #: each field's range (docs/configuration.md, "Ranges")
    RULES: ClassVar[dict[str, checks.Rule]] = {
        "min_group_size": checks.whole(1),
        "export_ids": checks.one_of(("pseudonym", "raw")),
    }

    def __post_init__(self) -> None:
        checks.apply(self, self.RULES)


def privacy_dir(data_dir: Path) -> Path:
    return data_dir / "privacy"


def key(data_dir: Path) -> bytes:
    """The pseudonym key: ``$SEGMENTATION_PSEUDONYM_KEY`` (at least 16 characters), else the
    key file in the data folder, created on first use."""
    env = os.environ.get(KEY_ENV)
    if env:
        if len(env) < 16:
            raise PrivacyError(f"{KEY_ENV}: must be at least 16 characters")
        return env.encode()
    path = privacy_dir(data_dir) / "pseudonym.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)  # never replaces a key another process created meanwhile
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip().encode()


def pseudonyms(ids: Iterable[object], secret: bytes) -> list[str]:
    """HMAC-SHA256 of each id (as text), 32 hex digits."""
    base = hmac.new(secret, digestmod=hashlib.sha256)
    out = []
    for i in ids:
        h = base.copy()
        h.update(str(i).encode())
        out.append(h.hexdigest()[:32])
    return out


def pseudonymise(df: pl.DataFrame, secret: bytes) -> pl.DataFrame:
    """``df`` with ``customer_id`` replaced by ``customer_pseudonym`` (same position): the
    same values as :func:`pseudonyms` for text ids, computed by DuckDB (HMAC-SHA256 from its
    definition, H((K ^ opad) || H((K ^ ipad) || id)), the pads bound as values): about twice
    as fast as a Python loop over millions of ids on two cores."""
    block = 64  # SHA-256's block size: a longer key is hashed first, a shorter one padded
    k = (hashlib.sha256(secret).digest() if len(secret) > block else secret).ljust(block, b"\0")
    ipad, opad = bytes(b ^ 0x36 for b in k), bytes(b ^ 0x5C for b in k)
    ids = df.select(pl.col("customer_id").cast(pl.String))
    if ids["customer_id"].null_count():
        raise PrivacyError("customer_id: a null id has no pseudonym")
    con = duckdb.connect()
    try:
        DuckDBSettings.from_env().apply(con)  # the platform's memory bound and spill folder
        con.register("_ids", ids)
        values = con.sql(
            "select left(sha256($opad::blob || unhex(sha256($ipad::blob || encode(customer_id)))),"
            " 32) as p from _ids",
            params={"ipad": ipad, "opad": opad},
        ).pl()["p"]  # a projection of one scan: DuckDB keeps the rows' order
    finally:
        con.close()
    return df.with_columns(customer_id=values).rename({"customer_id": PSEUDONYM})


# -- small groups ------------------------------------------------------------------------------


def small_segments(sizes: dict[int | None, int], min_group_size: int) -> set[int | None]:
    """The groups of fewer than ``min_group_size`` customers (None: the customers in no
    segment, a group of its own in some tables), with their complement (:func:`_complement`)."""
    small = {None if s is None else int(s) for s, n in sizes.items() if n < min_group_size}
    return _complement(small, sizes)


def _complement(small: set[int | None], counts: dict[int | None, int]) -> set[int | None]:
    """``small`` and, when it hides one row of ``counts`` only, the next smallest row too: the
    total of such a table is published beside it (the customers in scope), and one hidden row
    would be that total less the rows shown."""
    hidden = [s for s in counts if s in small]
    if len(hidden) != 1 or len(counts) < 2:
        return small
    others = sorted((n, s is None, s) for s, n in counts.items() if s not in small)
    return small | {others[0][2]}


def small_groups(
    sizes: dict[int, int], table: pl.DataFrame, min_group_size: int, count: str = "customers"
) -> set[int | None]:
    """The segments of ``table`` (``segment_id`` and the ``count`` of customers each row
    describes) too small to publish: small today (``sizes``) or small in the table itself,
    which may group by an earlier assignment (a segment smaller then, or retired since) or
    describe only some of a segment's customers (those who wrote a review or a search). When
    that hides one row only, the next smallest is hidden too, so that no hidden row is the
    table's total less the rows shown."""
    own = dict(table.select("segment_id", count).iter_rows())
    small = small_segments(sizes, min_group_size) | small_segments(own, min_group_size)
    return _complement(small, own)


def suppress(df: pl.DataFrame, small: set[int | None], columns: Iterable[str]) -> pl.DataFrame:
    """Null the ``columns`` of the rows of small segments (text columns say why; when none of
    them is text, a ``note`` column does); None in ``small``: the row of the customers in no
    segment too."""
    if not small:
        return df
    columns = list(columns)
    is_small = pl.col("segment_id").is_in(sorted(s for s in small if s is not None))
    if None in small:
        is_small = is_small | pl.col("segment_id").is_null()
    out = df.with_columns(
        pl.when(is_small)
        .then(pl.lit(SUPPRESSED) if df.schema[c] == pl.String else pl.lit(None))
        .otherwise(pl.col(c))
        .alias(c)
        for c in columns
    )
    if any(df.schema[c] == pl.String for c in columns):
        return out
    return out.with_columns(note=pl.when(is_small).then(pl.lit(SUPPRESSED)))


# -- erasure -----------------------------------------------------------------------------------


def forgotten_file(data_dir: Path) -> Path:
    return privacy_dir(data_dir) / "forgotten.txt"


def forgotten(data_dir: Path) -> frozenset[str]:
    """The pseudonyms of every customer erased so far."""
    path = forgotten_file(data_dir)
    if not path.exists():
        return frozenset()
    return frozenset(line.strip() for line in path.read_text().splitlines() if line.strip())


def forgotten_among(ids: list[str], data_dir: Path) -> list[str]:
    """Which of ``ids`` belong to forgotten customers (empty without any)."""
    gone = forgotten(data_dir)
    if not gone or not ids:
        return []
    return [i for i, p in zip(ids, pseudonyms(ids, key(data_dir)), strict=True) if p in gone]


@dataclass(frozen=True)
class Erasure:
    """What :func:`forget` removed: rows per warehouse table and per file."""

    rows: dict[str, int]
    files: dict[str, int]


def _record_forgotten(data_dir: Path, new: list[str]) -> None:
    path = forgotten_file(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    lines = sorted(forgotten(data_dir) | set(new))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)


def _rewrite_without(path: Path, column: str, values: list[str]) -> int:
    """Rewrite a Parquet/CSV file without the rows whose ``column`` is in ``values``."""
    is_csv = path.suffix == ".csv"
    df = pl.read_csv(path, infer_schema=False) if is_csv else pl.read_parquet(path)
    if column not in df.columns:
        return 0
    keep = df.filter(~pl.col(column).cast(pl.String).is_in(values))
    removed = df.height - keep.height
    if removed:
        tmp = path.with_name(f".{path.name}.tmp")
        keep.write_csv(tmp) if is_csv else keep.write_parquet(tmp)
        tmp.replace(path)
    return removed


def forget(
    con: duckdb.DuckDBPyConnection,
    data_dir: Path,
    file_dirs: Iterable[Path],
    customer_ids: list[str],
) -> Erasure:
    """Erase ``customer_ids`` from the warehouse (every table with a ``customer_id`` column
    and the quarantine's records, in one transaction), from the Parquet/CSV files under
    ``file_dirs`` (model snapshots, exports: by ``customer_id`` or ``customer_pseudonym``),
    and keep them erased on every later load. Idempotent."""
    ids, marks = _remember(data_dir, customer_ids)
    tables = con.execute(
        "select c.table_schema, c.table_name from information_schema.columns c "
        "join information_schema.tables t using (table_schema, table_name) "
        "where c.column_name = 'customer_id' and t.table_type = 'BASE TABLE' order by 1, 2"
    ).fetchall()
    rows: dict[str, int] = {}
    with transaction(con):
        for schema, table in tables:
            name = f"{quote_ident(schema)}.{quote_ident(table)}"
            n = con.execute(
                f"delete from {name} where cast(customer_id as varchar) in (select unnest(?))",
                [ids],
            ).fetchall()[0][0]
            rows[f"{schema}.{table}"] = int(n)
        quarantine = con.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = 'raw' and table_name = 'quarantine'"
        ).fetchall()[0][0]
        if quarantine:
            n = con.execute(
                "delete from raw.quarantine where (record ->> 'customer_id') in (select unnest(?))",
                [ids],
            ).fetchall()[0][0]
            rows["raw.quarantine"] = int(n)
    return Erasure(rows, _erase_files(file_dirs, ids, marks))


def _remember(data_dir: Path, customer_ids: list[str]) -> tuple[list[str], list[str]]:
    ids = sorted({str(i) for i in customer_ids})
    if not ids:
        raise PrivacyError("forget: no customer id given")
    marks = pseudonyms(ids, key(data_dir))
    _record_forgotten(data_dir, marks)  # first: a crash after it still keeps them out
    return ids, marks


def forget_files(data_dir: Path, file_dirs: Iterable[Path], customer_ids: list[str]) -> Erasure:
    """:func:`forget` where there is no warehouse yet: the files and later loads only."""
    ids, marks = _remember(data_dir, customer_ids)
    return Erasure({}, _erase_files(file_dirs, ids, marks))


#: what a killed write leaves behind in the model and exports folders (hidden, never valid
#: output, and holding customers' rows or what was fitted on them): the temp file of an
#: export, a registry snapshot or a kept model (``.<name>.tmp``, ``.<name>.<pid>.tmp``), or the
#: folder of Spark's part files (``.<name>.spark``)
_KILLED_WRITE = re.compile(r"\..+\.(tmp|spark)")


def remove_killed_writes(folder: Path) -> list[Path]:
    """Delete what killed writes left in ``folder`` (its own entries, no link followed);
    returns what was deleted."""
    gone = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if _KILLED_WRITE.fullmatch(path.name) and not path.is_symlink():
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            gone.append(path)
    return gone


def _erase_files(file_dirs: Iterable[Path], ids: list[str], marks: list[str]) -> dict[str, int]:
    files: dict[str, int] = {}
    for folder in file_dirs:
        if not folder.is_dir():
            continue
        for path in remove_killed_writes(folder):
            files[f"{path} (left by a killed export or save: deleted)"] = 1
        for path in sorted(folder.iterdir()):  # the folder's own files, no link followed
            if path.is_symlink() or not path.is_file() or path.name.startswith("."):
                continue
            if path.suffix not in (".parquet", ".csv"):
                continue
            n = _rewrite_without(path, "customer_id", ids) + _rewrite_without(
                path, PSEUDONYM, marks
            )
            if n:
                files[str(path)] = n
    return files
