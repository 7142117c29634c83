"""The fitted model compiled to SQL assigns exactly as the model does in Python (real DuckDB)."""

import duckdb
import numpy as np
import polars as pl
import pytest

from segmentation_dagster.core import clustering, compiled
from tests.test_clustering import blobs


def _customers() -> pl.DataFrame:
    df, _ = blobs(n_per=400, centers=4, seed=3)
    rng = np.random.default_rng(0)
    cart = df["cart_rate"].to_numpy().copy()
    cart[rng.choice(cart.size, 60, replace=False)] = np.nan  # imputed with the median
    cart[:3] = [1e6, -1e6, 0.0]  # clipped to the fitted quantiles
    missing = pl.Series(np.arange(cart.size) % 50 == 7)
    return df.with_columns(
        cart_rate=pl.when(missing).then(None).otherwise(pl.Series(cart)),
        avg_order_value=pl.when(pl.Series(np.arange(cart.size) == 5))
        .then(-3.0)  # log1p of <0
        .otherwise(pl.col("avg_order_value")),
    )


@pytest.mark.parametrize("algorithm", ["kmeans", "ward", "hdbscan", "gmm"])
def test_sql_assignment_is_the_models_own(algorithm):
    df = _customers()
    cfg = clustering.SelectionConfig(k_min=2, k_max=6, algorithms=(algorithm,), ward_sample=500,
                                     density_sample=800)  # fmt: skip
    model = clustering.fit(df, cfg)
    model.segment_ids = np.array([7, 3, 9, 1, 4, 2])[: model.k]  # ids as alignment leaves them
    ids, dist, conf = model.assign(df)
    con = duckdb.connect()
    con.register("features", df.to_arrow())
    got = con.sql(compiled.assignment_sql(model, "features")).pl().sort("customer_id")
    want = pl.DataFrame({"customer_id": df["customer_id"], "segment_id": ids, "distance": dist,
                         "confidence": conf}).sort("customer_id")  # fmt: skip
    assert (got["segment_id"].to_numpy() == want["segment_id"].to_numpy()).all()
    for col in ("distance", "confidence"):
        np.testing.assert_allclose(got[col].to_numpy(), want[col].to_numpy(), rtol=1e-9, atol=1e-9)

    # hysteresis: everyone was in another segment yesterday (and some in one the model lacks)
    previous = np.roll(model.segment_ids, 1)[
        np.searchsorted(model.segment_ids, ids, sorter=np.argsort(model.segment_ids))
    ]  # noqa: E501
    previous = np.where(np.arange(ids.size) % 13 == 0, 999, previous)
    con.register("yesterday", pl.DataFrame({"customer_id": df["customer_id"],
                                            "segment_id": previous}).to_arrow())  # fmt: skip
    for margin in (0.2, 0.9):
        kept, kdist, kconf = model.assign(df, previous_ids=previous, margin=margin)
        sql = compiled.assignment_sql(model, "features", previous="yesterday", margin=margin)
        got = (
            con.sql(sql)
            .pl()
            .join(
                pl.DataFrame({"customer_id": df["customer_id"], "want": kept, "want_d": kdist}),
                on="customer_id",
            )
        )
        assert got.height == df.height and (got["segment_id"] == got["want"]).all(), margin
        assert margin < 0.9 or (kept != ids).any()  # some customers did stay where they were
        np.testing.assert_allclose(got["distance"], got["want_d"], rtol=1e-9)


def test_only_plain_names_and_finite_numbers_reach_the_query():
    for bad in ("features; drop table x", 'a"b', "Features", "a.b.c.d", ""):
        with pytest.raises(ValueError, match="plain SQL name"):
            compiled.name(bad)
    assert compiled.name("main.customer_features") == "main.customer_features"
    with pytest.raises(ValueError, match="non-finite"):
        compiled.number(float("nan"))
    assert float(compiled.number(0.1)) == 0.1


def test_a_sample_is_the_first_customers_by_the_key_with_or_without_the_prefix_cut():
    con = duckdb.connect()
    con.execute("create table t as select 'c' || i as customer_id, i from range(20000) r(i)")
    queries: list[str] = []

    def run(q: str) -> pl.DataFrame:
        queries.append(q)
        return con.sql(q).pl()

    every = con.sql(f"select * from t order by {compiled.sample_order(4)}").pl()
    cut = compiled.sample(run, "t", 100, 4, 20_000)
    assert len(queries) == 1 and "where" in queries[0]  # about 1,150 rows sorted, not 20,000
    assert cut.equals(every.head(100))
    # a prefix that lets too few through (a wrong row count): every row is sorted instead
    queries.clear()
    assert compiled.sample(run, "t", 100, 4, 10**9).equals(every.head(100))
    assert len(queries) == 2 and "where" not in queries[1]
    # a smaller sample is part of a larger one; another seed, other customers
    assert set(compiled.sample(run, "t", 40, 4, 20_000)["customer_id"]) < set(cut["customer_id"])
    assert set(compiled.sample(run, "t", 100, 5, 20_000)["customer_id"]) != set(cut["customer_id"])
