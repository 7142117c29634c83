import dataclasses
import datetime as dt

import polars as pl
import pytest

from segmentation_dagster.demo import simulate

CFG = simulate.DemoConfig(n_customers=800, days=40, seed=3)


def test_same_seed_same_data_and_different_seed_different_data():
    a = simulate.simulate(CFG)
    b = simulate.simulate(CFG)
    c = simulate.simulate(simulate.DemoConfig(n_customers=800, days=40, seed=4))
    assert a[0].equals(b[0]) and a[3].equals(b[3])
    assert not a[0].equals(c[0])


def test_every_persona_present_and_behaves_differently():
    events, customers, _, truth = simulate.simulate(CFG)
    assert set(truth["persona"]) | {simulate.LAPSED} == set(simulate.PERSONA_NAMES)
    assert len(simulate.PERSONA_NAMES) >= 6
    per = (
        events.join(truth, on="customer_id")
        .group_by("persona")
        .agg(
            views=(pl.col("event_type") == "view").sum() / pl.col("customer_id").n_unique(),
            buys=(pl.col("event_type") == "purchase").sum() / pl.col("customer_id").n_unique(),
            carts=(pl.col("event_type") == "cart").sum() / pl.col("customer_id").n_unique(),
        )
    )
    row = {r["persona"]: r for r in per.iter_rows(named=True)}
    assert row["window_shopper"]["views"] > 2 * row["loyal_high_spender"]["views"]
    assert row["loyal_high_spender"]["buys"] > 3 * row["window_shopper"]["buys"]
    assert row["cart_abandoner"]["carts"] > 3 * row["cart_abandoner"]["buys"]
    assert customers.height == truth.height


def test_the_mix_a_snapshot_sees_does_not_depend_on_its_date():
    cfg = simulate.DemoConfig(n_customers=4000, days=200, seed=5)
    events, _, _, truth = simulate.simulate(cfg)
    mixes = []
    for day in (95, 145, 199):
        as_of = cfg.start_date + dt.timedelta(days=day)
        seen = events.filter(
            pl.col("event_ts").dt.date().is_between(as_of - dt.timedelta(days=89), as_of)
        )["customer_id"].unique()
        t = simulate.truth_at(truth, as_of).filter(pl.col("customer_id").is_in(seen.implode()))
        mixes.append(dict(t["persona"].value_counts(normalize=True).iter_rows()))
        assert set(mixes[-1]) == set(simulate.PERSONA_NAMES)
    for name in simulate.PERSONA_NAMES:
        shares = [m[name] for m in mixes]
        assert max(shares) - min(shares) < 0.03, (name, shares)


def test_newcomers_turn_lapsed_after_their_spell():
    _, _, _, truth = simulate.simulate(CFG)
    first = truth.filter(pl.col("arrival_ts").is_not_null()).sort("leave_ts").row(0, named=True)
    spell_end = first["leave_ts"].date()
    at = {d: simulate.truth_at(truth, spell_end + dt.timedelta(days=d)) for d in (0, 31)}
    label = {
        d: t.filter(pl.col("customer_id") == first["customer_id"])["persona"][0]
        for d, t in at.items()
    }
    assert label == {0: "new_one_off", 31: simulate.LAPSED}


def test_event_contract_columns_and_types():
    events = simulate.simulate(CFG)[0]
    assert events.schema == pl.Schema(simulate.EVENT_SCHEMA)
    assert set(events["event_type"].unique()) == {"view", "cart", "purchase", "search", "review"}
    assert events["event_id"].is_unique().all()
    buys = events.filter(pl.col("event_type") == "purchase")
    assert buys["price"].min() > 0 and buys["quantity"].min() >= 1


def test_generate_writes_one_file_per_day_and_a_separate_truth_file(tmp_path):
    s = simulate.generate(CFG, tmp_path / "landing", tmp_path / "truth")
    files = sorted((tmp_path / "landing" / "events").iterdir())
    assert len(files) == CFG.days == (s.last_date - s.first_date).days + 1
    assert files[0].name == f"events_{CFG.start_date.isoformat()}.parquet"
    day = pl.read_parquet(files[5])
    assert day["event_ts"].dt.date().unique().to_list() == [CFG.start_date + dt.timedelta(days=5)]
    assert (tmp_path / "truth" / "personas.parquet").exists()
    assert not list((tmp_path / "landing").rglob("*persona*"))


