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
    pop_mean = joined.select(pl.col(cols).cast(pl.Float64).mean()).row(0, named=True)
    pop_std = joined.select(pl.col(cols).cast(pl.Float64).std()).row(0, named=True)
    prof = (
        joined.group_by("segment_id")
        .agg(pl.len().alias("size"), *[pl.col(c).cast(pl.Float64).mean().alias(c) for c in cols])
        .with_columns(share=pl.col("size") / n)
        .sort("segment_id")
    )
    descriptions = []
    for row in prof.iter_rows(named=True):
        z = {
            c: (row[c] - pop_mean[c]) / pop_std[c]
            for c in cols
            if c in DESCRIBABLE and row[c] is not None and pop_std[c]
        }
        top = sorted(z, key=lambda c: -abs(z[c]))[:3]
        words = [DESCRIBABLE[c][0 if z[c] > 0 else 1] for c in top if abs(z[c]) >= 0.25]
        descriptions.append(", ".join(words) or "close to the average customer")
    return prof.with_columns(description=pl.Series(descriptions, dtype=pl.String)).select(
        "segment_id", "size", "share", "description", *cols
    )
