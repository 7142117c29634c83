"""The bad-input matrix: every case names the file / column / rule, good data alongside it
still loads, nothing is lost (loaded + quarantined = rows delivered), earlier data and the
landed files stay as they were, and loading again changes nothing."""

import contextlib
import datetime as dt
import gzip
import os
import threading
import time

import duckdb
import polars as pl
import pytest

from segmentation_dagster.core import contract, ingest
from segmentation_dagster.core.audit import audit_summary
from segmentation_dagster.core.sources import (
    SourceConfigError,
    load_mapping,
    mapping_path,
    parse_expression,
)
from segmentation_dagster.core.warehouse import connect, one
from segmentation_dagster.demo import simulate

CFG = simulate.DemoConfig(n_customers=150, days=3, seed=2)


@pytest.fixture
def landed(paths):
    simulate.generate(CFG, paths.landing_dir, paths.truth_dir)
    good = sum(pl.read_parquet(f).height for f in (paths.landing_dir / "events").iterdir())
    return paths, good


HEADER = b"event_id,customer_id,event_ts,event_type\n"


def _good_rows(paths, n=5) -> pl.DataFrame:
    first = sorted((paths.landing_dir / "events").iterdir())[0]
    return (
        pl.read_parquet(first)
        .head(n)
        .with_columns(
            pl.col("event_id") + 10_000_000  # fresh ids so only the intended rule fires
        )
    )


def _csv(df: pl.DataFrame, path) -> None:
    df.with_columns(pl.all().cast(pl.String)).write_csv(path)


def _with_bad_row(paths, **changes) -> pl.DataFrame:
    rows = _good_rows(paths, 6).with_columns(pl.all().cast(pl.String))
    bad = rows.tail(1).with_columns(**{k: pl.lit(v, dtype=pl.String) for k, v in changes.items()})
    return pl.concat([rows.head(5), bad])


