"""`make value`: churn risk and expected spend against the BG/NBD + Gamma-Gamma baseline.

Generates 280 days of demo data (room for two 90-day horizons and the history before them):
the full event log, and the same shop as a purchases-only log. Runs
:func:`segmentation_dagster.core.value.score` on a DuckDB view over the landing files (the
same function the ``customer_value`` asset calls on ``stg_shop__events``) and writes
``benchmarks/results/value.md`` and ``value.json``: the horizon, AUC of both models on the
held-back horizon, the calibration deciles, the spend error per true persona, and the time it
took. Forward: the same shop one horizon longer, the models trained on all but that last
horizon as the asset would be, and every customer's forecast met with what they then spent
(the deployed models, where the validation judges the ones of one horizon earlier). Then the
same on smaller and shorter shops (``SHOPS``: other sizes, spans and seeds,
purchases only for most): how often the models beat the baseline where there is little to
learn from. Nothing here is asserted; ``tests/test_value.py`` checks the targets on a smaller
shop.

    .venv/bin/python -m benchmarks.value [--customers 5000] [--days 280]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import duckdb
import polars as pl

from benchmarks.bench import _machine
from segmentation_dagster.cli import demo_start_date
from segmentation_dagster.core import segments, value
from segmentation_dagster.demo import simulate

ROOT = Path(__file__).resolve().parent
WORK, RESULTS = ROOT / ".work" / "value", ROOT / "results"


def _events(folder: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    files = str(folder / "landing" / "events" / "*.parquet").replace("'", "''")  # our own path
    con.execute(
        "create view ev as select customer_id, session_id, cast(event_ts as date) as event_date, "
        f"event_type, price, quantity from read_parquet('{files}')"
    )
    return con


def _run(folder: Path, cfg: simulate.DemoConfig, platform: bool = False) -> dict[str, object]:
    """The validation grouped by true persona; with ``platform``, also by the platform's own
    segments of the day before the test split's cutoff (:func:`_platform_segments`)."""
    if not (folder / "landing" / "events").exists():
        simulate.generate(cfg, folder / "landing", folder / "truth")
    con = _events(folder)
    truth = pl.read_parquet(folder / "truth" / "personas.parquet")
    personas = truth.select(pl.col("customer_id").cast(pl.String), segment_id="persona")
    t0 = time.perf_counter()
    s = value.score(con, "ev", personas, value.ValueConfig())
    seconds = time.perf_counter() - t0
    v = s.validation
    if v is None:
        return {"not_trained": s.reason, "seconds": seconds}
    out = {
        "horizon_days": v.horizon_days, "cutoff": str(v.cutoff), "n_train": v.n_train,
        "n_test": v.n_test, "auc": v.auc, "auc_baseline": v.auc_baseline, "brier": v.brier,
        "calibration": v.calibration.to_dicts(), "spend_by_persona": v.spend_by_segment.to_dicts(),
        "scored": s.scores.height, "seconds": seconds,
    }  # fmt: skip
    if platform:
        as_of, members, names, run_s = _platform_segments(folder, v.cutoff)
        by_segment = value.score(
            con, "ev", members, value.ValueConfig(), segments_before=lambda day: (as_of, members)
        ).validation
        assert by_segment is not None and by_segment.segments_as_of == as_of
        rows = by_segment.spend_by_segment.with_columns(
            segment_name=pl.col("segment_id").replace_strict(names, default=value.NO_SEGMENT)
        )
        out |= {"segments_as_of": str(as_of), "segmentation_seconds": run_s,
                "spend_by_segment": rows.to_dicts()}  # fmt: skip
    return out


