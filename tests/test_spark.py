"""The dbt project on local Spark (dbt-spark, session method) gives the same customer_features
as on DuckDB, from the same raw data. Runs where the Spark extra and Java are installed
(`make install-spark`); skipped elsewhere."""

import datetime as dt
import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from benchmarks import engines
from segmentation_dagster.core import clustering, compiled
from segmentation_dagster.core import spark as spark_engine

MISSING = spark_engine.available()
#: `make test` sets this: there (and so in CI) a machine without Spark fails instead of skipping
REQUIRED = os.environ.get("SEGMENTATION_REQUIRE_SPARK") == "1"
needs_spark = pytest.mark.skipif(MISSING is not None and not REQUIRED, reason=str(MISSING))


@pytest.fixture
def required():
    if MISSING is not None:
        pytest.fail(f"Spark is required here (SEGMENTATION_REQUIRE_SPARK): {MISSING}")


@pytest.fixture
def spark(required, tmp_path):
    """The process's Spark session (a new one when an earlier test stopped it)."""
    return spark_engine.session(tmp_path / "spark_warehouse")


@pytest.mark.slow  # a Spark session and two dbt runs: minutes
@needs_spark
@pytest.mark.usefixtures("required")
def test_spark_builds_the_same_customer_features_as_duckdb(tmp_path):
    out = engines.run(tmp_path / "engines", customers=150, days=20, seed=3)
    cmp = out["comparison"]
    assert cmp["rows"][0] > 100 and cmp["rows"][0] == cmp["rows"][1]
    assert cmp["missing_columns"] == [] and cmp["unmatched_customers"] == 0
    assert {c: n for c, n in cmp["differing_rows"].items() if n} == {}
    assert cmp["equal"]


def test_compare_reports_a_float_off_by_more_than_the_tolerance():
    import polars as pl

    a = pl.DataFrame({"customer_id": ["c1", "c2"], "snapshot_date": [1, 1], "x": [1.0, 2.0]})
    b = a.with_columns(pl.Series("x", [1.0, 2.0 * (1 + 1e-7)]))
    assert engines.compare(a, a).equal
    cmp = engines.compare(a, b)
    assert not cmp.equal and cmp.differing_rows["x"] == 1


@pytest.mark.slow  # a Spark session
@needs_spark
@pytest.mark.parametrize("algorithm", ["kmeans", "gmm"])
def test_the_compiled_assignment_runs_inside_spark_as_in_python(spark, algorithm):
    from tests.test_compiled import _customers

    df = _customers()
    model = clustering.fit(
        df, clustering.SelectionConfig(k_min=2, k_max=6, algorithms=(algorithm,))
    )
    ids, dist, conf = model.assign(df)
    previous = np.roll(ids, 7)
    kept, _, _ = model.assign(df, previous_ids=previous, margin=0.5)
    spark.createDataFrame(df.drop("snapshot_date").to_pandas()).createOrReplaceTempView("features")
    yesterday = pl.DataFrame({"customer_id": df["customer_id"], "segment_id": previous})
    spark.createDataFrame(yesterday.to_pandas()).createOrReplaceTempView("yesterday")
    want = pl.DataFrame({"customer_id": df["customer_id"], "w": ids, "d": dist, "c": conf,
                         "kept": kept})  # fmt: skip
    got = pl.from_pandas(spark.sql(compiled.assignment_sql(model, "features")).toPandas())
    both = got.join(want, on="customer_id")
    assert both.height == df.height and (both["segment_id"] == both["w"]).all()
    np.testing.assert_allclose(both["distance"], both["d"], rtol=1e-9)
    np.testing.assert_allclose(both["confidence"], both["c"], rtol=1e-9, atol=1e-12)
    sticky = compiled.assignment_sql(model, "features", previous="yesterday", margin=0.5)
    both = pl.from_pandas(spark.sql(sticky).toPandas()).join(want, on="customer_id")
    assert (both["segment_id"] == both["kept"]).all() and (kept != ids).any()


