"""dbt in the run's process, as the dbt step runs it: dbt's programmatic ``dbtRunner`` for the
models selected in the step, its node results turned into Dagster events by dagster-dbt.

dagster-dbt's own ``DbtCliResource.cli`` starts dbt as a subprocess, which re-imports dbt and
sets up a second adapter on every run. Running dbt here instead relies on dagster-dbt and dbt
internals, all of them in this module: ``dagster_dbt.asset_utils`` (the selection arguments
for the step's assets), ``dagster_dbt.core.dbt_cli_event.DbtCoreCliEventMessage`` (which
events carry a node result, and their Dagster events), ``dbt_common``'s ``msg_to_dict`` (a
callback's event as a line of dbt's JSON log) and dbt-duckdb's environment (closed at the end).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource
from dagster_dbt.asset_utils import get_updated_cli_invocation_params_for_context
from dagster_dbt.core.dbt_cli_event import DbtCoreCliEventMessage
from dagster_dbt.errors import DagsterDbtCliRuntimeError

from segmentation_dagster.core.warehouse import close_dbt_duckdb


def run(
    context: dg.AssetExecutionContext,
    dbt: DbtCliResource,
    args: list[str],
    target_path: Path,
    translator: DagsterDbtTranslator,
    row_counts: Callable[[list[tuple[str, str]]], dict[tuple[str, str], int]] | None = None,
) -> Iterator[Any]:
    """Run dbt ``args`` in this process for the assets selected in ``context``; yield the
    Dagster events of every node result, then raise (naming the failed nodes) if dbt failed.
    ``row_counts`` (schema, table) -> rows, when given, adds ``dagster/row_count`` to the
    materialisation of every table dbt built (not views: counting one runs its query).

    dbt prints its usual log to stdout (the step's compute log) and writes ``dbt.log`` into
    ``target_path``, which also keeps the partial-parse cache between runs."""
    from dbt.cli.main import dbtRunner  # imported by the step that runs dbt, not at load
    from dbt_common.events.functions import msg_to_dict

    params = get_updated_cli_invocation_params_for_context(
        context=context, manifest={}, dagster_dbt_translator=translator
    )
    # the project and its profiles are the ones the assets were defined with, never the
    # resource's run config: a profiles.yml can load Python (dbt-duckdb plugins)
    project = params.dbt_project
    if project is None:
        raise ValueError("dbt assets must be defined with their DbtProject")
    argv = [*args, "--project-dir", str(project.project_dir), "--target-path", str(target_path),
            "--log-path", str(target_path), "--no-send-anonymous-usage-stats",
            "--profiles-dir", str(project.profiles_dir or project.project_dir),
            *params.selection_args]  # fmt: skip
    if params.indirect_selection:
        argv += ["--indirect-selection", params.indirect_selection]
    results: list[DbtCoreCliEventMessage] = []

    def keep(msg: Any) -> None:
        # the same dict as a line of dbt's JSON log; dagster-dbt decides which carry a
        # node's result
        event = DbtCoreCliEventMessage(msg_to_dict(msg), {})
        if event.is_result_event:
            results.append(event)

    cached = _parse_cache(target_path, args, context.log.warning)
    try:
        outcome = dbtRunner(callbacks=[keep]).invoke(argv)
    finally:
        close_dbt_duckdb()  # before the step lets go of the warehouse lock
        cached()
    tables = {}
    for r in results:
        info = r.raw_event["data"]["node_info"]
        rel = info.get("node_relation") or {}
        built = info.get("node_status") == "success" and rel.get("alias")
        if built and info.get("materialized") in ("table", "incremental"):
            tables[info["unique_id"]] = (rel["schema"], rel["alias"])
    counts = row_counts(sorted(set(tables.values()))) if row_counts and tables else {}
    for event in results:
        relation = tables.get(event.raw_event["data"]["node_info"]["unique_id"])
        for out in event.to_default_asset_events(
            manifest=params.manifest,
            dagster_dbt_translator=params.dagster_dbt_translator,
            context=context,
            target_path=target_path,
            project=params.dbt_project,
        ):
            if isinstance(out, dg.Output) and relation in counts:
                out = out.with_metadata({**out.metadata, "dagster/row_count": counts[relation]})
            yield out
    if not outcome.success:
        failed = _failures(outcome.result)
        raise DagsterDbtCliRuntimeError(
            description=f"dbt {' '.join(args[:1])} failed"
            + (f": {outcome.exception}" if outcome.exception else "")
            + ("; failed nodes: " + "; ".join(failed) if failed else "")
            + f". See {target_path / 'dbt.log'}"
        )


def _failures(result: Any, limit: int = 600) -> list[str]:
    """Each node dbt did not build or pass, with its status and what dbt said about it on one
    line (a model's runtime error, a test's failing count): the step's error then says why,
    not only where, and the reader need not open dbt.log to learn that, e.g., the state asks
    for a full refresh."""
    out = []
    for r in getattr(result, "results", None) or []:
        status = str(getattr(r, "status", ""))
        if status in ("success", "pass", "warn", "no-op"):
            continue
        message = getattr(r, "message", None) or ""
        text = " ".join(line.strip() for line in str(message).splitlines() if line.strip())
        said = f": {text[:limit]}" if status in ("error", "fail") and text else ""
        node = getattr(getattr(r, "node", None), "unique_id", "(a node dbt did not name)")
        out.append(f"{node} ({status}){said}")
    return out


#: dbt's partial-parse cache in its target folder, and how many sets of vars keep theirs
PARSE_CACHE = "partial_parse.msgpack"
KEEP_PARSE_CACHES = 4


def _parse_cache(
    target_path: Path, args: list[str], warn: Callable[[str], None]
) -> Callable[[], None]:
    """dbt re-parses the whole project when its vars differ from the last invocation's, and the
    daily refresh and the full loop alternate two sets (the key tests' scope differs): keep one
    partial-parse cache per set of vars in ``target_path/parse_cache``. Puts this set's cache
    in place now (dbt still checks it: a stale one is re-parsed as before); the returned call
    keeps the cache dbt wrote, if it wrote one. Only regular files are read and written, each
    write goes through a new temporary file and a rename (a killed run leaves a whole cache or
    none, and a leftover temporary file is swept), and any failure of the cache is a warning:
    it only costs a full parse, it never fails the step or hides dbt's own error."""
    vars_ = args[args.index("--vars") + 1] if "--vars" in args else ""
    folder = target_path / "parse_cache"
    mine = folder / f"{hashlib.sha256(vars_.encode()).hexdigest()[:16]}.msgpack"
    live = target_path / PARSE_CACHE

    def regular(path: Path) -> os.stat_result | None:
        try:
            st = path.lstat()
        except OSError:
            return None
        return st if stat.S_ISREG(st.st_mode) else None

    try:
        if not folder.is_symlink() and regular(mine):
            _copy(mine, live)
    except OSError as e:
        warn(f"dbt's parse cache for these vars was not used (a full parse instead): {e}")
    before = regular(live)  # what dbt finds: kept afterwards only if dbt rewrote it

    def keep() -> None:
        after = regular(live)
        if after is None or (before and (after.st_mtime_ns, after.st_size)
                             == (before.st_mtime_ns, before.st_size)):  # fmt: skip
            return  # dbt wrote no cache (it failed first, or had nothing to parse)
        try:
            if folder.is_symlink():
                raise OSError(f"{folder} is a link")
            folder.mkdir(exist_ok=True)
            for leftover in folder.glob(".*.tmp"):
                leftover.unlink(missing_ok=True)  # a killed copy's; unlink never follows a link
            _copy(live, mine)
            kept = [(st.st_mtime_ns, p) for p in folder.glob("*.msgpack") if (st := regular(p))]
            for _, stale in sorted(kept, reverse=True)[KEEP_PARSE_CACHES:]:
                stale.unlink(missing_ok=True)
        except OSError as e:
            warn(f"dbt's parse cache for these vars was not kept (the next run may parse all): {e}")

    return keep


def _copy(source: Path, target: Path) -> None:
    """``source`` to ``target`` through a new temporary file beside it (never an existing one,
    never through a link) and a rename."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out, source.open("rb") as src:
            shutil.copyfileobj(src, out)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
