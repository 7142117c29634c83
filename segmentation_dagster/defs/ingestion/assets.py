"""Ingestion: landing files -> raw tables in DuckDB (see core.ingest for the rules)."""

import re

import dagster as dg
import polars as pl

from segmentation_dagster.core import ingest, privacy, project
from segmentation_dagster.core.settings import Paths
from segmentation_dagster.core.sources import load_mapping, mapping_path
from segmentation_dagster.defs.metadata import column_schema, table
from segmentation_dagster.defs.resources import DUCKDB_POOL, LandingResource, WarehouseResource

_DESCRIPTIONS = {
    "events": "Behaviour events (views, carts, purchases, searches, reviews) loaded from the "
    "landing folder's `events/`. New or changed files only; a re-delivered file replaces its "
    "rows.",
    "customers": "Optional customer attributes (signup date, country) from the landing "
    "folder's `customers/`.",
    "products": "Optional product attributes (category, base price) from the landing folder's "
    "`products/`.",
}


def _report_metadata(report: ingest.LoadReport) -> dict[str, object]:
    meta: dict[str, object] = {
        "dagster/row_count": report.table_rows,
        "rows_inserted": report.rows_inserted,
        "files_loaded": len(report.loaded),
        "files_replaced": len(report.replaced),
        "files_skipped_unchanged": len(report.skipped),
        "files_rejected": len(report.rejected),
        "entries_ignored": len(report.ignored),
        "rows_quarantined": report.rows_quarantined,
        "rows_erased": report.rows_erased,  # of customers erased with `segmentation forget`
    }
    if report.quarantined_by_reason:
        reasons = sorted(report.quarantined_by_reason.items())
        meta["quarantined_by_reason"] = table(
            pl.DataFrame(reasons, schema=["reason", "rows"], orient="row")
        )
    if report.rejected:
        rejected = pl.DataFrame(
            {"file": list(report.rejected), "problem": list(report.rejected.values())}
        )
        meta["rejected_files"] = table(rejected)
    if report.ignored:
        ignored = pl.DataFrame(
            {"entry": list(report.ignored), "reason": list(report.ignored.values())}
        )
        meta["ignored_entries"] = table(ignored)
    return meta


def build_raw_asset(kind: str) -> dg.AssetsDefinition:
    """The asset that loads ``<landing>/<kind>`` into ``raw.<kind>``."""

    @dg.asset(
        name=f"raw_{kind}",
        group_name="ingestion",
        kinds={"duckdb"},
        description=_DESCRIPTIONS[kind],
        pool=DUCKDB_POOL,
    )
    def _raw(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, landing: LandingResource
    ) -> dg.MaterializeResult:
        mapping = load_mapping(mapping_path(landing.dir))
        with warehouse.connect() as con:
            report = ingest.load_kind(
                con, landing.dir, kind, mapping, project.load().limits.limits(), erased=_erased()
            )
            meta = _report_metadata(report)
            meta["preview"] = table(
                con.sql(f"select * exclude (_loaded_at) from raw.{kind} limit 5").pl()
            )
            meta["dagster/column_schema"] = column_schema(con, "raw", kind)
            # which files (days) are in the warehouse: the latest month of the manifest
            meta["loaded_files"] = table(
                con.sql(
                    "select file_name, status, rows_loaded, rows_quarantined, recorded_at, "
                    f"coalesce(rejected_error, error) as problem from {ingest.MANIFEST} "
                    "where kind = $kind order by file_name desc limit 31",
                    params={"kind": kind},
                ).pl()
            )
            if kind == "events" and report.table_rows:
                # the last week that landed (a bounded scan: only the latest days' rows)
                meta["events_per_day_latest"] = table(
                    con.sql(
                        "select cast(event_ts as date) as day, count(*) as events, "
                        "count(distinct customer_id) as customers from raw.events "
                        "where event_ts >= (select max(event_ts) from raw.events) - interval 7 day "
                        "group by 1 order by 1 desc limit 7"
                    ).pl()
                )
            files = _manifest_rows(con, kind, [*report.loaded, *report.replaced])
        _record_files(context, kind, files)
        for name, why in report.rejected.items():
            context.log.error(f"rejected landing file {_named(name, why)}")
        for name, why in report.ignored.items():
            context.log.warning(f"landing entry {name} not read: {why}")
        for name, why in report.rejected_before.items():
            context.log.warning(
                f"landing file {name} not read again: it was rejected under the same mapping "
                f"and limits ({why}); it is read again once sources.yml or the limits change"
            )
        rejected = report.rejected or report.rejected_before
        if kind == "events" and report.table_rows == 0 and rejected:
            name, why = next(iter(rejected.items()))
            when = "rejected" if report.rejected else "rejected before under the same mapping"
            raise ValueError(
                f"no events loaded from {landing.dir / 'events'}: {len(rejected)} file(s) "
                f"{when}, e.g. {_named(name, why)} (every reason is in the log above and in "
                f"{ingest.MANIFEST}; a rejected file is read again once sources.yml or the "
                "limits change)"
            )
        if kind == "events" and report.table_rows == 0:
            raise ValueError(
                f"no events in {landing.dir / 'events'}: put event files there (see README) "
                "or generate demo data with `segmentation demo`"
            )
        context.log.info(
            f"{kind}: {len(report.loaded)} file(s) loaded, {len(report.replaced)} replaced, "
            f"{len(report.skipped)} unchanged, {len(report.rejected)} rejected, "
            f"{len(report.ignored)} ignored; "
            f"{report.rows_inserted} rows inserted, {report.rows_quarantined} quarantined, "
            f"{report.table_rows} in raw.{kind}"
        )
        for reason, n in report.quarantined_by_reason.items():
            context.log.warning(f"{kind}: {n} row(s) quarantined: {reason}")
        return dg.MaterializeResult(metadata=meta)

    return _raw


