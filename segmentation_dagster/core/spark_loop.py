"""The segmentation loop with Apache Spark as the engine that holds the customers.

One run: the raw tables are registered over their Parquet folders; dbt builds and tests the
feature models on the ``spark`` target; a fixed-size sample of ``customer_features`` (the
customers first by ``compiled.sample_order``, as on DuckDB) is the only customer data that
reaches Python: the Great Expectations suite of customer_features validates it, and the same
re-segmentation as on DuckDB (:func:`resegmentation.run`: fit a challenger, match it to the
champion, decide, record) runs on it. Then every customer is assigned inside Spark by the
champion compiled to SQL (:mod:`compiled`), with the same hysteresis as on DuckDB; the new
``customer_segments`` replaces the old one (written aside, then swapped) and is appended to
``customer_segment_history`` (partitioned by snapshot and model version, overwritten per
partition, so a re-run replaces its own rows). Segment sizes, profiles, each segment's
playbook (from its profile and its most purchased items, as on DuckDB), the migrations from
the assignment before (``segment_migrations``) and the behaviour drift of the sample against
the model's reference come back as aggregates or samples, never as every customer; Spark
itself writes the membership export (one Parquet and one CSV file, as on DuckDB, with each
customer's segment playbook).

The model registry, its files and the decisions stay in the control database (a DuckDB file
on ``con``), exactly as on the DuckDB engine: it holds one row per model, not per customer.

Nothing here imports dagster; the ``segmentation spark-run`` command calls :func:`run`.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import duckdb
import numpy as np
import polars as pl

from segmentation_dagster.core import (
    clustering,
    compiled,
    drift,
    lifecycle,
    playbooks,
    privacy,
    profiling,
    quality,
    registry,
    resegmentation,
    segments,
    settings,
)
from segmentation_dagster.core import spark as engine
from segmentation_dagster.core.settings import EXPECTATIONS_DIR

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: the tables the loop writes in the models' schema, besides dbt's
TABLES = ("customer_segments", "customer_segment_history", "segment_migrations")
#: the default size of the sample the fit, the quality suite and the drift monitor work on:
#: the fit sample DuckDB's re-segmentation reads, so both engines fit the same customers
SAMPLE_ROWS = clustering.SelectionConfig().fit_sample


def schema() -> str:
    """The models' schema on Spark (:func:`settings.spark_schema`, checked)."""
    return settings.spark_schema()


class QualityGateFailed(RuntimeError):
    """An error-severity expectation of the customer_features suite failed on the sample."""


@dataclass(frozen=True)
class LoopResult:
    """One run on Spark: the recorded re-segmentation, the champion that assigned everyone, the
    assignment's size per segment, the profiles, the quality outcomes and the drift."""

    outcome: resegmentation.Outcome
    champion_version: int
    customers: int
    sample_rows: int
    sizes: dict[int, int]
    profiles: pl.DataFrame
    quality: list[quality.Outcome]
    #: per segment: the playbook, its action, the evidence and the recommended items
    playbooks: pl.DataFrame
    drift: drift.BehaviourDrift
    migrations: Migrations | None = None
    export: Export | None = None
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Migrations:
    """Customers moving between segments from the assignment before this one in the history
    (``previous``: (snapshot date, model version), None for the first) to this one: the
    ``matrix`` of :func:`lifecycle.migration_matrix` and the share of customers in both whose
    segment stayed (None for the first)."""

    current: tuple[object, int]
    previous: tuple[object, int] | None
    matrix: pl.DataFrame
    unchanged_share: float | None


def table_exists(spark: SparkSession, table: str) -> bool:
    db, _, name = table.rpartition(".")
    return bool(spark.catalog.tableExists(name, db or None))


_STAGED = "__staged_"