@pytest.mark.slow  # a demo, dbt on both engines, a Spark session: minutes
@needs_spark
def test_the_whole_loop_on_spark_gives_the_segments_of_duckdb(spark, tmp_path, monkeypatch):
    """Raw Parquet -> dbt build on Spark -> sample -> quality gate -> re-segmentation ->
    assignment, profiles and history inside Spark -> drift on samples; the same customers get
    the same segments as the DuckDB engine's loop on the same raw data."""
    import duckdb
    from sklearn.metrics import adjusted_rand_score

    from segmentation_dagster.core import (
        describe,
        lifecycle,
        privacy,
        registry,
        resegmentation,
        segments,
        spark_loop,
    )
    from tests.conftest import EXPORT_COLUMNS

    db = engines.build_demo(tmp_path / "duck", customers=300, days=30, seed=5)
    monkeypatch.setenv("SEGMENTATION_DUCKDB_PATH", str(db))
    spark_engine.dbt(["run"], tmp_path / "duck" / "dbt_target", target="dev")
    con = duckdb.connect(str(db))
    resegmentation.run(con, tmp_path / "duck" / "models")
    version, model = registry.require_champion(con)
    on_duckdb = segments.assign(con, model, version, registry.active_names(con))
    segments.publish(con, on_duckdb)
    plays_on_duckdb = describe.describe(con).playbooks
    spark_engine.export_raw(con, tmp_path / "parquet")
    con.close()
    control = duckdb.connect(str(tmp_path / "control.duckdb"))
    exports, secret = tmp_path / "exports", b"a key of thirty-two characters!!"
    first = spark_loop.run(spark, control, tmp_path / "parquet", tmp_path / "models",
                           tmp_path / "spark", export_dir=exports,
                           export_secret=secret)  # fmt: skip
    db_ = spark_loop.schema()
    table = pl.from_arrow(spark.sql(f"select * from {db_}.customer_segments").toArrow())
    assert first.customers == table.height == on_duckdb.height
    assert first.outcome.result.decision.promote and first.champion_version == 1
    assert sum(first.sizes.values()) == first.profiles["size"].sum() == table.height
    assert set(first.profiles["segment_id"]) == set(first.sizes)
    assert all(o.success for o in first.quality if o.expectation.severity == "error")
    assert first.drift.report_path.exists() and first.drift.n_current == table.height
    both = on_duckdb.join(table, on="customer_id", suffix="_spark")
    assert both.height == table.height
    assert adjusted_rand_score(both["segment_id"], both["segment_id_spark"]) >= 0.99
    # a sample smaller than the shop: the same customers on both engines
    picked = spark_loop.sample(spark, f"{db_}.customer_features", 120, seed=3)["customer_id"]
    with duckdb.connect(str(db), read_only=True) as duck:
        assert picked.to_list() == segments.read_features(duck, 120, 3)["customer_id"].to_list()
    assert table["segment_name"].null_count() == 0 and (table["model_version"] == 1).all()
    # the export, written by Spark as one file each: keyed pseudonyms, everyone joined
    full = pl.read_parquet(first.export.full)
    named = privacy.pseudonymise(table.select("customer_id", "segment_id"), secret)
    assert full.sort(privacy.PSEUDONYM).select(named.columns).equals(named.sort(privacy.PSEUDONYM))
    assert full[privacy.PSEUDONYM].is_sorted() and "customer_id" not in full.columns
    assert full.columns == [privacy.PSEUDONYM, *EXPORT_COLUMNS]  # the DuckDB export's columns
    assert pl.read_csv(first.export.full.with_suffix(".csv")).height == table.height
    changes = pl.read_parquet(first.export.changes)
    assert first.export.joined == changes.height == table.height and first.export.left == 0
    assert not list(exports.glob(".*"))  # Spark's part folders are gone
    # each segment's playbook, chosen from Spark's aggregates as DuckDB chooses it, is exported
    same = ["segment_id", "playbook", "evidence", "recommended"]
    assert first.playbooks.select(same).equals(plays_on_duckdb.select(same))
    exported = full.select(pl.col("segment_id").cast(pl.Int64), "playbook").unique()
    assert exported.sort("segment_id").equals(first.playbooks.select(exported.columns))
    moved = first.migrations  # the first assignment: everyone joined
    assert moved.previous is None and moved.unchanged_share is None
    assert moved.matrix["from_segment"].null_count() == moved.matrix.height
    assert dict(moved.matrix.select("to_segment", "customers").iter_rows()) == first.sizes

    # a run killed inside the swap: the old table already dropped, the complete new one still
    # under its staged name, and a staged folder the catalog never registered (killed while
    # writing); the next run puts the table back and clears the folder
    staged = f"{db_}.customer_segments__staged_1"
    spark.sql(f"create table {staged} using parquet as select * from {db_}.customer_segments")
    spark.sql(f"drop table {db_}.customer_segments")
    location = spark.catalog.getDatabase(db_).locationUri.removeprefix("file:")
    orphan = Path(location) / "customer_segments__staged_0"
    orphan.mkdir()
    (orphan / "part-0.parquet").write_bytes(b"half")
    spark_loop.recover(spark, f"{db_}.customer_segments")
    assert spark.table(f"{db_}.customer_segments").count() == table.height
    assert not spark_loop.table_exists(spark, staged) and not orphan.exists()

    # a second run on the same data: a re-segmentation recorded, the same assignment, the
    # history's partition of that snapshot and version replaced, not appended to
    # the pseudonym UDF is privacy.pseudonyms, for any text
    odd = ["é", "日本", "", " x", 'a,b"c']
    frame = spark.createDataFrame([(i,) for i in odd], "customer_id string")
    udf = spark_loop._pseudonym_udf(secret)
    assert [r[0] for r in frame.select(udf("customer_id")).collect()] == privacy.pseudonyms(
        odd, secret
    )
    # the last export before the next run: written with raw ids, a day older; since then five
    # customers arrived, every seventh moved, one left
    prior = table.select("customer_id", "segment_id").head(table.height - 5)
    prior = pl.concat(
        [
            prior.with_columns(
                pl.when(pl.int_range(pl.len()) % 7 == 0)
                .then((pl.col("segment_id") + 1) % 3)
                .otherwise(pl.col("segment_id"))
                .cast(pl.Int32)
            ),
            pl.DataFrame({"customer_id": ["gone-1"], "segment_id": [0]}, schema=prior.schema),
        ]
    )
    older = exports / "segments_2000-01-01_v0001.parquet"
    prior.write_parquet(older)
    segments.record_export(control, dt.date(2000, 1, 1), 1, older, older, prior.height, 0, 0)
    killed = exports / ".segments_2026-01-01_v0001.parquet.spark"  # a killed export's parts
    killed.mkdir()
    (killed / "part-00000.parquet").write_bytes(b"half")
    again = spark_loop.run(spark, control, tmp_path / "parquet", tmp_path / "models",
                           tmp_path / "spark", export_dir=exports,
                           export_secret=secret)  # fmt: skip
    assert again.outcome.version == 2 and again.customers == table.height
    history = spark.sql(
        f"select model_version, count(*) as n from {db_}.customer_segment_history "
        "group by model_version"
    ).toPandas()
    assert history["n"].max() == table.height and history["n"].sum() <= 2 * table.height
    assert not killed.exists()
    # the second export's changes: since that older export (its raw ids pseudonymised to
    # compare), as lifecycle.membership_changes has them
    second = pl.read_parquet(again.export.full)
    as_ids = {privacy.PSEUDONYM: "customer_id"}
    want = lifecycle.membership_changes(
        privacy.pseudonymise(prior, secret).rename(as_ids),
        second.select(privacy.PSEUDONYM, "segment_id").rename(as_ids),
    )
    got = pl.read_parquet(again.export.changes).rename(as_ids)
    assert got.equals(want.select(got.columns)), (got, want)
    assert again.export.joined > 5 and again.export.left > 1
    assert again.export.joined + again.export.left == got.height
    # migrations, against an earlier assignment put in the history (a day before, other
    # segments for some, without the last ten customers): as lifecycle.migration_matrix has them
    now = table.select("customer_id", "segment_id")
    earlier = now.head(now.height - 10).with_columns(
        pl.col("segment_id").shift(3).fill_null(pl.col("segment_id"))
    )
    day = table["snapshot_date"].cast(pl.Date).max() - dt.timedelta(days=1)
    spark.createDataFrame(
        earlier.with_columns(
            snapshot_date=pl.lit(day), model_version=pl.lit(1, pl.Int32)
        ).to_pandas()
    ).createOrReplaceTempView("earlier")
    spark.sql(f"insert into {db_}.customer_segment_history partition (snapshot_date, "
              "model_version) select * from earlier")  # fmt: skip
    moved = spark_loop.migrations(spark, db_)
    assert moved.previous == (day, 1) and moved.current[1] == again.champion_version
    assert moved.matrix.equals(lifecycle.migration_matrix(earlier, now)), moved.matrix
    assert moved.unchanged_share == lifecycle.unchanged_share(earlier, now) < 1
    stored = spark.table(f"{db_}.segment_migrations").toPandas()
    assert len(stored) == moved.matrix.height and stored["customers"].sum() == table.height

    # `segmentation forget` on this engine: the warehouse erased, the raw Parquet rewritten
    # from it, every Spark table rewritten without the customer

    victim = table["customer_id"][0]
    con = duckdb.connect(str(db))
    monkeypatch.setenv(privacy.KEY_ENV, secret.decode())  # the key the exports were made with
    erased = privacy.forget(con, tmp_path / "duck", [exports], [victim])
    mark = privacy.pseudonyms([victim], secret)[0]
    for f in exports.glob("*.parquet"):  # Spark's (pseudonyms) and the older one (raw ids)
        listed = pl.read_parquet(f)
        ids = listed[privacy.PSEUDONYM if privacy.PSEUDONYM in listed.columns else "customer_id"]
        assert mark not in ids.to_list() and victim not in ids.to_list(), f
    assert len(erased.files) >= 3  # both lists and a changes file held the customer
    spark_engine.export_raw(con, tmp_path / "parquet")
    con.close()
    spark_engine.register_raw(spark, tmp_path / "parquet")
    removed = spark_loop.forget(spark, [victim])
    assert removed[f"{db_}.customer_segments"] == 1 and removed[f"{db_}.customer_features"] == 1
    left = {}
    for schema in (db_, "raw"):
        for t in spark.catalog.listTables(schema):
            if t.isTemporary:  # dbt's __dbt_tmp views of this session
                continue
            cols = {c.name for c in spark.catalog.listColumns(t.name, schema)}
            if "customer_id" in cols:
                rows = spark.table(f"{schema}.{t.name}")
                left[f"{schema}.{t.name}"] = rows.where(rows.customer_id == victim).count()
    assert f"{db_}.customer_segment_history" in left and "raw.events" in left
    assert not any(left.values()), left
    assert spark.table(f"{db_}.customer_segments").count() == table.height - 1
    control.close()


