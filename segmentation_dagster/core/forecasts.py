"""Forecasts kept, and met with what happened.

``customer_value``'s validation judges models of one horizon earlier on the horizon before
today; whether the forecasts it hands out today hold is known only a horizon later. So a copy of
the day's forecasts (every scored customer's churn risk, expected spend, BG/NBD's two, and the
segment shown beside them that day) is kept in :data:`TABLE`, and once its horizon has passed
it is met with the purchases of those days: AUC of the churn risk and of BG/NBD's expected
purchases, the mean risk against the share who did not buy, and the spend per segment of that
day against both forecasts (:func:`value.spend_by_segment`). The result is a row of
:data:`OUTCOMES`; the kept copy is then dropped.

**Which days are kept.** A day's forecasts are kept when the last kept (met or not) is at least
a third of its horizon (rounded up) older: a check every third of a horizon, and at most three
copies of the scores waiting. A re-run of the same day replaces that day's copy (the assignment
may have changed in a re-segmentation). When the history now ends earlier, the copies kept for
later days and the outcomes met on events after its end are dropped (:func:`rewind`).
Purchases landed for those days after a forecast was met do not change its outcome.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import duckdb
import polars as pl

from segmentation_dagster.core import privacy, value
from segmentation_dagster.core.warehouse import one, table_exists, transaction

TABLE = "segmentation.value_forecasts"
OUTCOMES = "monitoring.forecast_outcomes"

#: the columns of the scores kept, and a kept copy's own
_SCORES = ("churn_risk", "expected_spend", "expected_spend_bgnbd", "expected_purchases_bgnbd")
_BY_SEGMENT = ("segment_id", "segment_name", "customers", "actual", "noise", "predicted",
               "error", "baseline", "baseline_error")  # fmt: skip


@dataclass(frozen=True)
class Outcome:
    """The forecasts of ``scored_on`` for the ``horizon_days`` from it, met on ``met_on``
    (the last day of events then)."""

    scored_on: dt.date
    horizon_days: int
    met_on: dt.date
    customers: int
    #: the share of them who bought nothing in the horizon, and the mean forecast risk of it
    churned: float
    mean_risk: float
    auc: float | None
    auc_bgnbd: float | None
    #: :func:`value.spend_by_segment` per segment of that day, named as it was then; empty
    #: when spend was not forecast
    by_segment: pl.DataFrame

    @property
    def through(self) -> dt.date:
        return self.scored_on + dt.timedelta(days=self.horizon_days - 1)


def _create(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("create schema if not exists segmentation")
    con.execute("create schema if not exists monitoring")
    con.execute(
        f"create table if not exists {TABLE} (scored_on date not null, horizon_days integer "
        "not null, customer_id varchar not null, segment_id integer, segment_name varchar, "
        + ", ".join(f"{c} double" for c in _SCORES)
        + ")"
    )
    con.execute(
        f"create table if not exists {OUTCOMES} (scored_on date not null, horizon_days "
        "integer not null, met_on date not null, customers integer not null, churned double, "
        "mean_risk double, auc double, auc_bgnbd double, by_segment json)"
    )


def keep(
    con: duckdb.DuckDBPyConnection,
    scores: pl.DataFrame,
    segments: pl.DataFrame,
    scored_on: dt.date,
    horizon: int,
) -> str:
    """Keep ``scores`` (:class:`value.Scores`' frame) with each customer's segment of
    ``segments`` (customer_id, segment_id, segment_name) as the forecasts of ``scored_on`` for
    ``horizon`` days, when the module's rule says so; says what it did."""
    _create(con)
    kept = scores.join(
        segments.select("customer_id", "segment_id", "segment_name"), on="customer_id", how="left"
    ).select("customer_id", "segment_id", "segment_name", *_SCORES)
    con.register("_kept_forecasts", kept)
    try:
        with transaction(con):  # a kill leaves the copies as they were
            con.execute(f"delete from {TABLE} where scored_on >= ?", [scored_on])
            last = one(
                con,
                f"select max(d) from (select max(scored_on) as d from {TABLE} "
                f"union all select max(scored_on) from {OUTCOMES} where scored_on < ?)",
                [scored_on],
            )[0]
            every = max(1, -(-horizon // 3))  # rounded up: at most three wait
            due = scored_on if last is None else last + dt.timedelta(days=every)
            if due <= scored_on:
                con.execute(
                    f"insert into {TABLE} select ?, ?, customer_id, segment_id, segment_name, "
                    f"{', '.join(_SCORES)} from _kept_forecasts",
                    [scored_on, horizon],
                )
    finally:
        con.unregister("_kept_forecasts")
    if due > scored_on:
        return f"next kept on {due} (every {every} days: a third of the {horizon}-day horizon)"
    end = scored_on + dt.timedelta(days=horizon - 1)
    return f"kept the forecasts of {scored_on} for {kept.height} customers, met after {end}"


def rewind(con: duckdb.DuckDBPyConnection, as_of: dt.date) -> str:
    """Drop what a history ending before ``as_of`` no longer holds (a full refresh on fewer
    files): copies kept for later days, and outcomes met on events after its last day. Says
    what it dropped ("" when nothing)."""
    if not table_exists(con, *TABLE.split(".")):
        return ""
    _create(con)
    with transaction(con):
        copies = one(con, f"select count(distinct scored_on) from {TABLE} where scored_on > ?",
                     [as_of])[0]  # fmt: skip
        met = one(con, f"select count(*) from {OUTCOMES} where met_on >= ?", [as_of])[0]
        con.execute(f"delete from {TABLE} where scored_on > ?", [as_of])
        con.execute(f"delete from {OUTCOMES} where met_on >= ?", [as_of])
    if not copies and not met:
        return ""
    return (f"dropped {copies} copies kept and {met} outcomes met after the history's last day "
            f"({as_of - dt.timedelta(days=1)})")  # fmt: skip


def outcome(
    kept: pl.DataFrame, future: pl.DataFrame, scored_on: dt.date, horizon: int, met_on: dt.date
) -> Outcome:
    """``kept`` (a copy's rows: customer_id, segment_id, segment_name and the scores) met with
    ``future`` (:func:`value.labels` of the horizon)."""
    scored = value.labelled(kept, future).with_columns(
        predicted="expected_spend", baseline="expected_spend_bgnbd"
    )
    y = scored["churned"].to_numpy()
    by_segment = pl.DataFrame()
    if scored["predicted"].is_not_null().any():
        names = kept.select("segment_id", "segment_name").unique("segment_id")
        by_segment = (
            value.spend_by_segment(scored, kept)
            .join(names, on="segment_id", how="left", nulls_equal=True)
            .with_columns(pl.col("segment_name").fill_null(value.NO_SEGMENT))
            .select(_BY_SEGMENT)
            .cast(_segment_schema())  # as it reads back from the record
        )
    return Outcome(
        scored_on=scored_on,
        horizon_days=horizon,
        met_on=met_on,
        customers=scored.height,
        churned=float(y.mean()) if len(y) else 0.0,
        mean_risk=float(scored["churn_risk"].mean() or 0.0),
        auc=value.auc(y, scored["churn_risk"].to_numpy()),
        auc_bgnbd=value.auc(y, -scored["expected_purchases_bgnbd"].fill_null(0).to_numpy()),
        by_segment=by_segment,
    )


def meet(con: duckdb.DuckDBPyConnection, events: str, last: dt.date) -> list[Outcome]:
    """Meet every kept copy whose horizon ended by ``last`` (the last day of ``events``) with
    the purchases of its horizon, record each in :data:`OUTCOMES` and drop the copy."""
    if not table_exists(con, *TABLE.split(".")):
        return []
    _create(con)
    due = con.execute(
        f"select distinct scored_on, horizon_days from {TABLE} "
        "where scored_on + horizon_days - 1 <= ? order by scored_on",
        [last],
    ).fetchall()
    met = []
    for scored_on, horizon in due:
        kept = con.sql(
            f"select * exclude (scored_on, horizon_days) from {TABLE} where scored_on = ? "
            "and horizon_days = ?",
            params=[scored_on, horizon],
        ).pl()
        o = outcome(kept, value.labels(con, events, scored_on, horizon), scored_on, horizon, last)
        with transaction(con):  # the record and the drop together: a kill meets it again
            con.execute(f"delete from {OUTCOMES} where scored_on = ?", [scored_on])
            con.execute(
                f"insert into {OUTCOMES} values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [o.scored_on, o.horizon_days, o.met_on, o.customers, o.churned, o.mean_risk,
                 o.auc, o.auc_bgnbd, json.dumps(o.by_segment.to_dicts())],
            )  # fmt: skip
            con.execute(f"delete from {TABLE} where scored_on = ?", [scored_on])
        met.append(o)
    return met


def latest(con: duckdb.DuckDBPyConnection) -> Outcome | None:
    """The last forecasts met (:data:`OUTCOMES`), or None before the first is met."""
    if not table_exists(con, *OUTCOMES.split(".")):
        return None
    row = one(con, f"select * from {OUTCOMES} order by scored_on desc limit 1")
    if row is None:
        return None
    by_segment = json.loads(row[8]) if row[8] else []
    return Outcome(
        *row[:8],
        by_segment=pl.DataFrame(by_segment, schema=_segment_schema()) if by_segment else
        pl.DataFrame(),
    )  # fmt: skip


def _segment_schema() -> dict[str, pl.DataType]:
    counts = {"segment_id": pl.Int64, "segment_name": pl.String, "customers": pl.Int64}
    return counts | {c: pl.Float64 for c in _BY_SEGMENT if c not in counts}


def waiting(con: duckdb.DuckDBPyConnection) -> str:
    """The kept copies not met yet: when each will be."""
    if not table_exists(con, *TABLE.split(".")):
        return "none"
    rows = con.execute(
        f"select distinct scored_on, horizon_days from {TABLE} order by scored_on"
    ).fetchall()
    return ", ".join(f"{d} (met after {d + dt.timedelta(days=h - 1)})" for d, h in rows) or "none"


def summary(o: Outcome) -> str:
    """One line on ``o``: who, how many bought nothing against the forecast risk, the AUCs."""
    auc = "n/a" if o.auc is None else f"{o.auc:.3f}"
    base = "n/a" if o.auc_bgnbd is None else f"{o.auc_bgnbd:.3f}"
    return (
        f"the forecasts of {o.scored_on} for the {o.horizon_days} days to {o.through} (met "
        f"on the events to {o.met_on}): {o.customers} customers, {o.churned:.1%} bought "
        f"nothing against a mean churn risk of {o.mean_risk:.1%}; AUC {auc} (BG/NBD's "
        f"expected purchases: {base})"
    )


def missed(by_segment: pl.DataFrame, within: float = 0.2) -> tuple[int, int]:
    """Of the segments whose spend can be judged (:func:`value.spend_verdict`'s), how many our
    forecast missed by more than ``within`` and by more than twice the actual's noise; and how
    many were judged."""
    if by_segment.is_empty():
        return 0, 0
    rows = by_segment.filter(pl.col("segment_id").is_not_null() & pl.col("error").is_not_null())
    far = (pl.col("error") > within) & (pl.col("error") > 2 * pl.col("noise").fill_null(0.0))
    return int(rows.select(far.sum()).item()), rows.height


def published(by_segment: pl.DataFrame, min_group_size: int) -> pl.DataFrame:
    """:attr:`Outcome.by_segment` with the groups smaller than ``min_group_size`` (that day's
    buyers) suppressed, as reports show it."""
    if by_segment.is_empty():
        return by_segment
    sizes = dict(by_segment.select("segment_id", "customers").iter_rows())
    small = privacy.small_groups(sizes, by_segment, min_group_size)
    return privacy.suppress(by_segment, small, _BY_SEGMENT[2:])
