"""`segmentation` command line: demo data, the main job, evaluation.

    segmentation demo       generate the demo data set into the landing folder
    segmentation run        run the main job through Dagster and print a summary
    segmentation evaluate   separation, refit stability, per-segment summary (any data); ARI vs
                            the simulated personas (demo data)
    segmentation audit      data-quality audit: pass rates, failures, quarantine, rejections,
                            ignored landing entries
    segmentation init       a starter sources.yml and segmentation.yml from your landed files
    segmentation check      read every configuration file and say what is wrong, before a run
    segmentation daily      one day of operation on your own files: daily refresh, drift sensor,
                            re-segmentation when it asks (the first run fits the first champion)
    segmentation replay     day-by-day operation over a simulated period (drift -> re-segment)
    segmentation forget     erase customers from the warehouse, model snapshots and exports,
                            and keep them out of every later load
    segmentation pseudonym  the exports' pseudonym of each customer id given

Paths come from the environment (see core.settings); `make run` sets DAGSTER_HOME so the runs
appear in `make ui`. Commands that run jobs queue one behind another on the instance and mark
failed any earlier run whose process died (see segmentation_dagster.runs).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from segmentation_dagster.core import settings
from segmentation_dagster.core.reports import DEFAULT_PORT
from segmentation_dagster.core.settings import Paths
from segmentation_dagster.demo import simulate

if TYPE_CHECKING:
    import dagster as dg


def _demo_config(args: argparse.Namespace) -> simulate.DemoConfig:
    return simulate.DemoConfig(
        n_customers=args.customers,
        days=args.days,
        start_date=demo_start_date(args.start_date, args.days),
        seed=args.seed,
        scenario=args.scenario,
        shift_day=args.shift_day,
        purchases_only=args.purchases_only,
        file_format=args.format,
        activity_scale=args.activity_scale,
        stream=args.stream,
    )


def demo_start_date(
    given: str | None,
    days: int,
    default: dt.date = simulate.DemoConfig.start_date,
    today: dt.date | None = None,
) -> dt.date:
    """The simulated period's first day: the one asked for, else the fixed default (reproducible
    data) unless the period would then run past yesterday, in which case it ends yesterday.
    Events dated in the future are quarantined by ingestion, so a demo must never write any."""
    if given is not None:
        return dt.date.fromisoformat(given)
    start = default
    latest = (today or dt.date.today()) - dt.timedelta(days=days)
    return min(start, latest)


def progress_printer(what: str, every: float = 10.0) -> simulate.Progress:
    """A progress callback for long work: one line on stderr at most every ``every`` seconds
    (and at the end)."""
    t0 = last = time.perf_counter()

    def report(done: int, total: int, n_events: int) -> None:
        nonlocal last
        now = time.perf_counter()
        if now - last >= every or done == total:
            last = now
            print(f"{what}: day {done}/{total}, {n_events:,} events ({now - t0:.0f}s)",
                  file=sys.stderr, flush=True)  # fmt: skip

    return report


def cmd_demo(args: argparse.Namespace) -> int:
    paths = Paths.from_env()
    t0 = time.perf_counter()
    summary = simulate.generate(
        _demo_config(args), paths.landing_dir, paths.truth_dir, progress_printer("demo")
    )
    print(
        f"demo data: {summary.n_customers:,} customers, {summary.n_events:,} events, "
        f"{summary.first_date} .. {summary.last_date}, {summary.n_files} files in "
        f"{summary.landing_dir} ({time.perf_counter() - t0:.1f}s)"
    )
    print(f"truth (evaluation only): {paths.truth_dir / 'personas.parquet'}")
    return 0


def _has_events(paths: Paths) -> bool:
    from segmentation_dagster.core.ingest import landing_files

    return bool(landing_files(paths.landing_dir, "events"))


@contextlib.contextmanager
def cli_instance(paths: Paths) -> Iterator[dg.DagsterInstance]:
    """Wait for this command's turn on the instance (runs queue in arrival order, see
    segmentation_dagster.runs), open the instance, and mark failed the runs whose process died.
    """
    from segmentation_dagster.core.runlock import run_turn

    if not os.environ.get("DAGSTER_HOME"):  # the runs and the sensor's record must persist
        home = paths.data_dir / "dagster_home"
        print(f"DAGSTER_HOME is not set: using {home} (point `dagster dev` at it to see the "
              "runs in the UI)", file=sys.stderr)  # fmt: skip
        os.environ["DAGSTER_HOME"] = str(home)

    def waiting(n_ahead: int) -> None:
        print(f"{n_ahead} earlier run(s) on this instance: waiting for them", flush=True)

    with run_turn(runs_folder(paths), on_wait=waiting):
        import dagster as dg

        from segmentation_dagster.runs import fail_dead_runs

        _instance_settings(Path(os.environ["DAGSTER_HOME"]))
        with dg.DagsterInstance.get() as instance:
            for run_id in fail_dead_runs(instance):
                print(f"run {run_id} had died (killed or crashed): marked it failed")
            yield instance


#: the project's instance settings: one run at a time, run monitoring, no telemetry
INSTANCE_SETTINGS = Path(__file__).resolve().parent.parent / "dagster.yaml"


def _instance_settings(home: Path) -> None:
    """Give an instance folder without a dagster.yaml the project's (without it Dagster runs
    with its defaults: no limit of one run at a time, no run monitoring); one it has is kept."""
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists() and INSTANCE_SETTINGS.is_file():
        target.write_text(INSTANCE_SETTINGS.read_text())
        print(f"wrote {target}: the project's instance settings (one run at a time, run "
              "monitoring, no telemetry)", file=sys.stderr)  # fmt: skip


def runs_folder(paths: Paths) -> Path:
    """Where the command's runs queue: beside the instance (``cli_instance`` sets one)."""
    return Path(os.environ["DAGSTER_HOME"]) / ".segmentation"


