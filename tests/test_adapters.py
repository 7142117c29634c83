"""What the project relies on in other libraries' private APIs, one test per adapter
(segmentation_dagster/adapters): after an upgrade of Dagster, dagster-dbt/dbt, Evidently or
GX, a change there fails here first, by name. Real libraries, small data."""

from __future__ import annotations

import os

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from segmentation_dagster.adapters import dagster_internals, evidently_drift, gx

# -- Evidently -----------------------------------------------------------------------------


def test_evidently_tests_by_name_and_the_value_drift_report(tmp_path):
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"a": rng.normal(0, 1, 2000), "b": rng.normal(5, 2, 2000)})
    cur = pd.DataFrame({"a": rng.normal(0.5, 1, 2000), "b": rng.normal(5, 2, 2000)})
    # normed Wasserstein: the distance in reference standard deviations (floored at 0.001),
    # the formula core.drift computes itself for calibration
    from scipy import stats

    expected = stats.wasserstein_distance(ref["a"], cur["a"]) / max(np.std(ref["a"]), 0.001)
    score = evidently_drift.stattest_score("wasserstein", ref["a"].to_numpy(), cur["a"].to_numpy())
    assert score == pytest.approx(expected, rel=1e-6)
    p_value = evidently_drift.stattest_score("ks", ref["a"].to_numpy(), cur["a"].to_numpy())
    assert 0 <= p_value < 0.001  # another method by name: its own statistic
    report = evidently_drift.value_drift(
        ref, cur, {"a": "wasserstein", "b": "wasserstein"}, {"a": 0.1, "b": 0.1}
    )
    assert set(report.scores) == {"a", "b"}
    assert report.scores["a"] == pytest.approx(expected, rel=1e-6)
    assert report.scores["b"] < 0.1
    report.save_html(tmp_path / "r.html")
    report.save_html(tmp_path / "r2.html")
    html = (tmp_path / "r.html").read_text()
    assert html.lstrip().lower().startswith("<!doctype html")
    # the library is kept once beside the reports: a report a day costs its data only
    (library,) = tmp_path.glob("evidently_*.js")
    assert f'<script src="{library.name}"></script>' in html
    assert library.stat().st_size > 1_000_000 > (tmp_path / "r2.html").stat().st_size


# -- Great Expectations --------------------------------------------------------------------


def test_gx_validates_each_expectation_on_its_own_with_summary_results():
    df = pd.DataFrame({"price": [1.0, 2.0, 50.0, None], "id": ["a", "b", "c", "d"]})
    results = gx.validate_each(
        df,
        "t",
        [
            ("expect_column_values_to_be_between", {"column": "price", "min_value": 0}),
            ("expect_column_values_to_be_between", {"column": "price", "max_value": 10}),
            ("expect_column_values_to_not_be_null", {"column": "price"}),
            ("expect_column_values_to_not_be_null", {"column": "absent"}),
        ],
    )
    # two bounds on one column: two results, not one merged expectation
    assert [r.success for r in results] == [True, False, False, False]
    assert results[1].result["unexpected_count"] == 1
    assert results[1].result["partial_unexpected_list"] == [50.0]
    assert results[2].result["unexpected_count"] == 1
    # a column the frame lacks: the error is in the exception info, under the failed metric
    info = results[3].exception_info or {}
    nested = [v.get("exception_message") for v in info.values() if isinstance(v, dict)]
    assert any("absent" in str(m) for m in [info.get("exception_message"), *nested] if m)


# -- Dagster -------------------------------------------------------------------------------


@dg.asset
def gated() -> None:
    pass


@dg.asset_check(asset=gated, blocking=True)
def blocking_fails() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.ERROR)


@dg.asset_check(asset=gated)
def warning_fails() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN)


@dg.asset_check(asset=gated)
def passes() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True)


def test_dagster_failed_error_checks_are_read_from_the_instance():
    checks = [blocking_fails, warning_fails, passes]
    with dg.DagsterInstance.ephemeral() as instance:
        dg.materialize([gated, *checks], instance=instance, raise_on_error=False)
        keys = [k for c in checks for k in c.check_keys]
        failing = dagster_internals.failed_error_checks(instance, keys)
    assert [k.name for k in failing] == ["blocking_fails"]