def recover(spark: SparkSession, table: str) -> None:
    """After a replacement of ``table`` that was killed: a complete staged copy (Spark
    registers a table only once its data are written) becomes ``table`` when ``table`` is
    missing; every other staged copy is dropped, and a staged folder the catalog never
    registered is deleted (a local warehouse; elsewhere it only takes space)."""
    db, _, name = table.rpartition(".")
    staged = sorted(
        t.name
        for t in spark.catalog.listTables(db)
        if not t.isTemporary and t.name.startswith(name + _STAGED)
    )
    if staged and not table_exists(spark, table):
        spark.sql(f"alter table {compiled.name(f'{db}.{staged.pop()}')} rename to {table}")
    for other in staged:
        spark.sql(f"drop table if exists {compiled.name(f'{db}.{other}')}")
    location = urlparse(spark.catalog.getDatabase(db).locationUri)
    if location.scheme == "file":
        folder = Path(location.path)
        for orphan in folder.glob(f"{name}{_STAGED}*"):
            if orphan.is_dir() and not orphan.is_symlink():
                shutil.rmtree(orphan, ignore_errors=True)


def _replace(spark: SparkSession, table: str, write: Callable[[str], object]) -> None:
    """``write(staged)`` creates a new table under a fresh staged name; it then replaces
    ``table``. A kill at any point leaves ``table`` or a complete staged copy, which
    :func:`recover` (called first) turns back into ``table``."""
    recover(spark, table)
    staged = compiled.name(f"{table}{_STAGED}{time.time_ns():x}")
    write(staged)
    spark.sql(f"drop table if exists {table}")
    spark.sql(f"alter table {staged} rename to {table}")


def sample(spark: SparkSession, table: str, n: int, seed: int = 0) -> pl.DataFrame:
    """At most ``n`` rows of ``table``: the first by :func:`compiled.sample_order` (the same
    rows for the same seed, and the same customers DuckDB's :func:`segments.read_features`
    samples; one scan and a top-n in Spark), ordered by customer_id; ``attrs``-free Polars.
    All rows when the table has no more than ``n``."""
    table = compiled.name(table)
    rows = int(spark.sql(f"select count(*) from {table}").first()[0])
    return compiled.sample(
        lambda q: pl.from_arrow(spark.sql(q).toArrow()), table, n, seed, rows
    ).sort("customer_id")


def published_of(spark: SparkSession, table: str, customers: pl.Series) -> np.ndarray:
    """Each of ``customers``' segment id in ``table`` (-1 for none, or no table yet)."""
    if not table_exists(spark, table):
        return np.full(len(customers), -1)
    spark.createDataFrame(
        pl.DataFrame({"customer_id": customers}).to_pandas()
    ).createOrReplaceTempView("sample_ids")
    found = pl.from_arrow(
        spark.sql(
            f"select i.customer_id, s.segment_id from sample_ids i "
            f"left join {compiled.name(table)} s on s.customer_id = i.customer_id"
        ).toArrow()
    )
    return (
        pl.DataFrame({"customer_id": customers})
        .join(found, on="customer_id", how="left", maintain_order="left")["segment_id"]
        .fill_null(-1)
        .cast(pl.Int64)
        .to_numpy(writable=True)
    )


