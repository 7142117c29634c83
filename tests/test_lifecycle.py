import numpy as np
import polars as pl

from segmentation_dagster.core import clustering, lifecycle, naming
from tests.test_clustering import blobs

CFG = clustering.SelectionConfig(k_min=2, k_max=6, algorithms=("kmeans",))


def _fit(df, seed=0):
    return clustering.fit(df, clustering.SelectionConfig(**{**CFG.__dict__, "seed": seed}))


def test_permuting_training_rows_and_seed_leaves_published_ids_unchanged():
    df, _ = blobs(centers=4)
    champion = _fit(df)
    refit = _fit(df.sample(fraction=1.0, shuffle=True, seed=9), seed=5)
    al = lifecycle.align_to_champion(refit, champion, next_id=99)
    refit.segment_ids = al.segment_ids
    assert not al.new and not al.retired
    assert (refit.assign(df)[0] == champion.assign(df)[0]).all()


def test_a_removed_cluster_is_retired_and_an_added_one_gets_a_new_id():
    df, truth = blobs(centers=4, seed=1)
    champion = _fit(df)
    old_ids = champion.assign(df)[0]
    gone = int(old_ids[truth == 3][0])
    rng = np.random.default_rng(2)
    newcomers = df.filter(pl.Series(truth == 0)).with_columns(
        pl.col("frequency") + 60 + rng.normal(0, 1, 300), pl.col("customer_id") + "_new"
    )
    today = pl.concat([df.filter(pl.Series(truth != 3)), newcomers])
    challenger = _fit(today)
    al = lifecycle.align_to_champion(challenger, champion, next_id=10)
    assert al.retired == (gone,)
    assert al.new == (10,)
    assert set(al.matched) == set(np.unique(old_ids)) - {gone}


def test_align_respects_the_distance_threshold():
    old = {1: np.zeros(2), 2: np.array([10.0, 0])}
    new = {0: np.array([0.1, 0]), 1: np.array([5.0, 5.0])}
    al = lifecycle.align(new, old, next_id=3, max_distance=1.0)
    assert list(al.segment_ids) == [1, 3] and al.retired == (2,)


def test_compare_keeps_an_equal_champion_and_promotes_a_clearly_better_one():
    df, _ = blobs(centers=4)
    good = _fit(df)
    same = _fit(df, seed=3)
    assert not lifecycle.compare(same, good, df).promote
    bad = clustering.fit(df, clustering.SelectionConfig(k_min=2, k_max=2, algorithms=("kmeans",)))
    decision = lifecycle.compare(good, bad, df)
    assert decision.promote and "beats champion" in decision.reason
    assert lifecycle.compare(good, None, df).reason == "no champion yet"


def test_champion_that_cannot_score_todays_data_is_replaced():
    df, _ = blobs()
    champion = _fit(df)
    decision = lifecycle.compare(_fit(df.drop("cart_rate")), champion, df.drop("cart_rate"))
    assert decision.promote and "cannot score" in decision.reason


def test_migration_matrix_and_membership_changes():
    prev = pl.DataFrame({"customer_id": ["a", "b", "c"], "segment_id": [1, 1, 2]})
    cur = pl.DataFrame({"customer_id": ["a", "b", "d"], "segment_id": [1, 2, 2]})
    m = lifecycle.migration_matrix(prev, cur)
    got = {(r["from_segment"], r["to_segment"]): r["customers"] for r in m.iter_rows(named=True)}
    assert got == {(1, 1): 1, (1, 2): 1, (2, None): 1, (None, 2): 1}
    changes = lifecycle.membership_changes(prev, cur)
    assert changes.rows() == [
        ("b", 2, "joined"),
        ("b", 1, "left"),
        ("c", 2, "left"),
        ("d", 2, "joined"),
    ]
    assert lifecycle.unchanged_share(prev, cur) == 0.5


def test_archetype_names_are_distinct_and_keep_taken_names_free():
    z = pl.DataFrame(
        {
            "segment_id": [1, 2, 3],
            "discount_share": [2.0, -0.5, 0.0],
            "avg_item_price": [-1.0, 1.0, 0.0],
            "views_per_session": [0.0, 0.0, 2.0],
            "cart_rate": [0.0, 0.0, -1.0],
            "frequency": [0.2, 2.0, -1.0],
        }
    )
    names = naming.name_segments(z)
    assert names == {1: "Bargain hunters", 2: "Loyal high spenders", 3: "Window shoppers"}
    again = naming.name_segments(z, taken={"Bargain hunters"})
    assert again[1] != "Bargain hunters" and len(set(again.values())) == 3


def test_surrogate_rules_are_readable_and_faithful_on_separable_data():
    df, truth = blobs(centers=3)
    x = df.select("frequency", "avg_order_value", "cart_rate").to_numpy()
    rules = naming.surrogate_rules(
        x, truth + 1, ["frequency", "avg_order_value", "cart_rate"], depth=3
    )
    assert rules.fidelity > 0.95
    assert set(rules.rules) == {1, 2, 3}
    assert all("precise" in r and (" <= " in r or " > " in r) for r in rules.rules.values())


def test_browsing_archetypes_are_not_offered_without_browsing_features():
    z = pl.DataFrame({"segment_id": [1, 2], "sessions_per_week": [2.0, -1.0],
                      "frequency": [1.5, -1.0], "avg_order_value": [1.0, -0.5]})  # fmt: skip
    names = naming.name_segments(z)
    assert "Frequent visitors" not in names.values()
    assert names[1] == "Loyal high spenders"


def test_reference_shares_are_counted_once_and_follow_the_id_map(tmp_path):
    from segmentation_dagster.core import drift, registry
    from segmentation_dagster.core.warehouse import connect

    df, _ = blobs(centers=3)
    model = _fit(df)
    with connect(tmp_path / "w.duckdb") as con:
        version = registry.save_model(con, model, tmp_path / "models", None, df)
        expected = drift.shares(model.assign(df)[0])
        assert registry.reference_shares(con, version, model) == expected
        cache = registry.reference_path(con, version).with_suffix(".clusters.json")
        assert cache.exists()
        model.segment_ids = model.segment_ids + 10  # ids re-mapped; the cached counts still apply
        assert registry.reference_shares(con, version, model) == {
            k + 10: v for k, v in expected.items()
        }