def configuration_problems(paths: Paths) -> list[tuple[str, str | None]]:
    """Each configuration file a run reads (the project file, the landing folder's sources
    file, the playbooks) and why it cannot be used (None: it can), read as the run reads it."""
    from segmentation_dagster.core import playbooks, project
    from segmentation_dagster.core.sources import load_mapping, mapping_path

    found: list[tuple[str, str | None]] = []
    for label, read in (
        (str(project.project_file()), project.load),
        (
            str(mapping_path(paths.landing_dir)),
            lambda: load_mapping(mapping_path(paths.landing_dir)),
        ),
        (str(playbooks.playbook_file()), playbooks.load_checked),
    ):
        try:
            read()
            found.append((label, None))
        except ValueError as e:  # the loaders' errors name the file, the section and the key
            found.append((label, str(e)))
    return found


def _refuse_broken_configuration(paths: Paths) -> bool:
    """Print the configuration's problems; True when there are any (nothing should run)."""
    problems = [why for _, why in configuration_problems(paths) if why]
    for why in problems:
        print(f"configuration: {why}", file=sys.stderr)
    return bool(problems)


def cmd_check(args: argparse.Namespace) -> int:
    paths = Paths.from_env()
    found = configuration_problems(paths)
    for label, why in found:
        absent = "" if Path(label).exists() else "  (no such file: the built-in defaults)"
        print(f"{'ok   ' if why is None else 'ERROR'}  {_printable(label)}{absent}")
        for line in (why or "").splitlines():
            print(f"       {_printable(line)}")
    from segmentation_dagster.core.sources import mapping_path

    mapping_ok = dict(found).get(str(mapping_path(paths.landing_dir))) is None
    landed = _landed_problems(paths) if mapping_ok else []
    return 1 if any(why for _, why in found) or landed else 0


def _landed_problems(paths: Paths) -> list[str]:
    """The landed files the mapping cannot read (the newest of each kind, nothing loaded)."""
    from segmentation_dagster.core import ingest
    from segmentation_dagster.core.sources import load_mapping, mapping_path

    if not paths.landing_dir.is_dir():
        return []
    mapping = load_mapping(mapping_path(paths.landing_dir))
    problems, notes = ingest.check_landed(paths.landing_dir, mapping)
    n = ingest.CHECKED_FILES
    print(f"{'ok   ' if not problems else 'ERROR'}  {paths.landing_dir}  (the newest {n} files "
          "of each kind, read with the mapping; nothing is loaded)")  # fmt: skip
    for line in problems:
        print(f"       {_printable(line)}")
    for line in notes:
        print(f"NOTE   {_printable(line)}")
    return problems


def _printable(text: str) -> str:
    """A line as it may be printed: a landed file or column name cannot start a line of its
    own (a newline in a name) or move the cursor; what is not printable shows as '?'."""
    return "".join(c if c.isprintable() else "?" for c in text)


#: the run config of ``segmentation run --full-refresh``
FULL_REFRESH = {"dbt_models": {"config": {"full_refresh": True}}}


def builds_dbt_models(defs: dg.Definitions, job: str) -> bool:
    """Whether ``job`` (of ``defs``) has the step ``--full-refresh`` configures."""
    import dagster as dg

    try:
        return any(n.name == "dbt_models" for n in defs.resolve_job_def(job).graph.nodes)
    except dg.DagsterInvariantViolationError:  # not defined here (the Spark job on DuckDB)
        return False


