"""Monitors and the drift sensor: real Evidently reports, a real Dagster instance."""

from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest

from segmentation_dagster.core import drift
from segmentation_dagster.core.policy import PolicyState
from segmentation_dagster.core.warehouse import connect
from segmentation_dagster.definitions import defs
from segmentation_dagster.defs.automation.sensors import drift_sensor


def _features(shift: float = 0.0, n: int = 3000, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "frequency": rng.poisson(1, n).astype(float),  # few distinct values, still numeric
            "discount_share": np.clip(rng.normal(0.3 + shift, 0.1, n), 0, 1),
            "avg_item_price": rng.lognormal(3, 0.5, n),
            "sessions_per_week": rng.gamma(2, 1 - min(shift, 0.5), n),
        }
    )


COLS = ["frequency", "discount_share", "avg_item_price", "sessions_per_week"]


def test_same_behaviour_does_not_drift_and_a_shift_does(tmp_path):
    ref = _features(seed=0)
    same = drift.behaviour_drift(ref, _features(seed=1), COLS, report_path=tmp_path / "r.html")
    assert same.drift_share == 0 and same.drifted == ()
    assert (tmp_path / "r.html").read_text().lstrip().lower().startswith("<!doctype html")
    shifted = drift.behaviour_drift(ref, _features(shift=0.3, seed=1), COLS)
    assert set(shifted.drifted) == {"discount_share", "sessions_per_week"}
    assert shifted.scores["discount_share"] > 1.0  # ~3 reference sds: an effect size
    assert shifted.drift_share == 0.5


def test_thresholds_are_calibrated_per_column_on_the_reference():
    rng = np.random.default_rng(0)
    sparse = rng.normal(50, 5, 4000)
    sparse[rng.random(4000) < 0.9] = np.nan  # e.g. abandonment: only customers with a cart
    ref = pl.DataFrame({"steady": rng.normal(50, 5, 4000), "noisy": sparse}).fill_nan(None)
    bars = drift.thresholds(ref, ["steady", "noisy"], drift.DriftConfig())
    # chance effects grow as the number of values shrinks: the sparse column gets a higher bar
    assert bars["noisy"] > 2 * bars["steady"]
    assert bars["steady"] >= drift.DriftConfig().min_threshold
    assert bars == drift.thresholds(ref, ["steady", "noisy"], drift.DriftConfig())  # seeded
    pinned = drift.DriftConfig(threshold=0.2, per_column={"noisy": ("wasserstein", 0.5)})
    assert drift.thresholds(ref, ["steady", "noisy"], pinned) == {"steady": 0.2, "noisy": 0.5}
    # a shift of a fifth of a standard deviation in the steady column: score >= 1, and the
    # score is the largest effect over its own threshold
    moved = ref.with_columns(pl.col("steady") + 1.0)
    result = drift.behaviour_drift(ref, moved, ["steady", "noisy"])
    assert result.drifted == ("steady",) and result.score >= 1
    assert result.score == pytest.approx(result.scores["steady"] / result.thresholds["steady"],
                                         abs=1e-3)  # fmt: skip


def test_calibration_uses_evidentlys_own_statistic():
    ref, cur = _features(seed=0), _features(shift=0.1, seed=1)
    result = drift.behaviour_drift(ref, cur, COLS, drift.DriftConfig(threshold=0.1))
    for c in COLS:  # the report's value (Evidently) == the calibration's fast formula
        mine = drift._effect("wasserstein", ref[c].to_numpy(), cur[c].to_numpy())
        assert mine == pytest.approx(result.scores[c], rel=1e-6)


def test_per_column_threshold_is_respected():
    ref, cur = _features(seed=0), _features(shift=0.3, seed=1)
    loose = drift.DriftConfig(per_column={"discount_share": ("wasserstein", 10.0)})
    assert "discount_share" not in drift.behaviour_drift(ref, cur, COLS, loose).drifted


def test_only_columns_with_spread_in_the_reference_are_compared():
    ref = pl.DataFrame(
        {"views": [None, None, None], "orders": [1.0, 1.0, 1.0], "spend": [1.0, 5.0, None]}
    )
    assert drift.comparable_columns(ref, ["views", "orders", "spend", "absent"]) == ["spend"]


def test_psi_is_zero_for_equal_shares_and_grows_with_a_shift():
    assert drift.psi({1: 0.5, 2: 0.5}, {1: 0.5, 2: 0.5}) == 0
    assert drift.psi({1: 0.5, 2: 0.5}, {1: 0.8, 2: 0.2}) > 0.25
    assert drift.psi({1: 1.0}, {1: 0.5, 2: 0.5}) > 1  # a segment appearing


