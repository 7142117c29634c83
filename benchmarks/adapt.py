"""`make adapt`: how fast the segments follow behaviour, scenario by scenario.

Each scenario is replayed through the real jobs and the real drift sensor (`segmentation
replay`, one process and one data folder per scenario under ``benchmarks/.work/adapt/``): the
first champion is fitted on ``--history-days`` of history, then every day one day file lands,
``daily_refresh_job`` runs, the sensor is evaluated and the re-segmentation it asks for runs.
The demo generator knows every customer's true persona on every day, so afterwards this script
reads the warehouse and measures, day by day:

- ARI: adjusted Rand index of the published segments against the day's true personas;
- flip rate: share of the customers segmented on both days whose segment id changed;
- re-segmentations, promotions and their MONIC transitions (kept / split / merged / new /
  retired) with the share of customers each promotion moved;
- emerging_segment: the share of the new persona's customers held by the largest segment id
  minted after the shift; vanishing_segment: the check at which the vanished persona's segment
  id was retired.

Results: ``benchmarks/results/adapt.json`` and ``adapt.md`` (one row per scenario, then the
day-by-day timelines). Timings are not asserted anywhere; ``tests/test_adapt.py`` runs a tiny
version so the script cannot rot.

    .venv/bin/python -m benchmarks.adapt                       # every scenario, 5,000 customers
    .venv/bin/python -m benchmarks.adapt --scenarios price_wave --days 20
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb
import polars as pl
from sklearn.metrics import adjusted_rand_score

from segmentation_dagster.demo import simulate

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
WORK = ROOT / ".work" / "adapt"
#: Checks after the shift at which ARI is reported in the summary table.
OFFSETS = (0, 3, 7, 14, 21, 30)


@dataclass
class ScenarioResult:
    """What one scenario's replay showed."""

    scenario: str
    customers: int
    history_days: int
    days: int
    shift: str | None
    seconds: float
    ari_before_shift: float | None = None
    ari_at: dict[str, float | None] = field(default_factory=dict)  # "+7" -> ARI
    first_check_ari_085: int | None = None  # checks after the shift until ARI >= 0.85
    first_check_ari_090: int | None = None
    min_ari_after_shift: float | None = None
    min_ari: float | None = None
    flip_rate_mean: float | None = None
    flip_rate_max: float | None = None
    resegmentations: int = 0
    promotions: list[dict] = field(default_factory=list)
    emerging_share: dict[str, float] = field(default_factory=dict)  # "+k" -> share
    #: the floor: the share of the new persona with any event since the shift ("+k" -> share);
    #: a customer who has not come back yet cannot be seen to have changed
    emerging_seen: dict[str, float] = field(default_factory=dict)
    first_check_emerging_080: int | None = None
    vanished_segment: int | None = None
    vanished_retired_at_check: int | None = None
    timeline: list[dict] = field(default_factory=list)


def _run_replay(scenario: str, args: argparse.Namespace) -> tuple[Path, float]:
    folder = Path(args.work) / scenario
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    env = {
        **os.environ,
        "SEGMENTATION_DATA_DIR": str(folder / "data"),
        "DAGSTER_HOME": str(folder / "dagster_home"),
    }
    (folder / "dagster_home").mkdir()
    shutil.copy(ROOT.parent / "dagster.yaml", folder / "dagster_home" / "dagster.yaml")
    days = args.quiet_days if scenario == "none" else args.days
    cmd = [
        sys.executable, "-m", "segmentation_dagster.cli", "replay", "--scenario", scenario,
        "--customers", str(args.customers), "--history-days", str(args.history_days),
        "--days", str(days), "--shift-after", str(args.shift_after), "--seed", str(args.seed),
        "--start-date", args.start_date,
    ]  # fmt: skip
    t0 = time.perf_counter()
    with (folder / "replay.log").open("w") as log:
        done = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode:
        raise RuntimeError(f"{scenario}: replay failed, see {folder / 'replay.log'}")
    return folder / "data", time.perf_counter() - t0


