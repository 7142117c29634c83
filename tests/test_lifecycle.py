import numpy as np
import polars as pl

from segmentation_dagster.core import clustering, lifecycle, naming
from tests.test_clustering import blobs

CFG = clustering.SelectionConfig(k_min=2, k_max=6, algorithms=("kmeans",))


def _fit(df, seed=0):
    return clustering.fit(df, clustering.SelectionConfig(**{**CFG.__dict__, "seed": seed}))


def _reseg(today, champion, current=None, next_id=50, fit_shares=None, **config):
    return lifecycle.resegment(
        today, champion, current, next_id, {}, CFG, lifecycle.LifecycleConfig(**config),
        fit_shares,
    )  # fmt: skip


def test_permuting_training_rows_and_seed_leaves_published_ids_unchanged():
    df, _ = blobs(centers=4)
    champion = _fit(df)
    refit = _fit(df.sample(fraction=1.0, shuffle=True, seed=9), seed=5)
    al = lifecycle.align_to_champion(refit, champion, 99, df)
    refit.segment_ids = al.segment_ids
    assert not al.new and not al.retired
    assert al.counts() == {"kept": 4, "split": 0, "merged": 0, "new": 0, "retired": 0}
    assert (refit.assign(df)[0] == champion.assign(df)[0]).all()


def test_ids_follow_members_even_when_the_scaled_space_moved():
    # every feature shifted and stretched: the champion's centroids, mapped through the
    # challenger's preprocessing, no longer sit on the clusters, but the members are the same
    df, truth = blobs(centers=4, seed=4)
    champion = _fit(df)
    current = champion.assign(df)[0]
    moved = df.with_columns(pl.col("frequency") * 3 + 50, pl.col("cart_rate") - 30)
    refit = _fit(moved, seed=2)
    al = lifecycle.align_to_champion(refit, champion, 99, moved, current)
    refit.segment_ids = al.segment_ids
    assert al.counts()["kept"] == 4 and not al.new
    assert (refit.assign(moved)[0] == current).all()


def _members(sizes_old, moves):
    """Customers with a current segment and a new cluster: ``moves`` maps (old id, new idx)
    to a count."""
    old, new = [], []
    for (o, n), c in moves.items():
        old += [o] * c
        new += [n] * c
    return np.array(old), np.array(new)


def test_monic_transitions_kept_split_merged_new_retired():
    old, new = _members(None, {
        (1, 0): 100,             # 1 kept as cluster 0
        (2, 1): 60, (2, 2): 40,  # 2 split: 60 % stays (cluster 1), 40 % breaks off (2)
        (3, 3): 50, (4, 3): 45,  # 3 kept as cluster 3, and 4 merged into it
        (5, 0): 2, (5, 1): 2, (5, 3): 1,  # 5 nearly emptied and scattered: retired
    })  # fmt: skip
    extra_old = np.full(30, -1)  # customers with no segment yet form a new cluster
    al = lifecycle.align_members(
        np.r_[old, extra_old], np.r_[new, np.full(30, 4)], 5, [1, 2, 3, 4, 5, 6], next_id=10
    )
    kinds = {(t.kind, t.old_ids, t.new_ids) for t in al.transitions}
    assert ("kept", (1,), (1,)) in kinds and ("kept", (2,), (2,)) in kinds
    assert ("kept", (3,), (3,)) in kinds
    assert ("split", (2,), (10,)) in kinds
    assert ("merged", (4,), (3,)) in kinds
    assert ("new", (), (11,)) in kinds
    assert ("retired", (5,), ()) in kinds
    assert ("retired", (6,), ()) in kinds  # active but nobody left: emptied
    assert list(al.segment_ids) == [1, 2, 10, 3, 11]
    assert al.retired == (4, 5, 6) and al.new == (10, 11)


