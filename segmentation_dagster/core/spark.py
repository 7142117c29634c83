"""The dbt project on Apache Spark: a local Spark session in this process, the raw tables as
Parquet files both engines read, and dbt run against the ``spark`` target of profiles.yml.

Parquet is the exchange format here because both engines read and write it natively (DuckDB's
``COPY ... (FORMAT parquet)``, Spark's ``using parquet``) and it needs nothing on Spark's
classpath; Delta or Iceberg would add ``merge`` (and so delete+insert by customer) but need
their jars. Needs the ``spark`` extra (``make install-spark``) and a Java runtime.

dbt-spark's ``method: session`` runs every statement on ``SparkSession.builder.getOrCreate()``,
so :func:`session` creates (and configures) the session first and dbt uses that one.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from segmentation_dagster.core.settings import DBT_PROJECT_DIR

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: The raw tables dbt reads (sources `shop`, schema raw).
RAW_TABLES = ("events", "customers", "products")

#: Spark settings the models rely on (profiles.yml repeats them for a session dbt creates).
SESSION_CONF = {
    # DuckDB's timestamp has no time zone: Spark's `timestamp` must mean the same
    "spark.sql.timestampType": "TIMESTAMP_NTZ",
    # the tables live only as long as the session: no Hive metastore (Derby files) in the
    # working folder
    "spark.sql.catalogImplementation": "in-memory",
    # a demo's data is small: a few shuffle partitions, no UI
    "spark.sql.shuffle.partitions": "4",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
}


def available() -> str | None:
    """None when local Spark can run here, else why not (no pyspark, or no java)."""
    for module in ("pyspark", "dbt.adapters.spark"):
        if importlib.util.find_spec(module) is None:
            return f"the spark extra is not installed (no {module}): make install-spark"
    if shutil.which("java") is None:
        return "no java on PATH: make install-spark installs Debian's OpenJDK"
    return None


def session(warehouse_dir: Path, master: str = "local[2]", **conf: str) -> SparkSession:
    """The process's Spark session (created on first call): local, in-memory catalog, managed
    tables written under ``warehouse_dir``."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(master).appName("segmentation_dagster")
    builder = builder.config("spark.sql.warehouse.dir", str(warehouse_dir))
    for key, value in {**SESSION_CONF, **conf}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _raw(table: str) -> str:
    if table not in RAW_TABLES:
        raise ValueError(f"not a raw table: {table!r} (one of {RAW_TABLES})")
    return table


def export_raw(duckdb_path: Path, folder: Path, tables: Iterable[str] = RAW_TABLES) -> None:
    """The warehouse's raw tables as Parquet files, one folder per table (``folder/<table>``)."""
    con = duckdb.connect(str(duckdb_path), read_only=True)
    try:
        for table in tables:
            target = folder / _raw(table)
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            con.table(f"raw.{table}").write_parquet(str(target / "part-0.parquet"))
    finally:
        con.close()


def register_raw(spark: SparkSession, folder: Path, tables: Iterable[str] = RAW_TABLES) -> None:
    """Spark tables ``raw.<table>`` over the Parquet folders of :func:`export_raw` (the
    location is passed to the catalog, never pasted into SQL)."""
    spark.sql("create database if not exists raw")
    for table in tables:
        spark.sql(f"drop table if exists raw.{_raw(table)}")
        spark.catalog.createTable(
            f"raw.{table}", path=str((folder / table).resolve()), source="parquet"
        )


def dbt(args: list[str], target_dir: Path, target: str = "spark") -> Any:
    """``dbt <args>`` on ``target`` in this process (on the session :func:`session` made);
    raises when dbt fails."""
    from dbt.cli.main import dbtRunner

    result = dbtRunner().invoke(
        [
            *args,
            "--target",
            target,
            "--project-dir",
            str(DBT_PROJECT_DIR),
            "--profiles-dir",
            str(DBT_PROJECT_DIR),
            "--target-path",
            str(target_dir),
            "--log-path",
            str(target_dir),
            "--quiet",
        ]  # fmt: skip
    )
    if not result.success:
        failures = [
            f"{r.node.name}: {r.message}"
            for r in getattr(result.result, "results", None) or []
            if r.status not in ("success", "pass")
        ]
        raise RuntimeError(f"dbt {' '.join(args)} failed: {result.exception or failures}")
    return result
