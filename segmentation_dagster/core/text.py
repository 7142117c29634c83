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
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import polars as pl

from segmentation_dagster.core.settings import require_whole_numbers


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

    def __post_init__(self) -> None:
        require_whole_numbers(self)


def documents(con: duckdb.DuckDBPyConnection, events: str, window_days: int) -> pl.DataFrame:
    """customer_id, doc (their queries and review texts of the last ``window_days`` days) and
    the reviews' texts and ratings (lists), for every customer who wrote anything."""
    return con.sql(
        f"""
        with recent as (
            select customer_id::varchar as customer_id, event_type, search_query, review_text,
                   review_rating
            from {events}
            where event_date > (select max(event_date) from {events}) - to_days($days)
              and (search_query is not null or review_text is not null)
        )
        select customer_id,
               string_agg(coalesce(search_query, review_text), ' . ') as doc,
               list(review_text) filter (review_text is not null) as reviews,
               list(review_rating) filter (review_text is not null) as ratings
        from recent group by customer_id order by customer_id
        """,
        params={"days": window_days},
    ).pl()


@dataclass(frozen=True)
class Topics:
    #: topic -> its top terms, most weighty first
    terms: list[list[str]]
    #: one row per customer: customer_id, topic_1..topic_k weights, top_topic
    weights: pl.DataFrame

    def label(self, topic: int) -> str:
        return f"{topic + 1}: " + ", ".join(self.terms[topic][:4])


def topics(docs: pl.DataFrame, cfg: TextConfig, seed: int = 0) -> Topics | None:
    """Fit TF-IDF + NMF on a sample of ``docs`` and weigh every customer's document; None when
    there is too little text for ``n_topics`` topics."""
    from sklearn.decomposition import NMF
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = docs["doc"].to_list()
    if len(texts) < 5 * cfg.n_topics:
        return None
    rng = np.random.default_rng(seed)
    fit = rng.choice(len(texts), min(len(texts), cfg.fit_sample), replace=False)
    vec = TfidfVectorizer(stop_words="english", ngram_range=(1, 2), min_df=3, max_df=0.5,
                          sublinear_tf=True)  # fmt: skip
    try:
        x_fit = vec.fit_transform([texts[i] for i in fit])
    except ValueError:  # no term left after the stop words and frequency limits
        return None
    k = min(cfg.n_topics, x_fit.shape[1] - 1)
    if k < 2:
        return None
    nmf = NMF(n_components=k, init="nndsvda", random_state=seed, max_iter=400)
    nmf.fit(x_fit)
    vocab = np.asarray(vec.get_feature_names_out())
    terms = [list(vocab[np.argsort(-row)[:8]]) for row in nmf.components_]
    w = nmf.transform(vec.transform(texts))
    w = w / np.maximum(w.sum(axis=1, keepdims=True), 1e-12)
    weights = docs.select("customer_id").with_columns(
        *[pl.Series(f"topic_{t + 1}", w[:, t]) for t in range(k)],
        top_topic=pl.Series(np.argmax(w, axis=1) + 1, dtype=pl.Int32),
    )
    return Topics(terms, weights)


def sentiment(docs: pl.DataFrame, cfg: TextConfig, seed: int = 0) -> pl.DataFrame | None:
    """customer_id, sentiment (mean probability that their reviews are positive) for every
    customer with a review; None without enough rated reviews to learn from."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    reviews = (
        docs.select("customer_id", "reviews", "ratings")
        .filter(pl.col("reviews").list.len() > 0)
        .explode("reviews", "ratings")
    )
    labelled = reviews.filter(pl.col("ratings").is_not_null() & (pl.col("ratings") != 3))
    positive = labelled["ratings"] >= 4
    if min(int(positive.sum()), int((~positive).sum())) < cfg.min_rated_reviews:
        return None
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    x = vec.fit_transform(labelled["reviews"].to_list())
    model = LogisticRegression(max_iter=1000, random_state=seed, class_weight="balanced")
    model.fit(x, positive.to_numpy())
    p = model.predict_proba(vec.transform(reviews["reviews"].to_list()))[:, 1]
    return (
        reviews.select("customer_id")
        .with_columns(p=pl.Series(p))
        .group_by("customer_id")
        .agg(sentiment=pl.col("p").mean())
        .sort("customer_id")
    )


@dataclass(frozen=True)
class Interests:
    topics: Topics | None
    #: customer_id, top_topic, topic weights, sentiment (null without reviews)
    table: pl.DataFrame
    seconds: float
    reason: str = ""


def interests(con: duckdb.DuckDBPyConnection, events: str, cfg: TextConfig) -> Interests:
    """Topics and sentiment for every customer who wrote something in the window."""
    import time

    t0 = time.perf_counter()
    docs = documents(con, events, cfg.window_days)
    found = topics(docs, cfg)
    if found is None:
        empty = pl.DataFrame(schema={"customer_id": pl.String, "top_topic": pl.Int32,
                                     "sentiment": pl.Float64})  # fmt: skip
        why = f"too little text: {docs.height} customers wrote something in {cfg.window_days} days"
        return Interests(None, empty, time.perf_counter() - t0, why)
    feel = sentiment(docs, cfg)
    table = found.weights
    table = (
        table.join(feel, on="customer_id", how="left")
        if feel is not None
        else table.with_columns(sentiment=pl.lit(None, dtype=pl.Float64))
    )
    return Interests(found, table, time.perf_counter() - t0)


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
