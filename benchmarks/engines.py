"""The dbt project on DuckDB and on local Spark, from the same raw data: same customer_features?

A small demo shop is generated and loaded into a DuckDB warehouse by the project's own
ingestion; its raw tables are exported to Parquet; dbt builds the models on DuckDB (the default
target) and on Spark (target ``spark``: dbt-spark's session method, a local Spark in this
process, the raw tables registered over the Parquet files). Then customer_features is compared
row for row by customer_id: integers, strings and dates exactly, floats within 1e-9 relative.

Needs the Spark extra and Java (``make install-spark``). Work files go to ``--work``
(default ``benchmarks/.work/engines``); the timings and differences are printed and written
to ``<work>/engines.json``.

    .venv/bin/python -m benchmarks.engines                    # 300 customers, 30 days
    .venv/bin/python -m benchmarks.engines --customers 2000 --days 60
    # the whole loop (dbt, fit, assignment...) on both engines, from a landing folder:
    .venv/bin/python -m benchmarks.engines --loop benchmarks/.work/1000000_100000/landing
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb
import polars as pl

from segmentation_dagster.core import ingest
from segmentation_dagster.core.clustering import SelectionConfig
from segmentation_dagster.demo import simulate

MART = "customer_features"
#: the customers each engine fits on (the jobs' default)
SAMPLE_ROWS = SelectionConfig().fit_sample
REL_TOL = 1e-9


@dataclass
class Comparison:
    """customer_features of both engines, compared column by column."""

    rows: tuple[int, int]
    columns: tuple[int, int]
    missing_columns: list[str] = field(default_factory=list)
    unmatched_customers: int = 0
    #: per column: max abs difference (floats), or the number of differing rows
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    differing_rows: dict[str, int] = field(default_factory=dict)

    @property
    def equal(self) -> bool:
        return (
            self.rows[0] == self.rows[1]
            and not self.missing_columns
            and not self.unmatched_customers
            and not any(self.differing_rows.values())
        )


def compare(duck: pl.DataFrame, spark: pl.DataFrame, rel_tol: float = REL_TOL) -> Comparison:
    """Row for row by customer_id: floats within ``rel_tol`` (relative; absolute below 1),
    everything else exactly; nulls must be null on both sides."""
    out = Comparison(rows=(duck.height, spark.height), columns=(duck.width, spark.width))
    out.missing_columns = sorted(set(duck.columns) ^ set(spark.columns))
    joined = duck.join(spark, on="customer_id", how="full", suffix="__spark", coalesce=True)
    out.unmatched_customers = joined.filter(
        pl.any_horizontal(pl.col(c).is_null() for c in ("snapshot_date", "snapshot_date__spark"))
    ).height
    for col in duck.columns:
        if col == "customer_id" or col in out.missing_columns:
            continue
        a, b = joined[col], joined[f"{col}__spark"]
        null_mismatch = a.is_null() != b.is_null()
        if a.dtype.is_float() or b.dtype.is_float():
            a, b = a.cast(pl.Float64), b.cast(pl.Float64)
            diff = (a - b).abs()
            scale = pl.max_horizontal(a.abs(), b.abs(), pl.lit(1.0, pl.Float64))
            bad = (
                pl.select((diff / scale).alias("r")).to_series().fill_null(0.0) > rel_tol
            ) | null_mismatch
            out.max_abs_diff[col] = float(diff.max() or 0.0)
        else:
            bad = (a.cast(pl.String) != b.cast(pl.String)).fill_null(False) | null_mismatch
        out.differing_rows[col] = int(bad.sum())
    return out


def build_demo(root: Path, customers: int, days: int, seed: int) -> Path:
    """A demo shop loaded into ``root/warehouse.duckdb`` by the project's ingestion."""
    cfg = simulate.DemoConfig(n_customers=customers, days=days, seed=seed)
    simulate.generate(cfg, root / "landing", root / "truth")
    return load(root / "landing", root)


def load(landing: Path, root: Path) -> Path:
    """``landing``'s files loaded into a new ``root/warehouse.duckdb`` by the ingestion."""
    root.mkdir(parents=True, exist_ok=True)
    db = root / "warehouse.duckdb"
    con = duckdb.connect(str(db))
    try:
        ingest.ensure_schema(con)
        for kind in ("events", "customers", "products"):
            ingest.load_kind(con, landing, kind)
    finally:
        con.close()
    return db


def descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (Linux /proc)."""
    parent: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        found += kids
        frontier += kids
    return found


def peak_rss_mib() -> dict[str, int]:
    """Peak resident memory so far (MiB) of this process and of its largest child process (the
    local Spark JVM), from the kernel's high-water marks (Linux)."""

    def hwm(pid: int) -> int:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) // 1024
        except OSError:
            pass
        return 0

    children = [hwm(pid) for pid in descendants(os.getpid())]
    return {
        "python": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "jvm": max(children, default=0),
    }


def dbt_on_duckdb(db: Path, args: list[str], target_dir: Path) -> None:
    """``dbt <args>`` on the DuckDB target, on the warehouse ``db`` (profiles.yml reads
    SEGMENTATION_DUCKDB_PATH; restored afterwards)."""
    from segmentation_dagster.core import spark as spark_engine

    before = os.environ.get("SEGMENTATION_DUCKDB_PATH")
    os.environ["SEGMENTATION_DUCKDB_PATH"] = str(db)
    try:
        spark_engine.dbt(args, target_dir, target="dev")
    finally:
        if before is None:
            os.environ.pop("SEGMENTATION_DUCKDB_PATH", None)
        else:
            os.environ["SEGMENTATION_DUCKDB_PATH"] = before


def run(work: Path, customers: int, days: int, seed: int) -> dict[str, object]:
    """Build customer_features on both engines from the same raw data and compare them."""
    from segmentation_dagster.core import spark as spark_engine

    why_not = spark_engine.available()
    if why_not:
        raise SystemExit(why_not)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    timings: dict[str, float] = {}

    t = time.perf_counter()
    db = build_demo(work / "duckdb", customers, days, seed)
    timings["demo_and_load_s"] = time.perf_counter() - t
    t = time.perf_counter()
    dbt_on_duckdb(db, ["run"], work / "duckdb" / "dbt_target")
    timings["dbt_run_duckdb_s"] = time.perf_counter() - t

    t = time.perf_counter()
    con = duckdb.connect(str(db), read_only=True)
    try:
        spark_engine.export_raw(con, work / "parquet")
    finally:
        con.close()
    timings["export_parquet_s"] = time.perf_counter() - t

    t = time.perf_counter()
    session = spark_engine.session(work / "spark" / "warehouse")
    timings["spark_session_start_s"] = time.perf_counter() - t
    spark_engine.register_raw(session, work / "parquet")

    t = time.perf_counter()
    spark_engine.dbt(["run"], work / "spark" / "dbt_target")
    timings["dbt_run_spark_s"] = time.perf_counter() - t
    schema = os.environ.get("SEGMENTATION_SPARK_SCHEMA", "segmentation")
    on_spark = pl.from_arrow(session.sql(f"select * from {schema}.{MART}").toArrow())

    con = duckdb.connect(str(db), read_only=True)
    try:
        on_duckdb = con.sql(f"select * from main.{MART}").pl()
    finally:
        con.close()
    result = compare(on_duckdb, on_spark)
    memory = peak_rss_mib()
    session.stop()
    return {
        "customers": customers,
        "days": days,
        "seed": seed,
        "timings": {k: round(v, 2) for k, v in timings.items()},
        "peak_rss_mib": memory,
        "comparison": {**asdict(result), "equal": result.equal},
        "spark_dtypes": {c: str(t) for c, t in on_spark.schema.items()},
        "duckdb_dtypes": {c: str(t) for c, t in on_duckdb.schema.items()},
    }