def _platform_segments(
    folder: Path, before: dt.date
) -> tuple[dt.date, pl.DataFrame, dict[int, str], float]:
    """The platform's own segments as the ``customer_value`` asset groups its validation: the
    last assignment before the test split's cutoff. ``segmentation run`` (a subprocess, as a
    user runs it) on a data folder whose landing holds the customers, the products and the
    event files dated before ``before``; returns that assignment's date, its members, the
    segment names and the run's seconds."""
    data = folder / "platform"
    shutil.rmtree(data, ignore_errors=True)
    for kind in ("customers", "products"):
        shutil.copytree(folder / "landing" / kind, data / "landing" / kind)
    (data / "landing" / "events").mkdir(parents=True)
    for f in sorted((folder / "landing" / "events").glob("events_*.parquet")):
        if dt.date.fromisoformat(f.stem.removeprefix("events_")) < before:
            shutil.copyfile(f, data / "landing" / "events" / f.name)
    env = {**os.environ, "SEGMENTATION_DATA_DIR": str(data),
           "DAGSTER_HOME": str(data / "dagster_home")}  # fmt: skip
    cmd = [sys.executable, "-m", "segmentation_dagster.cli", "run", "--no-demo"]
    t0 = time.perf_counter()
    with (folder / "platform.log").open("w") as log:
        done = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - t0
    if done.returncode:
        raise RuntimeError(f"segmentation run failed: see {folder / 'platform.log'}")
    warehouse = data / "warehouse.duckdb"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        found = segments.members_before(con, before)
        names = dict(con.execute(
            "select segment_id, segment_name from segmentation.segment_profiles"
        ).fetchall())  # fmt: skip
    if found is None:
        raise RuntimeError(f"no assignment before {before} in {warehouse}")
    return found[0], found[1], names, seconds


def _forward(folder: Path, cfg: simulate.DemoConfig) -> dict[str, object]:
    """The deployed models against a horizon they never saw. ``cfg``'s shop runs one horizon
    past the days the models may read: they train, validate and score on the events before
    the last horizon (as the ``customer_value`` asset on that day), and each customer's
    forecast meets what they spent in it. Grouped by true persona and by the platform's
    segments of the day before (:func:`_platform_segments`)."""
    if not (folder / "landing" / "events").exists():
        simulate.generate(cfg, folder / "landing", folder / "truth")
    con = _events(folder)
    horizon = value.ValueConfig().horizon_days
    cut = con.execute("select max(event_date) from ev").fetchall()[0][0] + dt.timedelta(
        days=1 - horizon
    )
    truth = pl.read_parquet(folder / "truth" / "personas.parquet")
    personas = truth.select(pl.col("customer_id").cast(pl.String), segment_id="persona")
    s, scored = forward(con, cut, personas)
    if s.trained is None:
        return {"not_trained": s.reason}
    assert s.trained.horizon == horizon, (s.trained.horizon, horizon)
    y = scored["churned"].to_numpy()
    as_of, members, names, _ = _platform_segments(folder, cut)
    by_segment = value.spend_by_segment(scored, members).with_columns(
        segment_name=pl.col("segment_id").replace_strict(names, default=value.NO_SEGMENT)
    )
    return {
        "cutoff": str(cut), "horizon_days": horizon, "customers": scored.height,
        "auc": value.auc(y, scored["churn_risk"].to_numpy()),
        "auc_baseline": value.auc(y, -scored["bgnbd_purchases"].to_numpy()),
        "spend_by_persona": value.spend_by_segment(scored, personas).to_dicts(),
        "segments_as_of": str(as_of), "spend_by_segment": by_segment.to_dicts(),
    }  # fmt: skip


