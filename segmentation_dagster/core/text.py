"""Interests from what customers write: topics of their search queries and reviews, and the
sentiment of their reviews, learned from the shop's own text.

- **Topics.** Each customer's queries and review texts of the feature window form one
  document; TF-IDF (words and word pairs, English stop words out) and non-negative matrix
  factorisation (NMF) find ``n_topics`` topics, each readable from its top terms; every
  customer gets a weight per topic and a top topic. Fitted on at most ``fit_sample``
  documents, applied to all.
- **Sentiment.** A logistic regression on the TF-IDF of review texts, trained on the shop's
  own reviews with their star ratings as labels (4-5 positive, 1-2 negative): each review's
  probability of being positive, averaged per customer. Without enough rated reviews of both
  kinds there is no sentiment (null), never a guess.

No model is downloaded: both are fitted on the shop's text, so they speak its language.

**Kept models.** The fitted models (:class:`TextModels`) are kept and weigh the following
days' documents, so topic numbers stay put between refits: they are fitted again every
``refit_days`` days of events, or at once when the ``text`` section or scikit-learn changed.
In between, a run weighs only the documents that changed (new text, text out of the window,
a late file, an erasure: the document's hash differs) and keeps every other customer's row.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import duckdb
import numpy as np
import polars as pl

from segmentation_dagster.core import checks, kept


@dataclass(frozen=True)
class TextConfig:
    """The project file's ``text`` section."""

    n_topics: int = 8
    #: days of queries and reviews that make a customer's document
    window_days: int = 90
    #: documents the topic model is fitted on (all are transformed)
    fit_sample: int = 50_000
    #: rated reviews of each kind (positive, negative) needed to train the sentiment model
    min_rated_reviews: int = 30
    #: the models are fitted again when they are this many days of events old (1: whenever a
    #: day was added); in between, they weigh only the documents that changed
    refit_days: int = 7

    #: each field's range (docs/configuration.md, "Ranges")
    RULES: ClassVar[dict[str, checks.Rule]] = {
        "n_topics": checks.whole(1, 100),
        "window_days": checks.whole(1),
        "fit_sample": checks.whole(1),
        "min_rated_reviews": checks.whole(1),
        "refit_days": checks.whole(1),
    }

    def __post_init__(self) -> None:
        checks.apply(self, self.RULES)


#: one row per query or review of the window: the piece a document is made of, and a hash of
#: what the models read of it ({events}: a relation of the project's own; the days are bound)
_WINDOW = """
    select customer_id::varchar as customer_id, event_date,
           coalesce(search_query, review_text) as piece, review_text, review_rating,
           hash(event_date, coalesce(search_query, review_text), review_text, review_rating)
               as h
    from {events}
    where event_date > (select max(event_date) from {events}) - to_days($days)
      and (search_query is not null or review_text is not null)
"""

#: a document's fingerprint: its pieces' number and two order-free sums of their hashes (any
#: added, removed or edited piece changes it), cheap next to building the document
_FINGERPRINT = "count(*)::varchar || '-' || bit_xor(h)::varchar || '-' || sum(h::hugeint)::varchar"


def fingerprints(con: duckdb.DuckDBPyConnection, events: str, window_days: int) -> pl.DataFrame:
    """customer_id, doc_hash for every customer who wrote something in the last
    ``window_days`` days, without building the documents."""
    return con.sql(
        f"select customer_id, {_FINGERPRINT} as doc_hash "
        f"from ({_WINDOW.format(events=events)}) group by customer_id order by customer_id",
        params={"days": window_days},
    ).pl()


