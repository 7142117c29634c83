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
import json
import os
import re
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from segmentation_dagster.core.settings import DBT_PROJECT_DIR, spark_dir

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: The raw tables dbt reads (sources `shop`, schema raw).
RAW_TABLES = ("events", "customers", "products")

_PLAIN_PATH = re.compile(r"[A-Za-z0-9/._-]+")

#: the file in each exported table's folder that says which rows it holds
FINGERPRINT = "_exported_from.json"

#: Spark settings the models rely on (profiles.yml repeats them for a session dbt creates).
SESSION_CONF = {
    # DuckDB's timestamp has no time zone: Spark's `timestamp` must mean the same
    "spark.sql.timestampType": "TIMESTAMP_NTZ",
    # the tables live only as long as the session: no Hive metastore (Derby files) in the
    # working folder (a session with a metastore folder overrides it)
    "spark.sql.catalogImplementation": "in-memory",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
}

#: on a local master only: a few shuffle partitions for 2 cores, no UI (a cluster keeps its
#: own settings)
LOCAL_CONF = {"spark.sql.shuffle.partitions": "4", "spark.ui.enabled": "false"}


def available() -> str | None:
    """None when local Spark can run here, else why not (no pyspark, or no java)."""
    for module in ("pyspark", "dbt.adapters.spark"):
        if importlib.util.find_spec(module) is None:
            return f"the spark extra is not installed (no {module}): make install-spark"
    if shutil.which("java") is None:
        return "no java on PATH: make install-spark installs Debian's OpenJDK"
    return None


def session(
    warehouse_dir: Path,
    master: str = "local[2]",
    metastore: Path | None = None,
    **conf: str,
) -> SparkSession:
    """The process's Spark session (created on first call): managed tables written under
    ``warehouse_dir``; the catalog in memory, or, with ``metastore``, a local Hive metastore
    (Derby) in that folder, so tables outlive the process (the Spark engine's runs each
    start a new one). With ``SPARK_REMOTE`` set it is a Spark Connect session to that server
    instead, which decides master, warehouse and catalog (untested here: no server)."""
    from pyspark.sql import SparkSession

    if os.environ.get("SPARK_REMOTE"):  # Spark Connect: the server owns master and catalog
        spark = SparkSession.builder.appName("segmentation_dagster").getOrCreate()
        for key, value in conf.items():
            spark.conf.set(key, value)
        return spark
    if master.startswith("local"):
        # Python workers (the export's pseudonym UDF) run this interpreter, which has pandas
        # and pyarrow, not whichever python3 is first on PATH (pyspark reads only the
        # environment variable, when the session's context starts)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.master(master).appName("segmentation_dagster")
    builder = builder.config("spark.sql.warehouse.dir", str(warehouse_dir))
    settings = dict(SESSION_CONF) | (LOCAL_CONF if master.startswith("local") else {})
    if metastore is not None:
        folder = metastore_folder(metastore)
        metastore.mkdir(parents=True, exist_ok=True)
        settings |= {
            "spark.sql.catalogImplementation": "hive",
            "spark.hadoop.javax.jdo.option.ConnectionURL":
                f"jdbc:derby:;databaseName={folder}/metastore_db;create=true",
            "spark.driver.extraJavaOptions": f"-Dderby.system.home={folder}",
        }  # fmt: skip
    for key, value in {**settings, **conf}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    _quiet_codegen_fallback(spark)
    return spark


def metastore_folder(metastore: Path) -> str:
    """``metastore`` as an absolute path, if it holds only letters, digits and / . _ -: it
    goes into a JDBC URL and a JVM flag."""
    return plain_folder(metastore, "the Spark metastore folder (SEGMENTATION_SPARK_DIR)")


def export_folder(path: Path) -> str:
    """The exports folder Spark writes to, checked as :func:`plain_folder`."""
    return plain_folder(path, "the exports folder (SEGMENTATION_EXPORT_DIR)")


def plain_folder(path: Path, what: str) -> str:
    """``path`` as an absolute path, if it holds only letters, digits and / . _ -: Spark and
    Hadoop read glob characters, ':' and spaces in a path as more than a name."""
    folder = str(path.resolve())
    if not _PLAIN_PATH.fullmatch(folder):
        raise ValueError(
            f"{what}: {folder!r} may hold only letters, digits and / . _ - "
            "(set it to such a folder)"
        )
    return folder


