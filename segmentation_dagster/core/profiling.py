"""Segment profiles: size, share, feature means, lift against the population, a one-line summary."""

from __future__ import annotations

import polars as pl

#: Features worth naming in a one-line profile, with the words for "high" and "low".
DESCRIBABLE: dict[str, tuple[str, str]] = {
    "frequency": ("frequent buyers", "rarely buy"),
    "monetary": ("high spend", "low spend"),
    "avg_order_value": ("large baskets", "small baskets"),
    "recency_days": ("no recent purchase", "bought recently"),
    "sessions_per_week": ("visit often", "visit rarely"),
    "views_per_session": ("browse a lot", "browse little"),
    "view_to_purchase_rate": ("convert well", "rarely convert"),
    "cart_rate": ("often add to cart", "seldom add to cart"),
    "cart_abandonment_rate": ("abandon carts", "complete carts"),
    "discount_share": ("discount-driven", "pay full price"),
    "avg_item_price": ("premium items", "cheap items"),
    "top_category_share": ("single-category focus", "broad interests"),
    "activity_trend": ("activity rising", "activity falling"),
    "tenure_days": ("long-standing", "new"),
    "searches_per_session": ("search a lot", "search little"),
    "review_count": ("write reviews", "never review"),
}
#: Traits only worth naming when the log shows browsing (the first feature varies): without
#: views, as in a purchases-only log, a "visit" is an order and "visit often" only repeats
#: "frequent buyers".
DESCRIBE_REQUIRES: dict[str, str] = {"sessions_per_week": "views_per_session"}


def describable(z: dict[str, float | None]) -> list[str]:
    """The features of ``z`` (feature -> z-score, None where it does not vary) a description
    or a name may use: in :data:`DESCRIBABLE`, with a z-score, and with the browsing it
    needs (:data:`DESCRIBE_REQUIRES`)."""
    needs = DESCRIBE_REQUIRES
    return [f for f, v in z.items() if f in DESCRIBABLE and v is not None
            and (f not in needs or z.get(needs[f]) is not None)]  # fmt: skip


def profile_segments(
    features: pl.DataFrame, segments: pl.DataFrame, feature_columns: list[str] | tuple[str, ...]
) -> pl.DataFrame:
    """One row per segment: size, share, mean of every feature, and a one-line description.

    ``segments`` has ``customer_id`` and ``segment_id``. A feature's standardised difference
    (segment mean minus population mean, over the population's standard deviation) decides
    which traits the description names: the three largest in absolute value.
    """
    cols = list(feature_columns)
    joined = features.select("customer_id", *cols).join(
        segments.select("customer_id", "segment_id"), on="customer_id", how="inner"
    )
    n = joined.height
    pop_mean, pop_std = moments(joined, cols)
    prof = (
        joined.group_by("segment_id")
        .agg(pl.len().alias("size"), *[pl.col(c).cast(pl.Float64).mean().alias(c) for c in cols])
        .with_columns(share=pl.col("size") / n)
        .sort("segment_id")
    )
    return describe(prof, pop_mean, pop_std, cols)


def describe(
    prof: pl.DataFrame,
    pop_mean: dict[str, float | None],
    pop_std: dict[str, float | None],
    feature_columns: list[str] | tuple[str, ...],
) -> pl.DataFrame:
    """``prof`` (segment_id, size, share and each feature's segment mean) with the one-line
    description of :func:`profile_segments`, from the population's mean and standard deviation
    of each feature: for an engine that aggregates the customers itself (core.spark_loop)."""
    cols = list(feature_columns)
    descriptions = []
    for row in prof.iter_rows(named=True):
        z = {
            c: (row[c] - pop_mean[c]) / pop_std[c] if row[c] is not None and pop_std[c] else None
            for c in cols
        }
        z = {c: z[c] for c in describable(z)}
        top = sorted(z, key=lambda c: -abs(z[c]))[:3]
        words = [DESCRIBABLE[c][0 if z[c] > 0 else 1] for c in top if abs(z[c]) >= 0.25]
        descriptions.append(", ".join(words) or "close to the average customer")
    return prof.with_columns(description=pl.Series(descriptions, dtype=pl.String)).select(
        "segment_id", "size", "share", "description", *cols
    )


def feature_lift(
    profiles: pl.DataFrame, population: pl.DataFrame, feature_columns: list[str] | tuple[str, ...]
) -> pl.DataFrame:
    """Long table: segment, feature, segment mean, population mean, lift (ratio) and z."""
    cols = list(feature_columns)
    return lift(profiles, *moments(population, cols), cols)


def moments(
    frame: pl.DataFrame, columns: list[str]
) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """Each column's mean and standard deviation over ``frame``'s rows."""
    as_float = [pl.col(c).cast(pl.Float64) for c in columns]
    mean = frame.select(c.mean() for c in as_float).row(0, named=True)
    return mean, frame.select(c.std() for c in as_float).row(0, named=True)


def lift(
    profiles: pl.DataFrame,
    pop_mean: dict[str, float | None],
    pop_std: dict[str, float | None],
    feature_columns: list[str] | tuple[str, ...],
) -> pl.DataFrame:
    """:func:`feature_lift` from the population's mean and standard deviation of each feature
    (for an engine that aggregates the customers itself)."""
    rows = []
    for r in profiles.iter_rows(named=True):
        for c in feature_columns:
            m, p, s = r[c], pop_mean[c], pop_std[c]
            rows.append(
                {
                    "segment_id": r["segment_id"],
                    "feature": c,
                    "segment_mean": m,
                    "population_mean": p,
                    "lift": (m / p) if (m is not None and p) else None,
                    "z": ((m - p) / s) if (m is not None and s) else None,
                }
            )
    return pl.DataFrame(rows, schema_overrides={"lift": pl.Float64, "z": pl.Float64})


def top_items_sql(segments_table: str, purchases_relation: str, n_categories: int = 3,
                  n_products: int = 5) -> str:  # fmt: skip
    """SQL for each segment's most purchased categories and products, from a relation of
    (customer_id, product_id, category, purchases) rows (``customer_recent_purchases``).
    Portable: DuckDB and Spark SQL run it as it is."""
    return f"""
        with bought as (
            select s.segment_id, p.category, p.product_id, p.purchases
            from {purchases_relation} p
            join {segments_table} s on s.customer_id = p.customer_id
        ),
        ranked as (
            select segment_id, 'category' as kind, category as item, sum(purchases) as purchases,
                row_number() over (
                    partition by segment_id order by sum(purchases) desc, category
                ) as place
            from bought where category is not null group by segment_id, category
            union all
            select segment_id, 'product' as kind, product_id as item, sum(purchases) as purchases,
                row_number() over (
                    partition by segment_id order by sum(purchases) desc, product_id
                ) as place
            from bought group by segment_id, product_id
        )
        select segment_id, kind, item, purchases from ranked
        where place <= case kind when 'category' then {int(n_categories)} else {int(n_products)} end
        order by segment_id, kind, purchases desc, item
    """
