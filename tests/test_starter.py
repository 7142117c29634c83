"""`segmentation init`: a starter configuration from files nobody described to us."""

import datetime as dt

import polars as pl

from segmentation_dagster.core import ingest, project, starter
from segmentation_dagster.core.sources import load_mapping
from segmentation_dagster.core.warehouse import connect, one


def _order_log(folder, days: int) -> None:
    """A purchases-only order log: other column names, ';' CSV, no id, no event type."""
    folder.mkdir(parents=True)
    start = dt.date(2025, 1, 1)
    for d in range(0, days, 30):
        day = start + dt.timedelta(days=d)
        pl.DataFrame({
            "Cust No": [f"c{i}" for i in range(20)],
            "Order Date": [day.isoformat()] * 20,
            "SKU": [f"p{i % 7}" for i in range(20)],
            "Qty": [1 + i % 3 for i in range(20)],
            "Unit Price": [9.5 + i for i in range(20)],
        }).write_csv(folder / f"orders_{day}.csv", separator=";")  # fmt: skip


def test_init_maps_an_order_log_it_never_saw_and_fits_the_window_to_its_span(paths, tmp_path):
    _order_log(paths.landing_dir / "events", days=400)
    found = starter.inspect(paths.landing_dir)
    assert found.kinds["events"].csv_delim == ";" and not found.browsing
    assert found.first_date == "2025-01-01" and found.span_days > 360
    sources = tmp_path / "sources.yml"
    sources.write_text(starter.sources_yml(found))
    text = sources.read_text()
    assert "GUESS: no id column" in text and "a purchases-only log" in text
    mapping = load_mapping(sources)  # what init writes passes the mapping's own checks
    with connect(paths.duckdb_path) as con:
        report = ingest.load_kind(con, paths.landing_dir, "events", mapping)
        loaded, types = one(con, "select count(*), string_agg(distinct event_type) from raw.events")
    assert report.rows_quarantined == 0 and not report.rejected
    assert loaded == 14 * 20 and types == "purchase"
    config = tmp_path / "segmentation.yml"
    config.write_text(starter.project_yml(found))
    features = project.load(config).features
    assert features["active_days"] == found.span_days  # a year of orders stays in scope


def test_init_never_copies_a_landed_string_raw_into_the_yaml(paths, tmp_path):
    folder = paths.landing_dir / "events"
    folder.mkdir(parents=True)
    evil = "x\nproducts:\n  columns: {product_id: \"'x'\"}\n#"
    first = {"event_id": ["1"], "customer_id": ["a"], "event_ts": ["2026-08-01 10:00"],
             "event_type": [evil], evil: ["y"]}  # fmt: skip
    later = {"event_id": ["2"], "customer_id": ["b"], "event_ts": ["2026-08-02 10:00"],
             "event_type": ["view"], "price": [1.0]}  # fmt: skip
    pl.DataFrame(first).write_parquet(folder / "e1.parquet")
    pl.DataFrame(later).write_parquet(folder / "e2.parquet")
    found = starter.inspect(paths.landing_dir)  # files with other columns: sampled by name
    text = starter.sources_yml(found)
    sources = tmp_path / "sources.yml"
    sources.write_text(text)
    import yaml

    assert set(yaml.safe_load(text)) == {"events"}  # nothing planted
    load_mapping(sources)