def test_dagster_run_storage_engine_pid_and_concurrency_slots(tmp_path):
    with dg.DagsterInstance.ephemeral() as instance:
        assert not dagster_internals.is_sqlite_instance(instance)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        assert dagster_internals.is_sqlite_instance(instance)
        run_id = dg.materialize([gated], instance=instance).run_id
        assert dagster_internals.engine_pid(instance, run_id) == os.getpid()
        storage = instance.event_log_storage
        assert storage.supports_global_concurrency_limits
        storage.set_concurrency_slots("duckdb", 1)
        storage.claim_concurrency_slot("duckdb", run_id, "gated")  # a slot the run kept
        assert run_id in storage.get_concurrency_run_ids()
        assert (
            dagster_internals.free_slots_of_runs_over(instance, [dg.DagsterRunStatus.FAILURE]) == []
        )
        freed = dagster_internals.free_slots_of_runs_over(instance, [dg.DagsterRunStatus.SUCCESS])
        assert freed == [run_id] and run_id not in storage.get_concurrency_run_ids()


# -- dagster-dbt / dbt ---------------------------------------------------------------------


def test_dbt_runs_in_process_for_the_selected_models_and_names_a_failed_node(paths):
    from segmentation_dagster.core import ingest
    from segmentation_dagster.core.warehouse import connect
    from segmentation_dagster.defs.resources import default_resources
    from segmentation_dagster.defs.transform.assets import dbt_models

    products = dg.AssetKey("stg_shop__products")
    with connect(paths.duckdb_path) as con:
        ingest.ensure_schema(con)  # empty raw tables

    def build() -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [dbt_models],
            selection=[products],
            resources=default_resources(),
            raise_on_error=False,
        )

    result = build()
    assert result.success
    # the selection reached dbt: one model built, its tests turned into check results
    assert [m.asset_key for m in result.get_asset_materialization_events()] == [products]
    checks = result.get_asset_check_evaluations()
    assert checks and {c.asset_key for c in checks} == {products}
    assert all(c.passed for c in checks)
    with connect(paths.duckdb_path) as con:
        con.execute("drop table raw.products")
    (failure,) = build().get_step_failure_events()
    error = failure.step_failure_data.error.message
    assert "stg_shop__products" in error and "dbt.log" in error


def test_dbt_keeps_a_parse_cache_per_set_of_vars(paths):
    """The daily refresh and the full loop pass dbt different vars, and dbt re-parses the whole
    project whenever they differ from the last invocation's: each set keeps its own cache, so
    going back to one parses nothing."""
    from segmentation_dagster.core import ingest
    from segmentation_dagster.core.warehouse import connect
    from segmentation_dagster.defs.resources import default_resources
    from segmentation_dagster.defs.transform.assets import dbt_models

    with connect(paths.duckdb_path) as con:
        ingest.ensure_schema(con)
    log = paths.duckdb_path.parent / "dbt_target" / "dbt.log"

    def build(half_life_days: int) -> str:
        seen = log.read_text() if log.exists() else ""
        run_config = {"ops": {"dbt_models": {"config": {"half_life_days": half_life_days}}}}
        result = dg.materialize([dbt_models], selection=[dg.AssetKey("stg_shop__products")],
                                resources=default_resources(), run_config=run_config)  # fmt: skip
        assert result.success
        return log.read_text()[len(seen) :]

    cache = log.parent / "parse_cache"
    assert "Unable to do partial parsing because saved manifest not found" in build(30)
    (first,) = cache.glob("*.msgpack")
    assert "config vars" in build(45)  # other vars: dbt parses it all again, as it must
    again = build(30)
    assert "Unable to do partial parsing" not in again and "skipping parsing" in again
    assert len(list(cache.glob("*.msgpack"))) == 2

    # a cache entry that is a link, a dangling link, a killed copy's leftover: never read or
    # written through, never a failed step; the entry is written anew as a file of its own
    outside = paths.duckdb_path.parent / "not_a_cache"
    outside.write_bytes(b"keep me")
    first.unlink()
    first.symlink_to(outside)
    (cache / "dangling.msgpack").symlink_to(cache / "gone")
    (cache / ".half.msgpack.tmp").write_bytes(b"half")
    assert "skipping parsing" in build(45)  # its own cache, untouched by the rest
    assert "config vars" in build(30)  # 30's was a link: not read, a full parse
    assert outside.read_bytes() == b"keep me" and not first.is_symlink() and first.is_file()
    assert not (cache / ".half.msgpack.tmp").exists()
    assert "skipping parsing" in build(45) and "skipping parsing" in build(30)
