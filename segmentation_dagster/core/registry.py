"""Model registry, champion/challenger decisions and the segment catalog, in DuckDB.

Files first, rows second: a model (joblib) and the feature snapshot it was fitted on (Parquet,
the drift reference) are written to temporary names and renamed into place, and only then
registered. A crash in between leaves an orphan file, never a row that points at nothing.

Tables (schema ``segmentation``):

- ``model_registry``: one row per fitted model; ``status`` is champion (exactly one),
  challenger (fitted, not promoted) or retired (a former champion).
- ``model_decisions``: every champion/challenger comparison and its reason.
- ``segments``: the catalog of segment ids: name, description, rule, the model versions that
  used it, and when it was retired.
- ``segment_transitions``: per re-segmentation, what became of each segment (MONIC: kept,
  split, merged, new, retired), with the customers involved and whether it was promoted.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import duckdb
import joblib
import polars as pl

from segmentation_dagster.core.clustering import FittedModel
from segmentation_dagster.core.lifecycle import Alignment, Decision
from segmentation_dagster.core.testhooks import pause_point
from segmentation_dagster.core.warehouse import one, transaction

SCHEMA = "segmentation"
REGISTRY = f"{SCHEMA}.model_registry"
DECISIONS = f"{SCHEMA}.model_decisions"
CATALOG = f"{SCHEMA}.segments"
TRANSITIONS = f"{SCHEMA}.segment_transitions"


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create the registry tables if missing."""
    con.execute(f"create schema if not exists {SCHEMA}")
    con.execute(
        f"""create table if not exists {REGISTRY} (
            version integer primary key,
            fitted_at timestamp not null,
            snapshot_date date,
            n_customers bigint not null,
            algorithm varchar not null,
            k integer not null,
            silhouette double,
            features_used varchar[] not null,
            features_dropped json,
            candidates json,
            selection_reason varchar,
            segment_ids integer[] not null,
            path varchar not null,
            reference_path varchar not null,
            status varchar not null
        )"""
    )
    con.execute(
        f"""create table if not exists {DECISIONS} (
            decided_at timestamp not null,
            challenger_version integer not null,
            champion_version integer,
            promoted boolean not null,
            reason varchar not null,
            challenger_silhouette double,
            champion_silhouette double,
            alignment json
        )"""
    )
    con.execute(
        f"""create table if not exists {TRANSITIONS} (
            decided_at timestamp not null,
            challenger_version integer not null,
            champion_version integer,
            promoted boolean not null,
            transition varchar not null,
            from_segments integer[] not null,
            to_segments integer[] not null,
            customers bigint not null,
            overlap double,
            member_shift double
        )"""
    )
    con.execute(
        f"""create table if not exists {CATALOG} (
            segment_id integer primary key,
            name varchar,
            description varchar,
            rule varchar,
            first_version integer not null,
            last_version integer not null,
            retired_version integer,
            status varchar not null
        )"""
    )


def _atomic(path: Path, write) -> None:  # noqa: ANN001 - a callable taking the temp path
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)  # never write through a link left in the folder
    write(tmp)
    tmp.replace(path)


def save_model(
    con: duckdb.DuckDBPyConnection,
    model: FittedModel,
    model_dir: Path,
    snapshot_date: dt.date | None,
    reference: pl.DataFrame,
) -> int:
    """Persist ``model`` and its reference snapshot, register it as a challenger."""
    ensure_tables(con)
    version = int(one(con, f"select coalesce(max(version), 0) + 1 from {REGISTRY}")[0])
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / f"segmentation_model_v{version:04d}.joblib"
    ref_path = model_dir / f"reference_v{version:04d}.parquet"
    _atomic(path, lambda tmp: joblib.dump(model, tmp))
    _atomic(ref_path, lambda tmp: reference.write_parquet(tmp))
    con.execute(
        f"insert into {REGISTRY} values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'challenger')",
        [
            version,
            dt.datetime.now(),
            snapshot_date,
            model.n_train,
            model.algorithm,
            model.k,
            model.silhouette,
            list(model.plan.used),
            json.dumps(model.plan.dropped),
            json.dumps([c.as_row() for c in model.candidates]),
            model.selection_reason,
            [int(i) for i in model.segment_ids],
            str(path),
            str(ref_path),
        ],
    )
    return version


def revalidate(
    con: duckdb.DuckDBPyConnection,
    version: int,
    model_dir: Path,
    snapshot_date: dt.date,
    reference: pl.DataFrame,
) -> Path:
    """Make ``reference`` (today's features) model ``version``'s drift reference: a
    re-segmentation kept the champion, so it was validated on these customers. The earlier
    reference file stays on disk; the registry points at the new one."""
    path = model_dir / f"reference_v{version:04d}_{snapshot_date}.parquet"
    model_dir.mkdir(parents=True, exist_ok=True)
    _atomic(path, lambda tmp: reference.write_parquet(tmp))
    con.execute(f"update {REGISTRY} set reference_path = ? where version = ?", [str(path), version])
    return path


def champion(con: duckdb.DuckDBPyConnection) -> tuple[int, FittedModel] | None:
    """The current champion and its version, or None before the first promotion."""
    ensure_tables(con)
    row = one(con, f"select version, path from {REGISTRY} where status = 'champion'")
    return None if row is None else (int(row[0]), joblib.load(row[1]))


def require_champion(con: duckdb.DuckDBPyConnection) -> tuple[int, FittedModel]:
    found = champion(con)
    if found is None:
        raise LookupError("no champion model yet: materialise segmentation_model first")
    return found


