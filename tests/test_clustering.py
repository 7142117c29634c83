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
            "avg_order_value": np.exp(1.5 * truth)
            * rng.lognormal(0, 0.2, truth.size),  # skewed: logged
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
    assert plan.used == ("frequency", "avg_order_value", "cart_rate")
    assert "constant" in plan.dropped["constant"]
    assert "cannot support" in plan.dropped["view_to_purchase_rate"]
    assert "avg_order_value" in plan.log_transformed and "frequency" not in plan.log_transformed


def test_fit_recovers_the_number_of_blobs_and_assigns_everyone():
    from sklearn.metrics import adjusted_rand_score

    df, truth = blobs()
    model = clustering.fit(df, clustering.SelectionConfig(k_min=2, k_max=7))
    labels, dist, conf = model.assign(df)
    assert model.k == 4
    assert adjusted_rand_score(truth, labels) > 0.95
    assert labels.shape == (df.height,) and (dist >= 0).all()
    assert ((conf >= 0) & (conf <= 1)).all()
    assert {(c.algorithm, c.k) for c in model.candidates} == {
        (a, k) for a in ("kmeans", "ward") for k in range(2, 8)
    } | {("hdbscan", 4)}  # the density family finds the number of groups itself
    assert "fewest segments" in model.selection_reason
    # assignment runs in row chunks; where the chunks fall changes nothing
    chunked = model.assign(df, chunk=7)
    assert all(np.array_equal(a, b) for a, b in zip(chunked, (labels, dist, conf), strict=True))


