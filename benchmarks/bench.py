"""`make bench`: the platform's full loop against the hand-written baseline, same files, one run.

    .venv/bin/python -m benchmarks.bench --events 1000000 --customers 100000
    .venv/bin/python -m benchmarks.bench --events 10000000 --customers 1000000   # issue #6 target

1. Generates the demo shop at the chosen scale into ``benchmarks/.work/<scale>/landing`` once,
   streamed day by day (reused on later runs: the measurements are warm; the generation's own
   time and peak RSS are reported when this run made the data).
2. Runs each side in its own process, so each peak RSS (``ru_maxrss``) is its own (dbt runs
   inside the platform's process, so its memory is counted there):
   - ``platform``: ``segmentation_job`` through Dagster on a fresh DuckDB file (ingest, dbt
     features, GX gates, fit with champion/challenger, assign, profiles, export, monitors);
     stage times are Dagster's step stats, grouped into the baseline's stages;
   - ``refresh``: then, in another fresh process as a scheduled run has it, one new day of
     events lands and ``daily_refresh_job`` runs on that history (the run's time, and apart
     from it the time to load the code location); ``--refreshes`` times (3 by default), the
     history put back between them, the median reported with every run's time;
   - ``baseline``: ``benchmarks/baseline.py``, the pandas script (``--no-baseline`` skips it:
     pandas holds every event in memory, which the largest scales do not fit in);
   - ``expert``: ``benchmarks/expert.py``, the same work in DuckDB SQL + scikit-learn on a
     sample, as an expert writes it without the platform (``--no-expert`` skips it);
   - ``spark`` (with ``--spark``; needs ``make install-spark``): the whole loop on local Spark
     from the same landed files (``benchmarks/engines.py --loop``: dbt build, sample, gate,
     fit, assignment, profiles, playbooks, drift), then the same steps on DuckDB, the ARI
     between the two engines' segments and the Spark side's peak memory (Python driver and
     JVM). ``SEGMENTATION_SPARK_DRIVER_MEMORY`` sizes the driver's heap.
   ``--only SIDE,...`` runs just those sides and keeps the others from this scale's last
   results file (each side records the date it ran), e.g. ``--only spark`` at 100M events.
3. Writes ``benchmarks/results/bench_<events>_<customers>.json`` and ``.md`` (stage times, each
   baseline / platform ratio per stage, peak RSS, the machine).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
STAGES = ("ingest", "features", "gates", "fit", "assign", "drift", "other")
SIDES = ("platform", "baseline", "expert", "spark")

#: Dagster step -> stage. Steps not listed are "other" (profiles, exports, migrations...).
PLATFORM_STAGE = {
    "raw_events": "ingest", "raw_customers": "ingest", "raw_products": "ingest",
    "dbt_models": "features", "segmentation_model": "fit", "customer_segments": "assign",
    "behaviour_drift": "drift", "segment_share_drift": "drift", "model_quality": "drift",
}  # fmt: skip

#: Events per customer per day of the demo generator at activity_scale 1 (3.6M events from
#: 20k customers over 90 days).
EVENTS_PER_CUSTOMER_DAY = 2.0


def _peak_rss_mib() -> float:
    # the process's own peak: a subprocess's ru_maxrss would count the parent's pages at fork
    # (sklearn's one-off `lscpu` from a 1 GiB process reads as a 1 GiB child)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _stage(step_key: str) -> str:
    if step_key in PLATFORM_STAGE:
        return PLATFORM_STAGE[step_key]
    if step_key.startswith("gx_"):
        return "gates"
    return "other"


def _next_day_file(landing: Path) -> Path:
    """A new day of events for the refresh measurement: the last day's events one day later,
    with new event and session ids. Kept beside the landing folder (the baseline never sees it)."""
    import polars as pl

    last = sorted((landing / "events").glob("*.parquet"))[-1]
    day = pl.read_parquet(last).with_columns(
        pl.col("event_ts") + pl.duration(days=1),
        *(pl.col(c).cast(pl.String) + "-r" for c in ("event_id", "session_id")),
    )
    date = day["event_ts"].min().date()
    target = landing.parent / "refresh_day" / f"events_{date}.parquet"
    target.parent.mkdir(exist_ok=True)
    day.write_parquet(target)
    return target


def _run(defs, instance, job: str) -> tuple[float, dict[str, float]]:  # noqa: ANN001
    from segmentation_dagster.runs import execute

    run = execute(defs, job, instance, log_level="WARNING")
    if not run.success:
        raise RuntimeError(f"{job} run {run.run_id} failed: {run.failure_summary()}")
    steps = {
        s.step_key: s.end_time - s.start_time
        for s in instance.get_run_step_stats(run.run_id)
        if s.start_time and s.end_time
    }
    return run.seconds, steps


def _dbt_nodes(data_dir: Path, top: int = 10) -> dict[str, float]:
    """The slowest dbt nodes of the last dbt invocation on this warehouse (run_results.json)."""
    results = json.loads((data_dir / "dbt_target" / "run_results.json").read_text())["results"]
    slowest = sorted(results, key=lambda r: -r["execution_time"])[:top]
    return {r["unique_id"].split(".", 1)[1]: round(r["execution_time"], 2) for r in slowest}


def run_platform(data_dir: Path) -> dict[str, object]:
    """segmentation_job on a fresh warehouse over the landed files, seconds per stage."""
    for name in ("warehouse.duckdb", "warehouse.duckdb.wal", "models", "exports", "reports"):
        target = data_dir / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    os.environ["SEGMENTATION_DATA_DIR"] = str(data_dir)
    os.environ["SEGMENTATION_DUCKDB_PATH"] = str(data_dir / "warehouse.duckdb")
    import dagster as dg

    from segmentation_dagster.core.warehouse import connect, one
    from segmentation_dagster.definitions import defs

    with dg.DagsterInstance.ephemeral() as instance:
        total, steps = _run(defs, instance, "segmentation_job")
    with connect(data_dir / "warehouse.duckdb") as con:
        events = one(con, "select count(*) from raw.events")[0]
        customers = one(con, "select count(*) from main.customer_features")[0]
    stages = dict.fromkeys(STAGES, 0.0)
    for key, seconds in steps.items():
        stages[_stage(key)] += seconds
    stages["other"] += total - sum(stages.values())  # run start-up and hand-offs
    return {"stages": stages, "events": events, "customers": customers, "loop_s": total,
            "steps": {k: round(v, 2) for k, v in steps.items()},
            "dbt_nodes": _dbt_nodes(data_dir)}  # fmt: skip


def run_refresh(data_dir: Path) -> dict[str, object]:
    """The daily refresh (daily_refresh_job) of one new day on top of the history the platform
    side left, in a fresh process as a scheduled run has it: loading the code location (Dagster,
    dbt, pandas, sklearn...) is part of its cost and reported apart."""
    os.environ["SEGMENTATION_DATA_DIR"] = str(data_dir)
    os.environ["SEGMENTATION_DUCKDB_PATH"] = str(data_dir / "warehouse.duckdb")
    t0 = time.perf_counter()
    import dagster as dg

    from segmentation_dagster.definitions import defs

    load_s = time.perf_counter() - t0
    new_day = _next_day_file(data_dir / "landing")
    delivered = data_dir / "landing" / "events" / new_day.name
    shutil.copy(new_day, delivered)  # the day's file lands
    try:
        with dg.DagsterInstance.ephemeral() as instance:
            run_s, steps = _run(defs, instance, "daily_refresh_job")
    finally:
        delivered.unlink()  # the bench's scratch landing, not a user's
    slowest = sorted(steps.items(), key=lambda kv: -kv[1])[:5]
    return {"daily_refresh_s": run_s, "daily_refresh_load_s": load_s,
            "daily_refresh_slowest": {k: round(v, 1) for k, v in slowest},
            "daily_refresh_steps": {k: round(v, 2) for k, v in steps.items()},
            "daily_refresh_dbt_nodes": _dbt_nodes(data_dir)}  # fmt: skip


def _refreshes(data_dir: Path, n: int) -> dict[str, object]:
    """The refresh side ``n`` times, each on the history the platform side left (the
    warehouse and the data folder's outputs put back between runs): the median run, and every
    run's time for the spread."""
    keep = ("warehouse.duckdb", "models", "exports", "reports", "privacy")
    saved = data_dir / ".before_refresh"
    shutil.rmtree(saved, ignore_errors=True)
    saved.mkdir()
    for name in keep:
        if (data_dir / name).is_dir():
            shutil.copytree(data_dir / name, saved / name)
        elif (data_dir / name).exists():
            shutil.copy2(data_dir / name, saved / name)
    runs = []
    try:
        for i in range(n):
            if i:
                for name in keep:
                    target = data_dir / name
                    if target.is_dir():
                        shutil.rmtree(target)
                    elif target.exists():
                        target.unlink()
                    if (saved / name).is_dir():
                        shutil.copytree(saved / name, target)
                    elif (saved / name).exists():
                        shutil.copy2(saved / name, target)
            t0 = time.perf_counter()
            refresh = _child("refresh", data_dir)
            refresh["daily_refresh_process_s"] = time.perf_counter() - t0
            runs.append(refresh)
    finally:
        shutil.rmtree(saved, ignore_errors=True)
    runs.sort(key=lambda r: r["daily_refresh_s"])
    median = runs[len(runs) // 2]
    return {
        "daily_refresh_peak_rss_mib": median["peak_rss_mib"],
        **{k: v for k, v in median.items() if k.startswith("daily_refresh")},
        "daily_refresh_runs_s": [round(r["daily_refresh_s"], 1) for r in runs],
        "daily_refresh_load_runs_s": sorted(round(r["daily_refresh_load_s"], 1) for r in runs),
    }


def _child(side: str, data_dir: Path) -> dict[str, object]:
    """Run one side in a fresh interpreter; returns its JSON report."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench", "--side", side, "--data", str(data_dir)],
        capture_output=True, text=True, cwd=ROOT.parent,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"the {side} side failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_spark(data_dir: Path) -> dict[str, object]:
    """The whole loop on local Spark and then on DuckDB, from this scale's landed files
    (:func:`benchmarks.engines.loop`, its work folder beside the landing)."""
    from benchmarks import engines
    from segmentation_dagster.core import spark as spark_engine

    out = engines.loop(data_dir / "engines", data_dir / "landing", engines.SAMPLE_ROWS)
    out["driver_memory"] = spark_engine.driver_memory().get("spark.driver.memory", "default")
    out["loop_s"] = out["timings"]["spark_loop_s"]
    return out


def _machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, "
        f"Python {platform.python_version()}"
    )


def markdown(report: dict) -> str:
    p = report["platform"]
    none = {"stages": {}, "total_s": 0.0, "peak_rss_mib": float("nan")}
    b, e = report.get("baseline") or none, report.get("expert") or none
    lines = [
        f"# Benchmark: {p['events']:,} events, {p['customers']:,} customers",
        "",
        f"{report['machine']}; {report['date']}; `{report['command']}`",
        "",
        "| stage | platform s | pandas s | pandas / platform | expert s | expert / platform |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    dates = {k: v["date"][:10] for k, v in report.items() if isinstance(v, dict) and "date" in v}
    if len(set(dates.values()) | {report["date"][:10]}) > 1:
        lines[4:4] = [
            "Sides run on different days (`--only`): "
            + ", ".join(f"{k} {d}" for k, d in dates.items()),
            "",
        ]

    def cells(side: dict, stage: str, ps: float) -> str:
        s = side["stages"].get(stage, 0.0) if stage != "total" else side["total_s"]
        ratio = f"{s / ps:.2f}x" if ps > 0.05 and s > 0 else "-"
        return f"{s:.1f} | {ratio}"

    for stage in (*STAGES, "total"):
        ps = p["stages"].get(stage, 0.0) if stage != "total" else p["total_s"]
        lines.append(f"| {stage} | {ps:.1f} | {cells(b, stage, ps)} | {cells(e, stage, ps)} |")
    slowest = ", ".join(f"{k} {v:.1f}" for k, v in p.get("daily_refresh_slowest", {}).items())
    refresh = f"{p.get('daily_refresh_s', float('nan')):.1f} s"
    if runs := p.get("daily_refresh_runs_s"):
        loads = p.get("daily_refresh_load_runs_s", [])
        refresh = (
            f"{refresh} (median of {len(runs)} runs on the same history: "
            + ", ".join(f"{r:.1f}" for r in runs)
            + " s; code-location load "
            + ", ".join(f"{r:.1f}" for r in loads)
            + " s)"
        )
    if "daily_refresh_load_s" in p:
        refresh += (
            f" in the run, in a fresh process as a scheduled run has it (+ "
            f"{p['daily_refresh_load_s']:.1f} s loading the code location; "
            f"{p['daily_refresh_process_s']:.1f} s for the whole process)"
        )
    lines += [
        f"| peak RSS MiB | {p['peak_rss_mib']:.0f} | {b['peak_rss_mib']:.0f} | | "
        f"{e['peak_rss_mib']:.0f} | |",
        "",
        f"Daily refresh of one new day on top of this history (daily_refresh_job): "
        f"{refresh}; slowest steps (s): {slowest}.",
        "",
        "Slowest dbt nodes (s), full loop: "
        + ", ".join(f"{k} {v:.1f}" for k, v in list(p.get("dbt_nodes", {}).items())[:5])
        + "; daily refresh: "
        + ", ".join(
            f"{k} {v:.1f}" for k, v in list(p.get("daily_refresh_dbt_nodes", {}).items())[:5]
        )
        + ".",
        "",
        "platform: segmentation_job through Dagster (gates, registry, profiles, exports and "
        "monitors included; 'gates' and 'other' have no baseline counterpart). pandas: "
        "benchmarks/baseline.py (pandas, KMeans k-sweep on every customer, Evidently "
        "DataDriftPreset on the full tables). expert: benchmarks/expert.py (DuckDB SQL over the "
        "files, KMeans k-sweep on a sample, Evidently Wasserstein drift on samples).",
    ]
    notes = []
    if "baseline" not in report:
        notes.append("pandas baseline not run (--no-baseline).")
    if "expert" not in report:
        notes.append("expert baseline not run (--no-expert).")
    if g := report.get("generate"):
        notes.append(
            f"Data generated in this run (streamed day by day): {g['events']:,} events in "
            f"{g['s']:.1f} s, peak RSS {g['peak_rss_mib']:.0f} MiB."
        )
    if sp := report.get("spark"):
        lines += ["", spark_markdown(sp)]
    lines[-1:-1] = [line for note in notes for line in (note, "")]
    return "\n".join(lines) + "\n"


def spark_markdown(sp: dict) -> str:
    """The Spark side's paragraph: the loop on each engine, their agreement, Spark's memory."""
    t, st, mem = sp["timings"], sp["spark_timings"], sp["spark_peak_rss_mib"]
    duck = t["duckdb_dbt_build_s"] + t["duckdb_fit_assign_s"]
    return (
        f"Spark (local[2] in the bench's process, driver memory {sp.get('driver_memory', '?')}; "
        f"{sp['customers']:,} customers, samples of {sp['sample_rows']:,}): the whole loop "
        f"{t['spark_loop_s']:.1f} s (dbt build {st['dbt_build_s']:.1f}, sample + gate + fit "
        f"{st['sample_gate_fit_s']:.1f}, assign + profiles + playbooks "
        f"{st['assign_profile_s']:.1f}, drift {st['drift_s']:.1f}); DuckDB doing the same steps "
        f"{duck:.1f} s (dbt build {t['duckdb_dbt_build_s']:.1f} + fit and assign "
        f"{t['duckdb_fit_assign_s']:.1f}), Spark / DuckDB {t['spark_loop_s'] / duck:.1f}x. "
        f"ARI between the engines' segments {sp['ari_between_engines']} (k: DuckDB "
        f"{sp['k']['duckdb']}, Spark {sp['k']['spark']}). Spark's peak memory: Python driver "
        f"{mem['python_driver'] / 1024:.2f} GiB + JVM {mem['jvm'] / 1024:.2f} GiB. Loading the "
        f"files into DuckDB and exporting them to Parquet first: {t['load_and_export_s']:.1f} s."
    )


def results_readme(results: Path) -> str:
    """benchmarks/results/README.md: one line per scale, from every bench_*.json there."""
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (benchmarks/bench.py) from the bench_*.json files here; each",
        "scale's .md has the stages, the slowest steps and dbt nodes, and the machine. Seconds",
        "on the machine named in each file; read every figure as ±15 % (shared machine).",
        "Where the daily refresh's time goes, and why its targets are missed: "
        "refresh_profile.md (a profile, written by hand).",
        "",
        "| events | customers | date | full loop s | pandas / platform | expert / platform | "
        "peak RSS GiB | daily refresh s (+ load) | Spark loop s (ARI, peak GiB) |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    reports = [json.loads(f.read_text()) for f in results.glob("bench_*.json")]
    for r in sorted(reports, key=lambda r: r["platform"]["events"]):
        p, total = r["platform"], r["platform"]["total_s"]

        def ratio(side: str, r: dict = r, total: float = total) -> str:
            return f"{r[side]['total_s'] / total:.2f}x" if side in r else "-"

        lines.append(
            f"| {p['events']:,} | {p['customers']:,} | {r['date'][:10]} | {total:.1f} | "
            f"{ratio('baseline')} | {ratio('expert')} | {p['peak_rss_mib'] / 1024:.1f} | "
            f"{p.get('daily_refresh_s', float('nan')):.1f} "
            f"(+ {p.get('daily_refresh_load_s', float('nan')):.1f}) | {spark_cell(r)} |"
        )
    return "\n".join(lines) + "\n"


def spark_cell(report: dict) -> str:
    """The results table's Spark column: loop seconds (ARI with DuckDB, peak Python + JVM GiB)."""
    if not (sp := report.get("spark")):
        return "-"
    mem = sp["spark_peak_rss_mib"]
    return (
        f"{sp['timings']['spark_loop_s']:.1f} ({sp['ari_between_engines']}, "
        f"{mem['python_driver'] / 1024:.1f} + {mem['jvm'] / 1024:.1f}) {sp.get('date', '')[:10]}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="approximate")
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--work", type=Path, default=ROOT / ".work")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--no-baseline", action="store_true", help="skip the pandas baseline")
    parser.add_argument("--no-expert", action="store_true", help="skip the expert baseline")
    parser.add_argument(
        "--refreshes", type=int, default=3,
        help="daily refreshes measured, each on the same history (the median is reported)",
    )  # fmt: skip
    parser.add_argument(
        "--spark", action="store_true",
        help="also run the whole loop on local Spark and on DuckDB (make install-spark)",
    )  # fmt: skip
    parser.add_argument(
        "--only", type=lambda v: [x.strip() for x in v.split(",") if x.strip()],
        help=f"run only these sides ({', '.join(SIDES)}); the others are kept from this "
        "scale's last results file",
    )  # fmt: skip
    parser.add_argument("--side", choices=(*SIDES, "refresh"), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.side:  # one side, in its own process
        t0 = time.perf_counter()
        if args.side == "platform":
            report = run_platform(args.data)
        elif args.side == "refresh":
            report = run_refresh(args.data)
        elif args.side == "spark":
            report = run_spark(args.data)
        elif args.side == "baseline":
            from benchmarks import baseline

            report = baseline.run(args.data / "landing")
        else:
            from benchmarks import expert

            report = expert.run(args.data / "landing")
        # the platform's total is its full loop (the daily refresh is reported on its own)
        report["total_s"] = report.pop("loop_s", time.perf_counter() - t0)
        report["peak_rss_mib"] = _peak_rss_mib()
        print(json.dumps(report, default=str))
        return 0

    from segmentation_dagster.cli import progress_printer
    from segmentation_dagster.demo import simulate

    scale = f"{args.events}_{args.customers}"
    data_dir = args.work / scale
    stem = args.results / f"bench_{scale}"
    sides = args.only or [
        "platform", *(() if args.no_baseline else ("baseline",)),
        *(() if args.no_expert else ("expert",)),
    ]  # fmt: skip
    if args.spark and "spark" not in sides:
        sides = [*sides, "spark"]
    if unknown := sorted(set(sides) - set(SIDES)):
        parser.error(f"--only: unknown side(s) {unknown} (known: {', '.join(SIDES)})")
    this_run = {
        "machine": _machine(),
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "command": "python -m benchmarks.bench " + " ".join(argv or sys.argv[1:]),
    }
    report: dict[str, object] = dict(this_run)
    if args.only and stem.with_suffix(".json").exists():  # the other sides: from the last run
        report = json.loads(stem.with_suffix(".json").read_text())
        report.pop("generate", None)  # said by the run that generated the files
        for side in SIDES:
            if side in report and "date" not in report[side]:
                report[side] |= {k: report[k] for k in ("date", "command")}
        if "platform" in sides:
            report |= this_run
    elif args.only and "platform" not in sides:
        parser.error(f"--only {','.join(sides)}: no {stem}.json to add to; run every side")
    if not (data_dir / "landing" / "events").exists():
        cfg = simulate.DemoConfig(
            n_customers=args.customers,
            days=args.days,
            start_date=dt.date.today() - dt.timedelta(days=args.days + 1),
            activity_scale=args.events / (args.customers * args.days * EVENTS_PER_CUSTOMER_DAY),
            stream=True,
        )
        t0 = time.perf_counter()
        summary = simulate.generate(cfg, data_dir / "landing", data_dir / "truth",
                                    progress_printer("generate"))  # fmt: skip
        report["generate"] = {"events": summary.n_events, "s": time.perf_counter() - t0,
                              "peak_rss_mib": _peak_rss_mib()}  # fmt: skip
        print(f"generated {summary.n_events:,} events, {summary.n_customers:,} customers "
              f"in {report['generate']['s']:.1f}s -> {data_dir}", flush=True)  # fmt: skip
    for side in sides:
        print(f"running {side}...", flush=True)
        report[side] = _child(side, data_dir) | {
            k: this_run[k] for k in ("date", "command", "machine")
        }
        if side == "platform":
            report[side] |= _refreshes(data_dir, args.refreshes)
    args.results.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1, default=str))
    md = markdown(report)
    stem.with_suffix(".md").write_text(md)
    (args.results / "README.md").write_text(results_readme(args.results))
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