def next_segment_id(con: duckdb.DuckDBPyConnection) -> int:
    """The next never-used segment id (ids are never reused, even after retirement)."""
    ensure_tables(con)
    return int(one(con, f"select coalesce(max(segment_id), 0) + 1 from {CATALOG}")[0])


def active_names(con: duckdb.DuckDBPyConnection) -> dict[int, str]:
    """Names of the segments that are currently active."""
    ensure_tables(con)
    rows = con.execute(f"select segment_id, name from {CATALOG} where status = 'active'").fetchall()
    return {int(r[0]): r[1] for r in rows}


def labels(con: duckdb.DuckDBPyConnection) -> dict[int, str]:
    """ "name (id)" of every segment id the catalog has known (a retired one keeps its name)."""
    ensure_tables(con)
    rows = con.execute(f"select segment_id, name from {CATALOG}").fetchall()
    return {int(i): f"{name or 'segment'} ({i})" for i, name in rows}


def last_decision(con: duckdb.DuckDBPyConnection) -> str:
    """The reason given for the most recent champion/challenger decision ("" if none)."""
    ensure_tables(con)
    row = one(con, f"select reason from {DECISIONS} order by decided_at desc limit 1")
    return row[0] if row else ""


def record_decision(
    con: duckdb.DuckDBPyConnection,
    challenger_version: int,
    champion_version: int | None,
    decision: Decision,
    alignment: Alignment | None,
    names: dict[int, str],
) -> None:
    """Record the comparison; on promotion swap the champion and update the catalog.

    One transaction: either the decision, the new champion and the catalog all change, or
    nothing does. ``names`` gives names for segment ids that are new with this model.
    """
    ensure_tables(con)
    decided_at = dt.datetime.now()
    with transaction(con):
        for t in alignment.transitions if alignment else ():
            con.execute(
                f"insert into {TRANSITIONS} values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [decided_at, challenger_version, champion_version, decision.promote, t.kind,
                 list(t.old_ids), list(t.new_ids), t.customers, t.overlap, t.shift],
            )  # fmt: skip
        con.execute(
            f"insert into {DECISIONS} values (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                decided_at,
                challenger_version,
                champion_version,
                decision.promote,
                decision.reason,
                decision.challenger_silhouette,
                decision.champion_silhouette,
                json.dumps(alignment.as_rows() if alignment else None),
            ],
        )
        if decision.promote:
            con.execute(f"update {REGISTRY} set status = 'retired' where status = 'champion'")
            con.execute(
                f"update {REGISTRY} set status = 'champion' where version = ?", [challenger_version]
            )
            ids = one(con, f"select segment_ids from {REGISTRY} where version = ?",
                      [challenger_version])[0]  # fmt: skip
            con.execute(
                f"update {CATALOG} set status = 'retired', retired_version = ? "
                f"where status = 'active' and segment_id not in (select unnest(?))",
                [challenger_version, ids],
            )
            for sid in ids:
                con.execute(
                    f"""insert into {CATALOG} values (?, ?, null, null, ?, ?, null, 'active')
                        on conflict (segment_id) do update set last_version = excluded.last_version,
                        status = 'active', retired_version = null""",
                    [sid, names.get(sid), challenger_version, challenger_version],
                )
        pause_point("registry.before_commit")


def update_catalog_text(
    con: duckdb.DuckDBPyConnection, descriptions: dict[int, str], rules: dict[int, str]
) -> None:
    """Refresh each active segment's one-line description and surrogate rule."""
    for sid in set(descriptions) | set(rules):
        con.execute(
            f"update {CATALOG} set description = ?, rule = ? where segment_id = ?",
            [descriptions.get(sid), rules.get(sid), sid],
        )


def reference_path(con: duckdb.DuckDBPyConnection, version: int) -> Path:
    """The feature snapshot model ``version`` was fitted on (the drift reference)."""
    row = one(con, f"select reference_path from {REGISTRY} where version = ?", [version])
    if row is None:
        raise LookupError(f"model version {version} is not registered")
    return Path(row[0])


def fit_reference_path(con: duckdb.DuckDBPyConnection, version: int) -> Path:
    """The feature snapshot model ``version`` was fitted on (its drift reference until a
    re-validation replaced it; see :func:`revalidate`)."""
    row = one(con, f"select path from {REGISTRY} where version = ?", [version])
    if row is None:
        raise LookupError(f"model version {version} is not registered")
    return Path(row[0]).with_name(f"reference_v{version:04d}.parquet")


def reference_shares(
    con: duckdb.DuckDBPyConnection, version: int, model: FittedModel, at_fit: bool = False
) -> dict[int, float]:
    """Share of customers per published segment id on model ``version``'s reference snapshot.

    A version's estimator and snapshot never change, so its customers per cluster are counted
    once and kept beside the snapshot (``reference_v*.clusters.json``) instead of assigning the
    whole snapshot again at every check. Ids are mapped through
    ``model.segment_ids`` at read time. ``at_fit``: on the snapshot the model was fitted on,
    not on its current (possibly re-validated) reference.
    """
    snapshot = fit_reference_path(con, version) if at_fit else reference_path(con, version)
    cache = snapshot.with_suffix(".clusters.json")
    if cache.exists():
        counts = [int(c) for c in json.loads(cache.read_text())]
    else:
        reference = pl.read_parquet(snapshot)
        idx = model.cluster_index_rows(reference)[0]
        counts = [int((idx == i).sum()) for i in range(model.k)]
        _atomic(cache, lambda tmp: tmp.write_text(json.dumps(counts)))
    total = sum(counts)
    return {int(model.segment_ids[i]): c / total for i, c in enumerate(counts) if c}