def _sources_file(paths, text: str):
    """A sources file in the project's configuration folder (never the landing folder)."""
    path = mapping_path(paths.landing_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _write_raw(path, data: bytes) -> None:
    path.write_bytes(data)


def _hashes(paths) -> dict[str, str]:
    """Every landed regular file (links and pipes aside) by path, with its content hash."""
    return {
        str(p.relative_to(paths.landing_dir)): ingest.sha256_of(p)
        for p in sorted(paths.landing_dir.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def _state(paths) -> dict[str, object]:
    """What a load may change: every table's row count, the manifest and the quarantine."""
    with connect(paths.duckdb_path) as con:
        tables = con.execute(
            "select table_schema, table_name from information_schema.tables order by all"
        ).fetchall()
        state: dict[str, object] = {
            f"{s}.{t}": one(con, f'select count(*) from "{s}"."{t}"')[0] for s, t in tables
        }
        state["manifest"] = con.execute("select * from raw.load_manifest order by all").fetchall()
        state["quarantine"] = con.execute(
            "select * exclude (quarantined_at) from raw.quarantine order by all"
        ).fetchall()
    return state


def _rows_by_file(paths) -> dict[str, int]:
    with connect(paths.duckdb_path) as con:
        return dict(
            con.execute("select _source_file, count(*) from raw.events group by 1").fetchall()
        )


def _delivered(paths, deliver, mapping=None):
    """Load the good data, ``deliver()`` the case, load: returns that load's report, table rows
    and quarantine. Checks that the earlier rows are all still there, no landed file changed,
    and a second load changes nothing."""
    _load(paths, mapping)
    earlier = _rows_by_file(paths)
    deliver()
    hashes = _hashes(paths)
    result = _load(paths, mapping)
    assert _hashes(paths) == hashes  # landed files are only read
    now = _rows_by_file(paths)
    assert {f: now.get(f) for f in earlier} == earlier  # earlier data intact
    after = _state(paths)
    again, _, _ = _load(paths, mapping)
    assert again.rows_inserted == 0 and not again.loaded and not again.replaced
    assert _state(paths) == after  # idempotent: nothing recorded twice
    return result


# (case id, writer(paths, target), expected outcome, expected text)
FILE_CASES = [
    ("missing required column",
     lambda p, t: _good_rows(p).drop("customer_id").write_parquet(t.with_suffix(".parquet")),
     "missing required column(s) customer_id"),
    ("corrupt parquet", lambda p, t: _write_raw(t.with_suffix(".parquet"), b"PAR1 not parquet"),
     "cannot be read"),
    ("bad csv encoding",
     lambda p, t: _write_raw(t, HEADER + "1,Jos\xe9,2026-08-01,view\n".encode("latin-1")),
     "not UTF-8 (line 2); declare the file's encoding in the sources file, e.g. events: "
     "{csv: {encoding: latin-1}}"),
    ("zero rows", lambda p, t: _good_rows(p).head(0).write_parquet(t.with_suffix(".parquet")),
     "file has zero rows"),
    ("wrong type: timestamps", lambda p, t: _csv(
        _good_rows(p, 30).with_columns(event_ts=pl.lit("yesterday-ish")), t),
     "column event_ts: 100% of 30 values cannot be read as TIMESTAMP (e.g. 'yesterday-ish')"),
    ("wrong type: prices", lambda p, t: _good_rows(p, 40).with_columns(
        price=pl.lit("expensive")).write_parquet(t.with_suffix(".parquet")),
     "cannot be read as DOUBLE (e.g. 'expensive')"),
    ("empty csv file", lambda p, t: _write_raw(t, b""), "file is empty (0 bytes)"),
    ("ragged csv",
     lambda p, t: _write_raw(
         t, HEADER + b"1,2,2026-08-01,view\n" * 20 + b"3,4,2026-08-01,view,x,y\n"),
     "cannot be read (header has 4 fields separated by ',' but the rows have 6"),
    ("utf-16 csv",
     lambda p, t: _write_raw(t, (HEADER.decode() + "1,Jos\xe9,2026-08-01,view\n").encode("utf-16")),
     "not UTF-8 (line 1); declare the file's encoding in the sources file"),
    ("latin-1 byte deep in a csv",  # past the sniffer's sample: found by the scan
     lambda p, t: _write_raw(t, HEADER + b"1,c,2026-08-01,view\n" * 30_000
                             + "2,Jos\xe9,2026-08-01,view\n".encode("latin-1")),
     "not UTF-8 (line 30002); declare the file's encoding"),
    ("corrupt gzip csv", lambda p, t: _write_raw(t.with_suffix(".csv.gz"), b"\x1f\x8bnot gzip"),
     "cannot be read"),
    ("csv mixing CRLF and LF line ends",  # lines appended to a Windows file on Linux
     lambda p, t: _write_raw(t, HEADER.replace(b"\n", b"\r\n")
                             + b"1,2,2026-08-01,view\r\n" * 3 + b"3,4,2026-08-01,view\n" * 2),
     "cannot be read as CSV: it mixes Windows (CRLF) and Unix (LF) line ends: line 1 ends with "
     "CRLF, line 5 with LF"),
    ("gzipped csv mixing line ends (read as it is decompressed)",
     lambda p, t: _write_raw(t.with_suffix(".CSV.GZ"), gzip.compress(
         HEADER + b"1,2,2026-08-01,view\n" * 3 + b"3,4,2026-08-01,view\r\n" * 2)),
     "it mixes Windows (CRLF) and Unix (LF) line ends: line 1 ends with LF, line 5 with CRLF"),
]  # fmt: skip

ROW_CASES = [
    ("missing customer_id", {"customer_id": None}, "missing customer_id"),
    ("missing event_id", {"event_id": None}, "missing event_id"),
    ("unknown event_type", {"event_type": "teleport"}, "unknown event_type"),
    ("negative price", {"price": "-3.5"}, "negative price"),
    ("negative quantity", {"quantity": "-1"}, "negative quantity"),
    ("unparseable timestamp", {"event_ts": "31/02/2026 25:61"}, "unparseable event_ts"),
    ("future timestamp", {"event_ts": "2099-01-01 00:00:00"}, "event_ts in the future"),
    ("rating out of range", {"review_rating": "9"}, "review_rating outside 1..5"),
    ("discount out of range", {"discount": "1.5"}, "discount outside 0..1"),
    ("unparseable quantity", {"quantity": "two"}, "unparseable quantity"),
    ("NaN price", {"price": "NaN"}, "non-finite price"),
    ("Infinity price", {"price": "Infinity"}, "non-finite price"),
    ("inf price", {"price": "inf"}, "non-finite price"),
    ("-inf price", {"price": "-inf"}, "non-finite price"),
    ("1e300 price", {"price": "1e300"}, "price above 1e9"),
    ("price just above the bound", {"price": "1000000000.5"}, "price above 1e9"),
    ("NaN discount", {"discount": "nan"}, "non-finite discount"),
    ("absurd quantity", {"quantity": "2000000"}, "quantity above 1e6"),
    ("quantity beyond INTEGER", {"quantity": "1e12"}, "unparseable quantity"),
    ("fractional quantity (a cast would round it)", {"quantity": "2.5"}, "unparseable quantity"),
    ("fractional rating", {"review_rating": "4.5"}, "unparseable review_rating"),
    ("timestamp in 1900", {"event_ts": "1900-01-01 10:00:00"}, "event_ts before 2000-01-01"),
    ("timestamp in 1999", {"event_ts": "1999-12-31 23:59:59"}, "event_ts before 2000-01-01"),
    ("offset moves the timestamp before the bound", {"event_ts": "2000-01-01 01:00+02:00"},
     "event_ts before 2000-01-01"),
]  # fmt: skip


def _load(paths, mapping=None):
    with connect(paths.duckdb_path) as con:
        report = ingest.load_kind(con, paths.landing_dir, "events", mapping)
        total = one(con, "select count(*) from raw.events")[0]
        q = con.execute(
            "select file_name, row_number, reason, record from raw.quarantine order by all"
        ).fetchall()
    return report, total, q


@pytest.mark.parametrize(("case", "write", "expected"), FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_bad_file_is_rejected_by_name_and_the_rest_loads(landed, case, write, expected):
    paths, good = landed
    target = paths.landing_dir / "events" / "zz_delivery.csv"
    report, total, _ = _delivered(paths, lambda: write(paths, target))
    name = next(p.name for p in (paths.landing_dir / "events").glob("zz_delivery.*"))
    assert list(report.rejected) == [name], report.rejected
    assert report.rejected[name].startswith(name + ": ")
    assert expected in report.rejected[name]
    assert total == good and not report.loaded  # nothing lost
    assert (paths.landing_dir / "events" / name).exists()  # never deleted
    with connect(paths.duckdb_path) as con:
        row = one(con, "select status, error from raw.load_manifest where file_name = ?", [name])
    assert row == ("rejected", report.rejected[name])


@pytest.mark.parametrize(("case", "changes", "reason"), ROW_CASES, ids=[c[0] for c in ROW_CASES])
def test_bad_row_is_quarantined_with_file_row_and_reason(landed, case, changes, reason):
    paths, good = landed
    target = paths.landing_dir / "events" / "zz_delivery.csv"
    report, total, q = _delivered(paths, lambda: _csv(_with_bad_row(paths, **changes), target))
    assert not report.rejected and report.loaded == ["zz_delivery.csv"]
    assert report.quarantined_by_reason == {reason: 1}
    assert q[0][:3] == ("zz_delivery.csv", 6, reason)
    assert total == good + 5  # the five good rows of the same file loaded


@pytest.mark.parametrize("batch_rows", [1, ingest.BATCH_ROWS], ids=["file-by-file", "one-batch"])
def test_duplicates_within_a_file_and_across_files_are_quarantined(landed, monkeypatch, batch_rows):
    # across batches the raw table is probed, within a batch the batch itself
    monkeypatch.setattr(ingest, "BATCH_ROWS", batch_rows)
    paths, good = landed
    first = sorted((paths.landing_dir / "events").iterdir())[0]
    again = pl.read_parquet(first).head(2)  # already loaded from the first file
    fresh = _good_rows(paths, 3)
    pl.concat([fresh, fresh.head(1), again]).write_parquet(
        paths.landing_dir / "events" / "zz_dupes.parquet"
    )
    report, total, q = _load(paths)
    assert report.quarantined_by_reason == {
        "duplicate event_id in file": 1,
        "duplicate event_id already loaded from another file": 2,
    }
    assert total == good + 3
    # rows are numbered from 1 in the file, as in a CSV (Parquet's own row numbers, + 1)
    assert [(f, n) for f, n, _, _ in q] == [("zz_dupes.parquet", n) for n in (4, 5, 6)]


def test_duplicates_of_an_earlier_load_and_of_an_earlier_batch_of_the_same_load_are_caught(
    landed, monkeypatch
):
    # the history is probed by key, this load's earlier batches by key hash then key
    monkeypatch.setattr(ingest, "BATCH_ROWS", 1)  # a batch per file
    paths, good = landed
    _load(paths)
    last = sorted((paths.landing_dir / "events").iterdir())[-1]  # the latest _loaded_at
    fresh = _good_rows(paths, 3)
    events = paths.landing_dir / "events"
    pl.concat([fresh, pl.read_parquet(last).head(2)]).write_parquet(events / "zz_a.parquet")
    fresh.tail(1).write_parquet(events / "zz_b.parquet")  # loaded by zz_a, one batch before
    report, total, q = _load(paths)
    assert report.loaded == ["zz_a.parquet", "zz_b.parquet"]
    assert report.quarantined_by_reason == {
        "duplicate event_id already loaded from another file": 3
    }
    assert total == good + 3
    assert [(f, n) for f, n, _, _ in q] == [("zz_a.parquet", 4), ("zz_a.parquet", 5),
                                            ("zz_b.parquet", 1)]  # fmt: skip


def test_a_load_stamps_its_rows_after_every_earlier_load_even_if_the_clock_went_back():
    import datetime as dt

    later = dt.datetime.now() + dt.timedelta(days=1)
    assert ingest._Pass(later).now() > later
    assert ingest._Pass(None).now() <= dt.datetime.now()


def test_a_corrected_redelivery_under_the_same_name_loads(landed):
    paths, good = landed
    target = paths.landing_dir / "events" / "zz_delivery.csv"
    _csv(_good_rows(paths).drop("customer_id"), target)
    first, _, _ = _load(paths)
    assert "zz_delivery.csv" in first.rejected
    _csv(_good_rows(paths), target)
    second, total, _ = _load(paths)
    assert second.loaded == ["zz_delivery.csv"] and total == good + 5
    with connect(paths.duckdb_path) as con:
        status = one(con, "select status from raw.load_manifest where file_name = ?",
                     ["zz_delivery.csv"])[0]  # fmt: skip
    assert status == "loaded"


def test_a_bad_redelivery_keeps_the_previously_loaded_version(landed):
    paths, good = landed
    target = sorted((paths.landing_dir / "events").iterdir())[0]
    _load(paths)
    target.write_bytes(b"PAR1 truncated")
    report, total, _ = _load(paths)
    assert target.name in report.rejected and total == good


def test_orders_csv_maps_onto_the_contract_through_a_sources_file(paths):
    folder = paths.landing_dir / "events"
    folder.mkdir(parents=True)
    (folder / "orders.csv").write_text(
        "order_id;line;cust_no;order_date;qty;amount\n"
        "A1;1;c1;20260801;2;19,90\n"
        "A1;2;c1;20260801;1;5,00\n"
        "A2;1;c2;20260802;1;7,50\n"
        "A3;1;c3;2026-08-03;1;1,00\n"  # not YYYYMMDD: quarantined, not the whole file
    )
    sources = _sources_file(
        paths,
        "events:\n"
        "  csv: {delim: ';'}\n"
        "  columns:\n"
        "    event_id: \"order_id || '-' || line\"\n"
        "    customer_id: cust_no\n"
        "    event_ts: \"try_strptime(order_date, '%Y%m%d')\"\n"
        "    event_type: \"'purchase'\"\n"
        "    quantity: qty\n"
        "    price: \"try_cast(replace(amount, ',', '.') as double) / try_cast(qty as double)\"\n",
    )
    with connect(paths.duckdb_path) as con:
        report = ingest.load_kind(con, paths.landing_dir, "events", load_mapping(sources))
        rows = con.execute(
            "select event_id, customer_id, cast(event_ts as date), price, quantity "
            "from raw.events order by 1"
        ).fetchall()
    assert report.quarantined_by_reason == {"unparseable event_ts": 1}
    assert [r[0] for r in rows] == ["A1-1", "A1-2", "A2-1"]
    assert rows[0][3] == pytest.approx(9.95) and rows[0][4] == 2
    assert str(rows[2][2]) == "2026-08-02"


def test_a_value_the_mappings_own_try_cast_cannot_read_is_quarantined_not_nulled(paths):
    folder = paths.landing_dir / "events"
    folder.mkdir(parents=True)
    (folder / "orders.csv").write_text(
        "order_id;cust;ts;amount;disc\n"
        "1;c1;2026-08-01 10:00:00;12,50;0,1\n"
        "2;c2;2026-08-01 11:00:00;12,x;0\n"  # price unreadable: quarantined
        "3;c3;2026-08-01 12:00:00;7,00;abc\n"  # discount (optional) unreadable: quarantined
        "4;c4;2026-08-01 13:00:00;;\n"  # blank: missing, loads as NULL
        "5;c5;2026-08-01 14:00:00;n/a;-\n"  # the mapping's own NULLs: loads as NULL
        "6;c6;01.08.2026 15:00;3,00;0\n"  # the second format of a coalesce reads it
    )
    sources = _sources_file(
        paths,
        "events:\n"
        "  csv: {delim: ';'}\n"
        "  columns:\n"
        "    event_id: order_id\n"
        "    customer_id: cust\n"
        "    event_ts: \"coalesce(try_strptime(ts, '%Y-%m-%d %H:%M:%S'), "
        "try_strptime(ts, '%d.%m.%Y %H:%M'))\"\n"
        "    event_type: \"'purchase'\"\n"
        "    price: \"case when amount = 'n/a' then null "
        "else try_cast(replace(amount, ',', '.') as double) end\"\n"
        "    discount: \"try_cast(replace(nullif(disc, '-'), ',', '.') as double)\"\n",
    )
    with connect(paths.duckdb_path) as con:
        report = ingest.load_kind(con, paths.landing_dir, "events", load_mapping(sources))
        loaded = con.execute("select event_id, price, discount from raw.events order by 1")
        rows = loaded.fetchall()
        quarantined = con.execute(
            "select row_number, reason, record ->> 'price', record -> 'from_file' ->> 'amount', "
            "record -> 'from_file' ->> 'disc' from raw.quarantine order by 1"
        ).fetchall()
    assert report.quarantined_by_reason == {"unparseable price": 1, "unparseable discount": 1}
    assert quarantined == [(2, "unparseable price", None, "12,x", "0"),
                           (3, "unparseable discount", "7.0", "7,00", "abc")]  # fmt: skip
    assert rows == [("1", 12.5, 0.1), ("4", None, None), ("5", None, None), ("6", 3.0, 0.0)]


def test_a_column_the_mapping_mostly_cannot_read_rejects_the_file_naming_a_raw_value(paths):
    folder = paths.landing_dir / "events"
    folder.mkdir(parents=True)
    rows = "".join(f"{i};c{i};2026-08-01 10:00:00;12,50\n" for i in range(30))
    (folder / "orders.csv").write_text("order_id;cust;ts;amount\n" + rows)
    sources = _sources_file(
        paths,
        "events:\n  csv: {delim: ';'}\n  columns:\n    event_id: order_id\n"
        "    customer_id: cust\n    event_ts: ts\n    event_type: \"'purchase'\"\n"
        '    price: "try_cast(amount as double)"\n',
    )
    with connect(paths.duckdb_path) as con:
        report = ingest.load_kind(con, paths.landing_dir, "events", load_mapping(sources))
    assert report.rejected == {
        "orders.csv": "orders.csv: column price: 100% of 30 values cannot be read as DOUBLE "
        "(e.g. '12,50')"
    }


def test_header_names_are_never_sql_or_json_path_and_may_change_between_files(paths):
    folder = paths.landing_dir / "events"
    folder.mkdir(parents=True)
    good = "".join(f"{i};c{i};2026-08-01 10:00:00;1.5;0.25\n" for i in range(30))
    bad = "".join(f"{i};c{i};2026-08-02 10:00:00;12,50;0.25\n" for i in range(30, 60))
    (folder / "a.csv").write_text("order_id;cust;ts;$Amount;/disc\n" + good)
    (folder / "b.csv").write_text("order_id;cust;ts;$amount;/disc\n" + bad)
    sources = _sources_file(
        paths,
        "events:\n  csv: {delim: ';'}\n  columns:\n    event_id: order_id\n"
        "    customer_id: cust\n    event_ts: ts\n    event_type: \"'purchase'\"\n"
        "    price: 'try_cast(\"$amount\" as double)'\n"
        "    discount: 'try_cast(\"/disc\" as decimal(2,2))'\n",  # holds 0.25, not 1
    )
    with connect(paths.duckdb_path) as con:
        report = ingest.load_kind(con, paths.landing_dir, "events", load_mapping(sources))
        loaded = con.execute("select count(*), min(price), max(discount) from raw.events")
        assert loaded.fetchone() == (30, 1.5, pytest.approx(0.25))
    assert report.rejected == {
        "b.csv": "b.csv: column price: 100% of 30 values cannot be read as DOUBLE (e.g. '12,50')"
    }


def test_nested_try_conversions_are_bounded():
    text = "x"
    for _ in range(4):
        text = f"try_cast({text} as varchar)"
    with pytest.raises(SourceConfigError, match="try_ conversions nested 4 deep"):
        parse_expression(text, "sources.yml: events.columns.price")
    assert parse_expression(text[9:-12], "e").lost({"x": "x"})  # 3 deep: fine
    # a scale that is not a whole number does not break the check (DuckDB judges the type)
    assert parse_expression("try_cast(x as decimal(4, 2.5))", "e").lost({"x": "x"})


def test_a_sources_file_naming_an_unknown_column_is_a_clear_error(tmp_path):
    f = tmp_path / "sources.yml"
    f.write_text("events:\n  columns:\n    amount: total\n")
    with pytest.raises(SourceConfigError, match=r"events.columns: \['amount'\] are not contract"):
        load_mapping(f)


def test_a_file_failing_the_shared_parquet_scan_is_named_and_the_others_load(landed):
    # Parquet files of a batch are read by one multi-file scan; a value that breaks a mapped
    # (non-try) expression fails that scan, and each file is then read alone to name it
    paths, good = landed
    bad = _good_rows(paths, 3).with_columns(pl.col("event_ts").cast(pl.String))
    bad = bad.with_columns(event_ts=pl.Series(["2026-08-01 10:00:00", "yesterday", None]))
    bad.write_parquet(paths.landing_dir / "events" / "zz_mapped.parquet")
    sources = _sources_file(
        paths, "events:\n  columns:\n    event_ts: cast(event_ts as timestamp)\n"
    )
    with connect(paths.duckdb_path) as con:
        report = ingest.load_kind(con, paths.landing_dir, "events", load_mapping(sources))
        total = one(con, "select count(*) from raw.events")[0]
    assert list(report.rejected) == ["zz_mapped.parquet"]
    assert report.rejected["zz_mapped.parquet"].startswith(
        "zz_mapped.parquet: column event_ts (cast(event_ts as timestamp)) cannot be read"
    )
    assert total == good and len(report.loaded) == CFG.days


# --- values ----------------------------------------------------------------------------------


def test_non_finite_and_absurd_values_in_parquet_are_quarantined_like_csv(landed):
    paths, good = landed
    rows = _good_rows(paths, 7).with_columns(
        price=pl.Series([1.0, float("nan"), float("inf"), float("-inf"), 1e300, 2.0, 3.0]),
        discount=pl.Series([0.1, 0.1, 0.1, 0.1, 0.1, float("nan"), 0.1]),
        quantity=pl.Series([1, 1, 1, 1, 1, 1, 5_000_000], dtype=pl.Int64),
    )
    target = paths.landing_dir / "events" / "zz_values.parquet"
    report, total, q = _delivered(paths, lambda: rows.write_parquet(target))
    assert [(n, r) for _, n, r, _ in q] == [
        (2, "non-finite price"), (3, "non-finite price"), (4, "non-finite price"),
        (5, "price above 1e9"), (6, "non-finite discount"), (7, "quantity above 1e6"),
    ]  # fmt: skip
    assert total == good + 1


def test_the_bounds_are_configurable(landed, monkeypatch):
    paths, good = landed
    rows = _good_rows(paths, 4).with_columns(pl.all().cast(pl.String))
    rows = rows.with_columns(
        event_ts=pl.Series(["2025-12-31 23:00:00", "2026-08-01 10:00:00"] * 2),
        price=pl.Series(["5", "150", "5", "5"]),
        quantity=pl.Series(["1", "1", "11", "1"]),
    )
    target = paths.landing_dir / "events" / "zz_bounds.csv"

    def deliver():  # the demo history is loaded with the default bounds
        monkeypatch.setenv("SEGMENTATION_EARLIEST_TS", "2026-01-01")
        monkeypatch.setenv("SEGMENTATION_MAX_PRICE", "100")
        monkeypatch.setenv("SEGMENTATION_MAX_QUANTITY", "10")
        _csv(rows, target)

    _, total, q = _delivered(paths, deliver)
    assert [(n, r) for f, n, r, _ in q if f == target.name] == [
        (1, "event_ts before 2026-01-01"), (2, "price above 100"),
        (3, "event_ts before 2026-01-01"),
    ]  # fmt: skip
    assert total == good + 1
    monkeypatch.setenv("SEGMENTATION_MAX_PRICE", "-1")
    with pytest.raises(ValueError, match="max_price must be a finite number > 0"):
        contract.Limits.from_env()
    monkeypatch.setenv("SEGMENTATION_EARLIEST_TS", "last year")
    with pytest.raises(ValueError, match="SEGMENTATION_EARLIEST_TS: not a date or timestamp"):
        contract.Limits.from_env()


def test_timestamps_with_an_offset_are_stored_as_utc_and_naive_ones_as_they_are(landed):
    paths, good = landed
    given = ["2026-08-01 10:00+05:00", "2026-08-01 10:00Z", "2026-08-01T10:00:00-02:30",
             "2026-08-01 10:00:00", "2026-08-01 10:00 Europe/Berlin", "2026-08-01"]  # fmt: skip
    rows = _good_rows(paths, len(given)).with_columns(pl.all().cast(pl.String))
    rows = rows.with_columns(event_ts=pl.Series(given))
    target = paths.landing_dir / "events" / "zz_offsets.csv"
    report, total, _ = _delivered(paths, lambda: _csv(rows, target))
    with connect(paths.duckdb_path) as con:
        stored = [r[0] for r in con.execute(
            "select event_ts from raw.events where _source_file = ? order by event_id",
            [target.name]).fetchall()]  # fmt: skip
    at = dt.datetime
    assert stored == [at(2026, 8, 1, 5), at(2026, 8, 1, 10), at(2026, 8, 1, 12, 30),
                      at(2026, 8, 1, 10), at(2026, 8, 1, 8), at(2026, 8, 1)]  # fmt: skip
    assert not report.rejected and not report.quarantined_by_reason


def test_a_parquet_timestamptz_column_is_stored_as_utc(landed):
    paths, good = landed
    rows = _good_rows(paths, 2).with_columns(
        event_ts=pl.Series([dt.datetime(2026, 8, 1, 10)] * 2).dt.replace_time_zone("Asia/Kolkata")
    )
    target = paths.landing_dir / "events" / "zz_tz.parquet"
    _delivered(paths, lambda: rows.write_parquet(target))
    with connect(paths.duckdb_path) as con:
        stored = con.execute(
            "select distinct event_ts from raw.events where _source_file = ?", [target.name]
        ).fetchall()
    assert stored == [(dt.datetime(2026, 8, 1, 4, 30),)]


@pytest.mark.parametrize("encoding", ["latin-1", "utf-16"])
def test_a_declared_encoding_loads_the_file(landed, encoding):
    paths, good = landed
    target = paths.landing_dir / "events" / "zz_encoded.csv"
    text = HEADER.decode() + "e1,Jos\xe9,2026-08-01 10:00:00,view\n"
    mapping = load_mapping(_sources_file(paths, f"events:\n  csv: {{encoding: {encoding}}}\n"))
    report, total, _ = _delivered(paths, lambda: target.write_bytes(text.encode(encoding)), mapping)
    assert report.loaded == [target.name] and total == good + 1
    with connect(paths.duckdb_path) as con:
        assert one(con, "select customer_id from raw.events where event_id = 'e1'") == ("José",)


def test_a_quoted_header_field_holding_the_delimiter_is_one_field(landed):
    paths, good = landed
    target = paths.landing_dir / "events" / "zz_quoted.csv"
    data = ('event_id,customer_id,event_ts,event_type,"note, free text"\n'
            'q1,c1,2026-08-01 10:00:00,view,"a, b"\n')  # fmt: skip
    report, total, _ = _delivered(paths, lambda: target.write_text(data))
    assert report.loaded == [target.name] and total == good + 1


def test_gzip_compressed_csv_loads(landed):
    paths, good = landed
    target = paths.landing_dir / "events" / "zz_day.CSV.GZ"
    rows = _good_rows(paths, 5).with_columns(pl.all().cast(pl.String))
    report, total, _ = _delivered(
        paths, lambda: target.write_bytes(gzip.compress(rows.write_csv().encode()))
    )
    assert report.loaded == [target.name] and total == good + 5


def test_declared_formats_and_decimal_commas_convert_csv_text(landed):
    paths, good = landed
    target = paths.landing_dir / "events" / "zz_local.csv"
    data = ("event_id;customer_id;event_ts;event_type;price\n"
            "l1;c1;01.08.2026 10:30;purchase;19,90\n"
            "l2;c1;02.08.2026;purchase;5\n"
            "l3;c1;2026-08-03 09:00:00;purchase;1,5\n")  # fmt: skip
    mapping = load_mapping(_sources_file(paths, (
        "events:\n  csv: {delim: ';', decimal_separator: ',', "
        "timestampformat: '%d.%m.%Y %H:%M', dateformat: '%d.%m.%Y'}\n")))  # fmt: skip
    report, total, _ = _delivered(paths, lambda: target.write_text(data), mapping)
    with connect(paths.duckdb_path) as con:
        rows = con.execute(
            "select event_ts, price from raw.events where _source_file = ? order by event_id",
            [target.name],
        ).fetchall()
    assert rows == [(dt.datetime(2026, 8, 1, 10, 30), 19.9), (dt.datetime(2026, 8, 2), 5.0),
                    (dt.datetime(2026, 8, 3, 9), 1.5)]  # fmt: skip


# --- landing folder rules ----------------------------------------------------------------------


def _outside_events_file(paths):
    """A valid events CSV outside the landing folder: loading it would be a leak."""
    outside = paths.data_dir.parent / "outside" / "secret.csv"
    outside.parent.mkdir(parents=True, exist_ok=True)
    _csv(_good_rows(paths, 3).with_columns(pl.col("event_id") + 1), outside)
    return outside


def _symlink(path, target):
    os.symlink(target, path)


def _fifo(path) -> None:
    """A named pipe; a reader that blocks on it gets end-of-file within seconds, so a loader
    that reads pipes fails this test instead of hanging it."""
    os.mkfifo(path)

    def unblock() -> None:
        while path.exists():
            time.sleep(2)
            with contextlib.suppress(OSError):  # ENXIO: nobody is reading, as it should be
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))

    threading.Thread(target=unblock, daemon=True).start()


# (case id, entry name, make(paths, path), reason: exact, or a prefix when it names a path)
ENTRY_CASES = [
    ("tsv", "x.tsv", lambda p, f: f.write_text("a\tb\n"),
     "ignored: unsupported extension .tsv (load .parquet, .csv or .csv.gz)"),
    ("txt", "x.txt", lambda p, f: f.write_text("hello"),
     "ignored: unsupported extension .txt (load .parquet, .csv or .csv.gz)"),
    ("json", "x.json", lambda p, f: f.write_text("{}"),
     "ignored: unsupported extension .json (load .parquet, .csv or .csv.gz)"),
    ("parquet.gz", "x.parquet.gz", lambda p, f: f.write_bytes(b"\x1f\x8b"),
     "ignored: unsupported extension .parquet.gz (load .parquet, .csv or .csv.gz)"),
    ("no extension", "README", lambda p, f: f.write_text("hello"),
     "ignored: no file extension (load .parquet, .csv or .csv.gz)"),
    ("directory named like a file", "x.parquet", lambda p, f: f.mkdir(),
     "ignored: directory (sub-folders are not read)"),
    ("fifo", "pipe.csv", lambda p, f: _fifo(f), "ignored: not a regular file"),
    ("glob characters", "day[1].csv", lambda p, f: _csv(_good_rows(p), f),
     "ignored: path contains *, ? or [ (rename it)"),
    ("glob star", "all*.csv", lambda p, f: _csv(_good_rows(p), f),
     "ignored: path contains *, ? or [ (rename it)"),
    ("symlink out of the landing folder", "leak.csv",
     lambda p, f: _symlink(f, _outside_events_file(p)),
     "ignored: symlink outside the landing folder (-> "),
    ("symlink to /etc/passwd", "passwd.csv", lambda p, f: _symlink(f, "/etc/passwd"),
     "ignored: symlink outside the landing folder (-> /etc/passwd)"),
    ("symlink into another kind folder", "products.parquet",
     lambda p, f: _symlink(f, next((p.landing_dir / "products").iterdir())),
     "ignored: symlink outside events/ (-> "),
    ("relative symlink climbing out", "up.csv",
     lambda p, f: (_outside_events_file(p), _symlink(f, "../../../outside/secret.csv")),
     "ignored: symlink outside the landing folder (-> "),
    ("broken symlink", "gone.csv", lambda p, f: _symlink(f, f.parent / "nothing.csv"),
     "ignored: broken symlink (-> "),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "name", "make", "reason"), ENTRY_CASES, ids=[c[0] for c in ENTRY_CASES]
)
def test_an_entry_that_is_not_read_is_recorded_with_its_reason(landed, case, name, make, reason):
    paths, good = landed
    entry = paths.landing_dir / "events" / name
    report, total, _ = _delivered(paths, lambda: make(paths, entry))
    assert list(report.ignored) == [name] and report.ignored[name].startswith(reason)
    assert total == good and not report.rejected and not report.loaded
    with connect(paths.duckdb_path) as con:
        row = one(con, "select status, error from raw.load_manifest where file_name = ?", [name])
        audit = audit_summary(con, dt.datetime(2000, 1, 1), dt.datetime.now())
    assert row == ("ignored", report.ignored[name])
    assert ("events", name, report.ignored[name]) in audit.ignored_entries


def test_hidden_and_in_flight_files_are_skipped_without_a_word(landed):
    # the atomic delivery convention: write ".name.tmp", then rename it to "name"
    paths, good = landed
    folder = paths.landing_dir / "events"

    def deliver():
        _csv(_good_rows(paths), folder / ".zz_delivery.csv.tmp")
        (folder / ".DS_Store").write_bytes(b"\0")
        (folder / ".staging").mkdir()

    report, total, _ = _delivered(paths, deliver)
    assert not report.ignored and not report.rejected and total == good
    with connect(paths.duckdb_path) as con:
        assert one(con, "select count(*) from raw.load_manifest where file_name like '.%'") == (0,)


def test_a_symlink_to_a_file_inside_its_kind_folder_loads(landed):
    paths, good = landed
    folder = paths.landing_dir / "events"

    def deliver():
        (folder / "versions").mkdir()
        _csv(_good_rows(paths), folder / "versions" / "v2.csv")
        _symlink(folder / "zz_current.csv", "versions/v2.csv")

    report, total, _ = _delivered(paths, deliver)
    assert report.loaded == ["zz_current.csv"] and total == good + 5
    assert report.ignored == {"versions": "ignored: directory (sub-folders are not read)"}


def test_a_kind_folder_linking_out_of_the_landing_folder_is_not_read(paths, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    simulate.generate(CFG, tmp_path / "gen", paths.truth_dir)
    (tmp_path / "gen" / "events").rename(outside / "events")
    paths.landing_dir.mkdir(parents=True)
    _symlink(paths.landing_dir / "events", outside / "events")
    report, total, _ = _load(paths)
    assert total == 0 and not report.loaded
    assert report.ignored["landing/events"].startswith(
        "ignored: symlink outside the landing folder (-> "
    )


def test_entries_at_the_top_of_the_landing_folder_are_recorded_and_a_sources_file_there_unused(
    landed,
):
    paths, good = landed

    def deliver():
        # would turn every event into a purchase if it were used
        (paths.landing_dir / "sources.yml").write_text(
            "events:\n  columns:\n    event_type: \"'purchase'\"\n"
        )
        _csv(_good_rows(paths), paths.landing_dir / "stray.csv")
        (paths.landing_dir / "orders").mkdir()

    mapping = load_mapping(mapping_path(paths.landing_dir))  # the project's: none here
    report, total, _ = _delivered(paths, deliver, mapping)
    assert report.ignored == {
        "landing/orders": "ignored: not a kind folder (use events/, customers/ or products/)",
        "landing/sources.yml": "ignored: a sources file in the landing folder is never used; "
        "the mapping is read from the project configuration",
        "landing/stray.csv": "ignored: not in a kind folder (events/, customers/ or products/)",
    }
    assert total == good
    with connect(paths.duckdb_path) as con:
        types = con.execute("select distinct event_type from raw.events").fetchall()
        kinds = con.execute(
            "select distinct kind from raw.load_manifest where status = 'ignored'"
        ).fetchall()
    assert len(types) > 1 and kinds == [("landing",)]


def test_a_sources_file_inside_the_landing_folder_is_refused(paths, monkeypatch):
    monkeypatch.setenv("SEGMENTATION_SOURCES", str(paths.landing_dir / "sources.yml"))
    with pytest.raises(SourceConfigError, match="must not be in the landing folder"):
        mapping_path(paths.landing_dir)


def test_the_sources_file_is_read_from_the_config_folder_by_default(paths, monkeypatch, tmp_path):
    monkeypatch.setenv("SEGMENTATION_CONFIG_DIR", str(tmp_path / "cfg"))
    assert mapping_path(paths.landing_dir) == tmp_path / "cfg" / "sources.yml"
    monkeypatch.setenv("SEGMENTATION_SOURCES", str(tmp_path / "mine.yml"))
    assert mapping_path(paths.landing_dir) == tmp_path / "mine.yml"


def test_a_rejected_redelivery_leaves_a_trace_beside_the_loaded_version(landed):
    paths, good = landed
    target = sorted((paths.landing_dir / "events").iterdir())[0]
    original = target.read_bytes()
    report, total, _ = _delivered(paths, lambda: target.write_bytes(b"PAR1 truncated"))
    assert list(report.rejected) == [target.name] and total == good
    with connect(paths.duckdb_path) as con:
        row = one(con, "select status, rows_loaded, rejected_error from raw.load_manifest "
                  "where file_name = ?", [target.name])  # fmt: skip
        audit = audit_summary(con, dt.datetime(2000, 1, 1), dt.datetime.now())
    assert row[:2] == ("loaded", _rows_by_file(paths)[target.name])
    assert row[2] == report.rejected[target.name]
    assert ("events", target.name, f"{row[2]} (the loaded version stays)") in audit.rejected_files
    target.write_bytes(original)  # the original is back: the trace goes, nothing reloads
    again, total, _ = _load(paths)
    assert again.skipped == sorted(again.skipped) and target.name in again.skipped
    with connect(paths.duckdb_path) as con:
        assert one(con, "select rejected_error from raw.load_manifest where file_name = ?",
                   [target.name]) == (None,)  # fmt: skip


def test_a_loaded_file_replaced_by_a_directory_keeps_its_rows_and_says_why(landed):
    paths, good = landed
    target = sorted((paths.landing_dir / "events").iterdir())[0]

    def deliver():
        target.unlink()
        target.mkdir()

    report, total, _ = _delivered(paths, deliver)
    assert report.ignored == {target.name: "ignored: directory (sub-folders are not read)"}
    assert total == good
    with connect(paths.duckdb_path) as con:
        row = one(con, "select status, rejected_error from raw.load_manifest "
                  "where file_name = ?", [target.name])  # fmt: skip
        audit = audit_summary(con, dt.datetime(2000, 1, 1), dt.datetime.now())
    assert row == ("loaded", "ignored: directory (sub-folders are not read)")
    assert (
        "events", target.name,
        "ignored: directory (sub-folders are not read) (the loaded version stays)",
    ) in audit.ignored_entries  # fmt: skip


def test_a_warehouse_from_before_the_rejection_columns_keeps_working(landed):
    paths, good = landed
    with connect(paths.duckdb_path) as con:  # the manifest as it was created before
        con.execute("create schema raw")
        con.execute(
            "create table raw.load_manifest (kind varchar not null, file_name varchar not null, "
            "sha256 varchar not null, size_bytes bigint not null, status varchar not null, "
            "rows_loaded bigint, rows_quarantined bigint, error varchar, "
            "recorded_at timestamp not null, primary key (kind, file_name))"
        )
        con.execute(
            "insert into raw.load_manifest values "
            "('events', 'old.csv', 'x', 1, 'rejected', null, null, 'bad', now())"
        )
    report, total, _ = _load(paths)
    assert total == good and len(report.loaded) == CFG.days
    with connect(paths.duckdb_path) as con:
        assert one(con, "select status, rejected_error from raw.load_manifest "
                   "where file_name = 'old.csv'") == ("rejected", None)  # fmt: skip


# --- the mapping cannot run SQL or read files ------------------------------------------------

# (case id, expression for events.columns.customer_id, the problem the error names); {marker}
# is a path the exploit would write or read
EXPLOITS = [
    ("subquery reading a file", "(select content from read_text('/etc/passwd'))",
     "subqueries and statements are not allowed"),
    ("statements after the expression",
     "1) as x; create table raw.x as select 1; select (event_id",
     "must be one expression; ';' is not allowed"),
    ("copy to a file", "copy (select 1) to '{marker}'", "copy (COPY (SELECT 1) TO "),
    ("read_text as a scalar", "read_text('/etc/passwd')",
     "function read_text is not allowed (allowed: lower, upper, trim, "),
    ("read_csv", "read_csv('/etc/passwd')", "function read_csv is not allowed"),
    ("read_blob", "read_blob('/etc/passwd')", "function read_blob is not allowed"),
    ("glob", "glob('/*')", "function glob is not allowed"),
    ("getenv", "getenv('HOME')", "function getenv is not allowed"),
    ("current_setting", "current_setting('enable_external_access')",
     "function current_setting is not allowed"),
    ("concatenated subquery", "'a' || (select 1)", "subqueries and statements are not allowed"),
    ("exists", "exists(select 1)", "subqueries and statements are not allowed"),
    ("in a subquery", "cust_no in (select file_name from raw.load_manifest)",
     "subqueries and statements are not allowed"),
    ("attach", "attach '{marker}'", "attach (ATTACH "),
    ("lambda", "list_transform([1], x -> x + 1)", "function list_transform is not allowed"),
    ("query", "query('select 1')", "function query is not allowed"),
    ("query_table", "query_table('raw.load_manifest')", "function query_table is not allowed"),
    ("line comment hiding a statement", "cust_no -- x\n; drop table raw.load_manifest",
     "must be one expression; ';' is not allowed"),
    ("block comment before a statement", "cust_no /* x */ ; drop table raw.events",
     "must be one expression; ';' is not allowed"),
    ("schema-qualified table function", "main.read_text('/etc/passwd')", "dot ("),
    ("quoted function name", "\"read_text\"('/etc/passwd')", "function read_text is not allowed"),
    ("star", "*", "* is not allowed"),
    ("columns star", "md5(columns('.*'))", "function columns is not allowed"),
    ("window other than row_number", "sum(qty) over ()",
     "window functions are not allowed except row_number() over ()"),
    ("ordered row_number", "row_number() over (order by qty)",
     "window functions are not allowed except row_number() over ()"),
    ("aggregate", "count(*)", "function count is not allowed"),
    ("cast to a nested type", "cast(cust_no as struct(x int))",
     "cast to STRUCT(x INT) is not allowed (scalar types only)"),
    ("parameter", "?", "placeholder (?) is not allowed"),
    ("dollar string", "$$x$$", "rawstring ("),
    ("escape string", "E'\\x27'", "bytestring ("),
    ("pragma", "pragma version", "pragma ("),
    ("set", "set enable_external_access = true", "set ("),
    ("install", "install httpfs", "install ("),
    ("load_extension", "load_extension('x')", "function load_extension is not allowed"),
    ("sequence", "nextval('s')", "function nextval is not allowed"),
    ("positional column", "#1", "positionalcolumn (#1) is not allowed"),
    ("qualified column", "t.cust_no", "t.cust_no: use a plain column name"),
    ("json path", "cust_no ->> 'x'", "function jsonextractscalar is not allowed"),
    ("not SQL", "'unterminated", "not a valid SQL expression"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "expr", "problem"), EXPLOITS, ids=[c[0] for c in EXPLOITS])
def test_a_mapping_expression_cannot_run_sql_or_read_files(landed, tmp_path, case, expr, problem):
    paths, good = landed
    _load(paths)
    before, hashes = _state(paths), _hashes(paths)
    marker = tmp_path / "written_by_the_mapping"
    text = yaml_quote(expr.replace("{marker}", str(marker)))
    sources = _sources_file(paths, f"events:\n  columns:\n    customer_id: {text}\n")
    with pytest.raises(SourceConfigError) as e:
        load_mapping(mapping_path(paths.landing_dir))
    assert str(e.value).startswith(f"{sources}: events.columns.customer_id: {problem}")
    assert _state(paths) == before and _hashes(paths) == hashes and not marker.exists()


def yaml_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


# (case id, the csv: options as YAML, the problem the error names)
CSV_OPTION_EXPLOITS = [
    ("statements in an option key",
     "{\"delim = ','); create table raw.x as select 1; --\": x}",
     "unknown CSV option (allowed: delim, sep, quote, "),
    ("SQL in a delimiter", "{delim: \"',(select 1)--\"}", "expected one character, got"),
    ("SQL in header", "{header: 'true); drop table raw.events; --'}",
     "expected true or false, got"),
    ("negative skip", "{skip: -1}", "expected an integer >= 0 (lines before the header), got -1"),
    ("unknown encoding", "{encoding: ebcdic}", "expected utf-8 or utf-16 or latin-1"),
    ("unknown compression", "{compression: zstd}", "expected auto, gzip or none"),
    ("ignore_errors drops rows", "{ignore_errors: true}",
     "not allowed: it drops unreadable rows without a trace"),
    ("null_padding hides ragged rows", "{null_padding: true}",
     "not allowed: it pads short rows with NULLs"),
    ("a format without a directive", "{timestampformat: \"x'); copy t to '/tmp/x\"}",
     "expected a strptime format for timestamp columns"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "options", "problem"), CSV_OPTION_EXPLOITS, ids=[c[0] for c in CSV_OPTION_EXPLOITS]
)
def test_csv_options_are_checked_against_an_allow_list_with_types(paths, case, options, problem):
    sources = _sources_file(paths, f"events:\n  csv: {options}\n")
    with pytest.raises(SourceConfigError) as e:
        load_mapping(sources)
    assert str(e.value).startswith(f"{sources}: events.csv.") and problem in str(e.value)


def test_a_format_with_quotes_is_a_literal_not_sql(landed):
    # allowed (it has a directive), rendered as a string literal: the quote cannot end it
    paths, good = landed
    fmt = "%Y'); drop table raw.events; --"
    mapping = load_mapping(
        _sources_file(paths, f"events:\n  csv: {{timestampformat: {yaml_quote(fmt)}}}\n")
    )
    target = paths.landing_dir / "events" / "zz_fmt.csv"
    report, total, _ = _delivered(paths, lambda: _csv(_good_rows(paths), target), mapping)
    assert report.loaded == [target.name] and total == good + 5


def test_a_mapping_exploit_fails_the_ingestion_asset_and_leaves_the_warehouse_as_it_was(landed):
    import dagster as dg

    from segmentation_dagster.defs.ingestion.assets import raw_events
    from segmentation_dagster.defs.resources import default_resources

    paths, good = landed
    _load(paths)
    before = _state(paths)
    _sources_file(paths, "events:\n  columns:\n    customer_id: "
                  "\"(select content from read_text('/etc/passwd'))\"\n")  # fmt: skip
    result = dg.materialize([raw_events], resources=default_resources(), raise_on_error=False)
    assert not result.success
    error = result.get_step_failure_events()[0].event_specific_data.error
    assert "events.columns.customer_id: subqueries and statements are not allowed" in (
        error.to_string()
    )
    assert _state(paths) == before


def test_a_mapped_column_the_file_lacks_rejects_that_file_by_name(landed):
    paths, good = landed
    target = paths.landing_dir / "events" / "zz_other.csv"
    mapping = load_mapping(
        _sources_file(paths, "events:\n  columns:\n    session_id: coalesce(session_ref, '-')\n")
    )
    _load(paths)  # the history, before the mapping
    _csv(_good_rows(paths), target)
    report, total, _ = _load(paths, mapping)
    assert list(report.rejected) == [target.name] and total == good
    why = report.rejected[target.name]
    assert why.startswith(
        f"{target.name}: events.columns.session_id: column session_ref is not in the file "
        "(columns: event_id, customer_id, "
    )
    assert why.endswith(f"(mapping: {mapping.path})")


def test_an_orders_log_without_ids_gets_them_from_the_line_or_its_content(paths):
    folder = paths.landing_dir / "events"
    folder.mkdir(parents=True)
    (folder / "orders_0801.csv").write_text(
        "cust_no,order_date,amount\nc1,20260801,9.5\nc1,20260801,9.5\nc2,20260801,1\n"
    )
    sources = _sources_file(
        paths,
        "events:\n"
        "  columns:\n"
        "    event_id: \"concat_ws('-', order_date, row_number() over ())\"\n"
        "    session_id: \"md5(concat_ws('|', cust_no, order_date, amount))\"\n"
        "    customer_id: cust_no\n"
        "    event_ts: \"try_strptime(order_date, '%Y%m%d')\"\n"
        "    event_type: \"'purchase'\"\n"
        "    price: amount\n",
    )
    report, total, _ = _load(paths, load_mapping(sources))
    assert report.loaded == ["orders_0801.csv"] and total == 3
    with connect(paths.duckdb_path) as con:
        ids = con.execute("select event_id, session_id from raw.events order by 1").fetchall()
    assert [i for i, _ in ids] == ["20260801-1", "20260801-2", "20260801-3"]
    assert ids[0][1] == ids[1][1] != ids[2][1]  # the hash of identical lines is identical


def test_the_file_reader_opens_the_files_it_was_given_and_nothing_else(landed, tmp_path):
    paths, _ = landed
    mine = next((paths.landing_dir / "events").iterdir())
    other = sorted((paths.landing_dir / "events").iterdir())[-1]
    with ingest.file_reader([mine]) as rcon:
        assert rcon.execute(f"select count(*) from read_parquet('{mine}')").fetchall()[0][0] > 0
        for sql in (
            f"select * from read_parquet('{other}')",
            "select * from read_text('/etc/passwd')",
            f"copy (select 1) to '{tmp_path / 'x.csv'}'",
            f"attach '{tmp_path / 'x.duckdb'}'",
            f"attach '{paths.duckdb_path}'",
            "install httpfs",
            "set enable_external_access = true",
            "set allowed_paths = ['/']",
        ):
            with pytest.raises(duckdb.Error):
                rcon.execute(sql)
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "x.duckdb").exists()
