"""The forecasts customer_value hands out are kept and, a horizon later, met with what the
customers did (core.forecasts): on a demo shop's landing files, in a real DuckDB."""

import datetime as dt

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from segmentation_dagster.core import forecasts, health, value
from segmentation_dagster.demo import simulate
from tests.conftest import landing_events_view


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """800 customers over 90 days; the segments are the true personas, as numbered segments."""
    root = tmp_path_factory.mktemp("forecasts")
    simulate.generate(simulate.DemoConfig(n_customers=800, days=90, seed=5), root / "landing",
                      root / "truth")  # fmt: skip
    truth = pl.read_parquet(root / "truth" / "personas.parquet")
    ids = {p: i for i, p in enumerate(sorted(truth["persona"].unique()))}
    members = truth.select(
        pl.col("customer_id").cast(pl.String),
        segment_id=pl.col("persona").replace_strict(ids, return_dtype=pl.Int32),
        segment_name="persona",
    )
    return root, members


def _scored(root, members, days: int, prices: bool = True):
    """A connection with ``ev`` (every event) and ``past`` (the first ``days`` days, without
    prices if asked), and value.score on ``past``."""
    con = landing_events_view(root, "customer_id, session_id, event_type, price, quantity")
    cut = con.execute("select min(event_date) from ev").fetchall()[0][0] + dt.timedelta(days)
    price = "price" if prices else "null::double as price"
    # a view takes no parameters: cut is a date of ours, written out as one
    con.execute(f"create view past as select * exclude (price), {price} from ev "
                f"where event_date < date '{cut.isoformat()}'")  # fmt: skip
    s = value.score(con, "past", members, value.ValueConfig(min_customers=50))
    assert s.trained is not None and s.as_of == cut, s.reason
    return con, s


def _kept(con) -> list[tuple]:
    return con.execute(
        f"select scored_on, count(*) from {forecasts.TABLE} group by all order by 1"
    ).fetchall()


def test_kept_forecasts_are_met_with_the_purchases_of_their_horizon(shop):
    root, members = shop
    con, s = _scored(root, members, 60)
    cut, h = s.as_of, s.trained.horizon
    assert h == 20  # a third of the 60 days
    said = forecasts.keep(con, s.scores, members, cut, h)
    assert said == f"kept the forecasts of {cut} for {s.scores.height} customers, met after " + str(
        cut + dt.timedelta(days=19)
    )
    forecasts.keep(con, s.scores, members, cut, h)  # a re-run of the day replaces its copy
    assert _kept(con) == [(cut, s.scores.height)]
    # the next day is not kept: a copy every third of the horizon
    nxt = forecasts.keep(con, s.scores, members, cut + dt.timedelta(days=1), h)
    assert nxt.startswith(f"next kept on {cut + dt.timedelta(days=7)}")  # 20 / 3, rounded up
    assert _kept(con) == [(cut, s.scores.height)]

    assert forecasts.meet(con, "ev", cut + dt.timedelta(days=18)) == []  # a day short
    assert forecasts.latest(con) is None
    [o] = forecasts.meet(con, "ev", cut + dt.timedelta(days=19))
    assert (o.scored_on, o.horizon_days, o.through) == (cut, 20, cut + dt.timedelta(days=19))
    # what the customers did in those 20 days, counted here straight from the landing files
    did = con.sql(
        "select customer_id::varchar as customer_id, sum(price * quantity) as spend from ev "
        "where event_type = 'purchase' and event_date between ? and ? group by all",
        params=[cut, cut + dt.timedelta(days=19)],
    ).pl()
    forecast = s.scores.join(members, on="customer_id", how="left").join(
        did, on="customer_id", how="left"
    )
    assert o.customers == s.scores.height
    assert o.churned == pytest.approx(forecast["spend"].null_count() / forecast.height)
    assert o.mean_risk == pytest.approx(s.scores["churn_risk"].mean())
    per = forecast.group_by("segment_id").agg(
        spent=pl.col("spend").sum(), said=pl.col("expected_spend").sum()
    )
    got = o.by_segment.join(per, on="segment_id")
    assert got.height == o.by_segment.height == members["segment_id"].n_unique()
    assert_frame_equal(got.select("actual", "predicted"), got.select(actual="spent",
                       predicted="said"), check_dtypes=False, rel_tol=1e-9)  # fmt: skip
    assert set(o.by_segment["segment_name"]) == set(members["segment_name"])
    assert o.auc is not None and o.auc > 0.65 and o.auc_bgnbd is not None, o
    # met once: the copy is gone, the record stays and reads back as it was
    assert _kept(con) == [] and forecasts.meet(con, "ev", cut + dt.timedelta(days=30)) == []
    again = forecasts.latest(con)
    assert_frame_equal(again.by_segment, o.by_segment)
    assert (again.customers, again.auc, again.met_on) == (o.customers, o.auc, o.met_on)
    assert forecasts.waiting(con) == "none"
    # the next copy is due a third of the horizon after the last one, met or not
    later = forecasts.keep(con, s.scores, members, cut + dt.timedelta(days=6), h)
    assert later.startswith(f"next kept on {cut + dt.timedelta(days=7)}")
    assert forecasts.keep(con, s.scores, members, cut + dt.timedelta(days=7), h).startswith(
        "kept the forecasts of"
    )