def test_an_emerging_group_gets_a_new_id_and_a_vanished_segment_is_retired():
    df, truth = blobs(centers=4, seed=1)
    champion = _fit(df)
    current = champion.assign(df)[0]
    gone = int(current[truth == 3][0])
    rng = np.random.default_rng(2)
    # part of cluster 0 takes up a behaviour far from every segment; cluster 3 leaves
    movers = np.flatnonzero(truth == 0)[:120]
    today = df.with_columns(
        frequency=pl.when(pl.int_range(pl.len()).is_in(movers))
        .then(pl.col("frequency") + 80 + pl.Series(rng.normal(0, 1, df.height)))
        .otherwise(pl.col("frequency"))
    ).filter(pl.Series(truth != 3))
    keep = truth != 3
    result = _reseg(today, champion, current[keep])
    al = result.alignment
    assert result.decision.promote and "new segments" in result.decision.reason
    assert al.retired == (gone,) and len(al.new) == 1
    new_id = al.new[0]
    moved_ids = result.challenger.assign(today)[0][np.isin(np.flatnonzero(keep), movers)]
    assert (moved_ids == new_id).mean() > 0.95
    assert {t.kind for t in al.transitions} >= {"kept", "retired"}
    assert {t.kind for t in al.transitions} & {"new", "split"}


def test_the_same_structure_keeps_the_champion_and_nobody_moves():
    df, _ = blobs(centers=4, seed=6)
    champion = _fit(df)
    current = champion.assign(df)[0]
    result = _reseg(df, champion, current)
    assert not result.decision.promote and "same segments" in result.decision.reason
    assert result.alignment.counts()["kept"] == 4


def test_same_segments_whose_members_moved_keep_the_champion_and_report_the_move():
    df, truth = blobs(centers=4, seed=6)
    champion = _fit(df)
    current = champion.assign(df)[0]
    drifted = df.with_columns(pl.col("cart_rate") + 8)  # every segment moved the same way
    result = _reseg(drifted, champion, current)
    assert not result.decision.promote and "same segments" in result.decision.reason
    kept = [t for t in result.alignment.transitions if t.kind == "kept"]
    assert len(kept) == 4 and all(t.shift > 0.3 for t in kept)
    calm = _reseg(df, champion, current)
    assert all(t.shift < 0.1 for t in calm.alignment.transitions)


def test_a_segment_is_retired_only_once_its_customers_have_left_it():
    df, truth = blobs(centers=4, seed=8)
    champion = _fit(df)
    current = champion.assign(df)[0]
    fit_shares = {int(k): float((current == k).mean()) for k in np.unique(current)}
    leaving = int(current[truth == 2][0])
    others = [int(k) for k in np.unique(current) if k != leaving]

    def today(stay: int) -> tuple[pl.DataFrame, np.ndarray]:
        # the customers of one segment take up another's behaviour, but `stay` of them
        rows = np.flatnonzero(truth == 2)[stay:]
        target = df.filter(pl.Series(truth == 3)).head(len(rows))
        moved = df.with_row_index().with_columns(
            pl.when(pl.col("index").is_in(rows)).then(pl.lit(None)).otherwise(pl.col(c)).alias(c)
            for c in ("frequency", "avg_order_value", "cart_rate")
        )
        for c in ("frequency", "avg_order_value", "cart_rate"):
            vals = moved[c].to_numpy().copy()
            vals[rows] = target[c].to_numpy()
            moved = moved.with_columns(pl.Series(c, vals))
        ids = current.copy()
        ids[rows] = others[-1]  # the daily assignment already moved them
        return moved.drop("index"), ids

    gone, ids = today(stay=20)  # 20 of 300 left: under a quarter of its share at fit
    result = _reseg(gone, champion, ids, fit_shares=fit_shares)
    assert result.decision.promote and "emptied" in result.decision.reason
    assert leaving in result.alignment.retired
    half, ids = today(stay=150)  # half still there: a smaller segment, not a vanished one
    result = _reseg(half, champion, ids, fit_shares=fit_shares)
    assert not result.decision.promote


def test_a_clearly_better_challenger_is_promoted_and_no_champion_means_promote():
    df, _ = blobs(centers=4)
    bad = clustering.fit(df, clustering.SelectionConfig(k_min=2, k_max=2, algorithms=("kmeans",)))
    result = _reseg(df, bad)
    assert result.decision.promote
    first = _reseg(df, None)
    assert first.decision.reason == "first champion: there was none before"
    assert list(first.challenger.segment_ids) == list(range(50, 50 + first.challenger.k))


def test_champion_that_cannot_score_todays_data_is_replaced():
    df, _ = blobs()
    champion = _fit(df)
    result = _reseg(df.drop("cart_rate"), champion)
    assert result.decision.promote and "cannot score" in result.decision.reason


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