@pytest.mark.slow  # the whole graph
def test_monitors_run_in_the_pipeline_and_see_no_drift_on_the_fit_snapshot(pipeline_run):
    p, result = pipeline_run
    meta = {
        m.asset_key.to_user_string(): m.materialization.metadata
        for m in result.get_asset_materialization_events()
    }
    drift = meta["behaviour_drift"]
    # the policy's score compares today's features with the fit's: the same day, no drift
    assert drift["drift_score"].value == 0 and drift["drift_share"].value == 0
    assert drift["reference_snapshot"].value == drift["snapshot_date"].value
    assert drift["report"].value.endswith(".html") and Path(drift["report"].value).exists()
    url = drift["report_url"].value  # opens in a browser under `make ui`
    assert url == "http://127.0.0.1:3001/" + Path(drift["report"].value).name
    scores = {r.data["feature"] for r in drift["scores"].value.records}
    assert "tenure_days" not in scores and "avg_item_price" in scores  # calendar features out
    assert meta["segment_share_drift"]["psi"].value < 0.01
    assert meta["model_quality"]["distance_ratio"].value == pytest.approx(1, abs=0.05)
    with connect(p.duckdb_path) as con:
        monitors = {
            r[0] for r in con.execute("select monitor from monitoring.drift_history").fetchall()
        }
    assert monitors == {"behaviour_drift", "segment_share_psi", "distance_ratio"}


# -- the sensor, on a real ephemeral instance -------------------------------------------------


def _check(instance, day: int, score: float, ref: int = 1, n: int = 5000) -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            "behaviour_drift",
            metadata={
                "snapshot_date": f"2026-09-{day:02d}",
                "drift_score": score,
                "n_current": n,
                "reference_version": ref,
            },
        )
    )


def _tick(instance, cursor):
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
    result = drift_sensor(ctx)
    return result, ctx.cursor


def test_sensor_requests_one_run_per_drift_decision():
    instance = dg.DagsterInstance.ephemeral()
    cursor, requests = None, []
    for day, share in enumerate([0.0] * 8 + [1.6, 1.7, 1.8, 1.7], start=1):
        _check(instance, day, share)
        result, new_cursor = _tick(instance, cursor)
        if isinstance(result, dg.RunRequest):
            requests.append(result)
            # a second tick over the same decision (e.g. the cursor write was lost) asks for
            # the same run_key, which Dagster runs only once
            again, _ = _tick(instance, cursor)
            assert again.run_key == result.run_key
        cursor = new_cursor
    assert [r.run_key for r in requests] == ["resegment-ref1-2026-09-10"]
    assert requests[0].tags["segmentation/trigger"] == "drift"
    again, same_cursor = _tick(instance, cursor)  # nothing new since
    assert isinstance(again, dg.SkipReason) and same_cursor == cursor


def test_sensor_failure_leaves_the_cursor_unchanged():
    instance = dg.DagsterInstance.ephemeral()
    _check(instance, 10, 0.0)
    _, cursor = _tick(instance, None)
    instance.report_runless_asset_event(
        dg.AssetMaterialization("behaviour_drift", metadata={"snapshot_date": "2026-09-11"})
    )
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
    with pytest.raises(KeyError):
        drift_sensor(ctx)
    assert ctx.cursor == cursor
    assert PolicyState.from_json(cursor).recent == (0.0,)


def test_sensor_does_not_trigger_while_a_blocking_check_fails():
    instance = dg.DagsterInstance.ephemeral()
    instance.report_runless_asset_event(
        dg.AssetCheckEvaluation(
            asset_key=dg.AssetKey("customer_features"),
            check_name="unique_customer_features_customer_id",
            passed=False,
            severity=dg.AssetCheckSeverity.ERROR,
        )
    )
    cursor = None
    results = []
    for day, share in enumerate([0.0] * 8 + [1.6, 1.7, 1.8], start=1):
        _check(instance, day, share)
        result, cursor = _tick(instance, cursor)
        results.append(result)
    assert all(isinstance(r, dg.SkipReason) for r in results)
    assert "blocking checks fail" in results[-1].skip_message


def test_the_monitor_reads_a_fixed_size_sample_the_same_every_time(tmp_path):
    import duckdb

    con = duckdb.connect()
    con.execute("create table f as select i::varchar as customer_id, i * 1.0 as x "
                "from range(50000) t(i)")  # fmt: skip
    a = drift.read_sample(con, "f", [], 1000, 7)
    assert a.height == 1000 and a["customer_id"].n_unique() == 1000
    assert a.equals(drift.read_sample(con, "f", [], 1000, 7))
    other = drift.read_sample(con, "f", [], 1000, 8)
    assert len(set(a["customer_id"]) & set(other["customer_id"])) < 100
    assert 20_000 < a["x"].mean() < 30_000  # spread over the table, not its first rows
    assert drift.read_sample(con, "f", [], 10**6, 7).height == 50_000
    path = tmp_path / "r.parquet"
    con.execute(f"copy f to '{path}'")
    assert drift.read_sample(con, "read_parquet(?)", [str(path)], 1000, 7).equals(a)
