"""The Dagster UI in a real browser: Debian's chromium, driven by Playwright, against `dagster
dev` on a test instance that `segmentation run` and `segmentation daily` filled. It opens the
asset graph, the drift sensor's ticks and `segment_profiles`, finds the segment table, launches
a materialisation from the UI and waits for that run to succeed. Screenshots go to
`.ui_screenshots/` in the repository."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from segmentation_dagster.adapters.automation import LOCATION
from segmentation_dagster.core.settings import REPO_ROOT
from segmentation_dagster.demo import simulate
from tests.conftest import env_of, make_paths

pytestmark = pytest.mark.slow  # a pipeline run, `dagster dev` and a browser

CHROMIUM = os.environ.get("SEGMENTATION_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
]  # fmt: skip
SHOTS = REPO_ROOT / ".ui_screenshots"
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, seconds: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        assert proc.poll() is None, f"dagster dev exited:\n{log.read_text()[-3000:]}"
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"{url} did not answer in {seconds}s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    root = tmp_path_factory.mktemp("ui")
    p = make_paths(root / "data")
    simulate.generate(simulate.DemoConfig(n_customers=600, days=30, seed=3), p.landing_dir,
                      p.truth_dir)  # fmt: skip
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, **env_of(p), "DAGSTER_HOME": str(home)}
    subprocess.run([BIN / "dagster", "instance", "migrate"], env=env, check=True,
                   capture_output=True)  # fmt: skip
    # the first champion on all but the last day, then that day as `segmentation daily`: a
    # refresh and a tick of the drift sensor, which the UI must show as the sensor's own
    last = sorted((p.landing_dir / "events").iterdir())[-1]
    held = last.rename(root / last.name)
    for cmd in (["run", "--no-demo"], ["daily"]):
        run = subprocess.run([BIN / "segmentation", *cmd], env=env, cwd=REPO_ROOT,
                             capture_output=True, text=True)  # fmt: skip
        assert run.returncode == 0, run.stderr[-3000:]
        if held.exists():
            held.rename(last)
    # `daily` says what its own run loaded: the day held back, one file
    assert re.search(r"this run: 1 event file\(s\) loaded, 0 replaced, 0 rejected; "
                     r"[1-9][\d,]* rows inserted", run.stdout), run.stdout[-2000:]  # fmt: skip
    # `segmentation ui`, as `make ui` and the run summary's hint start it: dagster dev and
    # the report folder served beside it
    port, reports_port, log = _free_port(), _free_port(), root / "dagster_dev.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [BIN / "segmentation", "ui", "--port", str(port), "--reports-port", str(reports_port)],
            env=env, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_http(f"{base}/server_info", 180, proc, log)
        yield base, home, f"http://127.0.0.1:{reports_port}", p.report_dir
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _runs(home: Path) -> list[dg.DagsterRun]:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return list(instance.get_runs())


def test_the_ui_shows_the_segments_and_materialises_from_the_browser(ui):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect, sync_playwright

    base, home, reports, report_dir = ui
    SHOTS.mkdir(exist_ok=True)
    before = {r.run_id for r in _runs(home)}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(90_000)

        page.goto(f"{base}/asset-groups")
        expect(page.get_by_text("Global asset lineage").first).to_be_visible()
        try:  # a fresh instance greets a new user with a dialog, sometimes a moment later
            page.get_by_role("button", name="Skip").click(timeout=15_000)
        except PlaywrightTimeout:
            pass
        for group in ("ingestion", "transform", "segmentation", "monitoring"):
            expect(page.get_by_text(group, exact=True).first).to_be_visible()
        page.screenshot(path=SHOTS / "asset_graph.png")

        # what ran and why: the sensor's tick from `segmentation daily`, its cursor, the policy
        page.goto(f"{base}/locations/__repository__@{LOCATION}/sensors/drift_sensor")
        expect(page.get_by_text("runs requested").first).to_be_visible()
        expect(page.get_by_text('"last_snapshot"').first).to_be_visible()
        page.screenshot(path=SHOTS / "drift_sensor.png")

        # which days are loaded: one partition per landing file, each with its load
        page.goto(f"{base}/assets/landing_file?view=partitions")
        expect(page.get_by_text("events/events_").first).to_be_visible()
        page.screenshot(path=SHOTS / "landing_files.png")

        page.goto(f"{base}/assets/segment_profiles")
        # the profiles table of the latest materialisation: a typed table with its columns
        expect(page.get_by_text("segment_name").first).to_be_visible()
        expect(page.get_by_text("Loyal high spenders").first).to_be_visible()
        page.screenshot(path=SHOTS / "segment_profiles.png", full_page=True)
        # a picture drawn on that materialisation: the map of customers, opened from its row
        page.locator("tr", has_text="segment_map").get_by_text("Show Markdown").first.click()
        expect(page.locator("img[src^='data:image/png']").first).to_be_visible()
        page.screenshot(path=SHOTS / "segment_map.png")
        page.keyboard.press("Escape")
        expect(page.locator(".bp5-overlay-backdrop")).to_have_count(0)

        page.locator("button", has_text="Materialize").first.click()
        expect(page.get_by_text("Launched run").first).to_be_visible()
        deadline = time.time() + 300
        new: list[dg.DagsterRun] = []
        while time.time() < deadline:
            new = [r for r in _runs(home) if r.run_id not in before]
            if new and all(r.is_finished for r in new):
                break
            time.sleep(2)
        assert new, "no run was launched from the UI"
        assert [r.status for r in new] == [dg.DagsterRunStatus.SUCCESS]

        page.goto(f"{base}/runs/{new[0].run_id}")
        expect(page.get_by_text("Success").first).to_be_visible()
        page.screenshot(path=SHOTS / "run_from_ui.png")

        # the reports the UI links to are served beside it: the day's Evidently drift report
        # opens, with its script from the same folder; nothing outside the folder is served
        drift = sorted(report_dir.glob("*drift*.html"))
        assert drift, sorted(f.name for f in report_dir.iterdir())
        served = page.goto(f"{reports}/{drift[-1].name}")
        assert served is not None and served.ok
        script = page.locator("script[src^='evidently_']").first.get_attribute("src")
        assert script and page.request.get(f"{reports}/{script}").ok
        page.screenshot(path=SHOTS / "drift_report.png")
        assert page.goto(f"{reports}/..%2Fdagster_home%2Fdagster.yaml").status == 404
        browser.close()
