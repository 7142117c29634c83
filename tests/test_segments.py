"""The published segmentation and the monitors' record: plain functions on a real DuckDB file."""

import datetime as dt

import numpy as np
import polars as pl

from segmentation_dagster.core import clustering, monitoring, segments
from segmentation_dagster.core.warehouse import connect, one
from tests.test_clustering import blobs

DAY = dt.date(2026, 9, 1)


def _features(last_change: dt.date | None = None) -> tuple[pl.DataFrame, clustering.FittedModel]:
    df, _ = blobs(n_per=100, centers=3)
    cfg = clustering.SelectionConfig(k_min=3, k_max=3, algorithms=("kmeans",))
    model = clustering.fit(df, cfg)
    df = df.with_columns(
        snapshot_date=pl.lit(DAY), last_regime_change=pl.lit(last_change, dtype=pl.Date)
    )
    return df, model


def test_publishing_a_day_twice_keeps_one_copy_in_the_history_and_a_new_model_adds_one(tmp_path):
    df, model = _features()
    names = {int(s): f"segment {s}" for s in model.segment_ids}
    with connect(tmp_path / "w.duckdb") as con:
        con.execute("create schema segmentation")
        assert (segments.current_segments(con, df) == -1).all()  # nothing published yet
        published = segments.assign(df, model, 1, segments.current_segments(con, df), names)
        assert segments.publish(con, published) == df.height
        segments.publish(con, published)  # a re-run of the same day and model
        history = f"select count(*) from {segments.HISTORY_TABLE}"
        assert one(con, history)[0] == df.height
        segments.publish(con, published.with_columns(model_version=pl.lit(2, dtype=pl.Int32)))
        assert one(con, history)[0] == 2 * df.height
        current = segments.current_segments(con, df)
        assert (current == published["segment_id"].to_numpy()).all()
        assert set(published["segment_name"]) == set(names.values())
        cur, prev, members = segments.previous_assignment(con)
        assert cur == (DAY, 2) and prev == (DAY, 1) and members.height == df.height


def test_a_customer_keeps_a_segment_unless_their_behaviour_changed_recently():
    df, model = _features()
    nearest = model.assign(df)[0]
    elsewhere = np.roll(np.sort(model.segment_ids), 1)[np.searchsorted(np.sort(model.segment_ids),
                                                                        nearest)]  # fmt: skip
    sticky = segments.AssignmentConfig(hysteresis=1.0)  # any earlier segment is kept
    kept = segments.assign(df, model, 1, elsewhere, {}, sticky)["segment_id"].to_numpy()
    assert (kept == elsewhere).all()
    changed, _ = _features(last_change=DAY - dt.timedelta(days=2))
    freed = segments.assign(changed, model, 1, elsewhere, {}, sticky)["segment_id"].to_numpy()
    assert (freed == nearest).all()  # a recent change frees the customer to move


def test_every_monitor_check_is_appended_to_the_drift_history(tmp_path):
    with connect(tmp_path / "w.duckdb") as con:
        monitoring.append_history(con, DAY, 3, "behaviour_drift", 0.5, {"drifted": ("a",)})
        monitoring.append_history(con, DAY, 3, "segment_share_psi", 0.01, {1: 0.5})
        rows = con.execute(
            f"select reference_version, monitor, score, details from {monitoring.HISTORY} "
            "order by monitor"
        ).fetchall()
    assert rows == [
        (3, "behaviour_drift", 0.5, '{"drifted": ["a"]}'),
        (3, "segment_share_psi", 0.01, '{"1": 0.5}'),
    ]


def test_a_resegmentation_is_decided_and_recorded_on_the_warehouse(tmp_path):
    from segmentation_dagster.core import registry, resegmentation

    df, _ = _features()
    selection = clustering.SelectionConfig(k_min=3, k_max=3, algorithms=("kmeans",))
    with connect(tmp_path / "w.duckdb") as con:
        con.register("features", df.to_arrow())
        con.execute(f"create table {segments.FEATURES_TABLE} as select * from features")
        first = resegmentation.run(con, tmp_path / "models", selection)
        assert first.champion_version is None and first.result.decision.promote
        assert registry.champion(con)[0] == first.version
        # the same customers again: same segments, the champion stays and is re-validated
        second = resegmentation.run(con, tmp_path / "models", selection)
        assert second.champion_version == first.version and not second.result.decision.promote
        assert registry.champion(con)[0] == first.version
        assert registry.reference_path(con, first.version) != registry.fit_reference_path(
            con, first.version
        )
        decisions = one(con, f"select count(*) from {registry.DECISIONS}")[0]
    assert decisions == 2
