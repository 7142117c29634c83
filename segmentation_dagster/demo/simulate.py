"""Demo data: an online shop whose customers follow hidden personas.

Deterministic by seed and fully vectorised (numpy), so it also serves the scale benchmarks;
with ``DemoConfig(stream=True)`` it writes one day at a time (memory: the customers and one
day of events, for the benchmarks' largest scales). Writes, under ``landing_dir``::

    events/events_YYYY-MM-DD.parquet   one file per day (or .csv)
    customers/customers.parquet        customer_id, signup_ts, country
    products/products.parquet          product_id, category, base_price

and, under ``truth_dir`` (never read by the pipeline; evaluation only)::

    personas.parquet                   customer_id, persona, persona_after_shift,
                                       arrival_ts, leave_ts, shift_ts

The population is *stationary*: steady personas stay for the whole period, and newcomers
arrive at a constant rate, shop for a short spell and go quiet. So a snapshot on any day (once
a full feature window of history exists) sees the same mix: about 76 % steady customers, 11 %
new one-off buyers and 13 % lapsed ones. A customer's true persona therefore depends on the
day: :func:`truth_at` gives it.

A *scenario* shifts behaviour from ``shift_day`` on (each customer has their own shift time, in
``personas.parquet``):

- ``price_wave``: part of the loyal and specialist customers turn into discount-driven bargain
  hunters, and everyone becomes more discount sensitive;
- ``visit_collapse``: everyone visits a third as often (personas unchanged);
- ``emerging_segment``: a tenth of the steady customers, from every persona, take up a behaviour
  no persona had before (:data:`EMERGING`: bulk buyers);
- ``vanishing_segment``: one persona stops buying (the first steady persona, the loyal high
  spenders in the default table): its customers keep visiting like window shoppers;
- ``gradual_drift``: the price wave, with each customer's change at a random time spread over
  ``GRADUAL_DAYS`` days instead of on one day.

The default is ``none``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

Scenario = Literal[
    "none", "price_wave", "visit_collapse", "emerging_segment", "vanishing_segment", "gradual_drift"
]
SCENARIOS: tuple[str, ...] = (
    "none", "price_wave", "visit_collapse", "emerging_segment", "vanishing_segment",
    "gradual_drift",
)  # fmt: skip
#: gradual_drift spreads the price wave's changes over this many days.
GRADUAL_DAYS = 30
#: emerging_segment: the share of steady customers that take up the new behaviour.
EMERGING_SHARE = 0.10

CATEGORIES = (
    "electronics", "fashion", "home", "beauty", "sports", "books",
    "toys", "grocery", "garden", "automotive", "pets", "music",
)  # fmt: skip
COUNTRIES = ("DE", "FR", "NL", "ES", "IT", "PL", "SE", "AT")


@dataclass(frozen=True)
class Persona:
    """Mean behaviour of one hidden persona (customers vary around it)."""

    name: str
    share: float
    sessions_per_week: float
    views_per_session: float
    p_search: float
    p_cart: float
    p_buy_given_cart: float
    extra_quantity: float
    price_beta: tuple[float, float]  # position within a category's price ranking
    p_discount: float
    p_favourite_category: float
    p_review: float
    rating_mean: float
    #: "steady": around for the whole period. "newcomer": arrives at a constant rate, is
    #: active for a short spell, then goes quiet (a one-off buyer who later shows as lapsed).
    lifecycle: Literal["steady", "newcomer"] = "steady"


PERSONAS: tuple[Persona, ...] = (
    Persona("loyal_high_spender", 0.12, 2.5, 4, 0.25, 0.55, 0.85, 1.0, (6, 1.5), 0.08, 0.35, 0.30, 4.5),
    Persona("bargain_hunter", 0.18, 2.0, 6, 0.75, 0.50, 0.60, 0.6, (1.2, 6), 0.85, 0.30, 0.10, 3.8),
    Persona("window_shopper", 0.18, 3.0, 12, 0.40, 0.05, 0.25, 0.0, (2, 2), 0.20, 0.30, 0.01, 3.5),
    Persona("cart_abandoner", 0.14, 1.5, 5, 0.30, 0.75, 0.10, 0.3, (2, 2), 0.30, 0.30, 0.05, 3.5),
    Persona("category_specialist", 0.14, 1.5, 5, 0.30, 0.45, 0.70, 0.4, (3, 2), 0.15, 0.93, 0.20, 4.2),
    Persona("new_one_off", 0.24, 1.5, 4, 0.40, 0.70, 0.80, 0.2, (2, 2), 0.25, 0.30, 0.05, 4.0, "newcomer"),
)  # fmt: skip
#: The behaviour that appears in ``emerging_segment``: rare visits, few views, nearly every
#: session ends in a large basket.
EMERGING = Persona("bulk_buyer", 0.0, 1.2, 3, 0.10, 0.90, 0.95, 6.0, (3, 3), 0.10, 0.50, 0.05, 4.0)
#: The persona a vanishing one turns into (it keeps visiting, it stops buying).
VANISHED_INTO = "window_shopper"
#: A newcomer is "new_one_off" until RECENT_DAYS after their spell ends, then "lapsed".
LAPSED = "lapsed"
RECENT_DAYS = 30
#: Every label the truth can give a customer on some day.
PERSONA_NAMES: tuple[str, ...] = (*(p.name for p in PERSONAS), LAPSED)
#: Newcomers' active spell, in days (uniform), and the feature window the arrival rate is
#: sized for: with this window, the mix a snapshot sees does not depend on its date.
SPELL_DAYS = (7.0, 42.0)
WINDOW_DAYS = 90

EVENT_SCHEMA: dict[str, pl.DataType] = {
    "event_id": pl.Int64(),
    "customer_id": pl.Int64(),
    "session_id": pl.Int64(),
    "event_ts": pl.Datetime("us"),
    "event_type": pl.String(),
    "product_id": pl.Int64(),
    "category": pl.String(),
    "price": pl.Float64(),
    "discount": pl.Float64(),
    "quantity": pl.Int64(),
    "search_query": pl.String(),
    "review_rating": pl.Int64(),
    "review_text": pl.String(),
}

#: What customers type: a search's intent and a review's angle follow the customer's own
#: behaviour (discount-driven, premium, researching, plain), so text carries the same persona
#: signal as clicks. "{c}" is the category.
QUERY_STYLES: dict[str, tuple[str, ...]] = {
    "bargain": ("cheap {c}", "{c} sale", "{c} discount code", "{c} clearance", "budget {c}"),
    "premium": ("premium {c}", "luxury {c}", "best {c} brand", "{c} new collection"),
    "research": ("{c} reviews", "compare {c}", "{c} buying guide", "{c} test rating"),
    "plain": ("{c}", "{c} gift", "{c} ideas"),
}
REVIEW_ANGLES: dict[str, tuple[str, ...]] = {
    "bargain": ("great value for the money", "cheap and does the job", "good deal on sale"),
    "premium": ("excellent quality, worth the price", "beautifully made", "premium feel"),
    "research": ("as described in the comparison", "matches the specs", "did my research"),
    "plain": ("arrived on time", "as expected", "nice {c} item"),
}
REVIEW_TONE = {1: "terrible, broke quickly", 2: "disappointing", 3: "okay",
               4: "happy with it", 5: "love it, highly recommend"}  # fmt: skip


@dataclass(frozen=True)
class DemoConfig:
    """What to generate. ``n_customers`` scales to millions; events grow linearly with it."""

    #: customers visible on any one day (steady ones plus recent newcomers); newcomers keep
    #: arriving, so a long period has more customer ids than this.
    n_customers: int = 20_000
    days: int = 90
    start_date: dt.date = dt.date(2026, 8, 1)
    seed: int = 42
    n_products: int = 2_000
    scenario: Scenario = "none"
    shift_day: int = 60
    purchases_only: bool = False
    file_format: Literal["parquet", "csv"] = "parquet"
    activity_scale: float = 1.0  # multiplies visit frequency: < 1 for sparse, cheap data
    #: write events one day at a time (memory: the customers plus one day of events) instead
    #: of simulating the whole period first. Same personas, scenario and file layout, other
    #: random draws: the data differ event by event from the in-memory mode.
    stream: bool = False
    personas: tuple[Persona, ...] = field(default=PERSONAS)

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {self.scenario!r}; choose one of {SCENARIOS}")
        if self.scenario != "none" and not 0 < self.shift_day < self.days:
            raise ValueError(f"shift_day must be in 1..{self.days}, got {self.shift_day}")


@dataclass(frozen=True)
class ReplayConfig:
    """The simulated period: ``history_days`` before the first fit, then ``days`` of operation;
    the scenario's shift happens ``shift_after`` days into operation.

    The defaults are what `make run` replays: 90 days of history, then a price wave from the
    fourth day of operation, and two weeks after it: the daily assignment moving the customers
    who changed, the drift sensor's re-segmentation once its 7-day cooldown after the first fit
    is over, and ARI (against the day's true personas) climbing back.
    """

    scenario: Scenario = "price_wave"
    n_customers: int = 5_000
    history_days: int = 90
    days: int = 17
    shift_after: int = 3
    seed: int = 42
    start_date: dt.date = dt.date(2026, 5, 1)

    def demo(self) -> DemoConfig:
        return DemoConfig(
            n_customers=self.n_customers,
            days=self.history_days + self.days,
            start_date=self.start_date,
            seed=self.seed,
            scenario=self.scenario,
            shift_day=self.history_days + self.shift_after,
        )


@dataclass(frozen=True)
class DemoSummary:
    """What :func:`generate` wrote."""

    n_customers: int
    n_events: int
    n_files: int
    first_date: dt.date
    last_date: dt.date
    landing_dir: Path


_US_PER_DAY = 86_400_000_000
_CATEGORY_SORTER = np.argsort(np.asarray(CATEGORIES))


def _products(cfg: DemoConfig, rng: np.random.Generator) -> pl.DataFrame:
    n_cat = len(CATEGORIES)
    cat = np.sort(rng.integers(0, n_cat, cfg.n_products))
    cat_level = rng.lognormal(3.3, 0.6, n_cat)  # category price level, ~27 on average
    price = np.round(cat_level[cat] * rng.lognormal(0.0, 0.7, cfg.n_products), 2) + 0.99
    # within a category, products are ordered by price so that index == price rank
    order = np.lexsort((price, cat))
    return pl.DataFrame(
        {
            "product_id": np.arange(cfg.n_products, dtype=np.int64) + 1,
            "category": np.asarray(CATEGORIES)[cat[order]],
            "base_price": price[order],
        }
    )


def _scenario_personas(cfg: DemoConfig) -> tuple[Persona, ...]:
    """The persona table of ``cfg`` plus the behaviour its scenario introduces, if any."""
    return cfg.personas + ((EMERGING,) if cfg.scenario == "emerging_segment" else ())


def _customer_params(
    cfg: DemoConfig, persona_idx: np.ndarray, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Per-customer behaviour: the persona mean with individual noise."""
    ps = _scenario_personas(cfg)
    n = persona_idx.size

    def col(attr: str) -> np.ndarray:
        return np.asarray([getattr(p, attr) for p in ps], dtype=float)[persona_idx]

    def noisy_rate(attr: str, sigma: float = 0.25) -> np.ndarray:
        return col(attr) * rng.lognormal(-(sigma**2) / 2, sigma, n)

    def noisy_prob(attr: str, sd: float = 0.05) -> np.ndarray:
        return np.clip(col(attr) + rng.normal(0, sd, n), 0.0, 1.0)

    beta = np.asarray([p.price_beta for p in ps], dtype=float)[persona_idx]
    return {
        "sessions_per_week": noisy_rate("sessions_per_week") * cfg.activity_scale,
        "views_per_session": noisy_rate("views_per_session"),
        "p_search": noisy_prob("p_search"),
        "p_cart": noisy_prob("p_cart"),
        "p_buy": noisy_prob("p_buy_given_cart"),
        "extra_quantity": noisy_rate("extra_quantity"),
        "price_a": beta[:, 0],
        "price_b": beta[:, 1],
        "p_discount": noisy_prob("p_discount"),
        "p_fav": noisy_prob("p_favourite_category", 0.03),
        "p_review": noisy_prob("p_review", 0.02),
        "rating_mean": col("rating_mean"),
    }


#: Shift time of a customer whose behaviour never changes.
_NEVER = np.iinfo(np.int64).max


def _convert(
    cfg: DemoConfig,
    after: dict[str, np.ndarray],
    persona_after: np.ndarray,
    who: np.ndarray,
    target: int,
    rng: np.random.Generator,
) -> None:
    """Give the customers in mask ``who`` persona ``target``'s behaviour (fresh noise)."""
    persona_after[who] = target
    converted = _customer_params(cfg, np.full(int(who.sum()), target), rng)
    for k in after:
        after[k][who] = converted[k]


def _shifted(
    cfg: DemoConfig,
    persona_idx: np.ndarray,
    params: dict[str, np.ndarray],
    rng: np.random.Generator,
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Persona, behaviour after the shift, and each customer's shift time (us since the start)
    under the configured scenario."""
    n = persona_idx.size
    if cfg.scenario == "none":
        return persona_idx, params, np.full(n, _NEVER, dtype=np.int64)
    after = {k: v.copy() for k, v in params.items()}
    persona_after = persona_idx.copy()
    ps = _scenario_personas(cfg)
    names = np.asarray([p.name for p in ps])[persona_idx]
    index = {p.name: i for i, p in enumerate(ps)}
    steady = np.asarray([p.lifecycle == "steady" for p in ps])[persona_idx]
    if cfg.scenario in ("price_wave", "gradual_drift"):
        converts = ((names == "loyal_high_spender") & (rng.random(n) < 0.6)) | (
            (names == "category_specialist") & (rng.random(n) < 0.5)
        )
        if "bargain_hunter" in index:
            _convert(cfg, after, persona_after, converts, index["bargain_hunter"], rng)
        after["p_discount"] = np.clip(after["p_discount"] + 0.3, 0, 1)
    elif cfg.scenario == "visit_collapse":
        after["sessions_per_week"] = after["sessions_per_week"] * 0.35
    elif cfg.scenario == "emerging_segment":
        converts = steady & (rng.random(n) < EMERGING_SHARE)
        _convert(cfg, after, persona_after, converts, index[EMERGING.name], rng)
    elif cfg.scenario == "vanishing_segment":
        first_steady = next(p.name for p in ps if p.lifecycle == "steady")
        vanishing = names == first_steady
        if VANISHED_INTO in index and VANISHED_INTO != first_steady:
            _convert(cfg, after, persona_after, vanishing, index[VANISHED_INTO], rng)
        else:  # a custom persona table: it simply stops buying
            after["p_buy"] = np.where(vanishing, 0.0, after["p_buy"])
    shift = np.full(n, cfg.shift_day * _US_PER_DAY, dtype=np.int64)
    if cfg.scenario == "gradual_drift":
        shift += (rng.uniform(0, GRADUAL_DAYS, n) * _US_PER_DAY).astype(np.int64)
    return persona_after, after, shift


def _sessions(
    cust: np.ndarray,
    params: dict[str, np.ndarray],
    t_from: np.ndarray,
    t_to: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Sessions of customers ``cust`` within their windows, with what happened in each."""
    span_weeks = np.maximum(t_to - t_from, 0) / (7 * _US_PER_DAY)
    n_sess = rng.poisson(params["sessions_per_week"][cust] * span_weeks)
    owner = np.repeat(cust, n_sess)
    start = np.repeat(t_from, n_sess) + (
        rng.random(owner.size) * np.repeat(t_to - t_from, n_sess)
    ).astype(np.int64)
    has_cart = rng.random(owner.size) < params["p_cart"][owner]
    has_buy = has_cart & (rng.random(owner.size) < params["p_buy"][owner])
    return {
        "customer": owner,
        "start": start,
        "n_views": 1 + rng.poisson(np.maximum(params["views_per_session"][owner] - 1, 0)),
        "has_search": rng.random(owner.size) < params["p_search"][owner],
        "has_cart": has_cart,
        "has_buy": has_buy,
        "has_review": has_buy & (rng.random(owner.size) < params["p_review"][owner]),
    }


def _concat_sessions(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _texts(
    cfg: DemoConfig,
    params: dict[str, np.ndarray],
    owner: np.ndarray,
    category: np.ndarray,
    rating: np.ndarray,
    sid: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """A search query and a review text for each row given (the caller keeps the one the row
    is): the style is drawn from the owner's behaviour. Drawn from a generator of its own, so the
    behaviour (and everything measured on it) is the same with or without text."""
    rng = np.random.default_rng([cfg.seed, 99, int(sid[0]) if sid.size else 0])
    price_pos = params["price_a"][owner] / (params["price_a"][owner] + params["price_b"][owner])
    weights = np.stack([
        2.0 * params["p_discount"][owner],               # bargain
        2.0 * np.clip(price_pos - 0.4, 0, None),         # premium
        np.clip(params["views_per_session"][owner] / 10.0, 0, 1.5),  # research
        np.full(owner.size, 0.3),                        # plain
    ], axis=1)  # fmt: skip
    cum = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1)
    style = (rng.random(owner.size)[:, None] > cum).sum(axis=1)
    styles = list(QUERY_STYLES)
    query, review = np.empty(owner.size, dtype=object), np.empty(owner.size, dtype=object)
    for k, name in enumerate(styles):
        rows = np.flatnonzero(style == k)
        q, r = QUERY_STYLES[name], REVIEW_ANGLES[name]
        qi, ri = rng.integers(0, len(q), rows.size), rng.integers(0, len(r), rows.size)
        for out, templates, pick in ((query, q, qi), (review, r, ri)):
            for j, template in enumerate(templates):
                sel = rows[pick == j]
                before, _, after = template.partition("{c}")
                cat = category[sel].astype(object) if "{c}" in template else ""
                out[sel] = before + cat + after
    tone = np.array([REVIEW_TONE[int(x)] for x in range(1, 6)], dtype=object)
    review = review + ", " + tone[rating.astype(np.int64) - 1]
    return query.astype(str), review.astype(str)


def _events(
    cfg: DemoConfig,
    sess: dict[str, np.ndarray],
    params: dict[str, np.ndarray],
    fav_cat: np.ndarray,
    products: pl.DataFrame,
    rng: np.random.Generator,
) -> pl.DataFrame:
    """Expand sessions into view/search/cart/purchase/review events."""
    n_cat = len(CATEGORIES)
    # products are sorted by category (in CATEGORIES order) then price: index == price rank
    cat_names = products["category"].to_numpy()
    cat_of = np.searchsorted(np.asarray(CATEGORIES), cat_names, sorter=_CATEGORY_SORTER)
    cat_of = _CATEGORY_SORTER[cat_of]
    counts = np.bincount(cat_of, minlength=n_cat)
    offsets = np.cumsum(counts) - counts
    base_price = products["base_price"].to_numpy()

    sid = np.arange(sess["customer"].size, dtype=np.int64) + 1

    def pick_products(owner: np.ndarray) -> np.ndarray:
        fav = rng.random(owner.size) < params["p_fav"][owner]
        cat = np.where(fav, fav_cat[owner], rng.integers(0, n_cat, owner.size))
        cat = np.where(counts[cat] > 0, cat, int(np.argmax(counts)))
        pos = rng.beta(params["price_a"][owner], params["price_b"][owner])
        return offsets[cat] + np.minimum((pos * counts[cat]).astype(np.int64), counts[cat] - 1)

    def block(mask_or_repeat: np.ndarray, kind: str, offset_s: np.ndarray) -> dict[str, np.ndarray]:
        idx = mask_or_repeat
        owner = sess["customer"][idx]
        return {
            "customer": owner,
            "session": sid[idx],
            "ts": sess["start"][idx] + (offset_s * 1_000_000).astype(np.int64),
            "kind": np.full(idx.size, kind),
        }

    blocks: list[dict[str, np.ndarray]] = []
    # views: n_views per session, 30-90 s apart
    v_idx = np.repeat(np.arange(sid.size), sess["n_views"])
    v_rank = np.arange(v_idx.size) - np.repeat(
        np.cumsum(sess["n_views"]) - sess["n_views"], sess["n_views"]
    )
    blocks.append(block(v_idx, "view", 30.0 * (v_rank + 1) + rng.uniform(0, 60, v_idx.size)))
    s_idx = np.flatnonzero(sess["has_search"])
    blocks.append(block(s_idx, "search", np.zeros(s_idx.size)))
    after_views = 30.0 * (sess["n_views"] + 1) + 90.0
    c_idx = np.flatnonzero(sess["has_cart"])
    blocks.append(block(c_idx, "cart", after_views[c_idx]))
    b_idx = np.flatnonzero(sess["has_buy"])
    blocks.append(block(b_idx, "purchase", after_views[b_idx] + 120.0))
    r_idx = np.flatnonzero(sess["has_review"])
    blocks.append(block(r_idx, "review", after_views[r_idx] + 600.0))

    ev = {k: np.concatenate([b[k] for b in blocks]) for k in blocks[0]}
    owner = ev["customer"]
    n = owner.size
    product = pick_products(owner)
    # cart, purchase and review of a session concern the same product
    is_tx = np.isin(ev["kind"], ("cart", "purchase", "review"))
    tx_product = pick_products(sess["customer"])
    product[is_tx] = tx_product[ev["session"][is_tx] - 1]
    discounted = rng.random(n) < params["p_discount"][owner]
    discount = np.where(discounted, np.round(rng.uniform(0.1, 0.5, n), 2), 0.0)
    is_buy = ev["kind"] == "purchase"
    quantity = np.where(is_buy, 1 + rng.poisson(params["extra_quantity"][owner]), 0)
    is_review = ev["kind"] == "review"
    rating = np.clip(np.round(rng.normal(params["rating_mean"][owner], 0.8)), 1, 5)
    category = cat_names[product]
    is_search = ev["kind"] == "search"
    texts = np.flatnonzero(is_search | is_review)  # only these rows carry text
    q, r = _texts(cfg, params, owner[texts], category[texts], rating[texts], sid)
    query = pl.repeat(None, n, dtype=pl.String, eager=True).scatter(texts, pl.Series(q))
    review = pl.repeat(None, n, dtype=pl.String, eager=True).scatter(texts, pl.Series(r))
    start = dt.datetime.combine(cfg.start_date, dt.time())
    df = pl.DataFrame(
        {
            "customer_id": owner.astype(np.int64) + 1,
            "session_id": ev["session"],
            "event_ts": ev["ts"],
            "event_type": ev["kind"],
            "product_id": np.where(is_search, -1, product + 1),
            "category": category,
            "price": np.round(base_price[product] * (1 - discount), 2),
            "discount": discount,
            "quantity": quantity,
            "review_rating": np.where(is_review, rating, -1).astype(np.int64),
            "query": query,
            "review": review,
        }
    )
    df = df.filter(pl.col("event_ts") < cfg.days * _US_PER_DAY).sort("event_ts")
    return df.with_columns(
        event_id=pl.int_range(1, pl.len() + 1, dtype=pl.Int64),
        event_ts=pl.lit(start) + pl.duration(microseconds=pl.col("event_ts")),
        product_id=pl.when(pl.col("product_id") > 0).then(pl.col("product_id")),
        price=pl.when(pl.col("event_type").is_in(["view", "cart", "purchase"])).then(
            pl.col("price")
        ),
        discount=pl.when(pl.col("event_type").is_in(["view", "cart", "purchase"])).then(
            pl.col("discount")
        ),
        quantity=pl.when(pl.col("event_type") == "purchase").then(pl.col("quantity")),
        search_query=pl.when(pl.col("event_type") == "search").then(pl.col("query")),
        review_rating=pl.when(pl.col("review_rating") > 0).then(pl.col("review_rating")),
        review_text=pl.when(pl.col("event_type") == "review").then(pl.col("review")),
    ).select(list(EVENT_SCHEMA))


def _population(
    cfg: DemoConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Persona, signup, and active window [from, to) of every customer, in us since start.

    Steady customers signed up 30-700 days before the start and stay. Newcomers arrive at a
    constant rate from one window + one spell before the start on, so the days the data covers
    all see the same mix; those whose spell ended before the start are never generated.
    """
    ps = cfg.personas
    shares = np.asarray([p.share for p in ps])
    shares = shares / shares.sum()
    flow = np.asarray([p.lifecycle == "newcomer" for p in ps])
    total_us = cfg.days * _US_PER_DAY
    n_steady = round(cfg.n_customers * shares[~flow].sum())
    steady = rng.choice(np.flatnonzero(~flow), n_steady, p=shares[~flow] / shares[~flow].sum())
    # visible newcomers = rate * (mean spell + window): size the rate for the configured share
    mean_spell = sum(SPELL_DAYS) / 2
    rate = cfg.n_customers * shares[flow].sum() / (mean_spell + WINDOW_DAYS)  # per day
    lead = WINDOW_DAYS + SPELL_DAYS[1]
    n_new = rng.poisson(rate * (lead + cfg.days)) if flow.any() else 0
    arrival = ((rng.uniform(-lead, cfg.days, n_new)) * _US_PER_DAY).astype(np.int64)
    leave = arrival + (rng.uniform(*SPELL_DAYS, n_new) * _US_PER_DAY).astype(np.int64)
    keep = leave > 0
    arrival, leave = arrival[keep], leave[keep]
    newcomer = rng.choice(np.flatnonzero(flow), arrival.size, p=shares[flow] / shares[flow].sum())
    persona = np.concatenate([steady, newcomer]) if flow.any() else steady
    signup = np.concatenate(
        [-(rng.uniform(30, 700, n_steady) * _US_PER_DAY).astype(np.int64), arrival]
    )
    t_from = np.maximum(signup, 0)
    t_to = np.concatenate(
        [np.full(n_steady, total_us, dtype=np.int64), np.minimum(leave, total_us)]
    )
    leave_all = np.concatenate([np.full(n_steady, np.iinfo(np.int64).max), leave])
    return persona, signup, np.stack([t_from, t_to]), leave_all


@dataclass(frozen=True)
class _World:
    """Who the customers are and how each behaves, before and after the scenario's shift."""

    products: pl.DataFrame
    persona: np.ndarray
    persona_after: np.ndarray
    signup_us: np.ndarray
    t_from: np.ndarray  # active window [t_from, t_to), us since the start
    t_to: np.ndarray
    leave_us: np.ndarray
    params: dict[str, np.ndarray]
    params_after: dict[str, np.ndarray]
    fav_cat: np.ndarray
    shift_us: np.ndarray  # when each customer's behaviour changes (_NEVER: it does not)


def _world(cfg: DemoConfig, rng: np.random.Generator) -> _World:
    products = _products(cfg, rng)
    persona, signup_us, (t_from, t_to), leave_us = _population(cfg, rng)
    params = _customer_params(cfg, persona, rng)
    fav_cat = rng.integers(0, len(CATEGORIES), persona.size)
    persona_after, params_after, shift_us = _shifted(cfg, persona, params, rng)
    return _World(products, persona, persona_after, signup_us, t_from, t_to, leave_us,
                  params, params_after, fav_cat, shift_us)  # fmt: skip


def _tables(
    cfg: DemoConfig, w: _World, rng: np.random.Generator
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(customers, truth)`` of a world."""
    n = w.persona.size
    cust = np.arange(n)
    start = dt.datetime.combine(cfg.start_date, dt.time())

    def ts(us: np.ndarray) -> pl.Expr:
        return pl.lit(start) + pl.duration(microseconds=pl.Series(us))

    customers = pl.DataFrame(
        {
            "customer_id": cust.astype(np.int64) + 1,
            "country": np.asarray(COUNTRIES)[rng.integers(0, len(COUNTRIES), n)],
        }
    ).select("customer_id", signup_ts=ts(w.signup_us), country="country")
    names = np.asarray([p.name for p in _scenario_personas(cfg)])
    newcomer = w.leave_us < np.iinfo(np.int64).max
    shifts = w.shift_us < _NEVER
    truth = pl.DataFrame(
        {
            "customer_id": cust.astype(np.int64) + 1,
            "persona": names[w.persona],
            "persona_after_shift": names[w.persona_after],
        }
    ).with_columns(
        arrival_ts=pl.when(pl.Series(newcomer)).then(ts(w.signup_us)),
        leave_ts=pl.when(pl.Series(newcomer)).then(ts(np.where(newcomer, w.leave_us, 0))),
        shift_ts=pl.when(pl.Series(shifts)).then(ts(np.where(shifts, w.shift_us, 0))),
    )
    return customers, truth


def _purchases_only(cfg: DemoConfig, events: pl.DataFrame) -> pl.DataFrame:
    if not cfg.purchases_only:
        return events
    return events.filter(pl.col("event_type") == "purchase").with_columns(
        session_id=pl.lit(None, pl.Int64)
    )


def simulate(cfg: DemoConfig) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Generate ``(events, customers, products, truth)`` in memory."""
    rng = np.random.default_rng(cfg.seed)
    w = _world(cfg, rng)
    cust = np.arange(w.persona.size)
    if cfg.scenario == "none":
        sess = _sessions(cust, w.params, w.t_from, w.t_to, rng)
        events = _events(cfg, sess, w.params, w.fav_cat, w.products, rng)
    else:
        shift = w.shift_us
        before = _sessions(cust, w.params, w.t_from, np.minimum(w.t_to, shift), rng)
        after = _sessions(cust, w.params_after, np.maximum(w.t_from, shift), w.t_to, rng)
        # events of each phase use that phase's behaviour; ids stay globally unique
        ev_before = _events(cfg, before, w.params, w.fav_cat, w.products, rng)
        ev_after = _events(cfg, after, w.params_after, w.fav_cat, w.products, rng).with_columns(
            session_id=pl.col("session_id") + before["customer"].size
        )
        events = (
            pl.concat([ev_before, ev_after])
            .sort("event_ts")
            .with_columns(event_id=pl.int_range(1, pl.len() + 1, dtype=pl.Int64))
        )
    customers, truth = _tables(cfg, w, rng)
    return _purchases_only(cfg, events), customers, w.products, truth


def truth_at(truth: pl.DataFrame, as_of: dt.date) -> pl.DataFrame:
    """Each customer's true persona on ``as_of`` (customer_id, persona).

    After the scenario's shift, ``persona_after_shift``; a newcomer is "new_one_off" until
    RECENT_DAYS after their spell and "lapsed" after that; customers who have not arrived yet
    are left out.
    """
    day_end = pl.lit(dt.datetime.combine(as_of + dt.timedelta(days=1), dt.time()))
    shifted = pl.col("shift_ts").is_not_null() & (pl.col("shift_ts") < day_end)
    persona = pl.when(shifted).then("persona_after_shift").otherwise("persona")
    lapsed = pl.col("leave_ts") <= day_end - pl.duration(days=RECENT_DAYS)
    return truth.filter(pl.col("arrival_ts").is_null() | (pl.col("arrival_ts") < day_end)).select(
        "customer_id",
        persona=pl.when(pl.col("leave_ts").is_not_null() & lapsed)
        .then(pl.lit(LAPSED))
        .otherwise(persona),
    )


def _write(df: pl.DataFrame, path: Path, file_format: str) -> None:
    """Write atomically: to a temporary name, then rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if file_format == "csv":
        df.write_csv(tmp)
    else:
        df.write_parquet(tmp)
    tmp.replace(path)


#: progress callback of a streamed generation: (days written, days in all, events so far)
Progress = Callable[[int, int, int], None]


def _stream_events(
    cfg: DemoConfig,
    w: _World,
    rng: np.random.Generator,
    landing_dir: Path,
    progress: Progress | None = None,
) -> tuple[int, list[dt.date]]:
    """Simulate and write the events day by day; returns (events written, days written).

    Sessions are drawn per day (a Poisson count per day sums to the period's Poisson count);
    the few events of a session that cross midnight move on to the next day's file, and ids
    keep counting across files.
    """
    start = dt.datetime.combine(cfg.start_date, dt.time())
    ext = cfg.file_format
    carry = pl.DataFrame(schema=EVENT_SCHEMA)
    n_events = n_sessions = 0
    days: list[dt.date] = []
    for d in range(cfg.days):
        lo, hi = d * _US_PER_DAY, (d + 1) * _US_PER_DAY
        parts = [carry]
        # each customer's part of the day before their shift, then the part after it
        shift = np.clip(w.shift_us, lo, hi)
        for params, a, b in ((w.params, lo, shift), (w.params_after, shift, hi)):
            a = np.maximum(w.t_from, a)
            b = np.minimum(w.t_to, b)
            active = np.flatnonzero(a < b)
            if not active.size:
                continue
            t_from, t_to = a[active], b[active]
            sess = _sessions(active, params, t_from, t_to, rng)
            ev = _events(cfg, sess, params, w.fav_cat, w.products, rng)
            parts.append(ev.with_columns(session_id=pl.col("session_id") + n_sessions))
            n_sessions += sess["customer"].size
        events = pl.concat(parts)
        day_end = start + dt.timedelta(days=d + 1)
        carry = events.filter(pl.col("event_ts") >= day_end)
        day = _purchases_only(cfg, events.filter(pl.col("event_ts") < day_end)).sort("event_ts")
        day = day.with_columns(event_id=pl.int_range(1, pl.len() + 1, dtype=pl.Int64) + n_events)
        if day.height:
            date = day_end.date() - dt.timedelta(days=1)
            _write(day, landing_dir / "events" / f"events_{date.isoformat()}.{ext}", ext)
            n_events += day.height
            days.append(date)
        if progress is not None:
            progress(d + 1, cfg.days, n_events)
    return n_events, days


def generate(
    cfg: DemoConfig, landing_dir: Path, truth_dir: Path, progress: Progress | None = None
) -> DemoSummary:
    """Generate the demo data set and write landing files plus the truth file.

    ``cfg.stream`` writes the events day by day, holding one day in memory (for scales whose
    events do not fit in memory; ``progress`` is told after each day); otherwise the period is
    simulated in memory first.
    """
    ext = cfg.file_format
    if cfg.stream:
        rng = np.random.default_rng(cfg.seed)
        w = _world(cfg, rng)
        customers, truth = _tables(cfg, w, rng)
        n_events, days = _stream_events(cfg, w, rng, landing_dir, progress)
        products = w.products
    else:
        events, customers, products, truth = simulate(cfg)
        by_day = events.with_columns(_day=pl.col("event_ts").dt.date()).partition_by(
            "_day", as_dict=True, include_key=False
        )
        for (day,), part in sorted(by_day.items()):
            _write(part, landing_dir / "events" / f"events_{day.isoformat()}.{ext}", ext)
        n_events, days = events.height, sorted(d for (d,) in by_day)
    _write(customers, landing_dir / "customers" / f"customers.{ext}", ext)
    _write(products, landing_dir / "products" / f"products.{ext}", ext)
    _write(truth, truth_dir / "personas.parquet", "parquet")
    return DemoSummary(
        n_customers=customers.height,
        n_events=n_events,
        n_files=len(days) + 2,
        first_date=days[0] if days else cfg.start_date,
        last_date=days[-1] if days else cfg.start_date,
        landing_dir=landing_dir,
    )
