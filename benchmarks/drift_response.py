"""How fast does the behaviour-drift score respond to a shift, and how quiet is it without one?

Generates a scenario (5,000 customers, 180 days, shift on day 120), builds customer_features and
customer_recent_activity with the real dbt project at several snapshot dates, fits the reference
model on the day-89 snapshot, and prints per snapshot what behaviour_drift computes
(core.drift): the recent-activity drift score (last 7 days; largest effect over its calibrated
threshold, what the drift policy reads) and share, and the model's 90-day feature drift share.

    .venv/bin/python -m benchmarks.drift_response price_wave
    .venv/bin/python -m benchmarks.drift_response none --every 1   # the no-shift control, daily
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from segmentation_dagster.core import clustering, drift, ingest, simulate, warehouse
from segmentation_dagster.core.settings import DBT_PROJECT_DIR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("scenario", choices=simulate.SCENARIOS)
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--shift-day", type=int, default=120)
    parser.add_argument("--ref-day", type=int, default=89, help="first full 90-day window")
    parser.add_argument("--monitor-window", type=int, default=7, help="dbt monitor_window_days")
    parser.add_argument("--every", type=int, default=10, help="days between quiet snapshots")
    parser.add_argument("--out", type=Path, help="write every per-column effect size here (JSON)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="drift_response_"))
    db = root / "warehouse.duckdb"
    cfg = simulate.DemoConfig(
        n_customers=args.customers, days=args.days, shift_day=args.shift_day,
        scenario=args.scenario, seed=3,
        # the data must end before today: later events would be quarantined as "future"
        start_date=min(simulate.ReplayConfig().start_date,
                       dt.date.today() - dt.timedelta(days=args.days + 1)),
    )  # fmt: skip
    simulate.generate(cfg, root / "landing", root / "truth")
    with warehouse.connect(db) as con:
        for kind in ("events", "customers"):
            ingest.load_kind(con, root / "landing", kind)
    env = {**os.environ, "SEGMENTATION_DUCKDB_PATH": str(db)}
    dbt = str(Path(sys.executable).parent / "dbt")

    def features(day: int):
        snap = (cfg.start_date + dt.timedelta(days=day)).isoformat()
        dbt_vars = {"snapshot_date": snap, "monitor_window_days": args.monitor_window}
        subprocess.run(
            [dbt, "run", "-q", "--select", "+customer_features", "+customer_recent_activity",
             "--vars", json.dumps(dbt_vars),
             "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)],
            env=env, check=True,
        )  # fmt: skip
        with warehouse.connect(db) as con:
            recent = con.sql(
                "select * from main.customer_recent_activity where snapshot_date = ?", params=[snap]
            ).pl()
            return con.sql("select * from main.customer_features").pl(), recent

    ref_day = args.ref_day
    reference, recent_ref = features(ref_day)
    model = clustering.fit(reference)
    recent_cols = drift.comparable_columns(
        recent_ref, [c for c in recent_ref.columns if c not in ("snapshot_date", "customer_id")]
    )
    print(f"scenario {args.scenario}: reference = snapshot of day {ref_day}")
    print(f"recent-activity columns compared: {', '.join(recent_cols)}")
    print("day (days after reference): recent-activity drift share | 90-day feature drift share")
    days = set(range(ref_day + args.every, args.days, args.every)) | {ref_day + 1, args.days - 1}
    if args.scenario != "none":
        days |= {args.shift_day + k for k in range(-1, 8)} | {args.shift_day + 14}
    scores = {}
    for day in sorted(d for d in days if d < args.days):
        current, recent = features(day)
        r = drift.behaviour_drift(recent_ref, recent, recent_cols)
        w = drift.behaviour_drift(reference, current, model.plan.used)
        scores[day - ref_day] = {"recent": r.scores, "features": w.scores, "score": r.score,
                                 "thresholds": r.thresholds, "share": r.drift_share}  # fmt: skip
        top = max(r.scores, key=lambda c: r.scores[c] / r.thresholds[c])
        print(f"day {day} (+{day - ref_day}): recent score {r.score:.2f} "
              f"share {r.drift_share:.2f} [{', '.join(r.drifted) or '-'}] "
              f"(largest {top} {r.scores[top]:.3f} / {r.thresholds[top]:.3f}) "
              f"| features {w.drift_share:.2f}")  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps({"args": vars(args) | {"out": str(args.out)},
                                        "days_after_reference": scores}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
