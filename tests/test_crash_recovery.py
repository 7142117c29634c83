"""Overlap and crashes without a human: `segmentation run` processes started together queue and
all succeed; a run killed with SIGKILL at any step leaves nothing half-written, and the next
plain `segmentation run` cleans up after it and completes.

Real processes on a real instance (a fresh DAGSTER_HOME), real DuckDB, dbt, GX, Evidently. A
test stops a run at an exact point through core.testhooks (SEGMENTATION_PAUSE_AT) and kills it
there with SIGKILL.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from segmentation_dagster.core.runlock import queue_dir
from segmentation_dagster.core.settings import REPO_ROOT
from segmentation_dagster.core.testhooks import PAUSE_ENV
from segmentation_dagster.core.warehouse import connect, one
from segmentation_dagster.demo import simulate
from segmentation_dagster.runs import process_tags
from tests.conftest import defs_for, environment_of, make_paths, wait_for

pytestmark = pytest.mark.slow  # processes killed mid-run, then whole runs

DEMO = simulate.DemoConfig(n_customers=300, days=20, seed=5)
DEMO_ARGS = ["--customers", "300", "--days", "20", "--seed", "5", "--log-level", "WARNING"]
RUN_TIMEOUT_S = 300  # a healthy run takes well under a minute here


class Shop:
    """A fresh instance and data folder driven through the `segmentation` command."""

    def __init__(self, root: Path) -> None:
        self.root = root
        home = root / "dagster_home"
        home.mkdir()
        shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEGMENTATION_")}
        self.env = {**env, "DAGSTER_HOME": str(home), "SEGMENTATION_DATA_DIR": str(root / "data")}
        self.home = home
        self.paths = make_paths(root / "data")
        self.n_started = 0
        self.held_back: list[Path] = []

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        """`segmentation run <args>` in its own process; output in <root>/run<n>.log."""
        self.n_started += 1
        with (self.root / f"run{self.n_started}.log").open("w") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "segmentation_dagster.cli", "run", *DEMO_ARGS, *args],
                env={**self.env, **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def run(self, *args: str) -> str:
        """A plain `segmentation run` that must succeed in time; returns its output."""
        proc = self.start(*args)
        n = self.n_started
        try:
            code = proc.wait(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"`segmentation run` hung:\n{self.output(n)[-3000:]}")
        assert code == 0, self.output(n)[-3000:]
        return self.output(n)

    def output(self, n: int) -> str:
        return (self.root / f"run{n}.log").read_text()

    def kill_at(self, point: str) -> None:
        """Start `segmentation run`, let it reach ``point`` and SIGKILL it there."""
        marker = self.root / f"paused_at_{point}"
        proc = self.start(env={PAUSE_ENV: f"{point}:{marker}"})
        n = self.n_started
        try:
            wait_for(
                lambda: marker.exists() or proc.poll() is not None,
                timeout_s=RUN_TIMEOUT_S,
                what=f"the run to reach {point}",
            )
            assert marker.exists(), f"the run ended before {point}:\n{self.output(n)[-3000:]}"
            assert int(marker.read_text()) == proc.pid  # steps run in the command's process
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert proc.returncode == -signal.SIGKILL

    def instance(self) -> dg.DagsterInstance:
        assert os.environ["DAGSTER_HOME"] == str(self.home)  # set by the test
        return dg.DagsterInstance.get()

    def state(self) -> dict[str, object]:
        """What a half-written run would spoil: raw data, the manifest, the registry."""
        with connect(self.paths.duckdb_path) as con:
            events, distinct = one(con, "select count(*), count(distinct event_id) from raw.events")
            champion = one(
                con,
                "select version, path, reference_path from segmentation.model_registry "
                "where status = 'champion'",
            )
            return {
                "events": events,
                "duplicate_events": events - distinct,
                "files": one(con, "select count(*) from raw.load_manifest where kind = 'events'")[
                    0
                ],
                "quarantined": one(con, "select count(*) from raw.quarantine")[0],
                "champions": one(
                    con,
                    "select count(*) from segmentation.model_registry where status = 'champion'",
                )[0],
                "champion": champion[0],
                "champion_files": (_sha(champion[1]), _sha(champion[2])),
                "models": one(con, "select count(*) from segmentation.model_registry")[0],
                "decisions": one(con, "select count(*) from segmentation.model_decisions")[0],
                "unassigned": one(
                    con,
                    "select count(*) from main.customer_features "
                    "anti join segmentation.customer_segments using (customer_id)",
                )[0],
            }


def _sha(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def shop(tmp_path, monkeypatch):
    """The demo's first 16 days landed (4 held back), and a first champion fitted on them."""
    for var in [v for v in os.environ if v.startswith("SEGMENTATION_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    s = Shop(tmp_path)
    source = tmp_path / "source"
    simulate.generate(DEMO, source, s.paths.truth_dir)
    for kind in ("customers", "products"):
        shutil.copytree(source / kind, s.paths.landing_dir / kind)
    days = sorted((source / "events").iterdir())
    (s.paths.landing_dir / "events").mkdir(parents=True)
    for f in days[:16]:
        shutil.copy(f, s.paths.landing_dir / "events" / f.name)
    s.held_back = days[16:]
    # the first run in this process (its imports are paid already); the runs that are killed
    # and that must recover afterwards are `segmentation run` processes
    with s.instance() as instance, environment_of(s.paths):
        job = defs_for(s.paths).resolve_job_def("segmentation_job")
        assert job.execute_in_process(instance=instance, tags=process_tags()).success
    return s


def _deliver_held_back(shop: Shop) -> None:
    for f in shop.held_back:
        shutil.copy(f, shop.paths.landing_dir / "events" / f.name)


def _killed_run_is_stuck(shop: Shop) -> str:
    """The killed run is left STARTED, holding a slot of the duckdb pool: what used to block
    every later run ("Step blocked by limit for pool duckdb")."""
    with shop.instance() as instance:
        stuck = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
        assert len(stuck) == 1
        assert instance.event_log_storage.get_concurrency_run_ids() == {stuck[0].run_id}
        return stuck[0].run_id


def _next_run_cleaned_up(shop: Shop, killed: str, output: str) -> None:
    assert f"run {killed} had died" in output
    with shop.instance() as instance:
        assert instance.get_run_by_id(killed).status == dg.DagsterRunStatus.FAILURE
        assert instance.event_log_storage.get_concurrency_run_ids() == set()
        statuses = [r.status for r in instance.get_runs()]
    assert statuses.count(dg.DagsterRunStatus.SUCCESS) == len(statuses) - 1


def test_kill_9_during_ingestion_then_a_plain_run_completes(shop):
    before = shop.state()
    _deliver_held_back(shop)

    shop.kill_at("ingest.before_commit")  # the new files' rows are written, not committed

    after_kill = shop.state()  # opening the file replays DuckDB's WAL
    assert after_kill == before  # none of the batch: rows, quarantine, manifest; same champion
    killed = _killed_run_is_stuck(shop)

    output = shop.run()

    _next_run_cleaned_up(shop, killed, output)
    final = shop.state()
    assert final["files"] == 20 and final["duplicate_events"] == 0
    assert final["events"] > before["events"]
    assert final["champions"] == 1 and final["unassigned"] == 0
    # the earlier champion's files are untouched, whether or not it is still the champion
    assert final["champion"] >= before["champion"]
    assert final["models"] == before["models"] + 1  # the killed run never reached the fit


def test_kill_9_during_the_fit_then_a_plain_run_completes(shop):
    """Killed inside the champion/challenger transaction: the challenger's files and registry
    row were written, the promotion was not committed."""
    before = shop.state()

    shop.kill_at("registry.before_commit")

    after_kill = shop.state()
    assert after_kill["champion"] == before["champion"]
    assert after_kill["champion_files"] == before["champion_files"]
    assert after_kill["champions"] == 1
    assert after_kill["decisions"] == before["decisions"]  # the decision was rolled back
    assert after_kill["models"] == before["models"] + 1  # a challenger, never promoted
    killed = _killed_run_is_stuck(shop)

    output = shop.run()

    _next_run_cleaned_up(shop, killed, output)
    final = shop.state()
    assert final["champions"] == 1 and final["unassigned"] == 0
    assert final["decisions"] == before["decisions"] + 1
    assert final["models"] == before["models"] + 2
    with connect(shop.paths.duckdb_path) as con:
        first = one(
            con,
            "select path, reference_path from segmentation.model_registry where version = ?",
            [before["champion"]],
        )
    assert (_sha(first[0]), _sha(first[1])) == before["champion_files"]


def test_a_storm_of_runs_on_a_fresh_instance_and_warehouse_all_succeed(tmp_path, monkeypatch):
    """Runs started together on a fresh DAGSTER_HOME and an empty data folder: a full run (which
    generates the demo data), then more full runs, the daily refresh and a re-segmentation.
    They queue in arrival order; none fails, and the warehouse and instance are consistent."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    shop = Shop(tmp_path)
    first = shop.start()
    wait_for(
        lambda: (
            queue_dir(shop.home / ".segmentation").exists()
            and any(queue_dir(shop.home / ".segmentation").iterdir())
        ),
        what="the first run to queue up",
    )
    jobs = ["segmentation_job", "daily_refresh_job", "resegmentation_job"]
    rest = [shop.start("--job", job) for job in jobs]
    procs = [first, *rest]
    codes = []
    for proc in procs:
        try:
            codes.append(proc.wait(timeout=RUN_TIMEOUT_S))
        except subprocess.TimeoutExpired:
            codes.append(None)
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
    outputs = [shop.output(n + 1) for n in range(len(procs))]
    assert codes == [0] * len(procs), "\n\n".join(o[-2000:] for o in outputs)
    assert sum("waiting for them" in o for o in outputs) >= len(rest)  # they did queue

    with shop.instance() as instance:
        runs = instance.get_runs()
        assert sorted(r.job_name for r in runs) == sorted(["segmentation_job", *jobs])
        assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
        assert instance.event_log_storage.get_concurrency_run_ids() == set()
    state = shop.state()
    assert state["files"] == DEMO.days and state["duplicate_events"] == 0
    assert state["champions"] == 1 and state["unassigned"] == 0
    fits = 3  # two segmentation_job runs and the re-segmentation
    assert state["models"] == state["decisions"] == fits