def test_a_name_whose_defining_trait_the_data_lack_is_not_given():
    """An order log without discounts: cheap items and many searches are not bargain hunting."""
    z = pl.DataFrame({"segment_id": [1, 2], "avg_item_price": [-2.0, 1.0],
                      "searches_per_session": [2.0, -0.5], "frequency": [-0.3, 1.5]})  # fmt: skip
    names = naming.name_segments(z)
    assert "Bargain hunters" not in names.values(), names
    assert names[2] == "Loyal high spenders"


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


def test_revalidation_moves_the_drift_reference_and_keeps_the_fit_snapshot(tmp_path):
    import datetime as dt

    from segmentation_dagster.core import registry
    from segmentation_dagster.core.warehouse import connect

    df, _ = blobs(centers=3)
    model = _fit(df)
    with connect(tmp_path / "w.duckdb") as con:
        version = registry.save_model(con, model, tmp_path / "models", None, df)
        at_fit = registry.reference_shares(con, version, model)
        today = df.head(300)  # a different day's customers
        path = registry.revalidate(con, version, tmp_path / "models", dt.date(2026, 9, 1), today)
        assert registry.reference_path(con, version) == path and path.exists()
        assert pl.read_parquet(path).height == 300
        assert registry.reference_shares(con, version, model) != at_fit
        assert registry.reference_shares(con, version, model, at_fit=True) == at_fit
        assert registry.fit_reference_path(con, version).exists()  # the fit snapshot stays


def _take_up(df: pl.DataFrame, movers: np.ndarray, rng: np.random.Generator) -> pl.DataFrame:
    """``movers`` take up a behaviour next to no segment (frequency 60, cart_rate -20)."""
    return df.with_columns(
        frequency=pl.when(pl.int_range(pl.len()).is_in(movers))
        .then(pl.lit(60.0) + pl.Series(rng.normal(0, 0.5, df.height)))
        .otherwise(pl.col("frequency")),
        cart_rate=pl.when(pl.int_range(pl.len()).is_in(movers))
        .then(pl.lit(-20.0) + pl.Series(rng.normal(0, 0.5, df.height)))
        .otherwise(pl.col("cart_rate")),
    )


def test_a_dense_group_far_from_every_segment_becomes_a_new_segment_the_refit_missed():
    df, truth = blobs(n_per=400, centers=4, seed=6)
    champion = _fit(df)
    current = champion.assign(df)[0]
    far = lifecycle.far_quantiles(champion, df, 0.95)
    assert lifecycle.extend_champion(champion, df, far, 50) is None  # quiet: tails, no group
    rng = np.random.default_rng(3)
    # 60 customers of one segment (4 %) take up a behaviour next to no segment
    movers = np.flatnonzero(truth == 1)[:60]
    shifted = _take_up(df, movers, rng)
    extended = lifecycle.extend_champion(champion, shifted, far, 50)
    assert extended is not None and extended.k == champion.k + 1
    assert list(extended.segment_ids) == [*champion.segment_ids, 50]
    ids = extended.assign(shifted)[0]
    assert (ids[movers] == 50).mean() > 0.95
    others = np.setdiff1d(np.arange(df.height), movers)
    assert (ids[others] == current[others]).all()  # everyone else keeps their segment
    # through the whole decision: a small selection that misses the group still gets it
    small = clustering.SelectionConfig(k_min=4, k_max=4, algorithms=("kmeans",))
    result = lifecycle.resegment(shifted, champion, current, 50, {}, small, None, None, far)
    assert result.decision.promote and "new segments" in result.decision.reason
    assert 50 in result.alignment.new
    assert result.challenger.silhouette == result.decision.challenger_silhouette


def test_a_name_is_never_given_to_a_profile_that_contradicts_it():
    # segment 1: longer tenure than most, activity rising fast (scored 0.8 as "New customers");
    # segment 2: newcomers whose activity falls (the demo printed "Lapsed ... new");
    # segment 3: long-standing and fading: the one that is lapsed
    z = pl.DataFrame({"segment_id": [1, 2, 3], "tenure_days": [0.3, -1.5, 0.8],
                      "activity_trend": [3.0, -1.2, -1.5], "recency_days": [-0.5, 0.8, 1.2],
                      "sessions_per_week": [0.5, -0.8, -1.0]})  # fmt: skip
    names = naming.name_segments(z)
    assert names[1] != "New customers"
    assert names[2] == "New customers"
    assert names[3] == "Lapsed"


