"""Churn risk and expected value per customer, trained and validated on the shop's own history.

**The split.** With a horizon of ``H`` days and the data ending on ``end``:

- *train*: features as of ``end - 2H`` (events before it), labels from the ``H`` days after;
- *test*: features as of ``end - H``, labels from the last ``H`` days: the validation the
  metadata reports (AUC, calibration, spend error per segment), on customers the models have
  not seen labelled at that date;
- *score*: the models refitted on the test split score everyone as of ``end``.

Each model reads all the history before its training cutoff, and the same window length when
it is judged or scores: the validated models ``end - 2H - first`` days, the deployed ones a
horizon more. (With the validated models' shorter window the deployed ones forecast worse on a
horizon they never saw: docs/activation.md.)

**Retraining.** Trained models (:class:`Trained`) are kept and score the following days, as a
deployed model does: they are retrained when they are ``retrain_days`` days of events old, and
at once when the history they learnt from changed (a late or corrected file, an erasure: the
number or a checksum of the events up to their last day differs), when the ``value`` section,
the features or scikit-learn changed, or when they cannot be read. A day in between costs
two passes over the events (the checksum, today's features), not five plus two fits.

The population is the customers who bought before the cutoff (churn means "no purchase in the
next ``H`` days"; someone who never bought has nothing to churn from). A purchases-only log
works: the behaviour columns are then zero for everyone.

**The baseline to beat** is the standard model of purchase-only logs: BG/NBD for the number of
purchases (Fader, Hardie & Lee 2005) and Gamma-Gamma for the spend per purchase (Fader, Hardie
& Lee 2005b), fitted by maximum likelihood here (``scipy``; the maintained library for them,
pymc-marketing, brings PyMC and a compiler toolchain, and ``lifetimes`` is archived). Its
churn score is the expected number of purchases in the horizon (fewer: riskier).

**Our model**: gradient-boosted trees (scikit-learn's ``HistGradientBoosting*``) on recency,
frequency, spend, tenure and recent behaviour, and on the baseline's own reading of each
customer (:data:`BASELINE_FEATURES`: BG/NBD's P(alive) and expected purchases, from a BG/NBD
fitted on the history before the same cutoff). Churn is a classifier, constrained to a risk
that falls as those two rise; spend a hurdle: P(buy) times a Gamma-loss regression of what the
buyers spent. Starting from the baseline's view matters most where behaviour is missing: on a
purchases-only log a one-off buyer and a steady rare buyer differ mainly in what the BG/NBD
likelihood makes of their purchase dates. Where the buyers follow BG/NBD's own story the other
features only add noise the trees fit: the classifier reads the baseline's two alone when that
ranks a held-out part of the training split better (:func:`_choose`; the metadata's
``churn_reads`` says which and the held-out AUCs).

**Beyond the edge of what they learnt from.** At the training cutoff nobody can have gone
without buying for longer than the history then was; later some have, and trees forecast a
constant past their data's edge. Such a customer is read by the trees as if quiet for just as
long as the quietest they learnt from, and BG/NBD's expected purchases carry the forecast from
there (:meth:`Models.predict`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import duckdb
import numpy as np
import polars as pl
from scipy import optimize, special

from segmentation_dagster.core import checks, kept

#: the features the models use, as computed by :func:`features_as_of`
FEATURES = (
    "recency_days", "frequency", "monetary", "avg_order_value", "tenure_days", "t_first_buy",
    "purchases_30d", "purchases_90d", "revenue_90d", "events_30d", "sessions_30d",
    "views_30d", "carts_30d", "days_since_last_event",
    # the whole window's habits: the 30-day counts alone are too noisy to tell a rare buyer
    # who browses and abandons carts from one who buys on most visits
    "sessions", "views_per_session", "carts_per_session", "purchases_per_cart",
    "purchases_per_session",
)  # fmt: skip
#: the baseline's view of each customer, added by :func:`with_baseline`: BG/NBD's P(alive) and
#: its expected purchases in the horizon; the churn risk may only fall as they rise
BASELINE_FEATURES = ("bgnbd_p_alive", "bgnbd_purchases")


@dataclass(frozen=True)
class ValueConfig:
    """The project file's ``value`` section."""

    #: the churn and spend horizon; shortened to a third of the data's span when the history is
    #: shorter than three horizons (the metadata says which horizon was used)
    horizon_days: int = 90
    #: below this many customers in a split, no model is trained
    min_customers: int = 200
    #: the models are fitted (and validated) on at most this many customers per split
    fit_sample: int = 100_000
    #: the baseline's four (and three) parameters are fitted on at most this many
    baseline_sample: int = 20_000
    #: the models are retrained when they are this many days of events old (1: whenever a day
    #: was added); in between, every run scores today's customers with them
    retrain_days: int = 7

    #: each field's range (docs/configuration.md, "Ranges")
    RULES: ClassVar[dict[str, checks.Rule]] = {
        "horizon_days": checks.whole(1),
        "min_customers": checks.whole(1),
        "fit_sample": checks.whole(1),
        "baseline_sample": checks.whole(1),
        "retrain_days": checks.whole(1),
    }

    def __post_init__(self) -> None:
        checks.apply(self, self.RULES)

    def training(self) -> tuple[object, ...]:
        """What changes what training produces (not how long models are kept): the fields,
        the features and the kept file's format."""
        fields = (self.horizon_days, self.min_customers, self.fit_sample, self.baseline_sample)
        return (*fields, FEATURES, BASELINE_FEATURES, KEPT_FORMAT)