def cmd_run(args: argparse.Namespace) -> int:
    paths = Paths.from_env()
    if _refuse_broken_configuration(paths):  # before anything is loaded, not after ingestion
        return 2
    with cli_instance(paths) as instance:
        from segmentation_dagster.definitions import defs
        from segmentation_dagster.runs import execute

        spark = settings.engine() == "spark"
        job = args.job or ("spark_segmentation_job" if spark else "segmentation_job")
        if job == "spark_segmentation_job" and not spark:
            print("spark_segmentation_job needs SEGMENTATION_ENGINE=spark", file=sys.stderr)
            return 2
        if args.full_refresh and not builds_dbt_models(defs, job):
            print(f"--full-refresh rebuilds dbt_models, which {job} does not run", file=sys.stderr)
            return 2
        if not _has_events(paths):  # after the arguments are known good: before any data
            if args.no_demo:
                print(f"no event files in {paths.landing_dir / 'events'}", file=sys.stderr)
                return 2
            print(f"no event files in {paths.landing_dir / 'events'}: generating the demo data set")
            cmd_demo(args)
        ops = FULL_REFRESH if args.full_refresh else {}
        run = execute(defs, job, instance, log_level=args.log_level, ops=ops)
        if not run.success:
            for step, message in run.failures:
                print(f"step {step} failed: {message}", file=sys.stderr)
            print(f"run {run.run_id} failed after {run.seconds:.1f}s", file=sys.stderr)
            return 1
        print(f"{job} run {run.run_id} succeeded in {run.seconds:.1f}s")
        if job == "spark_segmentation_job":
            print_spark_summary(paths)
        else:
            print_summary(paths)
    return 0


def print_spark_summary(paths: Paths) -> None:
    """The Spark engine's run: the champion and decision (the registry stays in DuckDB), and
    where the segments are."""
    from segmentation_dagster.core import registry, spark_loop
    from segmentation_dagster.core.warehouse import connect, one

    with connect(paths.duckdb_path) as con:
        n_events = one(con, "select count(*) from raw.events")[0]
        version, algorithm, k, n = one(
            con,
            "select version, algorithm, k, n_customers from segmentation.model_registry "
            "where status = 'champion'",
        )
        decision = registry.last_decision(con)
    schema = spark_loop.schema()
    print(f"\nloaded   {n_events:,} events (raw tables as Parquet in "
          f"{settings.spark_dir() / 'raw'})")  # fmt: skip
    print(f"model    champion v{version}: {algorithm}, {k} segments, fitted on {n:,} customers")
    print(f"         last decision: {decision}")
    print(f"segments Spark tables {schema}.customer_segments, "
          f"{schema}.customer_segment_history and {schema}.segment_migrations "
          f"(metastore in {settings.spark_dir()})")  # fmt: skip


def print_summary(paths: Paths) -> None:
    """What was loaded and which segments were found."""
    from segmentation_dagster.core import privacy, project, registry
    from segmentation_dagster.core.warehouse import connect, one

    with connect(paths.duckdb_path) as con:
        n_events, n_files = one(
            con, "select count(*), count(distinct _source_file) from raw.events"
        )
        n_customers, snapshot = one(
            con, "select count(*), max(snapshot_date) from main.customer_features"
        )
        quarantined = con.execute(
            "select kind, reason, count(*) from raw.quarantine group by all order by 3 desc"
        ).fetchall()
        rejected = con.execute(
            "select file_name, coalesce(rejected_error, error) from raw.load_manifest "
            "where status = 'rejected' or rejected_error is not null order by file_name"
        ).fetchall()
        n_seen = one(
            con,
            "select count(distinct customer_id) from raw.events where cast(event_ts as date) <= ?",
            [snapshot],
        )[0]
        version, algorithm, k, sil = one(
            con,
            "select version, algorithm, k, silhouette from segmentation.model_registry "
            "where status = 'champion'",
        )
        decision = registry.last_decision(con)
        profiles = con.execute(
            "select segment_id, segment_name, size, share, description, coalesce(playbook, '') "
            "from segmentation.segment_profiles left join segmentation.segment_playbooks "
            "using (segment_id) order by segment_id"
        ).fetchall()
    print(f"\nloaded   {n_events:,} events from {n_files} files")
    if rejected:
        name, why = rejected[0]
        print(f"         {len(rejected)} landing file(s) rejected, e.g. {why or name} "
              "(`segmentation audit` lists them)")  # fmt: skip
    for kind, reason, n in quarantined[:5]:
        print(f"         {n:,} {kind} rows quarantined: {reason}")
    if len(quarantined) > 5:
        print(f"         ... {len(quarantined) - 5} more reasons: `segmentation audit`")
    print(f"features {n_customers:,} customers as of {snapshot}")
    if n_seen > n_customers:
        active_days = project.load().as_dict()["features"]["active_days"]
        quiet = f"no event in the last {active_days} days (features.active_days)"
        print(f"         {n_seen - n_customers:,} more customers with events are out of scope: "
              f"{quiet}")  # fmt: skip
    print(f"model    champion v{version}: {algorithm}, {k} segments, silhouette {sil:.3f}")
    print(f"         last decision: {decision}\n")
    w = max([22, *(len(p[1] or "") for p in profiles)])
    print(f"  {'id':>3}  {'segment':<{w}} {'customers':>9}  {'share':>6}  {'playbook':<16}  "
          "profile")  # fmt: skip
    k = project.load().privacy.min_group_size
    small = privacy.small_segments({p[0]: p[2] for p in profiles}, k)
    for seg, name, size, share, desc, play in profiles:
        if seg in small:  # a small group's statistics stay in the warehouse
            print(f"  {seg:>3}  {name or '':<{w}} {'< ' + str(k):>9}  {'-':>6}  {play:<16}  "
                  "(suppressed: privacy.min_group_size)")  # fmt: skip
            continue
        print(f"  {seg:>3}  {name or '':<{w}} {size:>9,}  {share:>6.1%}  {play:<16}  {desc}")
    print(f"\nwarehouse: {paths.duckdb_path}")
    print(f"next: `{ui_command(paths)}` (Dagster UI on http://127.0.0.1:3000), "
          "`segmentation evaluate`")  # fmt: skip