@pytest.mark.parametrize("stream", [False, True], ids=["in-memory", "streamed"])
def test_csv_and_purchases_only_options(tmp_path, stream):
    cfg = simulate.DemoConfig(
        n_customers=300, days=20, purchases_only=True, file_format="csv", stream=stream
    )
    simulate.generate(cfg, tmp_path / "landing", tmp_path / "truth")
    df = pl.read_csv(sorted((tmp_path / "landing" / "events").glob("*.csv")))
    assert df["event_type"].unique().to_list() == ["purchase"]
    assert df["event_id"].is_unique().all()  # ids never repeat across the days


def _assert_price_wave(cfg: simulate.DemoConfig, events: pl.DataFrame, truth: pl.DataFrame):
    """Some customers convert, and purchases are discounted far more often after the shift."""
    assert (truth["persona"] != truth["persona_after_shift"]).sum() > 50
    shift = dt.datetime.combine(cfg.start_date, dt.time()) + dt.timedelta(days=cfg.shift_day)
    buys = events.filter(pl.col("event_type") == "purchase")
    before = buys.filter(pl.col("event_ts") < shift)["discount"].gt(0).mean()
    after = buys.filter(pl.col("event_ts") >= shift)["discount"].gt(0).mean()
    assert after > before + 0.2


def test_price_wave_shifts_behaviour_after_the_shift_day_only():
    cfg = simulate.DemoConfig(n_customers=1500, days=40, shift_day=20, scenario="price_wave")
    events, _, _, truth = simulate.simulate(cfg)
    _assert_price_wave(cfg, events, truth)


def test_visit_collapse_cuts_sessions():
    cfg = simulate.DemoConfig(n_customers=1500, days=40, shift_day=20, scenario="visit_collapse")
    events = simulate.simulate(cfg)[0]
    shift = dt.datetime.combine(cfg.start_date, dt.time()) + dt.timedelta(days=20)
    before = events.filter(pl.col("event_ts") < shift)["session_id"].n_unique()
    after = events.filter(pl.col("event_ts") >= shift)["session_id"].n_unique()
    assert after < 0.6 * before


def test_bad_config_is_rejected_with_a_clear_message():
    with pytest.raises(ValueError, match="unknown scenario"):
        simulate.DemoConfig(scenario="meteor")
    with pytest.raises(ValueError, match="shift_day"):
        simulate.DemoConfig(days=30, shift_day=45, scenario="price_wave")


def test_streamed_generation_writes_the_same_shop_day_by_day(tmp_path):
    """The streaming mode (for 100M events) draws other random numbers but the same shop:
    same files, ids unique across files, same event mix, and the scenario still shifts."""
    cfg = simulate.DemoConfig(n_customers=1500, days=40, shift_day=20, scenario="price_wave")
    kept = simulate.generate(cfg, tmp_path / "a" / "landing", tmp_path / "a" / "truth")
    streamed = simulate.generate(
        dataclasses.replace(cfg, stream=True), tmp_path / "b" / "landing", tmp_path / "b" / "truth"
    )
    names = [sorted(p.name for p in (tmp_path / s / "landing").rglob("*.parquet")) for s in "ab"]
    assert names[0] == names[1] and streamed.n_files == kept.n_files
    files = sorted((tmp_path / "b" / "landing" / "events").glob("*.parquet"))
    for f in files:  # each file holds its own day only (sessions crossing midnight move on)
        assert pl.read_parquet(f)["event_ts"].dt.date().unique().to_list() == [
            dt.date.fromisoformat(f.stem.removeprefix("events_"))
        ]
    events = pl.read_parquet(files)
    assert events.schema == pl.Schema(simulate.EVENT_SCHEMA)
    assert events["event_id"].to_list() == list(range(1, events.height + 1))
    assert events.height == streamed.n_events
    assert abs(streamed.n_events / kept.n_events - 1) < 0.05
    mix = [
        pl.read_parquet(sorted((tmp_path / s / "landing" / "events").glob("*")))["event_type"]
        .value_counts(normalize=True)
        .sort("event_type")["proportion"]
        for s in "ab"
    ]
    assert (mix[0] - mix[1]).abs().max() < 0.01
    truth = pl.read_parquet(tmp_path / "b" / "truth" / "personas.parquet")
    _assert_price_wave(cfg, events, truth)


def _buys_per_customer(events: pl.DataFrame, truth: pl.DataFrame, persona: str, when) -> float:
    who = truth.filter(pl.col("persona") == persona)["customer_id"].implode()
    part = events.filter(pl.col("customer_id").is_in(who) & when)
    return (part["event_type"] == "purchase").sum() / max(part["customer_id"].n_unique(), 1)