def features_as_of(
    con: duckdb.DuckDBPyConnection, events: str, cutoff: dt.date, lookback: int
) -> pl.DataFrame:
    """One row per customer who bought before ``cutoff``: :data:`FEATURES` over the
    ``lookback`` days before it (the same window at every cutoff, so a model trained at one
    cutoff reads features of the same scale at another; recency, tenure and the first
    purchase are measured within it: at the training cutoff the data begin where the window
    does, so a first purchase from before the window would mean something else there)
    plus the BG/NBD summary over the whole history (``x`` repeat purchase days, ``t_x`` and
    ``T`` in days, ``m`` mean spend per purchase day). ``events`` is a relation name of the
    project's own (e.g. ``main.stg_shop__events``); dates and days are bound, never pasted."""
    return con.sql(
        f"""
        with ev as (
            select customer_id, event_date, event_type, session_id,
                   -- exact sums: a double's depends on the order DuckDB's threads add it in,
                   -- and the trees' bins with it (the same history gave other forecasts)
                   case when event_type = 'purchase'
                        then (coalesce(price, 0) * coalesce(quantity, 1))::decimal(38, 6)
                        else 0 end as revenue
            from {events} where event_date < $cutoff
        ),
        days as (  -- purchase days: a basket over several lines is one purchase
            select customer_id, event_date, sum(revenue) as revenue
            from ev where event_type = 'purchase' group by all
        ),
        history as (
            select customer_id, count(*) as n_days, sum(revenue) as total,
                   min(event_date) as first_buy, max(event_date) as last_buy
            from days group by all
        ),
        recent as (
            select customer_id, min(event_date) as first_buy, count(*) as frequency,
                   sum(revenue) as monetary,
                   count(*) filter (event_date >= $cutoff - 30) as purchases_30d,
                   count(*) filter (event_date >= $cutoff - 90) as purchases_90d,
                   coalesce(sum(revenue) filter (event_date >= $cutoff - 90), 0) as revenue_90d
            from days where event_date >= $cutoff - $lookback group by all
        ),
        act as (
            select customer_id, min(event_date) as first_event, max(event_date) as last_event,
                   count(*) filter (event_date >= $cutoff - 30) as events_30d,
                   count(distinct session_id) filter (event_date >= $cutoff - 30) as sessions_30d,
                   count(*) filter (event_date >= $cutoff - 30 and event_type = 'view')
                       as views_30d,
                   count(*) filter (event_date >= $cutoff - 30 and event_type = 'cart')
                       as carts_30d,
                   count(distinct session_id) as sessions,
                   count(*) filter (event_type = 'view') as views,
                   count(*) filter (event_type = 'cart') as carts
            from ev where event_date >= $cutoff - $lookback group by all
        )
        select h.customer_id::varchar as customer_id,
               least($cutoff - h.last_buy, $lookback)::double as recency_days,
               coalesce(r.frequency, 0)::double as frequency,
               coalesce(r.monetary, 0)::double as monetary,
               coalesce(r.monetary / r.frequency, 0)::double as avg_order_value,
               coalesce($cutoff - a.first_event, 0)::double as tenure_days,
               coalesce($cutoff - r.first_buy, $lookback)::double as t_first_buy,
               coalesce(r.purchases_30d, 0)::double as purchases_30d,
               coalesce(r.purchases_90d, 0)::double as purchases_90d,
               coalesce(r.revenue_90d, 0)::double as revenue_90d,
               coalesce(a.events_30d, 0)::double as events_30d,
               coalesce(a.sessions_30d, 0)::double as sessions_30d,
               coalesce(a.views_30d, 0)::double as views_30d,
               coalesce(a.carts_30d, 0)::double as carts_30d,
               coalesce($cutoff - a.last_event, $lookback)::double as days_since_last_event,
               coalesce(a.sessions, 0)::double as sessions,
               coalesce(a.views / greatest(a.sessions, 1), 0)::double as views_per_session,
               coalesce(a.carts / greatest(a.sessions, 1), 0)::double as carts_per_session,
               coalesce(r.frequency / greatest(a.carts, 1), 0)::double as purchases_per_cart,
               coalesce(r.frequency / greatest(a.sessions, 1), 0)::double
                   as purchases_per_session,
               (h.n_days - 1)::double as x, (h.last_buy - h.first_buy)::double as t_x,
               ($cutoff - h.first_buy)::double as "T", (h.total / h.n_days)::double as m
        from history h
        left join recent r using (customer_id)
        left join act a using (customer_id)
        order by customer_id
        """,
        params={"cutoff": cutoff, "lookback": lookback},
    ).pl()


def labels(
    con: duckdb.DuckDBPyConnection, events: str, start: dt.date, horizon: int
) -> pl.DataFrame:
    """customer_id, purchased (any purchase in [start, start + horizon)), spend there and
    ``spend_sq``, the sum of its purchase days' squared totals (:func:`spend_noise`)."""
    return con.sql(
        f"""
        with days as (  -- a basket over several lines is one purchase, as in the features
            select customer_id, event_date,  -- exact, as in the features
                   sum((coalesce(price, 0) * coalesce(quantity, 1))::decimal(38, 6)) as r
            from {events}
            where event_type = 'purchase' and event_date >= $start
              and event_date < $start + to_days($h)
            group by all
        )
        select customer_id::varchar as customer_id, true as purchased, sum(r)::double as spend,
               sum(r::decimal(38, 2) * r::decimal(38, 2))::double as spend_sq
        from days group by all
        """,
        params={"start": start, "h": horizon},
    ).pl()


