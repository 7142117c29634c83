"""The bench harness at a tiny scale, so it does not rot (no timing assertions)."""

import json
import os

import pytest

from benchmarks import bench
from segmentation_dagster.core import spark as spark_engine


@pytest.mark.slow  # the benchmark, end to end
def test_bench_runs_both_sides_on_the_same_files_and_writes_results(tmp_path):
    argv = ["--events", "15000", "--customers", "400", "--days", "30", "--refreshes", "2",
            "--work", str(tmp_path / "work"), "--results", str(tmp_path / "results")]  # fmt: skip
    assert bench.main(argv) == 0
    report = json.loads((tmp_path / "results" / "bench_15000_400.json").read_text())
    platform, baseline, expert = report["platform"], report["baseline"], report["expert"]
    # same landed files, same customers in scope, on every side
    assert (platform["events"] == baseline["events"] == expert["events"]
            == report["generate"]["events"] > 10_000)  # fmt: skip
    assert platform["customers"] == baseline["customers"] == expert["customers"] > 300
    assert set(platform["stages"]) == set(bench.STAGES)
    assert platform["stages"]["features"] > 0 and platform["stages"]["gates"] > 0
    assert {"ingest", "features", "fit", "assign", "drift"} == set(baseline["stages"])
    assert set(expert["stages"]) == set(baseline["stages"])
    assert platform["peak_rss_mib"] > 0 and baseline["peak_rss_mib"] > 0
    # the daily refresh ran on top of that history, and the harness's new day left again
    assert platform["daily_refresh_s"] > 0 and "dbt_models" in platform["daily_refresh_slowest"]
    # ... in its own process: loading the code location is reported apart from the run
    assert platform["daily_refresh_load_s"] > 0
    assert platform["daily_refresh_process_s"] > platform["daily_refresh_s"]
    # twice, on the same history put back between them
    runs = platform["daily_refresh_runs_s"]
    assert len(runs) == 2 and round(platform["daily_refresh_s"], 1) == max(runs)
    assert not (tmp_path / "work" / "15000_400" / ".before_refresh").exists()
    assert len(list((tmp_path / "work" / "15000_400" / "landing" / "events").iterdir())) == 30
    md = (tmp_path / "results" / "bench_15000_400.md").read_text()
    assert (
        "| total |" in md
        and "pandas / platform" in md
        and "expert / platform" in md
        and "Daily refresh" in md
    )
    assert "streamed day by day" in md
    summary = (tmp_path / "results" / "README.md").read_text()
    assert f"| {platform['events']:,} | {platform['customers']:,} |" in summary

    # the whole loop on local Spark beside DuckDB, added to the same results (`--only spark`)
    missing = spark_engine.available()
    if missing is not None:
        if os.environ.get("SEGMENTATION_REQUIRE_SPARK") == "1":  # `make test`, so CI
            pytest.fail(f"Spark is required here: {missing}")
        return
    assert bench.main([*argv, "--only", "spark"]) == 0
    again = json.loads((tmp_path / "results" / "bench_15000_400.json").read_text())
    assert again["platform"] == platform and again["expert"] == expert  # kept, not re-run
    spark = again["spark"]
    assert spark["matched_customers"] == spark["customers"] == platform["customers"]
    assert spark["ari_between_engines"] > 0.99 and spark["k"]["duckdb"] == spark["k"]["spark"]
    assert spark["spark_peak_rss_mib"]["jvm"] > 0 and spark["date"] >= platform["date"]
    md = (tmp_path / "results" / "bench_15000_400.md").read_text()
    assert "Spark (local[2]" in md and "| total |" in md
    row = next(
        line
        for line in (tmp_path / "results" / "README.md").read_text().splitlines()
        if line.startswith(f"| {platform['events']:,} |")
    )
    assert row.rstrip(" |").endswith(spark["date"][:10])


def test_the_expert_sql_computes_the_same_features_as_the_pandas_baseline(tmp_path):
    import duckdb
    import numpy as np

    from benchmarks import baseline, expert
    from segmentation_dagster.demo import simulate

    cfg = simulate.DemoConfig(n_customers=300, days=40)
    simulate.generate(cfg, tmp_path / "landing", tmp_path / "truth")
    events = baseline.load(tmp_path / "landing")
    want = baseline.features(events).sort_index()
    con = duckdb.connect()
    con.register("landed", events)
    con.execute("create table events as select * from landed")
    got = con.sql(expert.FEATURES_SQL).df().set_index("customer_id")[baseline.FEATURES]
    got = got.astype("float64").sort_index()
    assert list(got.index) == list(want.index) and len(got) > 250
    for col in baseline.FEATURES:
        np.testing.assert_allclose(got[col], want[col].astype("float64"), rtol=1e-9, err_msg=col)