def forward(
    con: duckdb.DuckDBPyConnection, cut: dt.date, segments: pl.DataFrame
) -> tuple[value.Scores, pl.DataFrame]:
    """:func:`value.score` on the events of the view ``ev`` before ``cut``, as the asset scores
    on that day, and every scored customer's forecast next to what they did in the horizon from
    ``cut`` (null frame when nothing was trained): customer_id, churn_risk, bgnbd_purchases
    (the baseline's churn score), churned, spend, spend_sq, predicted, baseline."""
    # a view takes no parameters: cut is a date of ours, written out as one
    con.execute(f"create or replace view past as select * from ev "
                f"where event_date < date '{cut.isoformat()}'")  # fmt: skip
    s = value.score(con, "past", segments, value.ValueConfig())
    t = s.trained
    if t is None:
        return s, pl.DataFrame()
    return s, (
        s.scores.join(value.labels(con, "ev", cut, t.horizon), on="customer_id", how="left").select(
            "customer_id",
            "churn_risk",
            bgnbd_purchases="expected_purchases_bgnbd",
            churned=pl.col("purchased").is_null(),
            spend=pl.col("spend").fill_null(0.0),
            spend_sq=pl.col("spend_sq").fill_null(0.0),
            predicted="expected_spend",
            baseline="expected_spend_bgnbd",
        )  # fmt: skip
    )


#: (customers, days, seed, purchases only): small shops, short spans, other random draws
SHOPS = (
    (800, 150, 9, True), (1_500, 200, 1, True), (1_500, 200, 2, True), (1_500, 200, 3, True),
    (1_500, 200, 4, True), (1_500, 200, 42, True), (2_000, 365, 11, True), (2_500, 150, 5, True),
    (1_000, 300, 6, False), (1_500, 200, 5, False), (3_000, 120, 4, False),
)  # fmt: skip


def _shops() -> list[dict[str, object]]:
    rows = []
    for customers, days, seed, purchases_only in SHOPS:
        cfg = simulate.DemoConfig(n_customers=customers, days=days, seed=seed,
                                  purchases_only=purchases_only)  # fmt: skip
        r = _run(WORK / f"{customers}_{days}_{seed}_{int(purchases_only)}", cfg)
        rows.append({"customers": customers, "days": days, "seed": seed,
                     "purchases_only": purchases_only, **r})  # fmt: skip
    return rows


