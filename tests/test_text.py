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
