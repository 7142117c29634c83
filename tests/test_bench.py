"""The bench harness at a tiny scale, so it does not rot (no timing assertions)."""

import json

import pytest

from benchmarks import bench

pytestmark = pytest.mark.slow  # the benchmark, end to end


def test_bench_runs_both_sides_on_the_same_files_and_writes_results(tmp_path):
    argv = ["--events", "15000", "--customers", "400", "--days", "30",
            "--work", str(tmp_path / "work"), "--results", str(tmp_path / "results")]  # fmt: skip
    assert bench.main(argv) == 0
    report = json.loads((tmp_path / "results" / "bench_15000_400.json").read_text())
    platform, baseline = report["platform"], report["baseline"]
    # same landed files, same customers in scope, on both sides
    assert platform["events"] == baseline["events"] == report["generate"]["events"] > 10_000
    assert platform["customers"] == baseline["customers"] > 300
    assert set(platform["stages"]) == set(bench.STAGES)
    assert platform["stages"]["features"] > 0 and platform["stages"]["gates"] > 0
    assert {"ingest", "features", "fit", "assign", "drift"} == set(baseline["stages"])
    assert platform["peak_rss_mib"] > 0 and baseline["peak_rss_mib"] > 0
    # the daily refresh ran on top of that history, and the harness's new day left again
    assert platform["daily_refresh_s"] > 0 and "dbt_models" in platform["daily_refresh_slowest"]
    # ... in its own process: loading the code location is reported apart from the run
    assert platform["daily_refresh_load_s"] > 0
    assert platform["daily_refresh_process_s"] > platform["daily_refresh_s"]
    assert len(list((tmp_path / "work" / "15000_400" / "landing" / "events").iterdir())) == 30
    md = (tmp_path / "results" / "bench_15000_400.md").read_text()
    assert "| total |" in md and "baseline / platform" in md and "Daily refresh" in md
    assert "streamed day by day" in md
