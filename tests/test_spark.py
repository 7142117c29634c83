"""The dbt project on local Spark (dbt-spark, session method) gives the same customer_features
as on DuckDB, from the same raw data. Runs where the Spark extra and Java are installed
(`make install-spark`); skipped elsewhere."""

import pytest

from benchmarks import engines
from segmentation_dagster.core import spark as spark_engine

needs_spark = pytest.mark.skipif(
    spark_engine.available() is not None, reason=str(spark_engine.available())
)


@pytest.mark.slow  # a Spark session and two dbt runs: minutes
@needs_spark
def test_spark_builds_the_same_customer_features_as_duckdb(tmp_path):
    out = engines.run(tmp_path / "engines", customers=150, days=20, seed=3)
    cmp = out["comparison"]
    assert cmp["rows"][0] > 100 and cmp["rows"][0] == cmp["rows"][1]
    assert cmp["missing_columns"] == [] and cmp["unmatched_customers"] == 0
    assert {c: n for c, n in cmp["differing_rows"].items() if n} == {}
    assert cmp["equal"]


def test_compare_reports_a_float_off_by_more_than_the_tolerance():
    import polars as pl

    a = pl.DataFrame({"customer_id": ["c1", "c2"], "snapshot_date": [1, 1], "x": [1.0, 2.0]})
    b = a.with_columns(pl.Series("x", [1.0, 2.0 * (1 + 1e-7)]))
    assert engines.compare(a, a).equal
    cmp = engines.compare(a, b)
    assert not cmp.equal and cmp.differing_rows["x"] == 1