def labelled(features: pl.DataFrame, future: pl.DataFrame) -> pl.DataFrame:
    """``features`` with ``churned`` (no purchase in the horizon), ``spend`` and ``spend_sq``
    (0 if none)."""
    return features.join(future, on="customer_id", how="left").with_columns(
        churned=pl.col("purchased").is_null(),
        spend=pl.col("spend").fill_null(0.0),
        spend_sq=pl.col("spend_sq").fill_null(0.0),
    )


def spend_noise() -> pl.Expr:
    """How much a group's actual spend in the horizon varies by chance alone, relative to it:
    one standard error if each customer's purchase days arrive at random at their own rate
    (a compound Poisson sum, whose variance the sum of the squared purchase-day totals
    estimates without knowing the rates). A forecast of every customer's true expected spend
    still misses by about this much; an error of a few times it is the model's. Aggregates
    ``spend`` and ``spend_sq`` (:func:`labelled`); null when nothing was spent."""
    actual = pl.col("spend").sum()
    return pl.when(actual > 0).then(pl.col("spend_sq").sum().sqrt() / actual)


# -- the baseline: BG/NBD and Gamma-Gamma ------------------------------------------------------


@dataclass(frozen=True)
class BgNbd:
    r: float
    alpha: float
    a: float
    b: float

    def expected_purchases(self, t: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray):  # noqa: ANN201, N803
        """E[purchases in (T, T + t] | x, t_x, T] (Fader, Hardie & Lee 2005, eq. 10)."""
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        hyp = special.hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + T + t))
        first = (a + b + x - 1) / (a - 1)
        second = 1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp
        return first * second / self._denominator(x, t_x, T)

    def p_alive(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:  # noqa: N803
        return 1.0 / self._denominator(x, t_x, T)

    def _denominator(self, x, t_x, T):  # noqa: ANN001, ANN202, N803
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        ratio = np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + t_x)))
        return 1 + np.where(x > 0, a / np.maximum(b + x - 1, 1e-12) * ratio, 0.0)