def assign(
    spark: SparkSession,
    db: str,
    model: clustering.FittedModel,
    version: int,
    names: dict[int, str],
    config: segments.AssignmentConfig | None = None,
) -> int:
    """Every customer of ``db.customer_features`` assigned by ``model`` inside Spark, as
    :func:`segments.assign` does on DuckDB; ``db.customer_segments`` replaced and the history
    appended. Returns the customers assigned."""
    config = config or segments.AssignmentConfig()
    features, current = f"{db}.customer_features", f"{db}.customer_segments"
    history = f"{db}.customer_segment_history"
    recover(spark, current)
    if table_exists(spark, current):
        previous = spark.sql(
            f"select s.customer_id, s.segment_id from {current} s join {features} f "
            "on f.customer_id = s.customer_id where not coalesce(f.last_regime_change > "
            f"date_sub(f.snapshot_date, {int(config.free_after_change_days)}), false)"
        )
    else:
        previous = spark.sql("select cast(null as string) as customer_id, "
                             "cast(null as int) as segment_id where false")  # fmt: skip
    previous.createOrReplaceTempView("previous_segment")
    labels = pl.DataFrame(
        {"segment_id": list(names), "segment_name": list(names.values())},
        schema={"segment_id": pl.Int32, "segment_name": pl.String},
    )
    spark.createDataFrame(
        labels.to_pandas(), "segment_id int, segment_name string"
    ).createOrReplaceTempView("segment_label")
    query = compiled.assignment_sql(
        model, features, previous="previous_segment", margin=config.hysteresis,
        carry=("snapshot_date",),
    )  # fmt: skip
    _replace(
        spark,
        current,
        lambda staged: spark.sql(
            f"create table {staged} using parquet as "
            "select a.customer_id, a.snapshot_date, cast(a.segment_id as int) as segment_id, "
            f"l.segment_name, {int(version)} as model_version, a.distance, a.confidence "
            f"from ({query}) a left join segment_label l on l.segment_id = a.segment_id"
        ),
    )
    spark.sql(
        f"create table if not exists {history} (customer_id string, segment_id int, "
        "snapshot_date date, model_version int) using parquet "
        "partitioned by (snapshot_date, model_version)"
    )
    mode = "spark.sql.sources.partitionOverwriteMode"
    before = spark.conf.get(mode)
    spark.conf.set(mode, "dynamic")  # only the partitions written are replaced
    try:
        spark.sql(
            f"insert overwrite table {history} partition (snapshot_date, model_version) "
            f"select customer_id, segment_id, snapshot_date, model_version from {current}"
        )
    finally:
        spark.conf.set(mode, before)
    return int(spark.sql(f"select count(*) from {current}").first()[0])


def migrations(spark: SparkSession, db: str) -> Migrations:
    """:func:`lifecycle.migration_matrix` and :func:`lifecycle.unchanged_share` of
    ``db.customer_segments`` against the assignment before it in the history, computed in
    Spark (one row per pair of segments comes back) and written to ``db.segment_migrations``
    with the snapshots and versions it compares."""
    current, history = f"{db}.customer_segments", f"{db}.customer_segment_history"
    cur = spark.sql(f"select max(snapshot_date), max(model_version) from {current}").first()
    prev = spark.sql(
        f"select snapshot_date, model_version from {history} "
        "where not (snapshot_date = ? and model_version = ?) "
        "order by snapshot_date desc, model_version desc limit 1",
        args=[cur[0], cur[1]],
    ).first()
    before = (
        spark.sql(
            f"select customer_id, segment_id from {history} "
            "where snapshot_date = ? and model_version = ?",
            args=[prev[0], prev[1]],
        )
        if prev
        else spark.sql(
            "select cast(null as string) customer_id, cast(null as int) segment_id where false"
        )  # fmt: skip
    )
    before.createOrReplaceTempView("migration_before")
    joined = (
        "migration_before b full outer join "
        f"(select customer_id, segment_id from {current}) a on a.customer_id = b.customer_id"
    )
    matrix = pl.from_arrow(
        spark.sql(
            "select b.segment_id as from_segment, a.segment_id as to_segment, "
            f"count(*) as customers from {joined} group by all"
        ).toArrow()
    )
    matrix = matrix.with_columns(
        pl.col("from_segment", "to_segment").cast(pl.Int32), pl.col("customers").cast(pl.UInt32)
    ).sort("from_segment", "to_segment", nulls_last=True)
    same, both = spark.sql(
        "select count_if(a.segment_id = b.segment_id), count(*) from migration_before b "
        f"join {current} a on a.customer_id = b.customer_id"
    ).first()
    spark.createDataFrame(
        matrix.with_columns(
            from_snapshot=pl.lit(prev[0] if prev else None, dtype=pl.Date),
            from_model_version=pl.lit(prev[1] if prev else None, dtype=pl.Int32),
            to_snapshot=pl.lit(cur[0], dtype=pl.Date),
            to_model_version=pl.lit(cur[1], dtype=pl.Int32),
        ).rows(),
        "from_segment int, to_segment int, customers bigint, from_snapshot date, "
        "from_model_version int, to_snapshot date, to_model_version int",
    ).createOrReplaceTempView("migration_matrix")
    table = f"{db}.segment_migrations"
    recover(spark, table)
    _replace(
        spark,
        table,
        lambda staged: spark.sql(
            f"create table {staged} using parquet as select * from migration_matrix"
        ),  # fmt: skip
    )
    return Migrations(
        current=(_day(cur[0]), int(cur[1])),
        previous=(_day(prev[0]), int(prev[1])) if prev else None,
        matrix=matrix,
        unchanged_share=same / both if prev and both else None,
    )


