"""The bad-input matrix: every case names the file / column / rule, good data alongside it
still loads, and nothing is lost (loaded + quarantined = rows delivered)."""

import polars as pl
import pytest

from segmentation_dagster.core import ingest, simulate
from segmentation_dagster.core.sources import SourceConfigError, load_mapping, mapping_path
from segmentation_dagster.core.warehouse import connect, one

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
     "cannot be read"),
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
]


def _load(paths):
    with connect(paths.duckdb_path) as con:
        report = ingest.load_kind(con, paths.landing_dir, "events")
        total = one(con, "select count(*) from raw.events")[0]
        q = con.execute(
            "select file_name, row_number, reason, record from raw.quarantine order by all"
        ).fetchall()
    return report, total, q


@pytest.mark.parametrize(("case", "write", "expected"), FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_bad_file_is_rejected_by_name_and_the_rest_loads(landed, case, write, expected):
    paths, good = landed
    target = paths.landing_dir / "events" / "zz_delivery.csv"
    write(paths, target)
    name = next(p.name for p in (paths.landing_dir / "events").glob("zz_delivery.*"))
    report, total, _ = _load(paths)
    assert name in report.rejected, report.rejected
    assert report.rejected[name].startswith(name + ": ")
    assert expected in report.rejected[name]
    assert total == good and len(report.loaded) == CFG.days  # nothing lost
    assert (paths.landing_dir / "events" / name).exists()  # never deleted


@pytest.mark.parametrize(("case", "changes", "reason"), ROW_CASES, ids=[c[0] for c in ROW_CASES])
def test_bad_row_is_quarantined_with_file_row_and_reason(landed, case, changes, reason):
    paths, good = landed
    _csv(_with_bad_row(paths, **changes), paths.landing_dir / "events" / "zz_delivery.csv")
    report, total, q = _load(paths)
    assert not report.rejected
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
    assert report.quarantined_by_reason == {"missing event_ts": 1}
    assert [r[0] for r in rows] == ["A1-1", "A1-2", "A2-1"]
    assert rows[0][3] == pytest.approx(9.95) and rows[0][4] == 2
    assert str(rows[2][2]) == "2026-08-02"


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