def test_candidates_are_compared_on_a_sample_and_the_winner_refitted_on_more():
    from sklearn.metrics import adjusted_rand_score

    df, truth = blobs()
    cfg = clustering.SelectionConfig(k_min=2, k_max=6, search_sample=df.height // 4)
    model = clustering.fit(df, cfg)
    assert model.k == 4
    assert f"refitted on {df.height:,} rows" in model.selection_reason
    assert adjusted_rand_score(truth, model.assign(df)[0]) > 0.95
    full = clustering.fit(df, clustering.SelectionConfig(k_min=2, k_max=6))
    assert "refitted" not in full.selection_reason  # nothing to refit: the search saw all


def test_fit_is_deterministic_for_a_seed():
    df, _ = blobs()
    a = clustering.fit(df, clustering.SelectionConfig(k_min=2, k_max=5))
    b = clustering.fit(df, clustering.SelectionConfig(k_min=2, k_max=5))
    assert a.candidates == b.candidates
    assert (a.assign(df)[0] == b.assign(df)[0]).all()


def test_transform_reuses_the_fitted_scaling():
    df, _ = blobs()
    model = clustering.fit(df, clustering.SelectionConfig(k_min=2, k_max=4))
    assert model.preprocessor.get_params()["log__kw_args"] == {"columns": (1,)}  # monetary
    assert abs(model.transform(df)[:, 0].mean()) < 1e-9
    heavy = df.filter(pl.col("frequency") > pl.col("frequency").median())
    assert model.transform(heavy)[:, 0].mean() > 0.5  # scaled as at fit, not re-standardised
    extreme = df.with_columns(pl.col("frequency") + 1000)
    assert model.transform(extreme)[:, 0].max() < 5  # clipped to the fitted 99.5 % quantile


def test_preprocessing_matches_sklearns_median_imputer_and_plain_quantiles():
    """The fast preprocessing steps give what the straightforward ones give."""
    from sklearn.impute import SimpleImputer

    rng = np.random.default_rng(3)
    x = rng.lognormal(0, 1, size=(2_001, 4))
    x[rng.random(x.shape) < 0.2] = np.nan
    x[:, 3] = np.nan  # a column with no values at all
    plan = clustering.FeaturePlan(used=("a", "b", "c", "d"), log_transformed=("b", "c"),
                                  dropped={})  # fmt: skip
    pre = clustering.build_preprocessor(plan).fit(x)
    sk = SimpleImputer(strategy="median", keep_empty_features=True).fit(x)
    np.testing.assert_array_equal(pre.named_steps["impute"].statistics_, sk.statistics_)
    logged = sk.transform(x)
    logged[:, 1:3] = np.log1p(np.clip(logged[:, 1:3], 0, None))
    clip = pre.named_steps["clip"]
    np.testing.assert_array_equal(clip.lo_, np.nanquantile(logged, 0.005, axis=0))
    np.testing.assert_array_equal(clip.hi_, np.nanquantile(logged, 0.995, axis=0))
    np.testing.assert_array_equal(pre[:-1].transform(x), np.clip(logged, clip.lo_, clip.hi_))


def test_too_few_customers_is_a_clear_error():
    df, _ = blobs(n_per=1, centers=2)
    with pytest.raises(ValueError, match="customer_features has 2 rows; need at least 30"):
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


def test_without_browsing_a_visit_is_an_order_and_is_not_named_twice():
    """On a purchases-only log a session is an order: 'visit often' would repeat 'frequent
    buyers'. With views that vary it is a trait of its own."""
    from segmentation_dagster.core import naming

    seg = pl.DataFrame({"customer_id": list("abcd"), "segment_id": [1, 1, 2, 2]})
    for views, visits_named in (([0.0] * 4, False), ([1.0, 2.0, 5.0, 6.0], True)):
        df = pl.DataFrame({"customer_id": list("abcd"), "frequency": [9.0, 8.0, 1.0, 2.0],
                           "sessions_per_week": [3.0, 2.5, 0.2, 0.3],
                           "views_per_session": views})  # fmt: skip
        prof = profiling.profile_segments(df, seg, ["frequency", "sessions_per_week",
                                                    "views_per_session"])  # fmt: skip
        assert ("visit often" in prof["description"][0]) == visits_named, prof["description"]
        assert "frequent buyers" in prof["description"][0]
        z = {"frequency": 1.2, "sessions_per_week": 1.5}
        assert naming.trait_name(z) == "Frequent buyers"  # no views among the inputs
        assert naming.trait_name({**z, "views_per_session": 0.1}) == "Visit often, frequent buyers"


def test_selection_rejects_tiny_segments_and_prefers_fewer_near_equal_segments():
    rng = np.random.default_rng(0)
    centers = np.array([[0, 0, 0], [20, 0, 20], [0, 20, 20], [40, 40, 40]], dtype=float)
    truth = np.repeat([0, 1, 2, 3], [300, 300, 300, 6])  # a 4th "segment" of 0.7 %
    x = centers[truth] + rng.normal(0, 1, (truth.size, 3))
    df = pl.DataFrame(
        {"customer_id": [str(i) for i in range(truth.size)], "frequency": x[:, 0],
         "cart_rate": x[:, 1], "sessions_per_week": x[:, 2]}
    )  # fmt: skip
    model = clustering.fit(df, clustering.SelectionConfig(k_min=2, k_max=6, skew_threshold=99))
    rejected = [c.rejected or "" for c in model.candidates]
    assert model.k == 3
    assert any("smallest segment" in r for r in rejected)
    assert model.chosen.stability is not None and model.chosen.stability > 0.9


def test_features_plan_drops_sparse_correlated_and_excluded_columns():
    df, _ = blobs()
    df = df.with_columns(
        frequency_copy=pl.col("frequency") * 2 + 1,
        mostly_null=pl.when(pl.col("frequency") > 30).then(pl.col("frequency")),
        review_count=pl.col("frequency"),
    )
    plan = clustering.plan_features(df)
    assert plan.dropped["frequency_copy"].startswith("correlation 1.00 with frequency")
    assert "undefined for" in plan.dropped["mostly_null"]
    assert plan.dropped["review_count"].startswith("excluded by configuration")


@pytest.mark.parametrize("algorithm", ["kmeans", "ward", "hdbscan", "gmm"])
def test_every_family_recovers_the_blobs_and_assigns_by_a_rule_for_everyone(algorithm):
    from sklearn.metrics import adjusted_rand_score

    df, truth = blobs(n_per=400, centers=4, seed=3)
    cfg = clustering.SelectionConfig(k_min=2, k_max=6, algorithms=(algorithm,), ward_sample=500,
                                     density_sample=800)  # fmt: skip
    model = clustering.fit(df, cfg)
    assert model.algorithm == algorithm and model.k == 4
    # fitted on a sample (Ward, HDBSCAN), yet every customer gets a segment
    labels = model.assign(df)[0]
    assert adjusted_rand_score(truth, labels) > 0.95
    assert model.centroids.shape == (4, len(model.plan.used))


def test_hysteresis_keeps_a_customer_on_a_boundary_where_they_were():
    df, truth = blobs(n_per=300, centers=3, seed=1)
    model = clustering.fit(df, clustering.SelectionConfig(k_min=3, k_max=3, algorithms=("kmeans",)))
    ids, _, _ = model.assign(df)
    # tell the model everyone was in some other segment yesterday
    other = np.roll(np.sort(np.unique(ids)), 1)
    previous = other[np.searchsorted(np.sort(np.unique(ids)), ids)]
    x = model.transform(df)
    d = np.sqrt(((x[:, None, :] - model.centroids[None]) ** 2).sum(-1))
    pos = {int(s): i for i, s in enumerate(model.segment_ids)}
    d_prev = d[np.arange(len(ids)), [pos[int(p)] for p in previous]]
    d_best = d.min(axis=1)
    for margin in (0.1, 0.9):
        kept, _, _ = model.assign(df, previous_ids=previous, margin=margin)
        stays = d_best > (1 - margin) * d_prev
        assert stays.any() == (margin == 0.9)
        assert (kept[stays] == previous[stays]).all()
        assert (kept[~stays] == ids[~stays]).all()
    # an id the model does not have is no earlier segment
    fresh, _, _ = model.assign(df, previous_ids=np.full(len(ids), 999), margin=0.5)
    assert (fresh == ids).all()