def configured_session() -> SparkSession:
    """The Spark engine's session as configured (core.settings): ``SEGMENTATION_SPARK_MASTER``
    (default local[2]), tables and the local metastore under ``SEGMENTATION_SPARK_DIR``."""
    folder = spark_dir()
    return session(
        folder / "warehouse",
        master=os.environ.get("SEGMENTATION_SPARK_MASTER", "local[2]"),
        metastore=folder / "metastore",
        **driver_memory(),
    )


def driver_memory() -> dict[str, str]:
    """``spark.driver.memory`` from ``SEGMENTATION_SPARK_DRIVER_MEMORY`` (e.g. 4g), when set:
    the sample the fit works on is collected into the driver, so its heap (Spark's default
    1g holds the default 200,000 customers) grows with ``sample_rows``."""
    value = os.environ.get("SEGMENTATION_SPARK_DRIVER_MEMORY", "").strip()
    if not value:
        return {}
    if not re.fullmatch(r"[1-9][0-9]*[mMgG]", value):
        raise ValueError(
            f"SEGMENTATION_SPARK_DRIVER_MEMORY={value!r}: expected a size such as 4g or 3072m"
        )
    return {"spark.driver.memory": value}


def _quiet_codegen_fallback(spark: SparkSession) -> None:
    """Spark compiles a wide expression (the behaviour fold, a compiled model) to Java; past
    the JVM's 64 KB method limit it logs the whole generated class as an ERROR and then runs
    the expression interpreted, with the same result. Only that logger is silenced."""
    jvm = getattr(spark, "_jvm", None)  # a Spark Connect session has no JVM in this process
    if jvm is None:
        return
    log4j = jvm.org.apache.logging.log4j
    log4j.core.config.Configurator.setLevel(
        "org.apache.spark.sql.catalyst.expressions.codegen.CodeGenerator", log4j.Level.OFF
    )


def _raw(table: str) -> str:
    if table not in RAW_TABLES:
        raise ValueError(f"not a raw table: {table!r} (one of {RAW_TABLES})")
    return table


def export_raw(
    con: duckdb.DuckDBPyConnection, folder: Path, tables: Iterable[str] = RAW_TABLES
) -> dict[str, bool]:
    """The warehouse's raw tables as Parquet files, one folder per table (``folder/<table>``),
    each written aside and swapped in, so a killed export leaves the previous one whole. A
    table whose rows are unchanged since its last export (same count and latest load time:
    loading, replacing and erasing all change one of them) is not written again. Returns,
    per table, whether it was written."""
    written = {}
    for table in tables:
        target = folder / _raw(table)
        count, loaded = con.execute(
            f"select count(*), max(_loaded_at)::varchar from raw.{table}"
        ).fetchall()[0]
        stamp = json.dumps({"rows": count, "last_loaded_at": loaded})
        marker = target / FINGERPRINT  # Spark skips files whose names start with _
        if marker.is_file() and marker.read_text() == stamp:
            written[table] = False
            continue
        staged = folder / f".{table}.next"
        shutil.rmtree(staged, ignore_errors=True)
        staged.mkdir(parents=True)
        con.table(f"raw.{table}").write_parquet(str(staged / "part-0.parquet"))
        (staged / FINGERPRINT).write_text(stamp)
        old = folder / f".{table}.old"
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)
        staged.rename(target)
        shutil.rmtree(old, ignore_errors=True)
        written[table] = True
    return written


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

    from segmentation_dagster.core.warehouse import close_dbt_duckdb

    target_dir_s = str(target_dir)
    try:
        result = dbtRunner().invoke(
            [*args, "--target", target, "--project-dir", str(DBT_PROJECT_DIR),
             "--profiles-dir", str(DBT_PROJECT_DIR), "--target-path", target_dir_s,
             "--log-path", target_dir_s, "--quiet"]
        )  # fmt: skip
    finally:
        close_dbt_duckdb()  # the DuckDB target ("dev") keeps the file open until closed
    if not result.success:
        failures = [
            f"{r.node.name}: {r.message}"
            for r in getattr(result.result, "results", None) or []
            if r.status not in ("success", "pass")
        ]
        raise RuntimeError(f"dbt {' '.join(args)} failed: {result.exception or failures}")
    return result
