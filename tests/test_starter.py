"""`segmentation init`: a starter configuration from files nobody described to us."""

import datetime as dt

import polars as pl
import yaml

from segmentation_dagster.core import ingest, project, starter
from segmentation_dagster.core.contract import Limits
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


def _load_as_written(paths, tmp_path, text: str, limits: Limits | None = None):
    """Load the landed events with ``text`` as the sources.yml: the load report."""
    sources = tmp_path / "sources.yml"
    sources.write_text(text)
    with connect(paths.duckdb_path) as con:
        return ingest.load_kind(con, paths.landing_dir, "events", load_mapping(sources), limits)


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
    assert set(yaml.safe_load(text)) == {"events"}  # nothing planted
    load_mapping(sources)


def _order_lines(folder, key: bool) -> int:
    """Two days of an order-line export with other names; ``key``: order and line numbers,
    else nothing init recognises as a time either (a row number would repeat across files)."""
    folder.mkdir(parents=True)
    rows = 0
    for d, day in enumerate(("2026-03-01", "2026-03-02")):
        n = 30
        frame = {"client_ref": [f"k{i % 9}" for i in range(n)],
                 "when_placed": [f"{day} 1{i % 10}:00:00" for i in range(n)],
                 "sku": [f"s{i % 5}" for i in range(n)], "qty": [1 + i % 2 for i in range(n)],
                 "unit_price_eur": [4.5 + i for i in range(n)], "cat": ["tea"] * n}  # fmt: skip
        if key:
            frame = {"order_no": [f"SO{d}{i // 3}" for i in range(n)],
                     "line_no": [1 + i % 3 for i in range(n)]} | frame  # fmt: skip
        pl.DataFrame(frame).write_csv(folder / f"orders_{day}.csv")
        rows += n
    return rows


def test_init_gives_an_order_line_export_ids_that_stay_unique_across_files(paths, tmp_path):
    for key in (True, False):
        landing = tmp_path / f"landing_{key}"
        rows = _order_lines(landing / "events", key)
        found = starter.inspect(landing)
        mapped = found.kinds["events"].mapped
        assert mapped["customer_id"] == "client_ref" and mapped["price"] == "unit_price_eur"
        assert mapped["category"] == "cat"
        text = starter.sources_yml(found)
        assert "row_number" not in text
        assert ("concat_ws('-', order_no, line_no)" in text) == key, text
        sources = tmp_path / "sources.yml"
        config = yaml.safe_load(text)
        config["events"]["columns"]["event_ts"] = "when_placed"  # as the user is told to
        sources.write_text(yaml.safe_dump(config))
        mapping = load_mapping(sources)
        with connect(tmp_path / f"w_{key}.duckdb") as con:
            report = ingest.load_kind(con, landing, "events", mapping)
            loaded = one(con, "select count(distinct event_id) from raw.events")[0]
        assert report.rows_quarantined == 0 and not report.rejected, report
        assert loaded == rows  # the second day's lines are not taken for the first day's


