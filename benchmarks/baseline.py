"""The hand-written baseline: what a data scientist writes without this platform.

Same landing files, same questions, no orchestration, no gates, no registry:

- load: pandas reads every event file and concatenates them;
- features: pandas group-bys for recency, frequency, spend, order value, sessions, views and
  searches per session, cart rate, cart abandonment, conversion, discount share, item price,
  category count / concentration, tenure (the same definitions as customer_features);
- fit: scikit-learn KMeans for k = 3..10 on all customers, each scored with
  ``silhouette_score(sample_size=10_000)``, the best k kept;
- assign: ``predict`` for every customer;
- drift: Evidently ``DataDriftPreset`` with its default settings on the full feature tables
  (the fit snapshot against today's, which in one loop are the same day, as in the platform).

``run(landing_dir)`` returns the wall time per stage; ``benchmarks/bench.py`` runs it in its own
process so its peak memory is its own.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

FEATURES = [
    "recency_days", "frequency", "monetary", "avg_order_value", "sessions_per_week",
    "views_per_session", "searches_per_session", "view_to_purchase_rate", "cart_rate",
    "cart_abandonment_rate", "discount_share", "avg_item_price", "category_count",
    "category_hhi", "tenure_days",
]  # fmt: skip


def load(landing_dir: Path) -> pd.DataFrame:
    files = sorted((landing_dir / "events").glob("*.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def features(events: pd.DataFrame, window_days: int = 90) -> pd.DataFrame:
    ev = events.drop_duplicates("event_id", keep="last")
    ev = ev[ev["customer_id"].notna()].copy()
    ev["event_date"] = ev["event_ts"].dt.normalize()
    snapshot = ev["event_date"].max()
    ev = ev[ev["event_date"] > snapshot - pd.Timedelta(days=window_days)]
    ev["discount"] = ev["discount"].fillna(0)
    ev["quantity"] = ev["quantity"].fillna(1)
    is_ = {t: ev["event_type"] == t for t in ("view", "search", "cart", "purchase")}
    ev["revenue"] = np.where(is_["purchase"], ev["price"].fillna(0) * ev["quantity"], 0.0)
    for t, mask in is_.items():
        ev[f"is_{t}"] = mask
    sessions = ev.groupby(["customer_id", "session_id"]).agg(
        views=("is_view", "sum"), searches=("is_search", "sum"), cart=("is_cart", "any"),
        purchase=("is_purchase", "any"), view=("is_view", "any"),
    )  # fmt: skip
    sessions["abandoned"] = sessions["cart"] & ~sessions["purchase"]
    sessions["viewed_purchase"] = sessions["view"] & sessions["purchase"]
    per_session = sessions.groupby("customer_id").agg(
        session_count=("views", "size"), views=("views", "sum"), searches=("searches", "sum"),
        cart_sessions=("cart", "sum"), purchase_sessions=("purchase", "sum"),
        view_sessions=("view", "sum"), abandoned=("abandoned", "sum"),
        viewed_purchase_sessions=("viewed_purchase", "sum"),
    )  # fmt: skip
    buys = ev[is_["purchase"]]
    orders = buys.groupby(["customer_id", "session_id"]).agg(
        revenue=("revenue", "sum"), order_date=("event_date", "min")
    )
    per_order = orders.groupby("customer_id").agg(
        frequency=("revenue", "size"), monetary=("revenue", "sum"), last_order=("order_date", "max")
    )
    discounted = buys.assign(d=(buys["discount"] > 0) * buys["quantity"]).groupby("customer_id")
    share = discounted["d"].sum() / discounted["quantity"].sum()
    cat = ev.dropna(subset=["category"]).groupby(["customer_id", "category"]).size()
    cat_share = cat / cat.groupby("customer_id").transform("sum")
    per_cat = pd.DataFrame(
        {
            "category_count": cat.groupby("customer_id").size(),
            "category_hhi": (cat_share**2).groupby("customer_id").sum(),
        }
    )
    base = ev.groupby("customer_id").agg(
        first=("event_date", "min"),
        avg_item_price=("price", "mean"),
    )
    f = base.join([per_session, per_order, per_cat]).join(share.rename("discount_share"))
    f["frequency"] = f["frequency"].fillna(0)
    f["monetary"] = f["monetary"].fillna(0)
    f["recency_days"] = (snapshot - f["last_order"]).dt.days.fillna(window_days)
    f["tenure_days"] = (snapshot - f["first"]).dt.days
    f["avg_order_value"] = (f["monetary"] / f["frequency"].replace(0, np.nan)).fillna(0)
    exposure = np.clip(f["tenure_days"] + 1, 1, window_days)
    f["sessions_per_week"] = f["session_count"] * 7.0 / exposure
    f["views_per_session"] = f["views"] / f["session_count"]
    f["searches_per_session"] = f["searches"] / f["session_count"]
    f["view_to_purchase_rate"] = f["viewed_purchase_sessions"] / f["view_sessions"].replace(
        0, np.nan
    )
    f["cart_rate"] = f["cart_sessions"] / f["session_count"]
    f["cart_abandonment_rate"] = f["abandoned"] / f["cart_sessions"].replace(0, np.nan)
    return f[FEATURES]


def fit(f: pd.DataFrame, k_range: range = range(3, 11), seed: int = 0):  # noqa: ANN201
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    prep = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    return (prep, *k_sweep(prep.fit_transform(f), k_range, seed))


def k_sweep(x: np.ndarray, k_range: range = range(3, 11), seed: int = 0):  # noqa: ANN201
    """KMeans for each k, scored by silhouette on 10,000 rows: (model, k, silhouette) of the
    best."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    best = None
    for k in k_range:
        km = KMeans(n_clusters=k, random_state=seed, n_init="auto").fit(x)
        score = silhouette_score(x, km.labels_, sample_size=10_000, random_state=seed)
        if best is None or score > best[0]:
            best = (score, k, km)
    assert best is not None
    return best[2], best[1], best[0]


def run(landing_dir: Path) -> dict[str, object]:
    """The baseline end to end; wall seconds per stage."""
    os.environ.setdefault("EVIDENTLY_DISABLE_TELEMETRY", "1")
    stages: dict[str, float] = {}
    t = time.perf_counter()
    events = load(landing_dir)
    stages["ingest"] = time.perf_counter() - t
    t = time.perf_counter()
    f = features(events)
    stages["features"] = time.perf_counter() - t
    t = time.perf_counter()
    prep, model, k, sil = fit(f)
    stages["fit"] = time.perf_counter() - t
    t = time.perf_counter()
    labels = model.predict(prep.transform(f))
    stages["assign"] = time.perf_counter() - t
    t = time.perf_counter()
    from evidently import Report
    from evidently.presets import DataDriftPreset

    Report([DataDriftPreset()]).run(current_data=f, reference_data=f)
    stages["drift"] = time.perf_counter() - t
    return {
        "stages": stages,
        "events": len(events),
        "customers": len(f),
        "k": k,
        "silhouette": float(sil),
        "segments": int(np.unique(labels).size),
    }