def test_a_failed_record_keeps_the_copy_and_a_shorter_history_drops_later_ones(shop):
    root, members = shop
    con, s = _scored(root, members, 60)
    cut, h = s.as_of, s.trained.horizon
    forecasts.keep(con, s.scores, members, cut + dt.timedelta(days=10), h)
    assert forecasts.rewind(con, cut + dt.timedelta(days=10)) == ""  # the same history
    # the history now ends earlier (a full refresh on fewer files): the later copy goes
    said = forecasts.rewind(con, cut)
    assert said == "dropped 1 copies kept and 0 outcomes met after the history's last day " + (
        f"({cut - dt.timedelta(days=1)})"
    )
    forecasts.keep(con, s.scores, members, cut, h)
    assert _kept(con) == [(cut, s.scores.height)]
    # the record cannot be written: nothing is recorded and the copy is met again next time
    con.execute(f"alter table {forecasts.OUTCOMES} add column broken integer")
    with pytest.raises(Exception, match="(?i)column"):
        forecasts.meet(con, "ev", cut + dt.timedelta(days=h - 1))
    assert _kept(con) == [(cut, s.scores.height)]
    con.execute(f"alter table {forecasts.OUTCOMES} drop column broken")
    assert len(forecasts.meet(con, "ev", cut + dt.timedelta(days=h - 1))) == 1
    # met on events to cut + h - 1: a history ending before that drops the outcome too
    assert forecasts.rewind(con, cut + dt.timedelta(days=h - 1)).startswith(
        "dropped 0 copies kept and 1 outcomes met"
    )
    assert forecasts.latest(con) is None


def test_the_published_outcome_hides_the_segments_smaller_than_the_group_size():
    rows = pl.DataFrame(
        {"segment_id": [0, 1, 2], "segment_name": ["a", "b", "c"], "customers": [40, 30, 4],
         "actual": [900.0, 500.0, 80.0], "noise": [0.1, 0.1, 0.3],
         "predicted": [950.0, 400.0, 10.0], "error": [0.06, 0.2, 0.88],
         "baseline": [800.0, 600.0, 70.0],
         "baseline_error": [0.11, 0.2, 0.13]},
    )  # fmt: skip
    shown = forecasts.published(rows, 10)
    # the small one, and the next smallest so that it cannot be had as the total less the rest
    hidden = shown.filter(pl.col("actual").is_null())["segment_id"].to_list()
    assert hidden == [1, 2] and shown["segment_name"].to_list() == ["a", "b", "c"]
    assert forecasts.missed(shown) == (0, 1)  # the hidden are not judged
    assert forecasts.published(rows, 4).equals(rows)


def test_without_prices_churn_is_met_and_spend_is_not_judged(shop):
    root, members = shop
    con, s = _scored(root, members, 60, prices=False)
    assert s.scores["expected_spend"].is_null().all()
    forecasts.keep(con, s.scores, members, s.as_of, s.trained.horizon)
    [o] = forecasts.meet(con, "past", s.as_of + dt.timedelta(days=s.trained.horizon - 1))
    # "past" ends before the horizon: nobody bought in it, every customer churned
    assert o.churned == 1.0 and o.auc is None and o.by_segment.is_empty()
    assert forecasts.missed(o.by_segment) == (0, 0)


def test_a_segment_missed_beyond_20_percent_and_twice_its_noise_fails_the_check():
    rows = pl.DataFrame(
        {
            "segment_id": [0, 1, 2, None],
            "error": [0.5, 0.5, 0.1, 3.0],
            "noise": [0.05, 0.3, 0.01, 0.01],
        }
    )
    # 0: the model's miss; 1: within chance; 2: within 20 %; the unsegmented are not judged
    assert forecasts.missed(rows) == (1, 3)
    failed = health.forecasts_held("the forecasts of ...", *forecasts.missed(rows))
    assert not failed.passed and failed.value == 1.0
    assert "on 1 of 3 segments (those smaller than" in failed.description
    assert health.forecasts_held(
        "...", *forecasts.missed(rows.filter(pl.col("segment_id") > 0))
    ).passed
    waiting = health.forecasts_held(None, 0, 0)
    assert waiting.passed and waiting.description.startswith("no forecast met yet")
    assert not health.forecasts_failed("the forecasts could not be kept or met: ...").passed
