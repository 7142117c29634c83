"""Shared fixtures: small generated data, real DuckDB files in tmp_path, the real dbt project."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from segmentation_dagster.core.settings import DBT_PROJECT_DIR, REPO_ROOT, Paths
from segmentation_dagster.demo import simulate

os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

#: Small but realistic: every persona is present and the whole graph runs in seconds.
SMALL = simulate.DemoConfig(n_customers=1_500, days=60, seed=7)
#: the export's columns after the customer's pseudonym, on both engines
EXPORT_COLUMNS = ["segment_id", "segment_name", "playbook", "churn_risk", "expected_spend",
                  "expected_spend_bgnbd", "model_version", "snapshot_date"]  # fmt: skip


def make_paths(root: Path) -> Paths:
    return Paths(
        data_dir=root,
        landing_dir=root / "landing",
        duckdb_path=root / "warehouse.duckdb",
        model_dir=root / "models",
        truth_dir=root / "truth",
        export_dir=root / "exports",
        report_dir=root / "reports",
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    """The dbt manifest is prepared at test time if `make` has not done it (never at import)."""
    if not (DBT_PROJECT_DIR / "target" / "manifest.json").exists():
        subprocess.run(
            [
                str(Path(sys.executable).parent / "dagster-dbt"),
                "project",
                "prepare-and-package",
                "--file",
                str(REPO_ROOT / "segmentation_dagster/defs/transform/project.py"),
            ],
            check=True,
        )


@pytest.fixture
def paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    """Empty data folders in tmp_path, also exported through the environment."""
    p = make_paths(tmp_path / "data")
    monkeypatch.setenv("SEGMENTATION_DATA_DIR", str(p.data_dir))
    monkeypatch.setenv("SEGMENTATION_DUCKDB_PATH", str(p.duckdb_path))
    monkeypatch.setenv("SEGMENTATION_CONFIG_DIR", str(tmp_path / "config"))  # no sources.yml
    monkeypatch.delenv("SEGMENTATION_SOURCES", raising=False)
    return p


def env_of(p: Paths) -> dict[str, str]:
    """The environment that points the platform at the folders of ``p``."""
    return {
        "SEGMENTATION_DATA_DIR": str(p.data_dir),
        "SEGMENTATION_DUCKDB_PATH": str(p.duckdb_path),
        "SEGMENTATION_LANDING_DIR": str(p.landing_dir),
        "SEGMENTATION_MODEL_DIR": str(p.model_dir),
        "SEGMENTATION_TRUTH_DIR": str(p.truth_dir),
        "SEGMENTATION_EXPORT_DIR": str(p.export_dir),
        "SEGMENTATION_REPORT_DIR": str(p.report_dir),
    }


@contextlib.contextmanager
def environment_of(p: Paths) -> Iterator[None]:
    """Point the platform at ``p`` for the block (resources read their paths from the
    environment, never from run config)."""
    env = env_of(p)
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def resources_for(p: Paths) -> dict[str, object]:
    """The project's resources; the environment must point at ``p`` while they are used."""
    from segmentation_dagster.defs.resources import default_resources

    assert Paths.from_env().duckdb_path == p.duckdb_path, "use the paths fixture or environment_of"
    return default_resources()


def all_assets() -> list:
    from segmentation_dagster.definitions import defs

    return list(defs.assets or []) + list(defs.asset_checks or [])


def materialize_all(p: Paths, **kwargs) -> dg.ExecuteInProcessResult:
    """Materialise the whole asset graph with its checks (real dbt, GX, DuckDB) against ``p``."""
    with environment_of(p):
        kwargs.setdefault(  # the per-file reload is partitioned: materialised on its own
            "selection", dg.AssetSelection.all() - dg.AssetSelection.assets("landing_file")
        )
        return dg.materialize(
            all_assets(),
            resources=resources_for(p),
            instance=kwargs.pop("instance", None) or dg.DagsterInstance.ephemeral(),
            **kwargs,
        )


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory: pytest.TempPathFactory):
    """The small demo data set run once through the whole graph; shared by read-only tests."""
    p = make_paths(tmp_path_factory.mktemp("pipeline") / "data")
    simulate.generate(SMALL, p.landing_dir, p.truth_dir)
    result = materialize_all(p)
    return p, result


def defs_for(p: Paths) -> dg.Definitions:
    """The project's Definitions (jobs, sensors, checks) bound to the data folders of ``p``."""
    from segmentation_dagster.definitions import defs

    return dg.Definitions(
        assets=defs.assets,
        asset_checks=defs.asset_checks,
        jobs=defs.jobs,
        sensors=defs.sensors,
        resources=resources_for(p),
        executor=dg.in_process_executor,
    )


def wait_for(condition: Callable[[], object], timeout_s: float = 60.0, what: str = "it") -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def landing_events_view(root: Path, columns: str) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with a view ``ev`` over ``root``'s landing event files:
    ``columns`` (SQL over the files' columns, written by the test) plus ``event_date``."""
    con = duckdb.connect()
    files = str(root / "landing" / "events" / "*.parquet").replace("'", "''")  # our tmp path
    con.execute(
        f"create view ev as select {columns}, cast(event_ts as date) as event_date "
        f"from read_parquet('{files}')"
    )
    return con