def _assignments(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """The last assignment of every snapshot date (after any re-segmentation that day)."""
    return con.sql(
        "select snapshot_date, customer_id, segment_id from "
        "segmentation.segment_assignment_history "
        "qualify model_version = max(model_version) over (partition by snapshot_date)"
    ).pl()


def _first_seen_since(data: Path, shift: dt.date) -> pl.DataFrame:
    """Each customer's first event date on or after the shift (the replay's source files)."""
    return (
        pl.scan_parquet(data / "replay_source" / "events" / "*.parquet")
        .filter(pl.col("event_ts") >= dt.datetime.combine(shift, dt.time()))
        .group_by(pl.col("customer_id").cast(pl.String))
        .agg(first_seen=pl.col("event_ts").min().dt.date())
        .collect()
    )


def measure(data: Path, scenario: str, args: argparse.Namespace, seconds: float) -> ScenarioResult:
    """Read a finished replay's warehouse and truth file into a :class:`ScenarioResult`."""
    truth = pl.read_parquet(data / "truth" / "personas.parquet").with_columns(
        pl.col("customer_id").cast(pl.String)
    )
    start = dt.date.fromisoformat(args.start_date)
    shift = (
        None
        if scenario == "none"
        else start + dt.timedelta(days=args.history_days + args.shift_after)
    )
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        history = _assignments(con)
        timeline = con.sql(
            "select snapshot_date, runs, drift_score, decision, champion_version "
            "from monitoring.replay_timeline order by snapshot_date"
        ).pl()
        decisions = con.sql(
            "select decided_at, challenger_version, promoted, reason, alignment "
            "from segmentation.model_decisions order by decided_at"
        ).pl()
        registry = dict(
            con.sql("select version, segment_ids from segmentation.model_registry").fetchall()
        )
    result = ScenarioResult(
        scenario, args.customers, args.history_days, timeline.height - 1,
        None if shift is None else str(shift), round(seconds, 1),
    )  # fmt: skip
    dates = timeline["snapshot_date"].to_list()
    first_seen = _first_seen_since(data, shift) if scenario == "emerging_segment" else None
    by_date = history.partition_by("snapshot_date", as_dict=True, include_key=False)
    first_version = int(timeline["champion_version"][0])
    first_ids = set(registry[first_version])
    previous = None
    rows = []
    for i, day in enumerate(dates):
        seg = by_date.get((day,))
        if seg is None:
            continue
        today = simulate.truth_at(truth, day).with_columns(pl.col("customer_id").cast(pl.String))
        joined = seg.join(today, on="customer_id")
        ari = float(adjusted_rand_score(joined["persona"], joined["segment_id"]))
        flip = None
        if previous is not None:
            both = seg.join(previous, on="customer_id", suffix="_before")
            flip = float((both["segment_id"] != both["segment_id_before"]).mean())
        previous = seg
        offset = None if shift is None else (day - shift).days
        row = {"date": str(day), "offset": offset, "ari": round(ari, 4),
               "flip_rate": None if flip is None else round(flip, 4),
               "drift_score": timeline["drift_score"][i],
               "champion_version": int(timeline["champion_version"][i]),
               "runs": timeline["runs"][i], "decision": timeline["decision"][i]}  # fmt: skip
        if scenario == "emerging_segment" and offset is not None and offset >= 0:
            new = joined.filter(pl.col("persona") == simulate.EMERGING.name).join(
                first_seen, on="customer_id", how="left"
            )
            minted = new.filter(~pl.col("segment_id").is_in(list(first_ids)))
            share = (
                minted["segment_id"].value_counts()["count"].max() / new.height
                if new.height and minted.height
                else 0.0
            )
            row["emerging_share"] = round(float(share), 4)
            row["emerging_seen"] = round(
                float((new["first_seen"] <= day).fill_null(False).mean()) if new.height else 0.0,
                4,
            )
        rows.append(row)
    result.timeline = rows
    flips = [r["flip_rate"] for r in rows if r["flip_rate"] is not None]
    result.flip_rate_mean = round(sum(flips) / len(flips), 4) if flips else None
    result.flip_rate_max = max(flips) if flips else None
    result.min_ari = min(r["ari"] for r in rows)
    result.resegmentations = sum("resegmentation_job" in (r["runs"] or "") for r in rows)
    for d in decisions.filter(pl.col("challenger_version") != first_version).iter_rows(named=True):
        transitions = json.loads(d["alignment"] or "null") or []
        result.promotions.append(
            {
                "version": d["challenger_version"],
                "promoted": d["promoted"],
                "reason": d["reason"],
                "transitions": _kinds(transitions),
            }  # fmt: skip
        )
    if shift is not None:
        before = [r for r in rows if r["offset"] < 0]
        after = [r for r in rows if r["offset"] >= 0]
        result.ari_before_shift = before[-1]["ari"] if before else None
        result.ari_at = {f"+{k}": next((r["ari"] for r in after if r["offset"] == k), None)
                         for k in OFFSETS}  # fmt: skip
        result.min_ari_after_shift = min((r["ari"] for r in after), default=None)
        result.first_check_ari_085 = next((r["offset"] for r in after if r["ari"] >= 0.85), None)
        result.first_check_ari_090 = next((r["offset"] for r in after if r["ari"] >= 0.90), None)
        if scenario == "emerging_segment":
            result.emerging_share = {f"+{r['offset']}": r["emerging_share"] for r in after}
            result.emerging_seen = {f"+{r['offset']}": r["emerging_seen"] for r in after}
            result.first_check_emerging_080 = next(
                (r["offset"] for r in after if r["emerging_share"] >= 0.8), None
            )
        if scenario == "vanishing_segment":
            _vanishing(result, truth, by_date, shift, rows, registry)
    return result


def _kinds(transitions: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in transitions:
        out[t["transition"]] = out.get(t["transition"], 0) + 1
    return out


def _vanishing(
    result: ScenarioResult,
    truth: pl.DataFrame,
    by_date: dict,
    shift: dt.date,
    rows: list[dict],
    registry: dict,
) -> None:
    """The vanished persona's segment (where its customers were the day before the shift) and
    the check at which that id left the champion."""
    gone = truth.filter(pl.col("persona") != pl.col("persona_after_shift"))["persona"]
    if not gone.len():
        return
    eve = shift - dt.timedelta(days=1)
    seg = by_date.get((eve,))
    if seg is None:
        return
    members = seg.join(truth.filter(pl.col("persona") == gone[0]), on="customer_id")
    sid = int(members["segment_id"].mode()[0])
    result.vanished_segment = sid
    for r in rows:
        if (
            r["offset"] is not None
            and r["offset"] >= 0
            and sid not in registry[r["champion_version"]]
        ):
            result.vanished_retired_at_check = r["offset"]
            return


def markdown(results: list[ScenarioResult], args: argparse.Namespace) -> str:
    """The summary table, then each scenario's day by day timeline."""
    head = ["scenario", "ARI before", *[f"ARI {k}" for k in ("+0", "+3", "+7", "+14")],
            "checks to 0.85", "checks to 0.90", "min ARI after", "flip/day (mean, max)",
            "re-seg", "promoted", "scenario target"]  # fmt: skip
    lines = [
        f"# Adaptation benchmark ({dt.date.today()})",
        "",
        f"`make adapt`: {args.customers:,} customers, first fit on {args.history_days} days, "
        f"shift {args.shift_after} checks into the replay, {args.days} daily checks "
        f"({args.quiet_days} for `none`); machine: {platform.processor() or platform.machine()}"
        f", {os.cpu_count()} cores. ARI is against the day's true personas.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]

    def f(v: object) -> str:
        return "–" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))

    for r in results:
        target = ""
        if r.scenario == "emerging_segment":
            share = max(r.emerging_share.values(), default=0.0)
            seen = r.emerging_seen.get("+7")
            target = (
                f"new id holds ≥80 % of the new persona at check "
                f"{f(r.first_check_emerging_080)} (max {share:.0%}); at +7 it holds "
                f"{r.emerging_share.get('+7', 0):.0%}, and {f(seen)} of the persona had any "
                "event since the shift"
            )
        elif r.scenario == "vanishing_segment":
            target = (
                f"segment {f(r.vanished_segment)} retired at check {f(r.vanished_retired_at_check)}"  # noqa: E501
            )
        elif r.scenario == "gradual_drift":
            target = f"min ARI in the drift: {f(r.min_ari_after_shift)}"
        elif r.scenario == "none":
            target = f"min ARI {f(r.min_ari)}"
        promoted = sum(p["promoted"] for p in r.promotions)
        lines.append(
            "| "
            + " | ".join(
                [
                    r.scenario,
                    f(r.ari_before_shift),
                    *[f(r.ari_at.get(k)) for k in ("+0", "+3", "+7", "+14")],
                    f(r.first_check_ari_085),
                    f(r.first_check_ari_090),
                    f(r.min_ari_after_shift),
                    f"{f(r.flip_rate_mean)}, {f(r.flip_rate_max)}",
                    str(r.resegmentations),
                    str(promoted),
                    target,
                ]
            )
            + " |"  # fmt: skip
        )
    for r in results:
        lines += ["", f"## {r.scenario}", "",
                  "| date | check | ARI | flip | drift | champion | decision |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        emerging = r.scenario == "emerging_segment"
        if emerging:  # the new persona: held by the new id, and seen since the shift (floor)
            lines[-2] = lines[-2].replace("| decision |", "| new id holds | seen | decision |")
            lines[-1] += "---|---|"
        for t in r.timeline:
            decision = (t["decision"] or "")[:140]
            extra = (
                f"{f(t.get('emerging_share'))} | {f(t.get('emerging_seen'))} | " if emerging else ""
            )
            lines.append(
                f"| {t['date']} | {f(t['offset'])} | {f(t['ari'])} | {f(t['flip_rate'])} | "
                f"{f(t['drift_score'])} | v{t['champion_version']} | {extra}{decision} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenarios", nargs="+", default=list(simulate.SCENARIOS),
                        choices=simulate.SCENARIOS)  # fmt: skip
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--history-days", type=int, default=90)
    parser.add_argument("--days", type=int, default=45, help="daily checks per scenario")
    parser.add_argument("--quiet-days", type=int, default=180, help="daily checks for `none`")
    parser.add_argument("--shift-after", type=int, default=10,
                        help="checks before the shift (after the sensor's cooldown)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--jobs", type=int, default=2, help="scenarios replayed at once")
    parser.add_argument("--out", default=str(RESULTS / "adapt"), help="results path stem")
    parser.add_argument("--work", default=str(WORK), help="folder for the replays' data")
    parser.add_argument(
        "--start-date",
        default=None,
        help="first day of history (default: the longest replay ends yesterday; later events "
        "would be quarantined as in the future)",
    )
    args = parser.parse_args(argv)
    if args.start_date is None:
        longest = args.history_days + max(args.days, args.quiet_days) + 1
        args.start_date = (dt.date.today() - dt.timedelta(days=longest)).isoformat()

    def one(scenario: str) -> ScenarioResult:
        data, seconds = _run_replay(scenario, args)
        r = measure(data, scenario, args, seconds)
        print(f"{scenario}: done in {seconds:.0f} s", flush=True)
        return r

    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(one, args.scenarios))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(
        json.dumps({"args": vars(args), "results": [asdict(r) for r in results]}, indent=1)
    )
    out.with_suffix(".md").write_text(markdown(results, args))
    print(markdown(results, args).split("\n## ")[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