def ui_command(paths: Paths) -> str:
    """How to open the UI on these runs: ``make ui`` for the Makefile's instance and data
    folder; otherwise ``segmentation ui`` itself with this shell's instance and folders
    (absolute, quoted), since the Makefile would replace another instance's dagster.yaml with
    the project's and splits a path at its spaces. Only folders and files are named (never a
    key): the shell's other SEGMENTATION_* settings apply as they are."""
    home = Path(os.environ.get("DAGSTER_HOME") or settings.REPO_ROOT / ".dagster_home").resolve()
    folders = {k: v for k, v in sorted(os.environ.items()) if k.startswith("SEGMENTATION_")
               and k.endswith(("_DIR", "_PATH", "_SOURCES", "_FILE"))}  # fmt: skip
    default = home == (settings.REPO_ROOT / ".dagster_home").resolve() and all(
        k == "SEGMENTATION_DATA_DIR" and paths.data_dir == (settings.REPO_ROOT / "data").resolve()
        for k in folders
    )
    if default:
        return "make ui"
    env = [f"DAGSTER_HOME={shlex.quote(str(home))}",
           *(f"{k}={shlex.quote(str(Path(v).resolve()))}" for k, v in folders.items())]  # fmt: skip
    segmentation = shlex.quote(str(Path(sys.executable).parent / "segmentation"))
    return f"cd {shlex.quote(str(settings.REPO_ROOT))} && {' '.join(env)} {segmentation} ui"


