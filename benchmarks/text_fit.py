"""What do the personas write, and do the text interests help the segmentation itself?

Runs `segmentation run` on a generated demo (its own data folder and Dagster instance under
``benchmarks/.work/text_fit/``), then fits the segmentation twice on the same
``customer_features``: the behaviour features alone, and with each customer's topic weights
and review sentiment (``core.text``) added; both are compared with the true personas (ARI).
Also tabulates each true persona's top topics and sentiment. Writes
``benchmarks/results/text_fit.md``. Nothing here is asserted.

    .venv/bin/python -m benchmarks.text_fit [--customers 5000] [--days 90]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
from sklearn.metrics import adjusted_rand_score

from benchmarks.bench import _machine
from segmentation_dagster.core import clustering, text
from segmentation_dagster.demo import simulate

ROOT = Path(__file__).resolve().parent
WORK, RESULTS = ROOT / ".work" / "text_fit", ROOT / "results"


def _ari(features: pl.DataFrame, truth: pl.DataFrame) -> tuple[float, int, int]:
    model = clustering.fit(features)
    labels = model.assign(features)[0]
    joined = (
        features.select(pl.col("customer_id").cast(pl.String))
        .with_columns(segment=pl.Series(labels))
        .join(truth, on="customer_id")
    )
    return adjusted_rand_score(joined["persona"], joined["segment"]), model.k, len(model.plan.used)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--days", type=int, default=90)
    args = parser.parse_args()
    data = WORK / f"{args.customers}_{args.days}"
    if not (data / "warehouse.duckdb").exists():
        simulate.generate(simulate.DemoConfig(n_customers=args.customers, days=args.days, seed=3),
                          data / "landing", data / "truth")  # fmt: skip
        env = {**os.environ, "SEGMENTATION_DATA_DIR": str(data),
               "DAGSTER_HOME": str(data / "dagster_home")}  # fmt: skip
        env.pop("SEGMENTATION_DUCKDB_PATH", None)
        subprocess.run([sys.executable, "-m", "segmentation_dagster.cli", "run", "--no-demo"],
                       env=env, check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    features = con.sql("select * from main.customer_features").pl()
    found = text.interests(con, "main.stg_shop__events", text.TextConfig())
    truth = pl.read_parquet(data / "truth" / "personas.parquet").select(
        pl.col("customer_id").cast(pl.String), "persona"
    )
    topic_cols = [c for c in found.table.columns if c.startswith("topic_")]
    with_text = (
        features.with_columns(pl.col("customer_id").cast(pl.String))
        .join(
            found.table.select("customer_id", *topic_cols, "sentiment"),
            on="customer_id",
            how="left",
        )
        .with_columns(pl.col(c).fill_null(0.0) for c in topic_cols)
    )
    rows = [("behaviour features", *_ari(features, truth)),
            ("behaviour + topic weights + sentiment", *_ari(with_text, truth))]  # fmt: skip
    lines = [
        "# Text interests in the fit?", "",
        f"`python -m benchmarks.text_fit` on {_machine()}; {args.customers:,} demo customers, "
        f"{args.days} days, {len(topic_cols)} topics; ARI of the fitted segments against the "
        "true personas.", "",
        "| inputs | ARI | k | columns used |", "|---|---:|---:|---:|",
        *[f"| {name} | {ari:.3f} | {k} | {n} |" for name, ari, k, n in rows],
    ]  # fmt: skip
    personas = text.segment_topics(found.table, truth.rename({"persona": "segment_id"}),
                                   found.topics).sort("segment_id")  # fmt: skip
    lines += [
        "", "What each true persona writes (the topic model's own names; mean sentiment of "
        "their reviews):", "",
        "| persona | writers | top three topics | sentiment |", "|---|---:|---|---:|",
        *[f"| {r['segment_id']} | {r['writers']:,} | {r['top_topics']} | {r['sentiment']:.2f} |"
          for r in personas.iter_rows(named=True)],
    ]  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "text_fit.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