def _day(value: object) -> object:
    """A snapshot as a date (dbt-spark's snapshot_date may come back as a timestamp)."""
    return value.date() if isinstance(value, dt.datetime) else value


@dataclass(frozen=True)
class Export:
    """One export: the full list and the changes since the previous export (joined / left)."""

    full: Path
    changes: Path
    customers: int
    joined: int
    left: int


def export(
    spark: SparkSession,
    con: duckdb.DuckDBPyConnection,
    db: str,
    folder: Path,
    secret: bytes | None,
    plays: dict[int, str] | None = None,
) -> Export:
    """``db.customer_segments`` as the DuckDB engine's ``segment_export`` writes it, written
    by Spark: ``segments_<snapshot>_v<version>.parquet`` and ``.csv`` in ``folder`` (one file
    each, the same columns: the playbook of each segment from ``plays``; churn risk and
    expected spend are DuckDB-only steps and stay empty) and ``..._changes`` against the
    previous export the registry on ``con``
    records. Customers are keyed pseudonyms (:func:`privacy.pseudonyms`, in a vectorised UDF:
    the key never enters the SQL text) unless ``secret`` is None (raw ids). The export is
    recorded on ``con``; :func:`privacy.forget` erases its files like DuckDB's."""
    from pyspark.sql import functions as F  # noqa: N812

    ident = "customer_id" if secret is None else privacy.PSEUDONYM
    folder = Path(engine.export_folder(folder))
    rows = spark.table(f"{db}.customer_segments")
    who = F.col("customer_id") if secret is None else _pseudonym_udf(secret)("customer_id")
    current = rows.select(
        who.alias(ident),
        "segment_id",
        "segment_name",
        _playbook_of(plays or {}).alias("playbook"),
        F.lit(None).cast("double").alias("churn_risk"),
        F.lit(None).cast("double").alias("expected_spend"),
        F.lit(None).cast("double").alias("expected_spend_bgnbd"),
        "model_version",
        F.col("snapshot_date").cast("date").alias("snapshot_date"),
    ).cache()
    try:
        snapshot, version = current.agg(F.max("snapshot_date"), F.max("model_version")).first()
        stem = f"segments_{snapshot}_v{int(version):04d}"
        # a re-run of the same snapshot and model: its changes are since the export before
        last = segments.last_export(con, other_than=folder / f"{stem}.parquet")
        previous = _previous_export(spark, last, ident, secret)
        old = previous.select(F.col(ident), F.col("segment_id").alias("was"))
        both = old.join(current.select(ident, "segment_id"), ident, "full_outer")
        moved = both.where(~F.col("was").eqNullSafe(F.col("segment_id")))
        changes = (
            moved.where(F.col("was").isNotNull())
            .select(ident, F.col("was").alias("segment_id"), F.lit("left").alias("change"))
            .unionByName(
                moved.where(F.col("segment_id").isNotNull()).select(
                    ident, "segment_id", F.lit("joined").alias("change")
                )
            )
            .cache()  # counted, then written: the join with the previous export runs once
        )
        n = current.count()
        full = _write_one_file(current.orderBy(ident), folder, stem, n)
        counts = dict(changes.groupBy("change").count().collect())
        joined, left = int(counts.get("joined", 0)), int(counts.get("left", 0))
        delta = _write_one_file(
            changes.orderBy(ident, "change"), folder, stem + "_changes", joined + left
        )
        changes.unpersist()
    finally:
        current.unpersist()
    segments.record_export(con, snapshot, int(version), full, delta, n, joined, left)
    return Export(full, delta, n, joined, left)


def _playbook_of(plays: dict[int, str]):  # noqa: ANN202
    """A Spark column: the playbook of the row's segment (literals, never SQL text)."""
    from pyspark.sql import functions as F  # noqa: N812

    if not plays:
        return F.lit(None).cast("string")
    pairs = [F.lit(v) for segment, name in sorted(plays.items()) for v in (int(segment), name)]
    return F.create_map(*pairs)[F.col("segment_id").cast("int")]