def test_emerging_segment_brings_a_behaviour_no_persona_had_before():
    cfg = simulate.DemoConfig(n_customers=2000, days=40, shift_day=20, scenario="emerging_segment")
    events, _, _, truth = simulate.simulate(cfg)
    new = truth.filter(pl.col("persona_after_shift") == simulate.EMERGING.name)
    steady = truth.filter(pl.col("arrival_ts").is_null()).height
    assert 0.07 < new.height / steady < 0.13
    assert simulate.EMERGING.name not in set(truth["persona"])
    shift = dt.datetime.combine(cfg.start_date, dt.time()) + dt.timedelta(days=20)
    qty = (
        events.filter(
            (pl.col("event_type") == "purchase") & pl.col("customer_id").is_in(new["customer_id"])
        )
        .group_by(after=pl.col("event_ts") >= shift)
        .agg(pl.col("quantity").mean())
    )
    mean_qty = dict(qty.iter_rows())
    assert mean_qty[True] > 2 * mean_qty[False]  # big baskets only after the shift
    now = simulate.truth_at(truth, cfg.start_date + dt.timedelta(days=25))
    assert (now["persona"] == simulate.EMERGING.name).sum() == new.height


def test_vanishing_segment_stops_one_persona_buying():
    cfg = simulate.DemoConfig(n_customers=2000, days=40, shift_day=20, scenario="vanishing_segment")
    events, _, _, truth = simulate.simulate(cfg)
    shift = dt.datetime.combine(cfg.start_date, dt.time()) + dt.timedelta(days=20)
    before = _buys_per_customer(events, truth, "loyal_high_spender", pl.col("event_ts") < shift)
    after = _buys_per_customer(events, truth, "loyal_high_spender", pl.col("event_ts") >= shift)
    assert after < 0.2 * before
    now = simulate.truth_at(truth, cfg.start_date + dt.timedelta(days=25))
    assert "loyal_high_spender" not in set(now["persona"])


@pytest.mark.parametrize("stream", [False, True], ids=["in-memory", "streamed"])
def test_gradual_drift_spreads_each_customers_change_over_the_period(tmp_path, stream):
    cfg = simulate.DemoConfig(
        n_customers=1500, days=70, shift_day=20, scenario="gradual_drift", stream=stream
    )
    simulate.generate(cfg, tmp_path / "landing", tmp_path / "truth")
    truth = pl.read_parquet(tmp_path / "truth" / "personas.parquet")
    events = pl.read_parquet(sorted((tmp_path / "landing" / "events").iterdir()))
    start = dt.datetime.combine(cfg.start_date, dt.time())
    offsets = (truth["shift_ts"] - start).dt.total_days()
    assert offsets.min() >= 20 and offsets.max() < 20 + simulate.GRADUAL_DAYS
    assert offsets.std() > 5  # spread, not one day
    converted = truth.filter(pl.col("persona") != pl.col("persona_after_shift"))
    assert converted.height > 50
    # the share of discounted purchases climbs over the 30 days instead of jumping once
    buys = events.filter(pl.col("event_type") == "purchase").with_columns(
        week=((pl.col("event_ts") - start).dt.total_days() - 20) // 10
    )
    share = dict(buys.group_by("week").agg(pl.col("discount").gt(0).mean()).iter_rows())
    assert share[-1] < share[0] < share[1] < share[2] <= share[3] + 0.02
    mid = simulate.truth_at(truth, cfg.start_date + dt.timedelta(days=35))
    moved = mid.join(converted.select("customer_id"), on="customer_id")
    assert 0.2 < (moved["persona"] == "bargain_hunter").mean() < 0.8  # half way through


def test_the_demos_default_period_never_runs_into_the_future():
    from segmentation_dagster.cli import build_parser, demo_start_date

    fixed = simulate.DemoConfig.start_date
    # the fixed default while it fits, so the demo is the same data every day
    assert demo_start_date(None, 90, today=fixed + dt.timedelta(days=200)) == fixed
    # a longer period ends yesterday instead of writing events ingestion would quarantine
    today = fixed + dt.timedelta(days=120)
    start = demo_start_date(None, 200, today=today)
    assert start + dt.timedelta(days=200) == today
    assert demo_start_date("2020-01-01", 200, today=today) == dt.date(2020, 1, 1)
    args = build_parser().parse_args(["demo", "--days", "5000"])
    assert demo_start_date(args.start_date, args.days) + dt.timedelta(days=5000) <= dt.date.today()
