"""Interests from text: topics and sentiment learned from the shop's own queries and reviews
carry the personas' signal (real DuckDB over generated landing files)."""

import duckdb
import polars as pl
import pytest

from segmentation_dagster.core import text
from segmentation_dagster.demo import simulate
from tests.conftest import landing_events_view


def _events(root) -> duckdb.DuckDBPyConnection:
    return landing_events_view(
        root, "customer_id, event_type, search_query, review_text, review_rating"
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("text")
    simulate.generate(simulate.DemoConfig(n_customers=3000, days=60, seed=3), root / "landing",
                      root / "truth")  # fmt: skip
    return root


def test_personas_get_different_topics_and_sentiment(demo):
    found = text.interests(_events(demo), "ev", text.TextConfig())
    assert found.topics is not None, found.reason
    truth = pl.read_parquet(demo / "truth" / "personas.parquet").select(
        pl.col("customer_id").cast(pl.String), segment_id="persona"
    )
    by = {r["segment_id"]: r for r in
          text.segment_topics(found.table, truth, found.topics).iter_rows(named=True)}  # fmt: skip
    first = {p: r["top_topics"].split(" | ")[0] for p, r in by.items()}
    assert any(w in first["bargain_hunter"] for w in ("discount", "cheap", "sale", "clearance"))
    assert any(w in first["window_shopper"] for w in ("guide", "compare", "test", "reviews"))
    assert len({first["bargain_hunter"], first["window_shopper"], first["loyal_high_spender"]}) == 3
    # sentiment is learned from the shop's own star ratings: the happiest persona reads happier
    assert by["loyal_high_spender"]["sentiment"] > by["window_shopper"]["sentiment"] + 0.05


def test_a_log_without_text_gets_no_topics_and_says_why(tmp_path):
    cfg = simulate.DemoConfig(n_customers=300, days=20, seed=1, purchases_only=True)
    simulate.generate(cfg, tmp_path / "landing", tmp_path / "truth")
    con = landing_events_view(
        tmp_path, "customer_id, event_type, cast(null as varchar) as search_query, "
        "cast(null as varchar) as review_text, cast(null as integer) as review_rating",
    )  # fmt: skip
    found = text.interests(con, "ev", text.TextConfig())
    assert found.topics is None and "too little text" in found.reason and found.table.is_empty()


def test_kept_models_weigh_only_changed_documents_as_a_full_pass_would(demo, tmp_path):
    con = _events(demo)
    con.execute("create table events as select * from ev")
    cfg = text.TextConfig(refit_days=3, window_days=30)  # a day leaves the window each day
    first = text.interests(con, "events", cfg)
    assert first.refitted == "no stored text models" and first.models is not None
    path = tmp_path / text.MODELS_FILE
    text.save_models(path, first.models)
    kept, why = text.load_models(path)
    assert why == "" and kept.vectorizer.stop_words_ is None  # no customer's rare words kept
    assert kept.fit_id == first.models.fit_id

    # a day later: one customer writes again, one erased, the oldest day leaves the window
    writer, gone = first.table["customer_id"][0], first.table["customer_id"][1]
    con.execute(
        "insert into events (customer_id, event_type, search_query, event_date) "
        "select ?, 'search', 'cheap discount clearance sale', max(event_date) + 1 from events",
        [writer],
    )
    con.execute("delete from events where customer_id::varchar = ?", [gone])
    later = text.interests(con, "events", cfg, kept, first.table)
    assert later.refitted == "" and 0 < later.unchanged < later.table.height
    assert gone not in later.table["customer_id"].to_list()
    full = text.apply(kept, text.documents(con, "events", cfg.window_days))
    assert later.table["customer_id"].to_list() == full["customer_id"].to_list()
    changed = later.table.height - later.unchanged
    assert changed < later.table.height / 3  # only the changed documents were weighed
    mine = later.table.filter(pl.col("customer_id") == writer)
    before = first.table.filter(pl.col("customer_id") == writer)
    assert mine["doc_hash"].item() != before["doc_hash"].item()  # weighed again
    # the same as weighing every document now (with the topics fixed, each document's
    # weights solve a convex problem of their own: the batch does not matter beyond the
    # solver's tolerance)
    weights = [c for c in full.columns if c.startswith("topic_")]
    gap = (later.table.select(weights) - full.select(weights)).select(pl.all().abs().max())
    assert max(gap.row(0)) < 1e-3, gap
    agree = (later.table["top_topic"] == full["top_topic"]).mean()
    assert agree > 0.999, agree
    assert later.table["sentiment"].is_null().sum() == full["sentiment"].is_null().sum()

    # due after refit_days of events, or when the text section changes
    for _ in range(2):
        con.execute(
            "insert into events (customer_id, event_type, search_query, event_date) "
            "select ?, 'search', 'gift guide', max(event_date) + 1 from events", [writer]
        )  # fmt: skip
    assert "3 days old" in text.interests(con, "events", cfg, kept, later.table).refitted
    other = text.TextConfig(refit_days=3, window_days=30, n_topics=5)
    assert "text section changed" in text.interests(con, "events", other, kept).refitted


def test_a_word_only_one_customer_writes_is_in_no_kept_model(demo):
    con = _events(demo)
    who = con.execute("select min(customer_id) from ev where review_text is not null").fetchall()
    con.execute("create table events as select * from ev")
    for stars in (5, 1, 5):  # their name in three reviews, one customer
        con.execute(
            "insert into events (customer_id, event_type, review_text, review_rating, event_date) "
            "select ?, 'review', 'signed zyxwvname zyxwvname', ?, max(event_date) from events",
            [who[0][0], stars],
        )
    models = text.interests(con, "events", text.TextConfig()).models
    assert models is not None and models.sentiment is not None
    for vec in (models.vectorizer, models.sentiment[0]):
        assert not any("zyxwvname" in t for t in vec.vocabulary_)