def test_a_new_group_is_taken_without_giving_up_segments_the_customers_still_hold():
    df, truth = blobs(n_per=400, centers=4, seed=6)
    champion = _fit(df)
    current = champion.assign(df)[0]
    rng = np.random.default_rng(3)
    movers = np.flatnonzero(truth == 1)[:120]  # 7.5 %: a new behaviour of their own
    shifted = _take_up(df, movers, rng)
    # a selection that can only afford four segments finds the group and merges two others
    small = clustering.SelectionConfig(k_min=4, k_max=4, algorithms=("kmeans",))
    challenger = clustering.fit(shifted, small)
    al = lifecycle.align_to_champion(challenger, champion, 50, shifted, current)
    challenger.segment_ids = al.segment_ids
    plain = lifecycle.decide(challenger, champion, shifted, al, current)
    assert plain.costs_live_segments, plain.reason  # a better silhouette, at a live segment's cost
    # the whole re-segmentation takes the new group and keeps every live segment
    result = lifecycle.resegment(shifted, champion, current, 50, {}, small)
    assert result.decision.promote, result.decision.reason
    assert set(champion.segment_ids) < set(result.challenger.segment_ids)
    assert result.alignment.counts()["merged"] == 0 and result.alignment.new
    # recorded with the silhouette its decision measured (the search never tried it)
    assert result.challenger.silhouette == result.decision.challenger_silhouette
    ids = result.challenger.assign(shifted)[0]
    new = result.alignment.new[0]
    assert (ids[movers] == new).mean() > 0.95
    others = np.setdiff1d(np.arange(df.height), movers)
    assert (ids[others] == current[others]).mean() > 0.99


def test_the_migration_pivot_leaves_cells_of_too_few_customers_empty():
    matrix = pl.DataFrame(
        {"from_segment": [None, 0, 0, 1, 1], "to_segment": [0, 0, 1, 1, None],
         "customers": [40, 120, 3, 95, 12]},
        schema={"from_segment": pl.Int32, "to_segment": pl.Int32, "customers": pl.UInt32},
    )  # fmt: skip
    labels = {0: "loyal (0)", 1: "lapsed (1)"}
    pivot = lifecycle.migration_pivot(matrix, labels, min_group_size=10)
    rows = {r["from_segment"]: r for r in pivot.to_dicts()}
    assert pivot.columns == ["from_segment", "loyal (0)", "lapsed (1)", "left"]
    # the 3 would be loyal's size less 120: hidden cells cascade until no row or column of
    # this small table has one alone; an empty cell (0) is no one's and stays
    assert rows["loyal (0)"] == {"from_segment": "loyal (0)", "loyal (0)": None,
                                 "lapsed (1)": None, "left": 0}  # fmt: skip
    assert rows["new"]["loyal (0)"] is None and rows["new"]["lapsed (1)"] == 0
    assert rows["lapsed (1)"]["lapsed (1)"] is None and rows["lapsed (1)"]["left"] is None
    assert lifecycle.migration_pivot(matrix, labels)["lapsed (1)"].to_list() == [3, 95, 0]


def test_one_small_migration_closes_a_rectangle_of_hidden_cells_not_the_whole_table():
    sizes = {(0, 0): 500, (0, 1): 4, (0, 2): 40, (1, 0): 30, (1, 1): 300, (1, 2): 60,
             (2, 0): 70, (2, 1): 80, (2, 2): 900}  # fmt: skip
    matrix = pl.DataFrame(
        {"from_segment": [a for a, _ in sizes], "to_segment": [b for _, b in sizes],
         "customers": list(sizes.values())},
        schema={"from_segment": pl.Int32, "to_segment": pl.Int32, "customers": pl.UInt32},
    )  # fmt: skip
    pivot = lifecycle.migration_pivot(matrix, {0: "a", 1: "b", 2: "c"}, min_group_size=10)
    shown = {(r["from_segment"], c): r[c] for r in pivot.to_dicts() for c in ("a", "b", "c")}
    hidden = {k for k, v in shown.items() if v is None}
    # the 4, the smallest other of its row (40) and column (80), and where those two meet
    assert hidden == {("a", "b"), ("a", "c"), ("c", "b"), ("c", "c")}, hidden
    for row in ("a", "b", "c"):  # no row or column with a hidden cell alone
        assert sum((row, c) in hidden for c in "abc") != 1
        assert sum((r, row) in hidden for r in "abc") != 1