def cmd_evaluate(args: argparse.Namespace) -> int:
    import polars as pl

    from segmentation_dagster.core import drift, evaluation, privacy, project, registry, segments
    from segmentation_dagster.core.warehouse import connect
    from segmentation_dagster.demo.evaluate import evaluate_segments

    paths = Paths.from_env()
    with connect(paths.duckdb_path) as con:
        version, champion = registry.require_champion(con)
        features = segments.read_features(con).sort("customer_id")
        reference = pl.read_parquet(registry.fit_reference_path(con, version))
        names = registry.active_names(con)
        published = con.sql(
            "select customer_id, segment_id, snapshot_date from segmentation.customer_segments"
        ).pl()
    snapshot = features["snapshot_date"].max()
    print(f"champion v{version}: {champion.algorithm}, {champion.k} segments; "
          f"{features.height:,} customers as of {snapshot}\n")  # fmt: skip
    quality = drift.model_quality(champion, reference, features)
    print(f"separation  silhouette {quality.silhouette_now:.3f} today, "
          f"{quality.silhouette_at_fit:.3f} at fit; mean distance to the centroid "
          f"x{quality.distance_ratio:.2f} of fit")  # fmt: skip
    # customers and share: the published assignment (as `segmentation run` prints it, after
    # the hysteresis that keeps a customer's segment); distance and confidence: the model's
    # own reading of the customers whose nearest centroid each segment is
    members = published.group_by("segment_id").agg(customers=pl.len())
    summary = (
        evaluation.segment_summary(champion, features)
        .drop("customers", "share")
        .join(members, on="segment_id", how="full", coalesce=True)
        .with_columns(share=pl.col("customers").fill_null(0) / max(published.height, 1))
        .sort("segment_id")
    )
    k = project.load().privacy.min_group_size
    counts = summary.select("segment_id", pl.col("customers").fill_null(0))
    small = privacy.small_groups({}, counts, k)  # the total is in the header: see small_groups
    w = max([22, *(len(n) for n in names.values())])
    print(f"\n  {'id':>3}  {'segment':<{w}} {'customers':>9}  {'share':>6}  "
          f"{'distance':>8}  {'confidence':>10}")  # fmt: skip
    for seg, dist, conf, n, share in summary.select(
        "segment_id", "mean_distance", "mean_confidence", "customers", "share"
    ).iter_rows():
        if seg in small:  # a small group's statistics stay in the warehouse
            print(f"  {seg:>3}  {names.get(seg, ''):<{w}} {'< ' + str(k):>9}  {'-':>6}  "
                  f"{'-':>8}  {'-':>10}  (suppressed: privacy.min_group_size)")  # fmt: skip
            continue
        print(f"  {seg:>3}  {names.get(seg, ''):<{w}} {n:>9,}  {share:>6.1%}  "
              f"{_number(dist):>8}  {_number(conf):>10}")  # fmt: skip
    if not args.no_refit:
        st = evaluation.refit_stability(features, champion, project.load().selection)
        moved = f"new ids {list(st.alignment.new)}, retired {list(st.alignment.retired)}"
        kept = f"{st.unchanged_share:.1%} keep their segment id"
        print(f"\nstability   a refit (other seed, shuffled rows) agrees with the champion: "
              f"ARI {st.ari:.3f}; {kept}; {moved}")  # fmt: skip
    truth = paths.truth_dir / "personas.parquet"
    if not truth.exists():
        print("\ntruth       none (only data made by `segmentation demo` has true personas)")
        return 0
    ev = evaluate_segments(published, truth, published["snapshot_date"].max())
    print(f"\ntruth       adjusted Rand index vs the demo's personas: {ev.ari:.3f} "
          f"({ev.n_customers:,} customers, {ev.n_segments} segments, "
          f"{ev.n_personas} personas)")  # fmt: skip
    if args.verbose:
        with pl.Config(tbl_rows=50, tbl_cols=30):
            print(ev.crosstab)
    return 0