def documents(
    con: duckdb.DuckDBPyConnection,
    events: str,
    window_days: int,
    customers: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """customer_id, doc (their queries and review texts of the last ``window_days`` days, in a
    fixed order), the reviews' texts and ratings (lists) and ``doc_hash`` (as
    :func:`fingerprints`) for every customer who wrote anything, or only for those in
    ``customers`` (a frame with customer_id)."""
    only = ""
    if customers is not None:
        con.register("_text_customers", customers.select(pl.col("customer_id").cast(pl.String)))
        only = "where customer_id in (select customer_id from _text_customers)"
    try:
        return con.sql(
            f"""
            with recent as (select * from ({_WINDOW.format(events=events)}) {only})
            select customer_id,
                   string_agg(piece, ' . ' order by event_date, piece) as doc,
                   list(review_text order by event_date, review_text, review_rating)
                       filter (review_text is not null) as reviews,
                   list(review_rating order by event_date, review_text, review_rating)
                       filter (review_text is not null) as ratings,
                   {_FINGERPRINT} as doc_hash
            from recent group by customer_id order by customer_id
            """,
            params={"days": window_days},
        ).pl()
    finally:
        if customers is not None:
            con.unregister("_text_customers")


#: the file in the model folder that keeps the fitted text models between runs, and its format
#: (raise it when the models or the documents they read change)
MODELS_FILE = "text_models.joblib"
KEPT_FORMAT = 2  # 2: doc_hash is a fingerprint of the pieces, not an md5 of the document


@dataclass(frozen=True)
class Topics:
    #: topic -> its top terms, most weighty first
    terms: list[list[str]]
    #: one row per customer: customer_id, topic_1..topic_k weights, top_topic
    weights: pl.DataFrame

    def label(self, topic: int) -> str:
        return f"{topic + 1}: " + ", ".join(self.terms[topic][:4])


@dataclass(frozen=True)
class TextModels:
    """The fitted topic model (TF-IDF + NMF) and sentiment model (TF-IDF + logistic
    regression, None without enough rated reviews), kept to weigh the following days'
    documents. ``fit_id`` names the fit in every row it produced."""

    vectorizer: object
    nmf: object
    terms: list[list[str]]
    sentiment: tuple[object, object] | None
    stamp: kept.Stamp
    fit_id: str


def fit(docs: pl.DataFrame, cfg: TextConfig, through: dt.date, seed: int = 0) -> TextModels | str:
    """Fit TF-IDF + NMF on a sample of ``docs``, and the sentiment model on their rated
    reviews; a string says why there was too little text for ``n_topics`` topics."""
    import secrets

    from sklearn.decomposition import NMF
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = docs["doc"].to_list()
    why = f"too little text: {docs.height} customers wrote something in {cfg.window_days} days"
    if len(texts) < 5 * cfg.n_topics:
        return why
    rng = np.random.default_rng(seed)
    sample = rng.choice(len(texts), min(len(texts), cfg.fit_sample), replace=False)
    vec = TfidfVectorizer(stop_words="english", ngram_range=(1, 2), min_df=3, max_df=0.5,
                          sublinear_tf=True)  # fmt: skip
    try:
        x_fit = vec.fit_transform([texts[i] for i in sample])
    except ValueError:  # no term left after the stop words and frequency limits
        return why
    k = min(cfg.n_topics, x_fit.shape[1] - 1)
    if k < 2:
        return why
    nmf = NMF(n_components=k, init="nndsvda", random_state=seed, max_iter=400)
    nmf.fit(x_fit)
    vocab = np.asarray(vec.get_feature_names_out())
    terms = [list(vocab[np.argsort(-row)[:8]]) for row in nmf.components_]
    return TextModels(
        _keepable(vec), nmf, terms, _fit_sentiment(docs, cfg, seed),
        kept.Stamp.now(_settings(cfg), through), secrets.token_hex(6),
    )  # fmt: skip


def _keepable(vec: object) -> object:
    """The vectorizer without ``stop_words_``: the terms it dropped as too rare are words
    single customers wrote, which a kept model must not carry."""
    vec.stop_words_ = None  # type: ignore[attr-defined]
    return vec


def _settings(cfg: TextConfig) -> tuple[object, ...]:
    return (cfg.n_topics, cfg.window_days, cfg.fit_sample, cfg.min_rated_reviews, KEPT_FORMAT)


def _reviews(docs: pl.DataFrame) -> pl.DataFrame:
    return (
        docs.select("customer_id", "reviews", "ratings")
        .filter(pl.col("reviews").list.len() > 0)
        .explode("reviews", "ratings")
    )


def _fit_sentiment(docs: pl.DataFrame, cfg: TextConfig, seed: int) -> tuple[object, object] | None:
    """A logistic regression on the TF-IDF of rated review texts (4-5 positive, 1-2
    negative); None without ``min_rated_reviews`` of each kind."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    reviews = _reviews(docs)
    labelled = reviews.filter(pl.col("ratings").is_not_null() & (pl.col("ratings") != 3))
    positive = labelled["ratings"] >= 4
    if min(int(positive.sum()), int((~positive).sum())) < cfg.min_rated_reviews:
        return None
    # the vocabulary: terms of at least three customers' reviews (one customer's name or order
    # number, however often they write it, is not a term a kept model may carry)
    per_customer = labelled.group_by("customer_id").agg(pl.col("reviews").str.join(" . "))
    try:
        terms = TfidfVectorizer(ngram_range=(1, 2), min_df=3).fit(per_customer["reviews"])
    except ValueError:  # no term of three customers
        return None
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True,
                          vocabulary=sorted(terms.vocabulary_))  # fmt: skip
    x = vec.fit_transform(labelled["reviews"].to_list())
    model = LogisticRegression(max_iter=1000, random_state=seed, class_weight="balanced")
    model.fit(x, positive.to_numpy())
    return _keepable(vec), model


def apply(models: TextModels, docs: pl.DataFrame) -> pl.DataFrame:
    """customer_id, topic_1..topic_k (weights summing to 1), top_topic, sentiment (mean
    probability that their reviews are positive; null without reviews or a sentiment model),
    doc_hash and text_model (the fit's id) for every document of ``docs``."""
    k = len(models.terms)
    if docs.is_empty():
        w = np.zeros((0, k))
    else:
        x = models.vectorizer.transform(docs["doc"].to_list())  # type: ignore[attr-defined]
        w = models.nmf.transform(x)  # type: ignore[attr-defined]
        w = w / np.maximum(w.sum(axis=1, keepdims=True), 1e-12)
    table = docs.select("customer_id", "doc_hash").with_columns(  # w's rows: docs' order
        *[pl.Series(f"topic_{t + 1}", w[:, t], dtype=pl.Float64) for t in range(k)],
        top_topic=pl.Series(np.argmax(w, axis=1) + 1 if len(w) else [], dtype=pl.Int32),
    )
    reviews = _reviews(docs)
    if models.sentiment is None or reviews.is_empty():
        feel = pl.DataFrame(schema={"customer_id": pl.String, "sentiment": pl.Float64})
    else:
        vec, clf = models.sentiment
        p = clf.predict_proba(vec.transform(reviews["reviews"].to_list()))[:, 1]  # type: ignore[attr-defined]
        feel = (
            reviews.select("customer_id")
            .with_columns(p=pl.Series(p, dtype=pl.Float64))
            .group_by("customer_id")
            .agg(sentiment=pl.col("p").mean())
        )
    weights = [f"topic_{t + 1}" for t in range(k)]
    return table.join(feel, on="customer_id", how="left", maintain_order="left").select(
        "customer_id", *weights, "top_topic", "sentiment", "doc_hash",
        text_model=pl.lit(models.fit_id),
    )  # fmt: skip


def refit_reason(models: TextModels | None, last: dt.date, cfg: TextConfig) -> str | None:
    """Why ``models`` may not weigh the documents as of ``last`` (None: they may)."""
    if models is None:
        return "no stored text models"
    return models.stamp.stale(_settings(cfg), last, cfg.refit_days, "text", "refit_days")


def save_models(path: Path, models: TextModels) -> None:
    """Keep ``models`` at ``path``."""
    kept.save(path, models)


def load_models(path: Path) -> tuple[TextModels | None, str]:
    """The models kept at ``path``, or None and why not."""
    return kept.load(path, TextModels)


@dataclass(frozen=True)
class Interests:
    topics: Topics | None
    #: customer_id, topic weights, top_topic, sentiment (null without reviews), doc_hash,
    #: text_model
    table: pl.DataFrame
    seconds: float
    reason: str = ""
    #: the models that weighed the table (None: too little text)
    models: TextModels | None = None
    #: why they were fitted in this run ("" when kept ones weighed it)
    refitted: str = ""
    #: customers whose row was kept from ``previous`` (their text unchanged)
    unchanged: int = 0


def interests(
    con: duckdb.DuckDBPyConnection,
    events: str,
    cfg: TextConfig,
    stored: TextModels | None = None,
    previous: pl.DataFrame | None = None,
) -> Interests:
    """Topics and sentiment for every customer who wrote something in the window. With
    ``stored`` models (kept by an earlier run) that :func:`refit_reason` allows, only the
    documents that changed since ``previous`` (the table they produced: same ``text_model``
    and ``doc_hash``) are built and weighed; the rest keep their rows."""
    import time

    t0 = time.perf_counter()
    last = con.execute(f"select max(event_date) from {events}").fetchall()[0][0]
    why = refit_reason(stored, last, cfg) if last is not None else "no events"
    models: TextModels | str | None = stored
    docs = None
    if why is not None or stored is None:
        docs = documents(con, events, cfg.window_days)
        models = fit(docs, cfg, last) if last is not None else "no events"
    if isinstance(models, str) or models is None:
        empty = pl.DataFrame(schema={"customer_id": pl.String, "top_topic": pl.Int32,
                                     "sentiment": pl.Float64})  # fmt: skip
        return Interests(None, empty, time.perf_counter() - t0, str(models))
    same = pl.DataFrame(schema={"customer_id": pl.String, "doc_hash": pl.String})
    if docs is None and previous is not None and "text_model" in previous.columns:
        # kept models: only the documents whose fingerprint moved are built and weighed
        now = fingerprints(con, events, cfg.window_days)
        same = (
            previous.filter(pl.col("text_model") == models.fit_id)
            .select("customer_id", "doc_hash")
            .join(now, on=["customer_id", "doc_hash"])
        )
        docs = documents(con, events, cfg.window_days, now.join(same, on="customer_id", how="anti"))
    elif docs is None:
        docs = documents(con, events, cfg.window_days)
    fresh = apply(models, docs)
    kept_rows = (
        previous.join(same, on=["customer_id", "doc_hash"], how="semi").select(fresh.columns)
        if previous is not None and same.height
        else fresh.clear()
    )
    table = pl.concat([kept_rows, fresh], how="vertical_relaxed").sort("customer_id")
    found = Topics(models.terms, table.drop("sentiment", "doc_hash", "text_model"))
    return Interests(found, table, time.perf_counter() - t0, "", models, why or "", same.height)


def segment_topics(table: pl.DataFrame, segments: pl.DataFrame, found: Topics) -> pl.DataFrame:
    """Per segment: customers who wrote, their top three topics (by mean weight) and mean
    sentiment."""
    cols = [c for c in table.columns if c.startswith("topic_")]
    joined = table.join(segments.select("customer_id", "segment_id"), on="customer_id")
    rows = []
    for (sid,), part in sorted(joined.group_by("segment_id"), key=lambda g: g[0][0]):
        means = part.select(cols).mean().row(0)
        best = np.argsort(means)[::-1][:3]
        rows.append({
            "segment_id": sid, "writers": part.height,
            "top_topics": " | ".join(found.label(int(t)) for t in best),
            "sentiment": part["sentiment"].mean(),
        })  # fmt: skip
    if not rows:
        return pl.DataFrame(schema={"segment_id": pl.Int64, "writers": pl.Int64,
                                    "top_topics": pl.String, "sentiment": pl.Float64})  # fmt: skip
    return pl.DataFrame(rows, schema_overrides={"writers": pl.Int64, "sentiment": pl.Float64})