def _pseudonym_udf(secret: bytes):  # noqa: ANN202
    """:func:`privacy.pseudonyms` as a Spark pandas UDF over a string column. The function
    is written out here with the standard library only (the test checks it gives the same
    pseudonyms): Spark ships it to the executors by value, and they need not have this
    package installed."""
    import pandas as pd
    from pyspark.sql.functions import pandas_udf

    def pseudonym(ids: pd.Series) -> pd.Series:
        import hashlib
        import hmac

        base = hmac.new(secret, digestmod=hashlib.sha256)

        def one(i: object) -> str:
            h = base.copy()
            h.update(str(i).encode())
            return h.hexdigest()[:32]

        return ids.map(one)

    # Spark reads the type hints to choose the UDF's kind; this module's annotations are
    # strings (from __future__ import annotations), so the types are given here
    pseudonym.__annotations__ = {"ids": pd.Series, "return": pd.Series}
    return pandas_udf(pseudonym, "string")


def _previous_export(spark: SparkSession, path: Path | None, ident: str, secret: bytes | None):  # noqa: ANN202
    """(ident, segment_id) of the previous export (either engine's file); one written with raw
    ids is pseudonymised to compare, as on DuckDB; none: an empty frame (everyone joins)."""
    empty = spark.createDataFrame([], f"{ident} string, segment_id int")
    if path is None or not path.is_file():
        return empty
    old = spark.read.parquet(path.resolve().as_uri())
    if ident in old.columns:
        return old.select(ident, old["segment_id"].cast("int"))
    if "customer_id" in old.columns and secret is not None:
        return old.select(
            _pseudonym_udf(secret)("customer_id").alias(ident), old["segment_id"].cast("int")
        )
    return empty


#: Spark's CSV writer trims spaces and escapes quotes with a backslash by default; the
#: export's CSV keeps every value as it is and doubles quotes (RFC 4180), as polars does
_CSV = {"header": True, "ignoreLeadingWhiteSpace": False, "ignoreTrailingWhiteSpace": False,
        "escape": '"', "quote": '"'}  # fmt: skip


def _write_one_file(df: object, folder: Path, stem: str, rows: int) -> Path:
    """``df`` (``rows`` rows) as ``folder/<stem>.parquet`` and ``.csv``, one file each. Spark
    writes a folder of parts: one part is written under a hidden temporary folder, checked
    (the job's _SUCCESS marker, one part, and a part only when there are rows: parts the
    driver cannot see mean the folder is not shared with the executors) and renamed into
    place. A killed write's hidden folders are removed here and by ``forget``."""
    folder.mkdir(parents=True, exist_ok=True)
    privacy.remove_killed_writes(folder)  # a killed write's parts: customers in them
    for ext in ("parquet", "csv"):
        tmp = folder / f".{stem}.{ext}.spark"
        shutil.rmtree(tmp, ignore_errors=True)
        writer = df.coalesce(1).write.mode("overwrite").option("maxRecordsPerFile", 0)  # type: ignore[attr-defined]
        if ext == "csv":
            writer.options(**_CSV).csv(tmp.resolve().as_uri())
        else:
            writer.parquet(tmp.resolve().as_uri())
        parts = sorted(tmp.glob(f"part-*.{ext}"))
        if not (tmp / "_SUCCESS").exists() or len(parts) > 1 or (rows and not parts):
            raise RuntimeError(
                f"Spark's export to {tmp} left {len(parts)} part file(s) for {rows} rows: the "
                "exports folder must be one file system the driver and the executors share"
            )
        if parts:
            parts[0].replace(folder / f"{stem}.{ext}")
        else:  # no rows and no part file: the columns alone, as the DuckDB engine writes them
            empty = pl.from_arrow(df.limit(0).toArrow())  # type: ignore[attr-defined]
            out = folder / f".{stem}.{ext}.tmp"
            if ext == "csv":
                empty.write_csv(out)
            else:
                empty.write_parquet(out)
            out.replace(folder / f"{stem}.{ext}")
        shutil.rmtree(tmp, ignore_errors=True)
    return folder / f"{stem}.parquet"