def test_spark_loop_refuses_a_schema_name_that_is_not_plain(monkeypatch):
    from segmentation_dagster.core import spark_loop

    monkeypatch.setenv("SEGMENTATION_SPARK_SCHEMA", "x; drop table y")
    with pytest.raises(ValueError, match="SEGMENTATION_SPARK_SCHEMA"):
        spark_loop.schema()


@pytest.mark.slow  # two whole runs of the command on Spark: minutes
@needs_spark
@pytest.mark.usefixtures("required")
def test_segmentation_run_on_the_spark_engine_twice(tmp_path):
    """`SEGMENTATION_ENGINE=spark segmentation run`, as a user runs it, twice: each run is a
    new process, so the second one finds the first one's tables through the metastore."""
    import duckdb

    from tests.test_crash_recovery import Shop

    shop = Shop(tmp_path)
    shop.env["SEGMENTATION_ENGINE"] = "spark"
    first = shop.run()
    assert "spark_segmentation_job run" in first and "champion v1" in first
    second = shop.run()
    assert "champion v" in second
    spark_dir = tmp_path / "data" / "spark"
    history = spark_dir / "warehouse" / "segmentation.db" / "customer_segment_history"
    con = duckdb.connect()
    rows = con.execute(
        "select model_version, snapshot_date, count(*) from read_parquet(?, "
        "hive_partitioning = true) group by all order by 1",
        [str(history / "**" / "*.parquet")],
    ).fetchall()
    with duckdb.connect(str(shop.paths.duckdb_path), read_only=True) as reg:
        decisions = reg.execute(
            "select challenger_version, champion_version from segmentation.model_decisions "
            "order by 1"
        ).fetchall()
        n_features = reg.execute("select count(distinct customer_id) from raw.events").fetchall()[0]
    # the second run compared its challenger with the first run's champion
    assert [v for v, _ in decisions] == [1, 2] and decisions[1][1] == 1
    # one partition per (snapshot, champion version), each every customer once: the second
    # run replaced the partition of the same champion instead of appending to it
    n_segments = con.execute(
        "select count(*) from read_parquet(?)",
        [str(spark_dir / "warehouse" / "segmentation.db" / "customer_segments" / "*.parquet")],
    ).fetchall()[0][0]
    assert 0 < n_segments <= n_features[0]
    assert rows and all(n == n_segments for _, _, n in rows)
    assert (spark_dir / "raw" / "events" / "part-0.parquet").exists()
    # Spark wrote the membership exports, one file each, with keyed pseudonyms
    from segmentation_dagster.core import privacy

    lists = sorted(shop.paths.export_dir.glob("segments_*_v*[0-9].parquet"))
    assert lists and (shop.paths.export_dir / f"{lists[-1].stem}.csv").exists()
    assert (
        con.execute("select count(*) from read_parquet(?)", [str(lists[-1])]).fetchall()[0][0]
        == n_segments
    )

    # `segmentation forget` reaches the Spark engine's files: raw Parquet and every table
    import subprocess
    import sys

    tables = spark_dir / "warehouse" / "segmentation.db"
    victim = con.execute(
        "select min(customer_id) from read_parquet(?)",
        [str(tables / "customer_segments" / "*.parquet")],
    ).fetchall()[0][0]
    forget = subprocess.run(
        [sys.executable, "-m", "segmentation_dagster.cli", "forget", victim],
        env=shop.env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert forget.returncode == 0, forget.stderr[-2000:]
    assert "spark:segmentation.customer_segments" in forget.stdout
    mark = privacy.pseudonyms([victim], privacy.key(shop.paths.data_dir))[0]
    for f in shop.paths.export_dir.glob("*.parquet"):
        assert mark not in pl.read_parquet(f)[privacy.PSEUDONYM].to_list(), f
    assert str(lists[-1]) in forget.stdout  # the export file named among those rewritten
    assert "rewrote the Spark engine's raw Parquet from the erased warehouse: events" in (
        forget.stdout
    )
    found = {}
    for folder in [*tables.iterdir(), *(spark_dir / "raw").iterdir()]:
        files = str(folder / "**" / "*.parquet")
        if not list(folder.glob("**/*.parquet")):
            continue
        cols = [r[0] for r in con.execute("describe select * from read_parquet(?)", [files])
                .fetchall()]  # fmt: skip
        if "customer_id" in cols:
            found[folder.name] = con.execute(
                "select count(*) from read_parquet(?, hive_partitioning = true) "
                "where customer_id = ?",
                [files, victim],
            ).fetchall()[0][0]
    assert {"customer_segments", "customer_segment_history", "customer_features",
            "events"} <= set(found)  # fmt: skip
    assert not any(found.values()), found


def test_the_engine_setting_selects_the_jobs_and_schedules_and_refuses_others(monkeypatch):
    """SEGMENTATION_ENGINE=spark adds the Spark job and its daily schedule and stops the DuckDB
    refresh's; the default has neither; another value stops the code location with the
    reason."""
    import subprocess
    import sys

    probe = (
        "from segmentation_dagster.definitions import defs\n"
        "print(sorted(j.name for j in defs.jobs if not j.name.startswith('__')))\n"
        "print(sorted((s.name, s.default_status.value) for s in defs.schedules))\n"
        "print(sorted((s.name, s.default_status.value) for s in defs.sensors))\n"
    )

    def load(engine: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "SEGMENTATION_ENGINE": engine}
        return subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                              text=True, timeout=300)  # fmt: skip

    spark = load("spark")
    assert spark.returncode == 0, spark.stderr
    assert "spark_segmentation_job" in spark.stdout
    assert "('spark_daily_schedule', 'RUNNING')" in spark.stdout
    assert "('daily_refresh_schedule', 'STOPPED')" in spark.stdout
    assert "('drift_sensor', 'STOPPED')" in spark.stdout
    duck = load("duckdb")
    assert duck.returncode == 0, duck.stderr
    assert "spark" not in duck.stdout and "('daily_refresh_schedule', 'RUNNING')" in duck.stdout
    assert "('drift_sensor', 'RUNNING')" in duck.stdout
    bad = load("oracle")
    assert bad.returncode != 0 and "SEGMENTATION_ENGINE='oracle'" in bad.stderr
    # a bad Spark setting stops the code location too, before any run ingests a file
    monkeypatch.setenv("SEGMENTATION_SPARK_SCHEMA", "bad name")
    bad = load("spark")
    assert bad.returncode != 0 and "SEGMENTATION_SPARK_SCHEMA='bad name'" in bad.stderr