def _shops_markdown(rows: list[dict]) -> list[str]:
    judged = [r for r in rows if r.get("auc") is not None and r.get("auc_baseline") is not None]
    wins = sum(r["auc"] > r["auc_baseline"] for r in judged)
    lines = [
        "## smaller and shorter shops",
        "",
        f"Ours beats BG/NBD's AUC on {wins} of {len(judged)} (of {len(rows)} shops). Spend within "
        "20 %: the true personas whose spend in the horizon is forecast within 20 % of what "
        "they spent; beyond noise: the personas ours misses by more than 20 % and by more "
        "than twice the noise of what they spent (noise: one standard error of that spend by "
        "chance alone, as in the tables above).",
        "",
        "| customers | days | seed | log | horizon | AUC ours | AUC BG/NBD | spend within 20 %, "
        "ours | BG/NBD | misses beyond noise, ours |",
        "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in judged:
        spend = r["spend_by_persona"]
        ours = sum(p["error"] is not None and p["error"] <= 0.2 for p in spend)
        base = sum(p["baseline_error"] is not None and p["baseline_error"] <= 0.2 for p in spend)
        real = len(_misses(spend)[1])
        log = "purchases only" if r["purchases_only"] else "full"
        lines.append(
            f"| {r['customers']:,} | {r['days']} | {r['seed']} | {log} | {r['horizon_days']} | "
            f"{r['auc']:.3f} | {r['auc_baseline']:.3f} | {ours} of {len(spend)} | "
            f"{base} of {len(spend)} | {real} |"
        )
    return [*lines, ""]


def _all(rows: list[dict]) -> str:
    total, ours, base = (sum(p[c] or 0 for p in rows) for c in ("actual", "predicted", "baseline"))
    # the groups' noises add as variances: (noise x actual)^2 is each group's sum of squares
    squares = sum((p["noise"] or 0) ** 2 * p["actual"] ** 2 for p in rows)
    return _row(
        "all",
        {
            "customers": sum(p["customers"] for p in rows),
            "actual": total,
            "noise": squares**0.5 / total if total else None,
            "predicted": ours,
            "baseline": base,
            "error": abs(ours / total - 1) if total else None,
            "baseline_error": abs(base / total - 1) if total else None,
        },
    )


#: the head of the spend tables; noise: :func:`segmentation_dagster.core.value.spend_noise`
SPEND_HEAD = [
    "| {} | customers | actual spend | noise (1 SE) | ours | error | BG/NBD + GG | error |",
    "|---|---:|---:|---:|---:|---:|---:|---:|",
]


def _row(name: str, p: dict) -> str:
    return (f"| {name} | {p['customers']:,} | {p['actual']:,.0f} | {_pct(p['noise'])} | "
            f"{_money(p['predicted'])} | {_pct(p['error'])} | {_money(p['baseline'])} | "
            f"{_pct(p['baseline_error'])} |")  # fmt: skip


def _misses(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """The groups forecast more than 20 % off, and those of them off by more than twice the
    actual's own noise (a miss chance alone rarely makes); not the row of the customers in no
    segment, which is no segment."""
    missed = [p for p in rows if p["segment_id"] is not None and (p["error"] or 0) > 0.2]
    return missed, [p for p in missed if p["noise"] is not None and p["error"] > 2 * p["noise"]]


def _beyond_noise(rows: list[dict]) -> str:
    missed, real = _misses(rows)
    return f"{len(missed)} more than 20 % off, {len(real)} of them by more than twice the noise"


def _money(x: float | None) -> str:
    return "–" if x is None else f"{x:,.0f}"


def _segments_markdown(r: dict) -> list[str]:
    """The same forecasts grouped by the platform's own segments (the target's grouping)."""
    lines = [
        f"By the platform's own segments: `segmentation run` on the events before "
        f"{r['cutoff']} ({r['segmentation_seconds']:.0f} s), its assignment of "
        f"{r['segments_as_of']}, as the `customer_value` asset groups its validation; "
        f"{value.NO_SEGMENT}: bought before the cutoff, but out of the features' scope on that "
        "day (no event in the last `features.active_days`).",
        "",
    ]
    return [*lines, *_segment_table(r["spend_by_segment"])]


def _segment_table(rows: list[dict]) -> list[str]:
    """The spend table by the platform's segments, its total and its misses."""
    lines = [SPEND_HEAD[0].format("segment"), SPEND_HEAD[1]]
    for p in rows:
        seg = "" if p["segment_id"] is None else f"{p['segment_id']} "
        lines.append(_row(f"{seg}{p['segment_name']}", p))
    verdict = value.spend_verdict(pl.DataFrame(rows, infer_schema_length=None))
    return [*lines, _all(rows), "", f"Segments: {_beyond_noise(rows)}. The asset's "
            f"`spend_verdict`: \"{verdict}\".", ""]  # fmt: skip


def _forward_markdown(f: dict | None) -> list[str]:
    """The deployed models on the horizon after the days they read (:func:`_forward`)."""
    if not f:
        return []
    if "not_trained" in f:
        return [f"Forward: not trained: {f['not_trained']}", ""]
    lines = [
        f"**Forward: the deployed models on a horizon they never saw.** The same shop one "
        f"horizon longer: trained, validated and scored on the events before {f['cutoff']}, "
        f"as the asset would be that day, then met with what the {f['customers']:,} customers "
        f"who had bought spent in the {f['horizon_days']} days from it. Churn AUC "
        f"{f['auc']:.3f} (BG/NBD {f['auc_baseline']:.3f}).",
        "",
        SPEND_HEAD[0].format("true persona"),
        SPEND_HEAD[1],
        *(_row(p["segment_id"], p) for p in f["spend_by_persona"]),
        _all(f["spend_by_persona"]),
        "",
        f"Personas: {_beyond_noise(f['spend_by_persona'])}. By the platform's segments of "
        f"{f['segments_as_of']}:",
        "",
    ]
    return [*lines, *_segment_table(f["spend_by_segment"])]


def _pct(error: float | None) -> str:
    return "–" if error is None else f"{error:.0%}"


def _markdown(report: dict[str, dict]) -> str:
    lines = [
        "# Churn risk and expected spend vs BG/NBD + Gamma-Gamma",
        "",
        f"`python -m benchmarks.value` on {report['machine']}; "
        f"{report['customers']:,} customers, {report['days']} days of demo data from "
        f"{report['start_date']}.",
        "",
    ]
    for log in ("full event log", "purchases only"):
        r = report[log]
        lines += [f"## {log}", ""]
        if "not_trained" in r:
            lines += [f"not trained: {r['not_trained']}", ""]
            continue
        lines += [
            f"Horizon {r['horizon_days']} days; validated on features as of {r['cutoff']} and "
            f"the outcomes of the {r['horizon_days']} days after ({r['n_test']:,} buying "
            f"customers; the classifier was trained one horizon earlier on {r['n_train']:,}). "
            f"Trained, validated and scored in {r['seconds']:.1f} s.",
            "",
            "| churn (no purchase in the horizon) | ours | BG/NBD |",
            "|---|---:|---:|",
            f"| AUC | {r['auc']:.3f} | {r['auc_baseline']:.3f} |",
            f"| Brier score | {r['brier']:.3f} | – |",
            "",
            SPEND_HEAD[0].format("true persona"),
            SPEND_HEAD[1],
        ]
        lines += [_row(p["segment_id"], p) for p in r["spend_by_persona"]]
        lines += [
            _all(r["spend_by_persona"]),
            "",
            f"Personas: {_beyond_noise(r['spend_by_persona'])}.",
            "",
        ]
        lines += _segments_markdown(r)
        lines += _forward_markdown(r.get("forward"))
        lines += [
            "Calibration (deciles of predicted churn risk):",
            "",
            "| decile | customers | predicted | observed |",
            "|---:|---:|---:|---:|",
        ]
        lines += [f"| {int(c['bin']) + 1} | {c['customers']} | {c['predicted']:.3f} | "
                  f"{c['observed']:.3f} |" for c in r["calibration"]]  # fmt: skip
        lines.append("")
    return "\n".join(lines + _shops_markdown(report["shops"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--days", type=int, default=280)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    report: dict = {"machine": _machine(), "customers": args.customers, "days": args.days}
    # ending yesterday: the platform's run refuses events dated in the future
    start = demo_start_date(None, args.days)
    report["start_date"] = str(start)
    for log, purchases_only in (("full event log", False), ("purchases only", True)):
        cfg = simulate.DemoConfig(n_customers=args.customers, days=args.days, seed=args.seed,
                                  purchases_only=purchases_only, start_date=start)  # fmt: skip
        folder = WORK / f"{args.customers}_{args.days}_{args.seed}_{int(purchases_only)}_{start}"
        report[log] = _run(folder, cfg, platform=True)
        brief = {k: report[log].get(k) for k in ("auc", "auc_baseline", "seconds")}
        print(f"{log}: {brief}", flush=True)
        # the same shop one horizon longer, ending yesterday too: the deployed models' forward
        days = args.days + value.ValueConfig().horizon_days
        ahead = replace(cfg, days=days, start_date=demo_start_date(None, days))
        report[log]["forward"] = _forward(
            WORK / f"forward_{args.customers}_{days}_{args.seed}_{int(purchases_only)}_"
            f"{ahead.start_date}",
            ahead,
        )
        print(f"{log}, forward: auc {report[log]['forward'].get('auc')}", flush=True)
    report["shops"] = _shops()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "value.json").write_text(json.dumps(report, indent=1, default=str))
    (RESULTS / "value.md").write_text(_markdown(report))
    print(f"wrote {RESULTS / 'value.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