def profiles(
    spark: SparkSession, db: str, columns: list[str] | tuple[str, ...]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """:func:`profiling.profile_segments` of ``db.customer_segments`` and the segments'
    :func:`profiling.feature_lift`, aggregated in Spark."""
    cols = [compiled.name(c) for c in columns]
    joined = (f"{db}.customer_segments s join {db}.customer_features f "
              "on f.customer_id = s.customer_id")  # fmt: skip
    means = ", ".join(f"avg(cast(f.{c} as double)) as {c}" for c in cols)
    prof = pl.from_arrow(
        spark.sql(
            f"select s.segment_id, count(*) as size, {means} from {joined} "
            "group by s.segment_id order by s.segment_id"
        ).toArrow()
    )
    pop = spark.sql(
        "select "
        + ", ".join(
            f"avg(cast(f.{c} as double)), stddev_samp(cast(f.{c} as double))" for c in cols
        )  # fmt: skip
        + f" from {joined}"
    ).first()
    pop_mean = {c: pop[2 * i] for i, c in enumerate(cols)}
    pop_std = {c: pop[2 * i + 1] for i, c in enumerate(cols)}
    prof = prof.with_columns(
        pl.col("size").cast(pl.Int64), share=pl.col("size") / pl.col("size").sum()
    )
    described = profiling.describe(prof, pop_mean, pop_std, cols)
    return described, profiling.lift(described, pop_mean, pop_std, cols)


def playbooks_of(
    spark: SparkSession, db: str, lift: pl.DataFrame, rules: playbooks.Playbooks
) -> pl.DataFrame:
    """Each segment's playbook (:func:`playbooks.choose`) from its lift and its most purchased
    items, aggregated in Spark by the same SQL as on DuckDB."""
    top = spark.sql(
        profiling.top_items_sql(f"{db}.customer_segments", f"{db}.customer_recent_purchases")
    )
    return playbooks.choose(lift, pl.from_arrow(top.toArrow()), rules)


def forget(spark: SparkSession, customer_ids: list[str]) -> dict[str, int]:
    """Erase ``customer_ids`` from every table of the models' schema with a ``customer_id``
    column (dbt's models and state, the segments and their history): each table that holds
    one is rewritten without them (written aside with the same partitioning, then swapped).
    The raw Parquet is rewritten from the erased warehouse by :func:`spark.export_raw`.
    Returns the rows removed per table."""
    db = schema()
    if not spark.catalog.databaseExists(db):  # no run on this engine yet
        return {}
    ids = spark.createDataFrame(
        [(str(i),) for i in sorted(set(customer_ids))], "customer_id string"
    )
    names = [t.name for t in spark.catalog.listTables(db) if not t.isTemporary]
    for target in {n.split(_STAGED)[0] for n in names if _STAGED in n}:
        recover(spark, f"{db}.{target}")  # a killed run's staged copy is a table again
    removed: dict[str, int] = {}
    for t in spark.catalog.listTables(db):
        if t.isTemporary or t.tableType == "VIEW":
            continue
        table = compiled.name(f"{db}.{t.name.lower()}")
        columns = spark.catalog.listColumns(t.name, db)
        if "customer_id" not in {c.name for c in columns}:
            continue
        rows = spark.table(table)
        removed[table] = rows.join(ids, "customer_id", "left_semi").count()
        if not removed[table]:
            continue
        kept = rows.join(ids, "customer_id", "left_anti").select(*rows.columns)
        parts = [c.name for c in columns if c.isPartition]
        _replace(
            spark,
            table,
            lambda staged, kept=kept, parts=parts: (
                kept.write.format("parquet").partitionBy(*parts).saveAsTable(staged)
            ),
        )
    return removed


def _gate(features: pl.DataFrame, rows: int) -> list[quality.Outcome]:
    suite = quality.load_suite(EXPECTATIONS_DIR / "customer_features.json")
    df = features.to_pandas()
    df.attrs["table_rows"] = rows  # the row-count expectation is judged on the table
    outcomes = quality.validate(df, suite)
    failed = [o for o in outcomes if not o.success and o.expectation.severity == "error"]
    if failed:
        raise QualityGateFailed(
            "customer_features on Spark failed: "
            + "; ".join(
                f"{o.expectation.type} {o.expectation.kwargs} (observed {o.observed})"
                for o in failed
            )  # fmt: skip
        )
    return outcomes


def run(
    spark: SparkSession,
    con: duckdb.DuckDBPyConnection,
    raw_folder: Path,
    model_dir: Path,
    work_dir: Path,
    *,
    selection: clustering.SelectionConfig | None = None,
    life: lifecycle.LifecycleConfig | None = None,
    assignment: segments.AssignmentConfig | None = None,
    sample_rows: int = SAMPLE_ROWS,
    seed: int = 0,
    drift_config: drift.DriftConfig | None = None,
    report_dir: Path | None = None,
    export_dir: Path | None = None,
    export_secret: bytes | None = None,
    playbook_rules: playbooks.Playbooks | None = None,
) -> LoopResult:
    """The whole loop on ``spark`` (see the module docstring); the registry on ``con``. With
    ``export_dir``, the segment membership is exported there (:func:`export`; pseudonyms keyed
    by ``export_secret``, raw ids when it is None). Playbooks come from ``playbook_rules``
    (default: :func:`playbooks.load`)."""
    if sample_rows < 1:
        raise ValueError(f"sample_rows must be a whole number >= 1, got {sample_rows!r}")
    timings: dict[str, float] = {}
    t = time.perf_counter()
    db = schema()
    engine.register_raw(spark, raw_folder)
    # models and their data tests; dbt's unit tests pin the SQL, which the DuckDB target runs
    engine.dbt(["build", "--exclude", "test_type:unit"], work_dir / "dbt_target")
    timings["dbt_build_s"] = time.perf_counter() - t

    t = time.perf_counter()
    features = sample(spark, f"{db}.customer_features", sample_rows, seed)
    rows = int(spark.sql(f"select count(*) from {db}.customer_features").first()[0])
    checked = _gate(features, rows)
    published = published_of(spark, f"{db}.customer_segments", features["customer_id"])
    outcome = resegmentation.run(
        con, model_dir, selection, life, features=features, published=published
    )
    timings["sample_gate_fit_s"] = time.perf_counter() - t

    t = time.perf_counter()
    version, model = registry.require_champion(con)
    n = assign(spark, db, model, version, registry.active_names(con), assignment)
    sizes = dict(
        spark.sql(f"select segment_id, count(*) from {db}.customer_segments group by segment_id")
        .toPandas()
        .itertuples(index=False, name=None)
    )
    prof, lift = profiles(spark, db, clustering.candidate_columns(features))
    plays = playbooks_of(spark, db, lift, playbook_rules or playbooks.load())
    moved = migrations(spark, db)
    timings["assign_profile_s"] = time.perf_counter() - t

    t = time.perf_counter()
    config = drift_config or drift.DriftConfig()
    reference = pl.read_parquet(registry.reference_path(con, version))
    current = sample(spark, f"{db}.customer_features", config.sample_size, seed + 1)
    columns = drift.comparable_columns(reference, drift.monitored_columns(model.plan.used))
    snapshot = features["snapshot_date"].max()
    name = f"behaviour_drift_{snapshot}_ref{version:04d}.html"
    report = (report_dir or work_dir / "reports") / name
    shift = drift.behaviour_drift(reference, current, columns, config, report)
    timings["drift_s"] = time.perf_counter() - t

    exported = None
    if export_dir is not None:
        t = time.perf_counter()
        chosen = dict(zip(plays["segment_id"], plays["playbook"], strict=True))
        exported = export(spark, con, db, export_dir, export_secret, chosen)
        timings["export_s"] = time.perf_counter() - t
    return LoopResult(
        outcome=outcome,
        champion_version=version,
        customers=n,
        sample_rows=features.height,
        sizes={int(k): int(v) for k, v in sizes.items()},
        profiles=prof,
        quality=checked,
        playbooks=plays,
        drift=shift,
        migrations=moved,
        export=exported,
        timings={k: round(v, 2) for k, v in timings.items()},
    )