#: one partition per landing file ("<kind>/<file name>"): its materialisations are the file's
#: loads, and materialising one from the UI reads that file again
LANDING_FILES = dg.DynamicPartitionsDefinition(name="landing_files")
#: what a partition key must not contain (Dagster's own rule, and our "kind/name" split)
_BAD_KEY = re.compile(r"[\x00-\x1f,\[\]|]|\.\.\.")


def _manifest_rows(con, kind: str, names: list[str]) -> pl.DataFrame:  # noqa: ANN001
    return con.sql(
        "select file_name, status, rows_loaded, rows_quarantined, sha256 "
        f"from {ingest.MANIFEST} where kind = $kind and file_name in (select unnest($names))",
        params={"kind": kind, "names": names},
    ).pl()


def _record_files(context: dg.AssetExecutionContext, kind: str, files: pl.DataFrame) -> None:
    """Make each file just loaded a partition of ``landing_file`` and record the load as that
    partition's materialisation, so the UI lists the loaded files (days) one by one."""
    keys = {
        f"{kind}/{r['file_name']}": r
        for r in files.iter_rows(named=True)
        if not _BAD_KEY.search(r["file_name"])
    }
    if not keys:
        return
    known = set(context.instance.get_dynamic_partitions(LANDING_FILES.name))
    context.instance.add_dynamic_partitions(LANDING_FILES.name, sorted(set(keys) - known))
    for key, r in keys.items():
        context.log_event(
            dg.AssetMaterialization(
                asset_key="landing_file",
                partition=key,
                metadata={
                    "rows_loaded": r["rows_loaded"],
                    "rows_quarantined": r["rows_quarantined"],
                    "sha256": r["sha256"][:16],
                },
            )
        )


@dg.asset(
    group_name="ingestion",
    kinds={"duckdb"},
    partitions_def=LANDING_FILES,
    pool=DUCKDB_POOL,
)
def landing_file(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, landing: LandingResource
) -> dg.MaterializeResult:
    """One landing file per partition, as `raw_*` loaded it. Materialise a partition to read
    that file again even though it has not changed (after a change of sources.yml or the
    limits): its rows are replaced; downstream assets pick it up on the next refresh."""
    kind, _, name = context.partition_key.partition("/")
    if kind not in ingest.CONTRACTS or not name:
        raise ValueError(f"partition {context.partition_key!r}: expected '<kind>/<file name>'")
    mapping = load_mapping(mapping_path(landing.dir))
    with warehouse.connect() as con:
        report = ingest.load_kind(
            con, landing.dir, kind, mapping, project.load().limits.limits(), erased=_erased(),
            reload=name,
        )  # fmt: skip
        files = _manifest_rows(con, kind, [name])
    if report.rejected:
        raise ValueError(f"{kind}/{_named(name, report.rejected[name])} (rejected)")
    row = files.row(0, named=True)
    return dg.MaterializeResult(
        metadata={
            "rows_loaded": row["rows_loaded"],
            "rows_quarantined": row["rows_quarantined"],
            "sha256": row["sha256"][:16],
            "rows_erased": report.rows_erased,
        }
    )


def _erased():  # noqa: ANN202
    """The erased customers' filter for a load (None when nobody was erased)."""
    data_dir = Paths.from_env().data_dir
    if not privacy.forgotten(data_dir):
        return None
    return lambda ids: privacy.forgotten_among(ids, data_dir)


raw_events = build_raw_asset("events")
raw_customers = build_raw_asset("customers")
raw_products = build_raw_asset("products")


def _named(name: str, why: str) -> str:
    """``why`` a file was rejected, starting with its name once (most reasons already do)."""
    return why if why.startswith(f"{name}:") else f"{name}: {why}"