def reset_peak_rss() -> None:
    """Start this process's peak-RSS high-water mark afresh (Linux: clear_refs 5)."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_python_rss_mib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    return 0


def loop(work: Path, landing: Path, sample_rows: int) -> dict[str, object]:
    """The whole segmentation loop on both engines from the same landed files: on Spark
    (core.spark_loop: dbt build, sample, gate, re-segmentation, assignment, profiles, drift)
    first, its driver's peak memory measured alone; then on DuckDB the same steps
    (dbt build, resegmentation.run on every customer, the compiled assignment). Returns the
    timings, the peak memory and the ARI between the two engines' segments."""
    import duckdb
    from sklearn.metrics import adjusted_rand_score

    from segmentation_dagster.core import registry, resegmentation, segments, spark_loop
    from segmentation_dagster.core import spark as spark_engine

    why_not = spark_engine.available()
    if why_not:
        raise SystemExit(why_not)
    shutil.rmtree(work, ignore_errors=True)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    db = load(landing, work / "duckdb")
    con = duckdb.connect(str(db))
    spark_engine.export_raw(con, work / "parquet")
    con.close()
    timings["load_and_export_s"] = time.perf_counter() - t

    reset_peak_rss()
    t = time.perf_counter()
    spark = spark_engine.session(work / "spark" / "warehouse", **spark_engine.driver_memory())
    control = duckdb.connect(str(work / "control.duckdb"))
    result = spark_loop.run(spark, control, work / "parquet", work / "spark" / "models",
                            work / "spark", sample_rows=sample_rows)  # fmt: skip
    timings["spark_loop_s"] = time.perf_counter() - t
    on_spark = pl.from_arrow(
        spark.sql(
            f"select customer_id, segment_id from {spark_loop.schema()}.customer_segments"
        ).toArrow()
    )
    memory = {"python_driver": peak_python_rss_mib(), "jvm": peak_rss_mib()["jvm"]}
    spark.stop()
    control.close()

    t = time.perf_counter()
    dbt_on_duckdb(db, ["build", "--exclude", "test_type:unit"], work / "duckdb" / "dbt_target")
    timings["duckdb_dbt_build_s"] = time.perf_counter() - t
    t = time.perf_counter()
    con = duckdb.connect(str(db))
    resegmentation.run(con, work / "duckdb" / "models")
    version, model = registry.require_champion(con)
    on_duckdb = segments.assign(con, model, version, registry.active_names(con))
    con.close()
    timings["duckdb_fit_assign_s"] = time.perf_counter() - t
    both = on_duckdb.join(on_spark, on="customer_id", suffix="_spark")
    return {
        "landing": str(landing),
        "customers": on_duckdb.height,
        "sample_rows": result.sample_rows,
        "spark_timings": result.timings,
        "timings": {k: round(v, 2) for k, v in timings.items()},
        "spark_peak_rss_mib": memory,
        "matched_customers": both.height,
        "ari_between_engines": round(
            float(adjusted_rand_score(both["segment_id"], both["segment_id_spark"])), 4
        ),
        "k": {"duckdb": int(model.k), "spark": len(result.sizes)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--work", type=Path, default=Path("benchmarks/.work/engines"))
    parser.add_argument(
        "--loop",
        type=Path,
        metavar="LANDING",
        help="compare the whole loop instead, on this landing folder's files",
    )
    parser.add_argument("--sample-rows", type=int, default=SAMPLE_ROWS)
    args = parser.parse_args()
    if args.loop:
        out = loop(args.work.resolve(), args.loop.resolve(), args.sample_rows)
        args.work.mkdir(parents=True, exist_ok=True)
        (args.work / "loop.json").write_text(json.dumps(out, indent=2, default=str))
        print(json.dumps(out, indent=2, default=str))
        return
    out = run(args.work.resolve(), args.customers, args.days, args.seed)
    (args.work / "engines.json").write_text(json.dumps(out, indent=2, default=str))
    cmp = out["comparison"]
    print(f"customer_features: {cmp['rows'][0]} rows on DuckDB, {cmp['rows'][1]} on Spark; "
          f"{cmp['columns'][0]} / {cmp['columns'][1]} columns")  # fmt: skip
    for col, n in cmp["differing_rows"].items():
        diff = cmp["max_abs_diff"].get(col)
        shown = "" if diff is None or math.isnan(diff) else f"  max abs diff {diff:.3g}"
        print(f"  {col:<28} {'equal' if n == 0 else f'{n} rows differ'}{shown}")
    print("equal" if cmp["equal"] else "NOT equal", json.dumps(out["timings"]))
    print("peak memory (MiB):", json.dumps(out["peak_rss_mib"]))


if __name__ == "__main__":
    main()