def _number(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _table(headers: list[str], rows: list[tuple]) -> str:
    cells = [[("" if v is None else str(v)) for v in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    body = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(["  " + line] + (["  " + b for b in body] or ["  (none)"]))


def cmd_audit(args: argparse.Namespace) -> int:
    from segmentation_dagster.core.audit import audit_summary
    from segmentation_dagster.core.warehouse import connect

    since = dt.datetime.fromisoformat(args.since)
    until = dt.datetime.fromisoformat(args.until) if args.until else dt.datetime.now()
    if len(args.until or "") == 10:
        until += dt.timedelta(days=1)  # a date means the whole day
    with connect(Paths.from_env().duckdb_path) as con:
        s = audit_summary(con, since, until)
    print(f"data-quality audit {since:%Y-%m-%d %H:%M} .. {until:%Y-%m-%d %H:%M}\n")
    print("pass rate per suite")
    print(_table(["source", "suite", "checks", "passed", "pass %"], s.pass_rates))
    print("\nfailed checks")
    print(_table(["at", "asset", "check", "severity", "observed", "unexpected"], s.failures))
    print("\nquarantined rows")
    print(_table(["kind", "reason", "rows", "files"], s.quarantine))
    print("\nrejected files")
    print(_table(["kind", "file", "error"], s.rejected_files))
    print("\nignored landing entries")
    print(_table(["kind", "entry", "reason"], s.ignored_entries))
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from segmentation_dagster.core import project, starter
    from segmentation_dagster.core.sources import mapping_path

    paths = Paths.from_env()
    found = starter.inspect(paths.landing_dir)
    if "events" not in found.kinds:
        print(f"no event files in {paths.landing_dir / 'events'}: put a few there first",
              file=sys.stderr)  # fmt: skip
        return 1
    span = found.span_days
    print(f"looked at {paths.landing_dir}: "
          + ", ".join(f"{k} {v.files} file(s)" for k, v in found.kinds.items())
          + (f"; {found.first_date} .. {found.last_date} ({span} days)" if span else "")
          + "; event types " + (", ".join(found.event_types)
                                if found.event_types else "- (no event type column)"))  # fmt: skip
    for path, text in (
        (mapping_path(paths.landing_dir), starter.sources_yml(found)),
        (project.project_file(), starter.project_yml(found)),
    ):
        if path.exists():
            print(f"\n{path} exists, left as it is; what init would write:\n\n{text}")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}: read it, fix what it guessed")
    early = starter.before_limit(found, project.load().limits.limits())  # the file in effect
    if early:
        print(f"\nWARNING: {early}")
    print(f"\nboth apply to every run that reads the configuration folder "
          f"{settings.config_dir()} (SEGMENTATION_CONFIG_DIR), whatever its data folder; "
          "next: `segmentation check`")  # fmt: skip
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    """The Dagster UI (``dagster dev``) on this shell's instance and folders, with the report
    folder served beside it, so the reports' links in the UI open (what ``make ui`` runs).
    Stops both on Ctrl-C."""
    import subprocess
    import threading

    from segmentation_dagster.core import reports

    folder = Paths.from_env().report_dir
    folder.mkdir(parents=True, exist_ok=True)
    try:
        server = reports.serve(folder, port=args.reports_port)
    except OSError as e:
        print(f"cannot serve the reports on 127.0.0.1:{args.reports_port}: {e} (another UI "
              "running? --reports-port picks another port)", file=sys.stderr)  # fmt: skip
        return 2
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(os.environ)
    if args.reports_port != reports.DEFAULT_PORT and reports.URL_ENV not in env:
        # the runs this UI launches link their reports to where they are served
        env[reports.URL_ENV] = f"http://127.0.0.1:{args.reports_port}"
    print(f"reports: {folder} on http://127.0.0.1:{args.reports_port}; Dagster UI on "
          f"http://127.0.0.1:{args.port} (Ctrl-C stops both)", flush=True)  # fmt: skip
    dagster = Path(sys.executable).parent / "dagster"
    cmd = [str(dagster), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(args.port)]
    try:
        return subprocess.call(cmd, cwd=settings.REPO_ROOT, env=env)
    except KeyboardInterrupt:
        return 0
    finally:
        server.shutdown()
        server.server_close()


def cmd_serve_reports(args: argparse.Namespace) -> int:
    from segmentation_dagster.core import reports

    folder = Paths.from_env().report_dir
    folder.mkdir(parents=True, exist_ok=True)
    server = reports.serve(folder, port=args.port)
    print(f"serving {folder} on http://127.0.0.1:{args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    from segmentation_dagster.core import privacy, text, value
    from segmentation_dagster.core.warehouse import connect

    paths = Paths.from_env()
    dirs = [paths.model_dir, paths.export_dir]
    if settings.engine() == "spark":  # all or nothing: check Spark can run before erasing
        from segmentation_dagster.core import spark as engine

        why_not = engine.available()
        if why_not:
            print(f"SEGMENTATION_ENGINE=spark: cannot erase the Spark tables: {why_not}",
                  file=sys.stderr)  # fmt: skip
            return 2
    if paths.duckdb_path.exists():
        with connect(paths.duckdb_path) as con:
            done = privacy.forget(con, paths.data_dir, dirs, args.customer_ids)
            if settings.engine() == "spark":
                done.rows.update(_forget_on_spark(con, args.customer_ids))
    else:  # nothing loaded yet: only keep them out of the first load
        done = privacy.forget_files(paths.data_dir, dirs, args.customer_ids)
    # learnt from their data: fitted again without them on the next run (a killed save's temp
    # file went with the model folder's other leftovers, in privacy.forget)
    for fitted in (text.MODELS_FILE, value.MODELS_FILE):
        path = paths.model_dir / fitted
        if path.is_file() and not path.is_symlink():
            path.unlink()
            done.files[f"{path} (fitted on their data: deleted, fitted again on the next run)"] = 1
    n_rows, n_files = sum(done.rows.values()), len(done.files)
    print(f"forgot {len(set(args.customer_ids))} customer(s): {n_rows:,} warehouse rows in "
          f"{sum(1 for n in done.rows.values() if n)} table(s), rows in {n_files} file(s); "
          f"later loads drop their rows ({privacy.forgotten_file(paths.data_dir)})")  # fmt: skip
    for name, n in sorted({**done.rows, **done.files}.items()):
        if n:
            print(f"  {n:>8,}  {name}")
    return 0


def _forget_on_spark(con: object, customer_ids: list[str]) -> dict[str, int]:
    """The Spark engine's copies: the raw Parquet rewritten from the erased warehouse, and
    every Spark table rewritten without the customers (core.spark_loop.forget)."""
    from segmentation_dagster.core import spark as engine
    from segmentation_dagster.core import spark_loop

    folder = settings.spark_dir()
    rewritten = [t for t, done in engine.export_raw(con, folder / "raw").items() if done]
    if rewritten:
        print(f"rewrote the Spark engine's raw Parquet from the erased warehouse: "
              f"{', '.join(rewritten)} ({folder / 'raw'})")  # fmt: skip
    spark = engine.configured_session()
    try:
        engine.register_raw(spark, folder / "raw")
        return {f"spark:{t}": n for t, n in spark_loop.forget(spark, customer_ids).items()}
    finally:
        spark.stop()


def cmd_pseudonym(args: argparse.Namespace) -> int:
    from segmentation_dagster.core import privacy

    secret = privacy.key(Paths.from_env().data_dir)
    for cid, p in zip(
        args.customer_ids, privacy.pseudonyms(args.customer_ids, secret), strict=True
    ):
        print(f"{cid}\t{p}")
    return 0


def cmd_daily(args: argparse.Namespace) -> int:
    from segmentation_dagster import replay as rp
    from segmentation_dagster.definitions import defs

    paths = Paths.from_env()
    if _refuse_broken_configuration(paths):
        return 2
    with cli_instance(paths) as instance:
        try:
            rp.operate(paths, instance, defs, lambda d: print(rp.format_day(d), flush=True),
                       tags={"segmentation/trigger": "daily"})  # fmt: skip
        except rp.ReplayError as e:
            print(f"daily: {e}", file=sys.stderr)
            return 1
        print(day_load_line(rp.latest_metadata(instance, "raw_events")))
    print_summary(paths)
    return 0


def day_load_line(meta: dict[str, object]) -> str:
    """What this run's ingestion of events did (the summary below counts the warehouse)."""
    if not meta:
        return "this run: no events step"
    n = {k: int(meta.get(k) or 0) for k in ("files_loaded", "files_replaced", "files_rejected",
                                            "rows_inserted", "rows_quarantined")}  # fmt: skip
    return (
        f"this run: {n['files_loaded']} event file(s) loaded, {n['files_replaced']} "
        f"replaced, {n['files_rejected']} rejected; {n['rows_inserted']:,} rows inserted, "
        f"{n['rows_quarantined']:,} quarantined (`segmentation audit` for the reasons)"
    )


def cmd_replay(args: argparse.Namespace) -> int:
    from segmentation_dagster import replay as rp
    from segmentation_dagster.definitions import defs

    paths = Paths.from_env()
    cfg = simulate.ReplayConfig(
        scenario=args.scenario,
        n_customers=args.customers,
        history_days=args.history_days,
        days=args.days,
        shift_after=args.shift_after,
        seed=args.seed,
        start_date=demo_start_date(
            args.start_date, args.history_days + args.days, simulate.ReplayConfig.start_date
        ),
    )
    shift = cfg.start_date + dt.timedelta(days=cfg.history_days + cfg.shift_after)
    print(
        f"replay: {cfg.n_customers:,} customers, first fit on {cfg.history_days} days of history, "
        f"then {cfg.days} daily checks; scenario {cfg.scenario}"
        + (f" from {shift}" if cfg.scenario != "none" else "")
        + f"\ndata: {paths.data_dir}\n"
    )
    with cli_instance(paths) as instance:
        try:
            days = rp.replay(
                paths, cfg, instance, defs, lambda d: print(rp.format_day(d), flush=True)
            )
        except rp.ReplayError as e:
            print(f"replay stopped: {e}", file=sys.stderr)
            return 1
    triggers = [d for d in days if "resegmentation_job" in d.runs]
    print(f"\n{len(days) - 1} daily checks, {len(triggers)} re-segmentation(s)", end="")
    if triggers and cfg.scenario != "none":
        checks = sum(1 for d in days[1:] if shift <= d.snapshot_date <= triggers[0].snapshot_date)
        print(f"; the first came {checks} check(s) after the shift on {shift}", end="")
    per_day = [d.seconds for d in days[1:]]
    if per_day:
        print(f"; {sum(per_day) / len(per_day):.1f} s per simulated day", end="")
    print()
    print_summary(paths)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segmentation", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def demo_args(p: argparse.ArgumentParser) -> None:
        d = simulate.DemoConfig()
        p.add_argument("--customers", type=int, default=d.n_customers)
        p.add_argument("--days", type=int, default=d.days)
        p.add_argument("--start-date", default=None,
                       help=f"first day (default {d.start_date}, or earlier so that the period "
                            "ends by yesterday)")  # fmt: skip
        p.add_argument("--seed", type=int, default=d.seed)
        p.add_argument("--scenario", choices=simulate.SCENARIOS, default=d.scenario)
        p.add_argument("--shift-day", type=int, default=d.shift_day)
        p.add_argument("--purchases-only", action="store_true")
        p.add_argument("--format", choices=("parquet", "csv"), default=d.file_format)
        p.add_argument("--activity-scale", type=float, default=d.activity_scale,
                       help="multiplies visit frequency (events grow with it)")  # fmt: skip
        p.add_argument("--stream", action="store_true",
                       help="write events day by day (memory: one day), for millions of "
                            "customers")  # fmt: skip

    p_demo = sub.add_parser("demo", help="generate the demo data set into the landing folder")
    demo_args(p_demo)
    p_demo.set_defaults(func=cmd_demo)

    p_run = sub.add_parser("run", help="run the main job (demo data first if nothing landed)")
    demo_args(p_run)
    p_run.add_argument("--no-demo", action="store_true", help="fail instead of generating")
    p_run.add_argument(
        "--job",
        choices=(
            "segmentation_job",
            "daily_refresh_job",
            "resegmentation_job",
            "spark_segmentation_job",
        ),  # fmt: skip
        default=None,
        help="the job to run (default: everything; spark_segmentation_job with "
        "SEGMENTATION_ENGINE=spark)",
    )
    p_run.add_argument(
        "--full-refresh",
        action="store_true",
        help="rebuild the behaviour state from every event (needed once after changing "
        "half_life_days, change_windows_days, change_alpha or session_gap_minutes)",
    )
    p_run.add_argument("--log-level", default="INFO", help="Dagster console log level")
    p_run.set_defaults(func=cmd_run)

    p_eval = sub.add_parser(
        "evaluate",
        help="separation, refit stability and per-segment summary; ARI vs the "
        "demo's personas when they exist",
    )
    p_eval.add_argument("-v", "--verbose", action="store_true", help="print the truth crosstab")
    p_eval.add_argument(
        "--no-refit", action="store_true", help="skip the stability refit (a full model fit)"
    )
    p_eval.set_defaults(func=cmd_evaluate)

    p_audit = sub.add_parser("audit", help="validations, quarantine and rejected files")
    week_ago = (dt.date.today() - dt.timedelta(days=7)).isoformat()
    p_audit.add_argument("--since", default=week_ago, help="date or timestamp (default: -7 days)")
    p_audit.add_argument("--until", default=None, help="date or timestamp (default: now)")
    p_audit.set_defaults(func=cmd_audit)

    init_help = "write a starter sources.yml and segmentation.yml from your landed files"
    p_init = sub.add_parser(
        "init",
        help=init_help,
        description=f"{init_help}: a sample of each kind's files is read (column names, types, "
        "CSV dialect, timestamp formats, event types, date span) and a commented guess is "
        "written to the configuration folder; files that exist are left as they are and what "
        "init would write is printed instead.",
    )
    p_init.set_defaults(func=cmd_init)

    p_check = sub.add_parser(
        "check", help="read every configuration file and say what is wrong (nothing runs)"
    )
    p_check.set_defaults(func=cmd_check)

    daily_help = (
        "one day of operation on your own landing folder: the first champion, or "
        "the daily refresh, the drift sensor and the re-segmentation it asks for"
    )
    p_daily = sub.add_parser("daily", help=daily_help, description=daily_help)
    p_daily.set_defaults(func=cmd_daily)

    d = simulate.ReplayConfig()
    p_forget = sub.add_parser(
        "forget", help="erase customers everywhere and keep them out of later loads"
    )
    p_forget.add_argument("customer_ids", nargs="+", metavar="CUSTOMER_ID")
    p_forget.set_defaults(func=cmd_forget)
    p_pseudo = sub.add_parser("pseudonym", help="the exports' pseudonym of customer ids")
    p_pseudo.add_argument("customer_ids", nargs="+", metavar="CUSTOMER_ID")
    p_pseudo.set_defaults(func=cmd_pseudonym)
    p_ui = sub.add_parser(
        "ui", help="the Dagster UI on this shell's instance and folders, reports served beside"
    )
    p_ui.add_argument("--port", type=int, default=3000, help="the Dagster UI's (3000)")
    p_ui.add_argument("--reports-port", type=int, default=DEFAULT_PORT,
                      help=f"the reports' ({DEFAULT_PORT}; another also becomes the report "
                      "links of the runs this UI launches, unless SEGMENTATION_REPORT_URL is "
                      "set)")  # fmt: skip
    p_ui.set_defaults(func=cmd_ui)
    p_serve = sub.add_parser(
        "serve-reports", help="serve the report folder on localhost (`segmentation ui` does)"
    )
    p_serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    p_serve.set_defaults(func=cmd_serve_reports)

    p_replay = sub.add_parser(
        "replay", help="day-by-day operation over a simulated period: drift -> re-segmentation"
    )
    p_replay.add_argument("--scenario", choices=simulate.SCENARIOS, default=d.scenario)
    p_replay.add_argument("--customers", type=int, default=d.n_customers)
    p_replay.add_argument("--history-days", type=int, default=d.history_days)
    p_replay.add_argument("--days", type=int, default=d.days, help="daily checks to replay")
    p_replay.add_argument(
        "--shift-after", type=int, default=d.shift_after, help="days into the replay"
    )
    p_replay.add_argument("--seed", type=int, default=d.seed)
    p_replay.add_argument("--start-date", default=None,
                          help=f"first day (default {d.start_date}, or earlier so that the "
                               "period ends by yesterday)")  # fmt: skip
    p_replay.set_defaults(func=cmd_replay)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