def test_the_raw_export_writes_a_table_again_only_when_its_rows_changed(tmp_path):
    """No Spark needed: the Parquet export of the raw tables, twice, then after a new file."""
    import duckdb

    from segmentation_dagster.core import ingest
    from segmentation_dagster.demo import simulate

    landing = tmp_path / "landing"
    simulate.generate(simulate.DemoConfig(n_customers=40, days=6, seed=2), landing,
                      tmp_path / "truth")  # fmt: skip
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    ingest.ensure_schema(con)
    ingest.load_kind(con, landing, "events")
    out = tmp_path / "parquet"
    assert spark_engine.export_raw(con, out) == {"events": True, "customers": True,
                                                 "products": True}  # fmt: skip
    n = con.execute("select count(*) from raw.events").fetchall()[0][0]
    assert duckdb.sql(f"select count(*) from '{out}/events/*.parquet'").fetchall()[0][0] == n
    assert not any(spark_engine.export_raw(con, out).values())
    con.execute(
        "delete from raw.events where customer_id = (select min(customer_id) from raw.events)"
    )  # fmt: skip (as `segmentation forget` erases one)
    assert spark_engine.export_raw(con, out) == {"events": True, "customers": False,
                                                 "products": False}  # fmt: skip
    left = duckdb.sql(f"select count(*) from '{out}/events/*.parquet'").fetchall()[0][0]
    assert left < n and not list(out.glob(".*"))
    con.close()


def test_the_driver_memory_setting_is_a_size_or_refused(monkeypatch):
    monkeypatch.delenv("SEGMENTATION_SPARK_DRIVER_MEMORY", raising=False)
    assert spark_engine.driver_memory() == {}
    monkeypatch.setenv("SEGMENTATION_SPARK_DRIVER_MEMORY", "3g")
    assert spark_engine.driver_memory() == {"spark.driver.memory": "3g"}
    monkeypatch.setenv("SEGMENTATION_SPARK_DRIVER_MEMORY", "3g --conf x=y")
    with pytest.raises(ValueError, match="SEGMENTATION_SPARK_DRIVER_MEMORY"):
        spark_engine.driver_memory()
