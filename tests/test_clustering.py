import numpy as np
import polars as pl
import pytest

from segmentation_dagster.core import clustering, profiling


def blobs(n_per: int = 300, centers: int = 4, seed: int = 0) -> tuple[pl.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    means = rng.uniform(0, 40, size=(centers, 3))
    truth = np.repeat(np.arange(centers), n_per)
    x = means[truth] + rng.normal(0, 1.0, size=(truth.size, 3))
    df = pl.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(truth.size)],
            "snapshot_date": [None] * truth.size,
            "frequency": x[:, 0],
            "monetary": np.exp(1.5 * truth) * rng.lognormal(0, 0.2, truth.size),  # skewed: logged
            "cart_rate": x[:, 2],
            "constant": np.ones(truth.size),
            "view_to_purchase_rate": [None] * truth.size,
            "top_category": ["books"] * truth.size,
        },
        schema_overrides={"view_to_purchase_rate": pl.Float64, "snapshot_date": pl.Date},
    )
    return df, truth


def test_plan_drops_unusable_features_with_reasons_and_logs_skewed_ones():
    df, _ = blobs()
    plan = clustering.plan_features(df)
    assert plan.used == ("frequency", "monetary", "cart_rate")
    assert "constant" in plan.dropped["constant"]
    assert "cannot support" in plan.dropped["view_to_purchase_rate"]
    assert "monetary" in plan.log_transformed and "frequency" not in plan.log_transformed


def test_fit_recovers_the_number_of_blobs_and_assigns_everyone():
    from sklearn.metrics import adjusted_rand_score

    df, truth = blobs()
    model = clustering.fit(df, clustering.SelectionConfig(k_min=2, k_max=7))
    labels, dist = model.assign(df)
    assert model.k == 4
    assert adjusted_rand_score(truth, labels) > 0.95
    assert labels.shape == (df.height,) and (dist >= 0).all()
    assert set(model.scores) == set(range(2, 8))


def test_fit_is_deterministic_for_a_seed():
    df, _ = blobs()
    a = clustering.fit(df, clustering.SelectionConfig(k_min=2, k_max=5))
    b = clustering.fit(df, clustering.SelectionConfig(k_min=2, k_max=5))
    assert a.scores == b.scores
    assert (a.assign(df)[0] == b.assign(df)[0]).all()


def test_transform_reuses_the_fitted_scaling():
    df, _ = blobs()
    model = clustering.fit(df, clustering.SelectionConfig(k_min=2, k_max=4))
    assert model.preprocessor.get_params()["log__kw_args"] == {"columns": (1,)}  # monetary
    shifted = df.with_columns(pl.col("frequency") + 1000)
    assert model.transform(shifted)[:, 0].mean() > 50  # 1000 / sd, not re-standardised to 0


def test_too_few_customers_is_a_clear_error():
    df, _ = blobs(n_per=1, centers=2)
    with pytest.raises(ValueError, match="customer_features has 2 rows"):
        clustering.fit(df)


def test_profiles_describe_what_sets_a_segment_apart():
    df = pl.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d"],
            "discount_share": [0.9, 0.8, 0.05, 0.0],
            "monetary": [10.0, 12.0, 500.0, 450.0],
        }
    )
    seg = pl.DataFrame({"customer_id": ["a", "b", "c", "d"], "segment_id": [1, 1, 2, 2]})
    prof = profiling.profile_segments(df, seg, ["discount_share", "monetary"])
    assert prof["size"].to_list() == [2, 2] and prof["share"].to_list() == [0.5, 0.5]
    assert set(prof["description"][0].split(", ")) == {"discount-driven", "low spend"}
    assert set(prof["description"][1].split(", ")) == {"high spend", "pay full price"}
