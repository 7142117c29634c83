"""The published segmentation and the monitors' record: plain functions on a real DuckDB file."""

import datetime as dt

import duckdb
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


def _warehouse(con, df: pl.DataFrame, published: pl.DataFrame | None = None) -> None:
    """customer_features from ``df``; yesterday's customer_segments (customer_id, segment_id)."""
    con.execute("create schema if not exists segmentation")
    for table, frame in ((segments.FEATURES_TABLE, df), (segments.SEGMENTS_TABLE, published)):
        if frame is not None:
            con.register("frame", frame.to_arrow())
            con.execute(f"create or replace table {table} as select * from frame")
            con.unregister("frame")


def _ids(got: pl.DataFrame, df: pl.DataFrame) -> np.ndarray:
    """``got``'s segment ids in ``df``'s row order."""
    return (
        df.select("customer_id")
        .join(got, on="customer_id", how="left", maintain_order="left")["segment_id"]
        .to_numpy()
    )


def test_publishing_a_day_twice_keeps_one_copy_in_the_history_and_a_new_model_adds_one(tmp_path):
    df, model = _features()
    names = {int(s): f"segment {s}" for s in model.segment_ids}
    with connect(tmp_path / "w.duckdb") as con:
        _warehouse(con, df)
        assert (segments.current_segments(con, df) == -1).all()  # nothing published yet
        published = segments.assign(con, model, 1, names)
        assert published["customer_id"].to_list() == sorted(df["customer_id"])
        assert segments.publish(con, published) == df.height
        segments.publish(con, published)  # a re-run of the same day and model
        history = f"select count(*) from {segments.HISTORY_TABLE}"
        assert one(con, history)[0] == df.height
        segments.publish(con, published.with_columns(model_version=pl.lit(2, dtype=pl.Int32)))
        assert one(con, history)[0] == 2 * df.height
        current = segments.current_segments(con, published)
        assert (current == published["segment_id"].to_numpy()).all()
        assert set(published["segment_name"]) == set(names.values())
        cur, prev, members = segments.previous_assignment(con)
        assert cur == (DAY, 2) and prev == (DAY, 1) and members.height == df.height


def _elsewhere(model, df):
    nearest = model.assign(df)[0]
    order = np.sort(model.segment_ids)
    return nearest, np.roll(order, 1)[np.searchsorted(order, nearest)]


def test_a_customer_keeps_a_segment_unless_their_behaviour_changed_recently():
    df, model = _features()
    nearest, elsewhere = _elsewhere(model, df)
    yesterday = df.select("customer_id").with_columns(segment_id=elsewhere)
    sticky = segments.AssignmentConfig(hysteresis=1.0)  # any earlier segment is kept
    con = duckdb.connect()
    _warehouse(con, df, yesterday)
    assert (_ids(segments.assign(con, model, 1, {}, sticky), df) == elsewhere).all()
    changed, _ = _features(last_change=DAY - dt.timedelta(days=2))
    _warehouse(con, changed)
    freed = _ids(segments.assign(con, model, 1, {}, sticky), df)
    assert (freed == nearest).all()  # a recent change frees the customer to move


def test_the_warehouse_assignment_is_the_models_own():
    """In DuckDB (the model compiled to SQL) as in Python: hysteresis, recent changes, customers
    new today and an earlier id the model lacks."""
    df, model = _features()
    nearest, elsewhere = _elsewhere(model, df)
    row = np.arange(df.height)
    changes = [DAY - dt.timedelta(days=int(i % 12)) if i % 3 else None for i in row]
    df = df.with_columns(last_regime_change=pl.Series(changes, dtype=pl.Date))
    earlier = np.where(row % 17 == 0, 999, elsewhere)
    new_today = row % 5 == 0
    yesterday = df.select("customer_id").with_columns(segment_id=earlier).filter(~new_today)
    cfg = segments.AssignmentConfig(hysteresis=0.6, free_after_change_days=7)
    con = duckdb.connect()
    _warehouse(con, df, yesterday)
    got = segments.assign(con, model, 3, {int(s): f"s{s}" for s in model.segment_ids}, cfg)
    before = np.where(new_today, -1, earlier)
    before[(df["last_regime_change"] > DAY - dt.timedelta(days=7)).fill_null(False).to_numpy()] = -1
    ids, dist, conf = model.assign(df, previous_ids=before, margin=cfg.hysteresis)
    both = got.join(df.select("customer_id").with_columns(w=ids, d=dist, c=conf), on="customer_id")
    assert both.height == df.height and (both["segment_id"] == both["w"]).all()
    assert (ids != nearest).any()  # the hysteresis did keep some where they were
    np.testing.assert_allclose(both["distance"], both["d"], rtol=1e-9)
    np.testing.assert_allclose(both["confidence"], both["c"], rtol=1e-9, atol=1e-12)
    assert set(got["model_version"]) == {3} and got["segment_name"].null_count() == 0


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


def test_the_fit_reads_a_seeded_sample_of_customers_that_nests_and_matches_the_monitors(tmp_path):
    from segmentation_dagster.core import drift, resegmentation

    df, _ = _features()
    with connect(tmp_path / "w.duckdb") as con:
        _warehouse(con, df)
        every = segments.read_features(con)
        assert every["customer_id"].to_list() == sorted(df["customer_id"].to_list())
        small, large = segments.read_features(con, 50), segments.read_features(con, 120)
        assert small.height == 50 and small["customer_id"].is_sorted()
        assert set(small["customer_id"]) < set(large["customer_id"])  # a larger sample holds it
        assert set(segments.read_features(con, 50, seed=1)["customer_id"]) != set(
            small["customer_id"]
        )
        monitored = drift.read_sample(con, segments.FEATURES_TABLE, [], 50, 0)
        assert set(monitored["customer_id"]) == set(small["customer_id"])
        selection = clustering.SelectionConfig(
            k_min=3, k_max=3, algorithms=("kmeans",), fit_sample=120
        )
        outcome = resegmentation.run(con, tmp_path / "models", selection)
    assert outcome.result.challenger.n_train == 120