def _bgnbd_nll(params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> float:  # noqa: N803
    with np.errstate(all="ignore"):  # the optimiser probes parameters where terms overflow
        r, alpha, a, b = np.exp(params)
        return _bgnbd_terms(r, alpha, a, b, x, t_x, T, special.gammaln)


def _bgnbd_terms(r, alpha, a, b, x, t_x, T, ln) -> float:  # noqa: ANN001, N803
    a1 = ln(r + x) - ln(r) + r * np.log(alpha)
    a2 = ln(a + b) + ln(b + x) - ln(b) - ln(a + b + x)
    a3 = -(r + x) * np.log(alpha + T)
    a4 = np.where(
        x > 0, np.log(a) - np.log(np.maximum(b + x - 1, 1e-12)) - (r + x) * np.log(alpha + t_x),
        -np.inf,
    )  # fmt: skip
    return -float(np.sum(a1 + a2 + np.logaddexp(a3, a4)))


def _minimize(nll, start: np.ndarray, args: tuple):  # noqa: ANN001, ANN202
    res = optimize.minimize(nll, start, args=args, method="L-BFGS-B")
    if res.success and np.isfinite(res.fun):
        return res
    return optimize.minimize(nll, start, args=args, method="Nelder-Mead",
                             options={"maxiter": 2000, "xatol": 1e-4, "fatol": 1e-3})  # fmt: skip


def fit_bgnbd(x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> BgNbd:  # noqa: N803
    """Maximum-likelihood BG/NBD parameters (log-parameterised): L-BFGS, and Nelder-Mead from
    the same start when that does not converge."""
    start = np.log([1.0, max(float(np.mean(T)), 1.0), 1.0, 1.0])
    res = _minimize(_bgnbd_nll, start, (x, t_x, T))
    r, alpha, a, b = np.exp(res.x)
    return BgNbd(float(r), float(alpha), float(a), float(b))


@dataclass(frozen=True)
class GammaGamma:
    p: float
    q: float
    v: float

    def expected_spend(self, x: np.ndarray, m: np.ndarray) -> np.ndarray:
        """E[spend per purchase | x purchases with mean m] (x >= 1)."""
        p, q, v = self.p, self.q, self.v
        return (p * (v + x * m)) / (p * x + q - 1)


def _gg_nll(params: np.ndarray, x: np.ndarray, m: np.ndarray) -> float:
    p, q, v = np.exp(params)
    ln = special.gammaln
    ll = (ln(p * x + q) - ln(p * x) - ln(q) + q * np.log(v) + (p * x - 1) * np.log(m)
          + p * x * np.log(x) - (p * x + q) * np.log(x * m + v))  # fmt: skip
    return -float(np.sum(ll))


def fit_gamma_gamma(x: np.ndarray, m: np.ndarray) -> GammaGamma | None:
    """Gamma-Gamma on customers with at least one purchase and a positive mean spend; None
    when fewer than :data:`MIN_SPENDERS` have one (e.g. a log without prices)."""
    keep = (x > 0) & (m > 0)
    if keep.sum() < MIN_SPENDERS:
        return None
    start = np.log([1.0, 2.0, max(float(np.mean(m[keep])), 1.0)])
    res = _minimize(_gg_nll, start, (x[keep], m[keep]))
    p, q, v = np.exp(res.x)
    return GammaGamma(float(p), float(max(q, 1.0 + 1e-6)), float(v))


# -- the models and their validation -----------------------------------------------------------


@dataclass(frozen=True)
class Baseline:
    bgnbd: BgNbd
    gamma_gamma: GammaGamma | None  # None: too few customers spent anything to fit it

    @classmethod
    def fit(cls, feats: pl.DataFrame) -> Baseline:
        x, t_x, T, m = (feats[c].to_numpy().astype(float) for c in ("x", "t_x", "T", "m"))  # noqa: N806
        # x counts repeat purchase days; Gamma-Gamma takes the number of purchases (x + 1)
        return cls(fit_bgnbd(x, t_x, T), fit_gamma_gamma(x + 1, m))

    def predict(
        self, feats: pl.DataFrame, horizon: int, purchases: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(expected purchases, expected spend) in the next ``horizon`` days; ``purchases``:
        the first, when :func:`with_baseline` already computed it with this BG/NBD."""
        x, m = (feats[c].to_numpy().astype(float) for c in ("x", "m"))
        n = _expected_purchases(self.bgnbd, horizon, feats) if purchases is None else purchases
        if self.gamma_gamma is None:
            return n, np.full(len(n), np.nan)
        with np.errstate(all="ignore"):
            per = self.gamma_gamma.expected_spend(x + 1, np.maximum(m, 1e-9))
        # where the closed form overflows (parameters at the edge), the customer's mean spend
        per = np.where(np.isfinite(per) & (per >= 0), per, m)
        return n, n * per


def _expected_purchases(bgnbd: BgNbd, horizon: int, feats: pl.DataFrame) -> np.ndarray:
    """BG/NBD's expected purchases in the next ``horizon`` days; where its closed form
    overflows (parameters at the edge on a short history, e.g. ``a`` = 1), the customer's own
    purchase rate over the horizon."""
    x, t_x, T = (feats[c].to_numpy().astype(float) for c in ("x", "t_x", "T"))  # noqa: N806
    with np.errstate(all="ignore"):
        n = bgnbd.expected_purchases(horizon, x, t_x, T)
    rate = (x + 1) / np.maximum(T, 1.0) * horizon
    return np.where(np.isfinite(n) & (n >= 0), n, rate)


def with_baseline(feats: pl.DataFrame, bgnbd: BgNbd, horizon: int) -> pl.DataFrame:
    """``feats`` (of :func:`features_as_of`) with :data:`BASELINE_FEATURES` by ``bgnbd``, which
    was fitted on the history before the same cutoff: P(alive) (NaN where it overflows, which
    the trees send down the side they learnt for it, or the larger one) and
    :func:`_expected_purchases`."""
    x, t_x, T = (feats[c].to_numpy().astype(float) for c in ("x", "t_x", "T"))  # noqa: N806
    with np.errstate(all="ignore"):
        alive = bgnbd.p_alive(x, t_x, T)
    return feats.with_columns(
        bgnbd_p_alive=pl.Series(np.where(np.isfinite(alive), alive, np.nan), dtype=pl.Float64),
        bgnbd_purchases=pl.Series(_expected_purchases(bgnbd, horizon, feats), dtype=pl.Float64),
    )


#: the churn risk falls as BG/NBD's P(alive) and expected purchases rise; the spend of those who
#: buy rises with the expected purchases; every other feature may act either way
_CHURN_SIGNS = {"bgnbd_p_alive": -1, "bgnbd_purchases": -1}
_SPEND_SIGNS = {"bgnbd_purchases": 1}
_MODEL_FEATURES = (*FEATURES, *BASELINE_FEATURES)
#: the name of :attr:`Validation.spend_by_segment`'s row of the customers in no segment
NO_SEGMENT = "(in no segment then)"
#: spend is forecast only when at least this many customers of a split spent something (a log
#: without prices has none): below it, expected spend is null and the validation says why
MIN_SPENDERS = 20


@dataclass(frozen=True)
class Models:
    """The fitted churn classifier and spend regressor; they read :data:`FEATURES` and
    :data:`BASELINE_FEATURES` (:func:`with_baseline`)."""

    churn: object
    spend: object | None  # None: too few customers spent anything (see :data:`MIN_SPENDERS`)
    #: the longest a customer they learnt from had gone without buying, in days: at the
    #: training cutoff nobody can have been quiet for longer than the history was then long,
    #: and a cutoff later some have
    quiet_seen: float
    #: the features the churn classifier reads (:data:`CHURN_READS`) and why (:func:`_choose`)
    churn_reads: tuple[str, ...] = _MODEL_FEATURES
    churn_choice: str = ""

    @classmethod
    def fit(cls, train: pl.DataFrame, seed: int = 0) -> Models:
        from sklearn.ensemble import HistGradientBoostingRegressor

        X = train.select(_MODEL_FEATURES).to_numpy()  # noqa: N806
        y = train["churned"].to_numpy()
        trees = {"max_iter": 200, "learning_rate": 0.05, "min_samples_leaf": 40,
                 "random_state": seed}  # fmt: skip
        with _one_thread():
            reads, choice = _choose(X, y, trees, seed)
            churn = _classifier(reads, trees).fit(X[:, _columns(reads)], y)
            # a hurdle: P(buy) from the classifier, times the spend of those who buy
            bought = train["spend"].to_numpy() > 0
            spend = None if bought.sum() < MIN_SPENDERS else HistGradientBoostingRegressor(
                loss="gamma", monotonic_cst=[_SPEND_SIGNS.get(f, 0) for f in _MODEL_FEATURES],
                **trees,
            ).fit(X[bought], train["spend"].to_numpy()[bought])  # fmt: skip
        return cls(churn, spend, float(_quiet(train).max()), reads, choice)

    def predict(
        self, feats: pl.DataFrame, bgnbd: BgNbd, horizon: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(P(no purchase in the horizon), expected spend in it) for ``feats``, which
        :func:`with_baseline` gave ``bgnbd``'s features. Beyond what the trees learnt from: a
        customer quiet for longer than :attr:`quiet_seen` is read by them as if quiet for just
        that long, and BG/NBD carries the forecast the rest of the way (P(buy) and spend times
        its expected purchases for the customer over those at that edge, :func:`_fade`)."""
        X = feats.select(_MODEL_FEATURES).to_numpy()  # noqa: N806
        fade = np.ones(len(X))
        beyond = _quiet(feats) > self.quiet_seen
        if beyond.any():
            X[beyond], fade[beyond] = _fade(feats.filter(beyond), bgnbd, horizon, self.quiet_seen)
        classes = list(self.churn.classes_)  # type: ignore[attr-defined]
        # every core: rows are scored independently, with no barrier as between a fit's splits
        proba = self.churn.predict_proba(X[:, _columns(self.churn_reads)])  # type: ignore[attr-defined]
        spend = (np.full(len(X), np.nan) if self.spend is None
                 else self.spend.predict(X))  # type: ignore[attr-defined]  # fmt: skip
        risk = proba[:, classes.index(True)] if True in classes else np.zeros(len(X))
        buy = (1 - risk) * fade
        return 1 - buy, buy * np.maximum(spend, 0.0)


#: the feature sets the churn classifier may read. On a log whose buyers follow BG/NBD's own
#: story the baseline's reading alone ranks them best, and the other features only add noise
#: the trees fit; on a log with behaviour, or whose buyers come and go otherwise, all of them
#: do. Which one is chosen on a held-out part of the training split (:func:`_choose`).
CHURN_READS: dict[str, tuple[str, ...]] = {
    "all features": _MODEL_FEATURES,
    "the baseline's reading alone": BASELINE_FEATURES,
}
#: the share of the training split held out to choose what the churn classifier reads, and
#: the most customers the choice looks at (a few thousand held out tell AUCs 0.01 apart)
HOLD_OUT = 0.3
CHOICE_SAMPLE = 20_000


def _columns(reads: tuple[str, ...]) -> list[int]:
    return [_MODEL_FEATURES.index(f) for f in reads]


def _classifier(reads: tuple[str, ...], trees: dict):  # noqa: ANN202
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(
        monotonic_cst=[_CHURN_SIGNS.get(f, 0) for f in reads], **trees
    )


def _choose(
    X: np.ndarray,  # noqa: N803
    y: np.ndarray,
    trees: dict,
    seed: int,
) -> tuple[tuple[str, ...], str]:
    """What the churn classifier reads (:data:`CHURN_READS`): the set whose classifier, fitted
    on the rest, ranks a held-out :data:`HOLD_OUT` of the training split best (a tie: all
    features), and a sentence with the held-out AUCs. At most :data:`CHOICE_SAMPLE` customers
    take part."""
    rng = np.random.default_rng(seed)
    if len(y) > CHOICE_SAMPLE:
        some = np.sort(rng.choice(len(y), CHOICE_SAMPLE, replace=False))
        X, y = X[some], y[some]  # noqa: N806
    hold = rng.random(len(y)) < HOLD_OUT
    if any(len(np.unique(part)) < 2 for part in (y[hold], y[~hold])):
        return _MODEL_FEATURES, "all features (too few customers to hold some out)"
    aucs = {}
    for name, reads in CHURN_READS.items():
        cols = _columns(reads)
        clf = _classifier(reads, trees).fit(X[~hold][:, cols], y[~hold])
        proba = clf.predict_proba(X[hold][:, cols])
        aucs[name] = auc(y[hold], proba[:, list(clf.classes_).index(True)]) or 0.0
    best = max(aucs, key=lambda name: (aucs[name], name == "all features"))
    held = " against ".join(f"{aucs[name]:.3f} reading {name}" for name in aucs)
    return CHURN_READS[best], f"{best}: held-out AUC {held} ({hold.sum()} customers held out)"


def _quiet(feats: pl.DataFrame) -> np.ndarray:
    """Days since each customer's last purchase, over the whole history (BG/NBD's T - t_x)."""
    return (feats["T"] - feats["t_x"]).to_numpy().astype(float)


def _fade(
    feats: pl.DataFrame, bgnbd: BgNbd, horizon: int, quiet: float
) -> tuple[np.ndarray, np.ndarray]:
    """For customers quiet for longer than ``quiet`` days: the model's features as if they had
    been quiet for just that long (their last purchase ``quiet`` days before the cutoff, the same
    purchases before it), and BG/NBD's expected purchases for them over those at that edge, in
    [0, 1]. Trees forecast a constant beyond the edge of what they learnt from; BG/NBD's
    purchase-and-drop-out story says how a buyer's chances fade with a longer silence."""
    edge = with_baseline(feats.with_columns(T=pl.col("t_x") + quiet), bgnbd, horizon)
    now, then = feats["bgnbd_purchases"].to_numpy(), edge["bgnbd_purchases"].to_numpy()
    with np.errstate(all="ignore"):
        fade = np.where(then > 0, now / then, 1.0)
    return edge.select(_MODEL_FEATURES).to_numpy(), np.clip(np.nan_to_num(fade, nan=1.0), 0, 1)


def _one_thread():  # noqa: ANN202
    """The trees are grown on one OpenMP thread: a split of a 100k-row sample is too little work
    to share, and the threads meet at a barrier after every split, where on a shared 2-core
    machine they wait for each other. Scoring uses every core."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="openmp")


def auc(y: np.ndarray, score: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    if not (0 < y.sum() < len(y)) or not np.all(np.isfinite(score)):
        return None
    return float(roc_auc_score(y, score))


def calibration(y: np.ndarray, risk: np.ndarray, bins: int = 10) -> pl.DataFrame:
    """Deciles of predicted risk: mean predicted, observed churn share, customers."""
    df = pl.DataFrame({"risk": risk, "churned": y.astype(float)})
    return (
        df.with_columns(bin=(pl.col("risk").rank("ordinal") * bins / (df.height + 1)).floor())
        .group_by("bin")
        .agg(customers=pl.len(), predicted=pl.col("risk").mean(), observed=pl.col("churned").mean())
        .sort("bin")
    )


@dataclass(frozen=True)
class Validation:
    horizon_days: int
    cutoff: dt.date  # the test split's cutoff
    n_train: int
    n_test: int
    auc: float | None
    auc_baseline: float | None
    brier: float
    calibration: pl.DataFrame
    #: per segment: customers, actual spend, predicted (ours, baseline), relative errors, and
    #: the actual's own noise (:func:`spend_noise`); the customers in no segment of that
    #: assignment are the row whose segment_id is null
    spend_by_segment: pl.DataFrame
    #: the snapshot whose segments group ``spend_by_segment``: one from before the outcomes,
    #: or None for today's (chosen after them: a segment of the inactive is, in part, the
    #: customers who did not buy in the horizon, so its error says little about the model)
    segments_as_of: dt.date | None = None
    #: why spend was not forecast ("" when it was): the errors are then null
    spend_not_modelled: str = ""
    #: what the validated churn classifier read and why (:func:`_choose`)
    churn_reads: str = ""


def horizon_for(first: dt.date, end: dt.date, wanted: int) -> int:
    """The configured horizon, or a third of the history when that is shorter."""
    return max(1, min(wanted, ((end - first).days + 1) // 3))


def validate(
    train: pl.DataFrame,
    test: pl.DataFrame,
    segments: pl.DataFrame,
    horizon: int,
    cutoff: dt.date,
    baseline_sample: int = 20_000,
    segments_as_of: dt.date | None = None,
) -> tuple[Validation, Models, Baseline, pl.DataFrame]:
    """Fit on ``train``, judge on ``test`` (both :func:`labelled`); ``segments``:
    customer_id, segment_id (of ``segments_as_of``, None: today's) for the per-segment spend
    error. The baseline is fitted on the test split's history (before its cutoff), at most
    ``baseline_sample`` customers; a BG/NBD fitted the same way on the train split's history
    gives the models their :data:`BASELINE_FEATURES` there. Returns the validation, the
    models, the baseline, and ``test`` with the baseline's features."""
    past = fit_bgnbd(*(_sample(train, baseline_sample)[c].to_numpy().astype(float)
                       for c in ("x", "t_x", "T")))  # fmt: skip
    models = Models.fit(with_baseline(train, past, horizon))
    baseline = Baseline.fit(_sample(test.drop("churned", "spend", "spend_sq"), baseline_sample))
    test = with_baseline(test, baseline.bgnbd, horizon)
    risk, spend = models.predict(test, baseline.bgnbd, horizon)
    n_base, spend_base = baseline.predict(test, horizon, test["bgnbd_purchases"].to_numpy())
    y = test["churned"].to_numpy()
    scored = test.select("customer_id", "spend", "spend_sq").with_columns(
        predicted=pl.Series(spend).fill_nan(None), baseline=pl.Series(spend_base).fill_nan(None)
    )
    v = Validation(
        horizon_days=horizon,
        cutoff=cutoff,
        n_train=train.height,
        n_test=test.height,
        auc=auc(y, risk),
        auc_baseline=auc(y, -n_base),  # fewer expected purchases: riskier
        brier=float(np.mean((risk - y) ** 2)),
        calibration=calibration(y, risk),
        spend_by_segment=spend_by_segment(scored, segments),
        segments_as_of=segments_as_of,
        spend_not_modelled=_why_no_spend(train, models, baseline),
        churn_reads=models.churn_choice,
    )
    return v, models, baseline, test


def spend_by_segment(scored: pl.DataFrame, segments: pl.DataFrame) -> pl.DataFrame:
    """Per segment of ``segments`` (customer_id, segment_id): customers, the ``actual`` spend
    in the horizon, the ``predicted`` and ``baseline`` forecasts, the actual's ``noise``
    (:func:`spend_noise`) and both relative errors. ``scored``: customer_id, spend, spend_sq
    (:func:`labelled`), predicted, baseline."""
    return (
        # a left join: who bought but was in no segment then (inactive at that snapshot, or
        # new since) is a row of its own (segment_id null), so the rows add up to the split
        scored.join(segments.select("customer_id", "segment_id"), on="customer_id", how="left")
        .group_by("segment_id")
        .agg(
            customers=pl.len(),
            actual=pl.col("spend").sum(),
            predicted=pl.col("predicted").sum(),
            baseline=pl.col("baseline").sum(),
            noise=spend_noise(),
        )  # fmt: skip
        .with_columns(  # relative to nothing spent, an error is not a number: null
            error=_relative_error("predicted"), baseline_error=_relative_error("baseline")
        )
        .sort("segment_id", nulls_last=True)
    )


def spend_verdict(by_segment: pl.DataFrame, within: float = 0.2) -> str:
    """One line on :func:`spend_by_segment`'s rows: on how many segments each forecast is
    within ``within`` of the actual spend, on how many ours is the closer one, and how many
    each misses by more than twice the actual's noise. Counts the segments whose actual spend
    has an error (something was spent, the group was not suppressed), not the customers in
    no segment. Where BG/NBD is strictly closer on most segments, the line says to read
    the ``expected_spend_bgnbd`` column (scores and export) for this shop."""
    rows = by_segment.filter(pl.col("segment_id").is_not_null() & pl.col("error").is_not_null())
    n = rows.height
    if n == 0:
        return ("no segment to judge the spend by: none spent anything in the horizon, or "
                "all were suppressed as small groups")  # fmt: skip
    ours, base = rows["error"], rows["baseline_error"].fill_null(float("inf"))
    far = (2 * rows["noise"]).fill_null(float("inf"))
    closer = int((ours < base).sum())
    line = (
        f"within {within:.0%} of the actual spend on {int((ours <= within).sum())} of {n} "
        f"segments (BG/NBD + Gamma-Gamma: {int((base <= within).sum())} of {n}); closer than "
        f"BG/NBD on {closer} of {n}; off by more than twice the noise on "
        f"{int((ours > far).sum())} (BG/NBD: {int((base > far).sum())})"
    )
    if int((base < ours).sum()) * 2 > n:  # a tie is no win for either
        line += (
            "; on this shop BG/NBD forecast spend better on most segments: its "
            "expected_spend_bgnbd is beside ours in the export and segmentation.customer_value"
        )
    return line


def _relative_error(column: str) -> pl.Expr:
    actual = pl.col("actual")
    return pl.when(actual > 0).then((pl.col(column) / actual - 1).abs())


def _why_no_spend(train: pl.DataFrame, models: Models, baseline: Baseline) -> str:
    if models.spend is not None and baseline.gamma_gamma is not None:
        return ""
    spent = int((train["spend"] > 0).sum())
    return (
        f"{spent} of {train.height} customers of the training split spent anything (at least "
        f"{MIN_SPENDERS} needed to forecast spend): do the purchases carry a price? "
        "Churn risk is still forecast."
    )


def _sample(df: pl.DataFrame, n: int) -> pl.DataFrame:
    return df if df.height <= n else df.sample(n, seed=0).sort("customer_id")


#: the file in the model folder that keeps the trained models between runs, and its format
#: (raise it when the models or what they read change in a way FEATURES does not show)
MODELS_FILE = "value_models.joblib"
KEPT_FORMAT = 6  # 4: Models.quiet_seen; 5: Models.churn_reads; 6: the deployed window


@dataclass(frozen=True)
class Trained:
    """Models trained on the history ``first`` .. ``through`` (the stamp's), kept to score the
    following days; ``lookback`` and ``horizon`` are the windows they were trained with, which
    scoring keeps."""

    models: Models
    baseline: Baseline
    validation: Validation
    first: dt.date
    horizon: int
    lookback: int
    #: the events dated up to the stamp's ``through`` when they were trained: their number and
    #: a checksum of the columns the models read (:func:`_history`); another value later means
    #: the history they learnt from changed
    history: tuple[int, int]
    stamp: kept.Stamp

    @property
    def through(self) -> dt.date:
        return self.stamp.through


@dataclass(frozen=True)
class Scores:
    """Today's churn risk and expected spend per customer who ever bought, and how the models
    did on the last horizon they could be checked on (None: too little history).
    ``trained``: the models that scored (None: none could be trained); ``retrained``: why they
    were trained in this run, or "" when stored ones scored."""

    scores: pl.DataFrame
    validation: Validation | None
    reason: str = ""
    trained: Trained | None = None
    retrained: str = ""
    #: the day the scores are as of (the day after the last event; None: no events)
    as_of: dt.date | None = None


#: the columns of the events the models read (features and labels)
_READ = ("customer_id", "event_date", "event_type", "session_id", "price", "quantity")


def _history(con: duckdb.DuckDBPyConnection, events: str, day: dt.date) -> tuple[int, int]:
    """The number of events dated up to ``day`` and a checksum of what the models read of them
    (order-free: an XOR of row hashes), so a corrected file with as many rows is noticed."""
    n, checksum = con.execute(
        f"select count(*), coalesce(bit_xor(hash({', '.join(_READ)})), 0) from {events} "
        "where event_date <= ?",
        [day],
    ).fetchall()[0]
    return int(n), int(checksum)


def retrain_reason(
    con: duckdb.DuckDBPyConnection,
    events: str,
    trained: Trained | None,
    first: dt.date,
    last: dt.date,
    cfg: ValueConfig,
) -> str | None:
    """Why ``trained`` may not score the history ``first``..``last`` (None: it may)."""
    if trained is None:
        return "no stored models"
    why = trained.stamp.stale(cfg.training(), last, cfg.retrain_days, "value", "retrain_days")
    if why:
        return why
    if first != trained.first:
        return f"the history now begins on {first}, not {trained.first}"
    (n_then, _), (n, checksum) = trained.history, _history(con, events, trained.through)
    if (n, checksum) != trained.history:
        return (f"the history they learnt from changed: {n_then} events up to {trained.through} "
                f"then, {n} now" + (" (with other values)" if n == n_then else ""))  # fmt: skip
    return None


def save_trained(path: Path, models: Trained) -> None:
    """Keep ``models`` at ``path``."""
    kept.save(path, models)


def load_trained(path: Path) -> tuple[Trained | None, str]:
    """The models kept at ``path``, or None and why not."""
    return kept.load(path, Trained)


def score(
    con: duckdb.DuckDBPyConnection,
    events: str,
    segments: pl.DataFrame,
    cfg: ValueConfig,
    segments_before: Callable[[dt.date], tuple[dt.date, pl.DataFrame] | None] | None = None,
    trained: Trained | None = None,
) -> Scores:
    """Score today's customers with ``trained`` (kept from an earlier run) when
    :func:`retrain_reason` allows, else train, validate and score as the module describes.
    The spend error is per segment of ``segments`` (customer_id, segment_id: today's), or of
    the assignment ``segments_before(cutoff)`` returns (its date and members: the last one
    before the test split's cutoff) when there is one: grouped before the outcomes, the error
    per segment judges the forecast rather than how the segments were later chosen."""
    first, last = con.execute(f"select min(event_date), max(event_date) from {events}").fetchall()[
        0
    ]
    if first is None:
        return Scores(_EMPTY, None, "no events")
    why = retrain_reason(con, events, trained, first, last, cfg)
    as_of = last + dt.timedelta(days=1)
    if why is None and trained is not None:
        return Scores(
            _score(con, events, trained, last), trained.validation, trained=trained, as_of=as_of
        )
    new = train(con, events, segments, cfg, first, last, segments_before)
    if isinstance(new, str):
        return Scores(_EMPTY, None, new, as_of=as_of)
    return Scores(_score(con, events, new, last), new.validation, trained=new,
                  retrained=why or "", as_of=as_of)  # fmt: skip


_EMPTY = pl.DataFrame(schema={"customer_id": pl.String, "churn_risk": pl.Float64,
                              "expected_spend": pl.Float64, "p_alive_bgnbd": pl.Float64,
                              "expected_spend_bgnbd": pl.Float64,
                              "expected_purchases_bgnbd": pl.Float64})  # fmt: skip


def train(
    con: duckdb.DuckDBPyConnection,
    events: str,
    segments: pl.DataFrame,
    cfg: ValueConfig,
    first: dt.date,
    last: dt.date,
    segments_before: Callable[[dt.date], tuple[dt.date, pl.DataFrame] | None] | None = None,
) -> Trained | str:
    """Train and validate on the history ``first``..``last`` (see :func:`score`); a string
    says why there was too little of it."""
    end = last + dt.timedelta(days=1)
    horizon = horizon_for(first, last, cfg.horizon_days)
    test_cut = end - dt.timedelta(days=horizon)
    train_cut = test_cut - dt.timedelta(days=horizon)
    lookback = (train_cut - first).days  # all the train split has: the same at every cutoff
    past = labelled(
        features_as_of(con, events, train_cut, lookback), labels(con, events, train_cut, horizon)
    )
    outcomes = labels(con, events, test_cut, horizon)
    test = labelled(features_as_of(con, events, test_cut, lookback), outcomes)
    if min(past.height, test.height) < cfg.min_customers or past["churned"].n_unique() < 2:
        return (
            f"too little history: {past.height} and {test.height} buying customers at "
            f"{train_cut} and {test_cut} (value.min_customers {cfg.min_customers})"
        )
    past, test = _sample(past, cfg.fit_sample), _sample(test, cfg.fit_sample)
    before = segments_before(test_cut) if segments_before else None
    as_of, groups = before if before and not before[1].is_empty() else (None, segments)
    validation, _, on_test, _ = validate(
        past, test, groups, horizon, test_cut, cfg.baseline_sample, segments_as_of=as_of
    )
    # the most recent horizon with known outcomes, read as the validated models read theirs:
    # over all the history before its cutoff (here a horizon longer); the baseline on the
    # features as of today
    lookback = (test_cut - first).days
    latest = labelled(features_as_of(con, events, test_cut, lookback), outcomes)
    final = Models.fit(with_baseline(_sample(latest, cfg.fit_sample), on_test.bgnbd, horizon))
    now = features_as_of(con, events, end, lookback)
    baseline = Baseline.fit(_sample(now, cfg.baseline_sample))
    return Trained(
        final, baseline, validation, first, horizon, lookback,
        _history(con, events, last), kept.Stamp.now(cfg.training(), last),
    )  # fmt: skip


def _score(
    con: duckdb.DuckDBPyConnection, events: str, trained: Trained, last: dt.date
) -> pl.DataFrame:
    """Every customer who bought, as of the day after ``last``, scored by ``trained``."""
    now = features_as_of(con, events, last + dt.timedelta(days=1), trained.lookback)
    now = with_baseline(now, trained.baseline.bgnbd, trained.horizon)
    risk, spend = trained.models.predict(now, trained.baseline.bgnbd, trained.horizon)
    _, spend_base = trained.baseline.predict(
        now, trained.horizon, now["bgnbd_purchases"].to_numpy()
    )
    return (
        now.select(
            "customer_id", p_alive_bgnbd="bgnbd_p_alive", expected_purchases_bgnbd="bgnbd_purchases"
        )
        .with_columns(
            churn_risk=pl.Series(risk, dtype=pl.Float64),
            expected_spend=pl.Series(spend, dtype=pl.Float64).fill_nan(None),
            expected_spend_bgnbd=pl.Series(spend_base, dtype=pl.Float64).fill_nan(None),
        )
        .select(_EMPTY.columns)
    )
