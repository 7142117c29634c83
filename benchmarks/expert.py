"""The expert baseline: the same work written by someone who knows DuckDB and scikit-learn, without
the platform.

Same landing files, same questions as ``benchmarks/baseline.py`` (the pandas script), done the
way an expert would on one machine:

- ingest: one ``create table ... as select * from read_parquet(<glob>)`` into a DuckDB file
  (no row rules, no quarantine, no manifest);
- features: one SQL statement over that table for the same 15 features as the pandas baseline
  (90-day window, the same definitions);
- fit: scikit-learn KMeans for k = 3..10 on a fixed-size sample (the platform searches on a
  sample too), each scored with ``silhouette_score(sample_size=10_000)``, the best k kept;
- assign: ``predict`` for every customer;
- drift: Evidently ValueDrift with the normed Wasserstein distance on fixed-size samples of the
  feature table (the platform's monitor statistic), the fit snapshot against today's.

``run(landing_dir)`` returns the wall time per stage; ``benchmarks/bench.py`` runs it in its own
process, beside the platform and the pandas baseline, so each peak memory is its own.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np

from benchmarks.baseline import FEATURES, k_sweep

#: Rows the k search is fitted on, and rows each side of the drift comparison.
FIT_SAMPLE = 200_000
DRIFT_SAMPLE = 20_000

FEATURES_SQL = """
with ev as (
    select customer_id, session_id, event_type, cast(event_ts as date) as d, category, price,
           coalesce(discount, 0) as discount, coalesce(quantity, 1) as quantity
    from events
    where customer_id is not null
      and cast(event_ts as date) > (select max(cast(event_ts as date)) from events) - 90
),
snap as (select max(d) as snapshot from ev),
sessions as (
    select customer_id, session_id,
           count(*) filter (event_type = 'view') as views,
           count(*) filter (event_type = 'search') as searches,
           bool_or(event_type = 'cart') as cart,
           bool_or(event_type = 'purchase') as purchase,
           bool_or(event_type = 'view') as viewed
    from ev group by all
),
per_session as (
    select customer_id, count(*) as session_count, sum(views) as views,
           sum(searches) as searches, count(*) filter (cart) as cart_sessions,
           count(*) filter (viewed) as view_sessions,
           count(*) filter (cart and not purchase) as abandoned,
           count(*) filter (viewed and purchase) as viewed_purchases
    from sessions group by all
),
orders as (
    select customer_id, session_id, sum(price * quantity) as revenue, min(d) as order_date,
           sum(quantity) as items, sum(quantity) filter (discount > 0) as discounted
    from ev where event_type = 'purchase' group by all
),
per_order as (
    select customer_id, count(*) as frequency, sum(revenue) as monetary,
           max(order_date) as last_order,
           sum(coalesce(discounted, 0)) / sum(items) as discount_share
    from orders group by all
),
cats as (
    select customer_id, category, count(*) as n
    from ev where category is not null group by all
),
per_cat as (
    select customer_id, count(*) as category_count,
           sum(pow(n, 2)) / pow(sum(n), 2) as category_hhi
    from cats group by all
),
base as (
    select customer_id, min(d) as first, avg(price) as avg_item_price from ev group by all
)
select
    base.customer_id,
    coalesce(snapshot - last_order, 90) as recency_days,
    coalesce(frequency, 0) as frequency,
    coalesce(monetary, 0) as monetary,
    coalesce(monetary / nullif(frequency, 0), 0) as avg_order_value,
    session_count * 7.0 / least(greatest(snapshot - first + 1, 1), 90) as sessions_per_week,
    views / session_count as views_per_session,
    searches / session_count as searches_per_session,
    viewed_purchases / nullif(view_sessions, 0) as view_to_purchase_rate,
    cart_sessions / session_count as cart_rate,
    abandoned / nullif(cart_sessions, 0) as cart_abandonment_rate,
    discount_share,
    avg_item_price,
    category_count,
    category_hhi,
    snapshot - first as tenure_days
from base
cross join snap
left join per_session using (customer_id)
left join per_order using (customer_id)
left join per_cat using (customer_id)
"""


def _sample(n: int, size: int, seed: int) -> np.ndarray:
    return (
        np.sort(np.random.default_rng(seed).choice(n, size, replace=False))
        if n > size
        else np.arange(n)
    )


def run(landing_dir: Path) -> dict[str, object]:
    """The expert baseline end to end; wall seconds per stage."""
    os.environ.setdefault("EVIDENTLY_DISABLE_TELEMETRY", "1")
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    stages: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        con = duckdb.connect(str(Path(tmp) / "expert.duckdb"))
        t = time.perf_counter()
        files = str(landing_dir / "events" / "*.parquet")
        con.execute("create table events as select * from read_parquet(?, union_by_name = true)",
                    [files])  # fmt: skip
        stages["ingest"] = time.perf_counter() - t
        t = time.perf_counter()
        f = con.sql(FEATURES_SQL).df().set_index("customer_id")[FEATURES].astype("float64")
        events = con.execute("select count(*) from events").fetchall()[0][0]
        con.close()
    stages["features"] = time.perf_counter() - t
    t = time.perf_counter()
    fit_rows = _sample(len(f), FIT_SAMPLE, 0)
    prep = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    x_fit = prep.fit_transform(f.iloc[fit_rows])
    model, k, sil = k_sweep(x_fit)
    stages["fit"] = time.perf_counter() - t
    t = time.perf_counter()
    labels = model.predict(prep.transform(f))
    stages["assign"] = time.perf_counter() - t
    t = time.perf_counter()
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    ref = f.iloc[_sample(len(f), DRIFT_SAMPLE, 1)]
    cur = f.iloc[_sample(len(f), DRIFT_SAMPLE, 2)]
    definition = DataDefinition(numerical_columns=FEATURES)
    Report([ValueDrift(column=c, method="wasserstein") for c in FEATURES]).run(
        current_data=Dataset.from_pandas(cur, data_definition=definition),
        reference_data=Dataset.from_pandas(ref, data_definition=definition),
    )
    stages["drift"] = time.perf_counter() - t
    return {
        "stages": stages,
        "events": events,
        "customers": len(f),
        "k": k,
        "silhouette": float(sil),
        "segments": int(np.unique(labels).size),
    }