def _day_first_csv(path, start: dt.datetime, header: str, line) -> None:  # noqa: ANN001
    """A ';' CSV of 32 lines 13 days apart (404 days from ``start``): ``line(i, timestamp)``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    stamps = [start + dt.timedelta(days=13 * i, hours=i % 5) for i in range(32)]
    path.write_text(header + "\n" + "".join(line(i, t) + "\n" for i, t in enumerate(stamps)))


def test_init_reads_day_first_timestamps_and_decimal_commas_and_says_what_it_cannot(
    paths, tmp_path
):
    folder = paths.landing_dir / "events"
    start = dt.datetime(2025, 1, 3, 9, 18)
    _day_first_csv(
        folder / "orders_export.csv", start,
        "order_no;line_no;client_ref;ordered_at;sku;qty;unit_price_eur",
        lambda i, t: f"o{i};1;c{i % 9};{t:%d.%m.%Y %H:%M};p{i % 4};{1 + i % 2};{i},5{i % 10}",
    )  # fmt: skip
    found = starter.inspect(paths.landing_dir)
    look = found.kinds["events"]
    assert look.csv_formats == {"timestampformat": "%d.%m.%Y %H:%M", "decimal_separator": ","}
    assert found.first_date == "2025-01-03" and found.span_days > 400
    sources = tmp_path / "sources.yml"
    sources.write_text(starter.sources_yml(found))
    with connect(paths.duckdb_path) as con:
        report = ingest.load_kind(con, paths.landing_dir, "events", load_mapping(sources))
        first, price = one(con, "select min(event_ts), max(price) from raw.events")
    assert report.rows_quarantined == 0 and not report.rejected, report
    assert first == start and price == 31.51  # '31,51', not 3151 nor NULL
    config = tmp_path / "segmentation.yml"
    config.write_text(starter.project_yml(found))
    assert project.load(config).features["active_days"] == found.span_days
    # a format nobody uses: said, not guessed
    (folder / "orders_export.csv").write_text(
        "client_ref;ordered_at;sku\n" + "".join(f"c{i};day {i} of 2025;p1\n" for i in range(30))
    )
    found = starter.inspect(paths.landing_dir)
    assert found.kinds["events"].unreadable_ts is not None and found.first_date is None
    assert 'NOT READ: values like "day ' in starter.sources_yml(found)


def test_init_maps_a_category_name_and_names_the_columns_it_leaves_out(paths, tmp_path):
    folder = paths.landing_dir / "events"
    folder.mkdir(parents=True)
    pl.DataFrame({
        "line_id": [1, 2], "client": ["a", "b"], "ordered_at": ["2025-01-01", "2025-01-02"],
        "sku": ["x", "y"], "category_name": ["shoes", "hats"], "unit_price": [9.5, 3.0],
        "gift_note": ["", "for mum"], "log": ["web", "app"],  # 'log' is a word of a comment
    }).write_csv(folder / "orders.csv")  # fmt: skip
    (paths.landing_dir / "customers").mkdir()
    pl.DataFrame({"customer_id": ["a"], "loyalty_tier": ["gold"]}).write_csv(
        paths.landing_dir / "customers" / "customers.csv"
    )
    text = starter.sources_yml(starter.inspect(paths.landing_dir))
    assert 'category: "category_name"' in text
    assert "# NOT MAPPED, so not loaded: gift_note, log\n" in text
    assert "\n# NOT MAPPED, so not loaded: loyalty_tier\n" in text  # customers: names as ours
    found = text.split("nothing was found for: ")[1].split(")")[0].split(", ")
    assert "event_type" not in found and "session_id" in found  # event_type is a constant
    sources = tmp_path / "sources.yml"
    sources.write_text(text)
    assert set(load_mapping(sources).expressions("events")) >= {"category", "price"}


def test_init_maps_an_event_log_with_other_words_and_takes_its_checkout_for_the_purchase(
    paths, tmp_path
):
    """Names from an event log nobody described to us: evt_uuid, shopper, happened_at (text
    with an offset), kind with 'checkout' as its only buying event, visit, query_text."""
    folder = paths.landing_dir / "events"
    folder.mkdir(parents=True)
    kinds = ["pageview", "add_to_basket", "checkout", "search", "pageview", "checkout"]
    pl.DataFrame({
        "evt_uuid": [f"u{i}" for i in range(6)], "shopper": ["s1", "s1", "s1", "s2", "s2", "s2"],
        "happened_at": [f"2025-03-0{i + 1}T10:00:00+01:00" for i in range(6)], "kind": kinds,
        "visit": ["v1", "v1", "v1", "v2", "v3", "v3"], "amount_eur": [5.0, 5.0, 5.0, None, 8, 8],
        "query_text": [None, None, None, "red shoes", None, None],
    }).write_parquet(folder / "events_2025-03.parquet")  # fmt: skip
    found = starter.inspect(paths.landing_dir)
    text = starter.sources_yml(found)
    for line in (
        'event_id: "evt_uuid"',
        'customer_id: "shopper"',
        'event_ts: "happened_at"',
        'session_id: "visit"',
        'search_query: "query_text"',
        "'checkout' is there",
    ):
        assert line in text, (line, text)
    assert "NOT MAPPED" not in text
    sources = tmp_path / "sources.yml"
    sources.write_text(text)
    with connect(paths.duckdb_path) as con:
        report = ingest.load_kind(con, paths.landing_dir, "events", load_mapping(sources))
        types = dict(con.execute("select event_type, count(*) from raw.events group by 1")
                     .fetchall())  # fmt: skip
    assert report.rows_quarantined == 0
    assert types == {"view": 2, "cart": 1, "purchase": 2, "search": 1}


def test_init_writes_any_column_name_so_that_it_reads_back_and_lists_sql_words_it_left_out(
    paths, tmp_path
):
    folder = paths.landing_dir / "events"
    folder.mkdir(parents=True)
    pl.DataFrame({
        "id": ["e1", "e2"], "shopper😀": ["s1", "s2"], "ts": ["2025-03-01", "2025-03-02"],
        "kind": ["checkout", "pageview"], "end": ["x", "y"], "purchase": ["p", "q"],
    }).write_parquet(folder / "events.parquet")  # fmt: skip
    text = starter.sources_yml(starter.inspect(paths.landing_dir))
    assert "# NOT MAPPED, so not loaded: end, purchase\n" in text, text
    sources = tmp_path / "sources.yml"
    sources.write_text(text)
    with connect(paths.duckdb_path) as con:
        report = ingest.load_kind(con, paths.landing_dir, "events", load_mapping(sources))
        rows = con.execute("select customer_id, event_type from raw.events order by 1").fetchall()
    assert not report.rejected and rows == [("s1", "purchase"), ("s2", "view")]


def test_init_reads_day_first_dates_the_csv_sniffer_would_type_itself(paths, tmp_path):
    """'10/03/2025' alone: DuckDB's sniffer types it as a DATE, but ingestion reads CSV as
    text and casts to TIMESTAMP, which fails; init must read it as ingestion does."""
    folder = paths.landing_dir / "events"
    folder.mkdir(parents=True)
    (folder / "orders.csv").write_text(
        "Invoice;Client;Invoice Date;Price\n"
        + "".join(f"I{i};C{i % 7};{13 + i % 10:02d}/03/2025;{i},50\n" for i in range(40))
    )
    found = starter.inspect(paths.landing_dir)
    assert found.kinds["events"].csv_formats == {"timestampformat": "%d/%m/%Y",
                                                 "decimal_separator": ","}  # fmt: skip
    sources = tmp_path / "sources.yml"
    sources.write_text(starter.sources_yml(found))
    with connect(paths.duckdb_path) as con:
        report = ingest.load_kind(con, paths.landing_dir, "events", load_mapping(sources))
        first = one(con, "select min(event_ts)::date from raw.events")[0]
    assert report.rows_quarantined == 0 and not report.rejected, report
    assert first == dt.date(2025, 3, 13)


def test_init_finds_a_time_column_by_its_values_and_takes_a_line_total_over_the_quantity(
    paths, tmp_path
):
    """An order-line export whose time column has a name init does not know, and whose money
    column is each line's total: mapped as the unit price, a quantity of 2 would count the
    line twice in the revenue (a newcomer's shop showed 52 % more than it sold)."""
    start = dt.datetime(2025, 10, 20, 7, 3)
    _day_first_csv(
        paths.landing_dir / "events" / "kestrel_orders.csv", start,
        "order_ref;buyer;wann;product_code;qty;line_total",
        lambda i, t: f"k{i};b{i % 9};{t:%d.%m.%Y %H:%M};p{i % 4};{1 + i % 3};{10 * (1 + i % 3)},5",
    )  # fmt: skip
    found = starter.inspect(paths.landing_dir)
    look = found.kinds["events"]
    assert look.mapped["event_ts"] == "wann" and look.by_values == {"event_ts"}
    assert found.first_date == "2025-10-20" and found.span_days > 400
    text = starter.sources_yml(found)
    assert "GUESS: no column has a known name for it" in text
    assert "reads as a line's total: the unit price is it over the quantity" in text
    report = _load_as_written(paths, tmp_path, text)
    with connect(paths.duckdb_path) as con:
        revenue, lines, first = one(
            con, "select sum(price * quantity), count(*), min(event_ts) from raw.events"
        )
    assert report.rows_quarantined == 0 and not report.rejected, report
    totals = sum(10 * (1 + i % 3) + 0.5 for i in range(32))  # what the lines say they cost
    assert lines == 32 and first == start and abs(revenue - totals) < 1e-6, (revenue, totals)
    config = tmp_path / "segmentation.yml"
    config.write_text(starter.project_yml(found))
    assert project.load(config).features["active_days"] == found.span_days


def test_init_takes_a_money_and_a_count_column_by_their_words_and_numbers(paths, tmp_path):
    """CDNOW's order log (customer, date, number of CDs, dollar value of the line): no known
    name for the quantity or the money. Columns whose names hold a quantity's or money's word
    and whose values are numbers are taken, the money as the line's total; a discount, a
    shipping fee or text are not."""
    folder = paths.landing_dir / "events"
    folder.mkdir(parents=True)
    lines = ["customer_id,order_date,discount_pct,shipping_value,number_of_cds,dollar_value,"
             "sales_channel"]  # fmt: skip
    lines += [f"{i % 7:05d},1997-01-{1 + i % 28:02d},5,4.99,{1 + i % 3},"
              f"{11.77 * (1 + i % 3):.2f},web" for i in range(40)]  # fmt: skip
    (folder / "cdnow_orders.csv").write_text("\n".join(lines) + "\n")
    found = starter.inspect(paths.landing_dir)
    look = found.kinds["events"]
    assert look.mapped["quantity"] == "number_of_cds" and look.mapped["price"] == "dollar_value"
    # 1997: before the default floor, below which every load quarantines; init moves it
    early = starter.before_limit(found, Limits())
    assert "begin on 1997-01-01, before 2000-01-01" in early, early
    assert 'set limits: earliest_ts: "1997-01-01" in segmentation.yml' in early
    config = tmp_path / "segmentation.yml"
    config.write_text(starter.project_yml(found))
    limits = project.load(config).limits.limits()
    assert limits.earliest_ts == dt.datetime(1997, 1, 1)
    assert starter.before_limit(found, limits) == ""
    text = starter.sources_yml(found)
    assert '# GUESS: "number_of_cds" holds numbers and its name says quantity' in text
    assert '"dollar_value" reads as a line\'s total: the unit price is it over the quantity' in text
    report = _load_as_written(paths, tmp_path, text, limits)
    with connect(paths.duckdb_path) as con:
        revenue, n = one(con, "select sum(price * quantity), count(*) from raw.events")
    assert not report.rejected and report.rows_quarantined == 0 and n == 40, report
    landed = sum(round(11.77 * (1 + i % 3), 2) for i in range(40))  # what the lines cost
    assert abs(revenue - landed) < 1e-6, (revenue, landed)


def test_init_takes_no_money_from_a_customer_value_and_a_unit_value_per_unit(tmp_path):
    """The words, not parts of them: a customer's lifetime value, a score or a share are not
    what a line cost; a total of items is a count; a value per unit is a unit price."""

    def looked(header: str, row: str):
        folder = tmp_path / header.replace(",", "_") / "events"
        folder.mkdir(parents=True)
        (folder / "orders.csv").write_text(header + "\n" + (row + "\n") * 30)
        return starter.inspect(folder.parent)

    found = looked("customer_id,order_date,customer_value,total_items,unit_value",
                   "c1,2025-03-01,812.5,3,9.99")  # fmt: skip
    look = found.kinds["events"]
    assert (look.mapped["quantity"], look.mapped["price"]) == ("total_items", "unit_value")
    text = starter.sources_yml(found)
    assert 'price: "unit_value"' in text and "line's total" not in text  # not divided
    none = looked("customer_id,order_date,lifetime_value,spending_score,discount_pct,order_id",
                  "c1,2025-03-01,812.5,0.7,5,17").kinds["events"]  # fmt: skip
    assert "price" not in none.mapped and "quantity" not in none.mapped, none.mapped
