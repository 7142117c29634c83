"""How fast does the behaviour-drift score respond to a shift, and how quiet is it without one?

Generates a scenario (5,000 customers, 90 days, shift on day 60), builds customer_features with
the real dbt project at several snapshot dates, fits the reference model on the day-59
snapshot, and prints the drift share (core.drift.behaviour_drift) per snapshot.

    .venv/bin/python -m benchmarks.drift_response price_wave
    .venv/bin/python -m benchmarks.drift_response none        # the no-shift control
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
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--shift-day", type=int, default=60)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="drift_response_"))
    db = root / "warehouse.duckdb"
    cfg = simulate.DemoConfig(
        n_customers=args.customers, days=args.days, shift_day=args.shift_day,
        scenario=args.scenario, seed=3,
    )  # fmt: skip
    simulate.generate(cfg, root / "landing", root / "truth")
    with warehouse.connect(db) as con:
        for kind in ("events", "customers"):
            ingest.load_kind(con, root / "landing", kind)
    env = {**os.environ, "SEGMENTATION_DUCKDB_PATH": str(db)}
    dbt = str(Path(sys.executable).parent / "dbt")

    def features(day: int):
        snap = (cfg.start_date + dt.timedelta(days=day)).isoformat()
        subprocess.run(
            [dbt, "run", "-q", "--select", "+customer_features",
             "--vars", json.dumps({"snapshot_date": snap}),
             "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)],
            env=env, check=True,
        )  # fmt: skip
        with warehouse.connect(db) as con:
            return con.sql("select * from main.customer_features").pl()

    ref_day = args.shift_day - 1
    reference = features(ref_day)
    model = clustering.fit(reference)
    print(f"scenario {args.scenario}: reference = snapshot of day {ref_day}")
    for day in sorted({ref_day + k for k in (1, 2, 3, 4, 7, 11, 16)} | {args.days - 1}):
        if day >= args.days:
            continue
        r = drift.behaviour_drift(reference, features(day), model.plan.used)
        print(f"day {day} (+{day - ref_day}): drift share {r.drift_share:.2f}  "
              f"drifted: {', '.join(r.drifted) or '-'}")  # fmt: skip


if __name__ == "__main__":
    main()
