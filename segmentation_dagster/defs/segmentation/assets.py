"""Segmentation: challenger fit, champion/challenger decision, assignment, profiles, history.

The science lives in core.clustering / core.lifecycle / core.naming / core.profiling; these
assets read and write DuckDB and publish what a person wants to see in the UI.
"""

import dataclasses
import datetime as dt
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl

from segmentation_dagster.core import (
    describe,
    forecasts,
    health,
    lifecycle,
    pictures,
    privacy,
    project,
    registry,
    resegmentation,
    segments,
    text,
    value,
)
from segmentation_dagster.core.segments import (
    MIGRATIONS_TABLE,
)
from segmentation_dagster.core.settings import Paths
from segmentation_dagster.core.warehouse import one, replace_table, table_exists
from segmentation_dagster.defs import health as checks
from segmentation_dagster.defs.config import AssignmentConfig, SegmentationConfig
from segmentation_dagster.defs.metadata import image, table
from segmentation_dagster.defs.resources import (
    DUCKDB_POOL,
    ExportResource,
    ModelStoreResource,
    WarehouseResource,
)


@dg.asset(
    group_name="segmentation",
    kinds={"sklearn", "duckdb"},
    deps=[dg.AssetKey("customer_features")],
    pool=DUCKDB_POOL,
)
def segmentation_model(
    context: dg.AssetExecutionContext,
    config: SegmentationConfig,
    warehouse: WarehouseResource,
    model_store: ModelStoreResource,
) -> dg.MaterializeResult:
    """Re-segmentation (core.resegmentation, core.lifecycle): fit a challenger on today's
    features (KMeans, Ward and HDBSCAN candidates, selection rule in core.clustering), match its
    segments to the current ones by their members (kept / split / merged / new / retired), and
    promote it when it adds segments that describe today's customers better, retires segments
    they have left, or is clearly better. A champion that stays is re-validated: today's
    features become its drift reference. Every model, decision and transition is recorded in
    the registry."""
    settings = project.load()
    selection = config.selection(settings.selection)
    life = config.lifecycle(settings.lifecycle, selection)
    with warehouse.connect() as con:
        outcome = resegmentation.run(con, model_store.dir, selection, life)
        customers = one(con, f"select count(*) from {segments.FEATURES_TABLE}")[0]
    version, champ_version, result = outcome.version, outcome.champion_version, outcome.result
    challenger, alignment, decision = result.challenger, result.alignment, result.decision
    context.log.info(f"model v{version}: {decision.reason}")
    dropped = "\n".join(f"- `{c}`: {why}" for c, why in challenger.plan.dropped.items())
    candidates = pl.DataFrame([c.as_row() for c in challenger.candidates])
    meta = {
        "project_file": str(settings.path or "none: built-in defaults"),
        "selection_in_effect": dg.MetadataValue.json(dataclasses.asdict(selection)),
        "lifecycle_in_effect": dg.MetadataValue.json(dataclasses.asdict(life)),
        "model_version": version,
        "promoted": decision.promote,
        "decision": decision.reason,
        "champion_version": version if decision.promote else champ_version,
        "algorithm": challenger.algorithm,
        "k": challenger.k,
        "silhouette": challenger.silhouette,
        "selection_reason": challenger.selection_reason,
        "n_customers": customers,
        # at most selection.fit_sample of them, the same on either engine (segments.read_features)
        "customers_fitted_on": challenger.n_train,
        "features_used": ", ".join(challenger.plan.used),
        "log_transformed": ", ".join(challenger.plan.log_transformed),
        "features_dropped": dg.MetadataValue.md(dropped or "none"),
        "candidates": table(candidates),
    }
    if alignment is not None:
        meta["transitions"] = table(pl.DataFrame(alignment.as_rows()))
        for kind, n in alignment.counts().items():
            meta[f"segments_{kind}"] = n
    if result.names:
        meta["new_segment_names"] = dg.MetadataValue.json(
            {str(k): v for k, v in result.names.items()}
        )
    return dg.MaterializeResult(metadata=meta)


@dg.asset(
    group_name="segmentation",
    kinds={"duckdb"},
    deps=[segmentation_model, dg.AssetKey("customer_features")],
    pool=DUCKDB_POOL,
    check_specs=checks.specs(
        "customer_segments", "segment_count_and_smallest_share", "every_customer_has_a_segment"
    ),
)
def customer_segments(
    config: AssignmentConfig, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Every customer's segment under the champion: id, name, model version, distance to the
    centroid and confidence. A customer whose behaviour now matches another segment moves
    there (the features describe behaviour now), with hysteresis against one day's noise.
    Appended to the assignment history (idempotent per snapshot and model version)."""
    with warehouse.connect() as con:
        version, model = registry.require_champion(con)
        published = segments.assign(
            con,
            model,
            version,
            registry.active_names(con),
            config.assignment(project.load().assignment),
        )
        n = segments.publish(con, published)
        with_features, without_segment = one(
            con,
            f"select count(*), count(*) filter (s.customer_id is null) "
            f"from {segments.FEATURES_TABLE} f left join {segments.SEGMENTS_TABLE} s "
            "using (customer_id)",
        )
    snapshot = published["snapshot_date"].max()
    sizes = (
        published.group_by("segment_id", "segment_name")
        .agg(customers=pl.len(), mean_confidence=pl.col("confidence").mean())
        .with_columns(share=pl.col("customers") / published.height)
        .sort("segment_id")
    )
    small = privacy.small_segments(
        dict(sizes.select("segment_id", "customers").iter_rows()),
        project.load().privacy.min_group_size,
    )
    shown = privacy.suppress(sizes, small, ["customers", "mean_confidence", "share"])
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": n,
            "model_version": version,
            "snapshot_date": str(snapshot),
            "segments": sizes.height,
            "segment_sizes": table(shown),
            # one number per segment, so the UI plots each share over the days
            **{
                f"share: {name} ({sid})": round(float(share), 4)
                for sid, name, share in shown.select(
                    "segment_id", "segment_name", "share"
                ).iter_rows()
                if share is not None
            },
        },
        check_results=[
            checks.result(
                health.segment_mix(
                    dict(sizes.select("segment_id", "share").iter_rows()), health.HealthConfig()
                )
            ),
            checks.result(health.coverage(with_features, without_segment)),
        ],  # fmt: skip
    )


@dg.asset(
    group_name="segmentation",
    kinds={"duckdb", "sklearn"},
    deps=[customer_segments, dg.AssetKey("customer_recent_purchases")],
    pool=DUCKDB_POOL,
)
def segment_profiles(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Per segment: name, size, share, feature means, lift vs the population, a one-line
    description, a readable rule from a surrogate decision tree (with its fidelity), the
    most purchased categories and products, and its playbook (the recommended action, from
    playbooks.yml, with the evidence)."""
    with warehouse.connect() as con:
        described = describe.describe(con)
        snapshot = one(con, f"select max(snapshot_date) from {segments.SEGMENTS_TABLE}")[0]
        today = described.profiles.select("segment_id", "share").with_columns(
            snapshot_date=pl.lit(snapshot)
        )
        shares = describe.share_history(con, today)
    profiles, names, rules = described.profiles, described.names, described.rules
    version = described.version
    # statistics of segments smaller than privacy.min_group_size stay in the warehouse
    small = privacy.small_segments(
        dict(profiles.select("segment_id", "size").iter_rows()),
        project.load().privacy.min_group_size,
    )
    preview = privacy.suppress(
        profiles.select("segment_id", "segment_name", "size", "share", "description"),
        small, ["size", "share", "description"],
    )  # fmt: skip
    top = described.top_items.filter(~pl.col("segment_id").is_in(sorted(small)))
    shown = ~np.isin(described.map_segments, sorted(small))
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": profiles.height,
            "model_version": version,
            "profiles": table(preview),
            "suppressed_segments": len(small),
            # pictures, redrawn on every materialisation
            "segment_shares_over_time": image(
                pictures.shares_over_time(
                    shares.filter(~pl.col("segment_id").is_in(sorted(small))), names
                )
            ),
            "segment_map": image(
                pictures.segment_map(described.map_x[shown], described.map_segments[shown], names)
            ),
            "profile_heatmap": image(
                pictures.profile_heatmap(
                    described.lift.filter(~pl.col("segment_id").is_in(sorted(small))), names
                )
            ),
            "rules": dg.MetadataValue.md(
                "\n".join(
                    f"- **{names.get(s, s)}** ({s}): {privacy.SUPPRESSED if s in small else r}"
                    for s, r in rules.rules.items()
                )
            ),
            "surrogate_fidelity": rules.fidelity,
            "top_items": table(top),
            # the recommended action per segment, with the features that chose it
            "playbooks": table(
                privacy.suppress(described.playbooks, small, ["evidence", "recommended"]).select(
                    "segment_id",
                    pl.col("segment_id").replace_strict(names, default=None).alias("segment_name"),
                    "playbook",
                    "action",
                    "evidence",
                    "recommended",
                )  # fmt: skip
            ),
        }
    )


@dg.asset(
    group_name="segmentation",
    kinds={"duckdb", "sklearn"},
    deps=[customer_segments, dg.AssetKey("stg_shop__events")],
    pool=DUCKDB_POOL,
    check_specs=checks.specs("customer_value", "forecasts_held_up"),
)
def customer_value(
    warehouse: WarehouseResource, model_store: ModelStoreResource
) -> dg.MaterializeResult:
    """Per customer who ever bought: the risk of no purchase in the next horizon and the
    expected spend in it, from models trained and validated on this shop's own history (a
    time split), next to the BG/NBD + Gamma-Gamma baseline. The models are kept and score the
    following days; they are retrained every ``value.retrain_days`` days of events, and at once
    when the history they learnt from changed. The validation (AUC against the baseline's,
    calibration, spend error per segment) is in the metadata. The forecasts handed out are
    kept and, a horizon later, met with what the customers did (``core.forecasts``): the
    ``forecasts_met`` lines and the ``forecasts_held_up`` check."""
    cfg = project.load()
    kept = model_store.dir / value.MODELS_FILE
    stored, unreadable = value.load_trained(kept)
    events = "main.stg_shop__events"
    with warehouse.connect() as con:
        current = _members(con)
        result = value.score(
            con, events, current, cfg.value,
            segments_before=lambda day: segments.members_before(con, day), trained=stored,
        )  # fmt: skip
        if result.retrained and result.trained is not None:
            value.save_trained(kept, result.trained)  # before the scores: a kill in between
            # leaves models a re-run reuses, never scores without their models
        replace_table(con, segments.VALUE_TABLE, result.scores)
        met, check = _forecasts_met(con, events, result, current, cfg.privacy.min_group_size)
    meta: dict[str, object] = {"dagster/row_count": result.scores.height, **met}
    v = result.validation
    if v is None or result.trained is None:
        meta["not_trained"] = result.reason
        return dg.MaterializeResult(metadata=meta, check_results=[check])
    t = result.trained
    meta["models"] = (
        f"trained in this run: {unreadable or result.retrained}"
        if result.retrained
        else f"kept from the run on events up to {t.through} (retrained after "
        f"{cfg.value.retrain_days} days of events, or when that history changes)"
    )
    meta["trained_on_events_up_to"] = str(t.through)
    names, sizes = _names_and_sizes(current)
    small = privacy.small_groups(sizes, v.spend_by_segment, cfg.privacy.min_group_size)
    by_segment = privacy.suppress(
        v.spend_by_segment.with_columns(
            segment_name=pl.when(pl.col("segment_id").is_null())
            .then(pl.lit(value.NO_SEGMENT))
            .otherwise(pl.col("segment_id").replace_strict(names, default=None))
        ).select("segment_id", "segment_name", "customers", "actual", "noise", "predicted",
                 "error", "baseline", "baseline_error"),
        small, ["customers", "actual", "noise", "predicted", "error", "baseline",
                "baseline_error"],
    )  # fmt: skip
    verdict = value.spend_verdict(by_segment)
    if v.segments_as_of is None:
        verdict = f"by segments chosen after the outcomes (spend_by_segment_grouped_by): {verdict}"
    meta |= {
        "horizon_days": v.horizon_days,
        "validated_on": f"features as of {v.cutoff}, outcomes of the {v.horizon_days} days after",
        "auc": _round(v.auc),
        "auc_baseline_bgnbd": _round(v.auc_baseline),
        "brier": round(v.brier, 4),
        # what today's scores come from; the validation above judged the models of one
        # horizon earlier, which chose for themselves
        "churn_reads": t.models.churn_choice,
        "churn_reads_validated": v.churn_reads,
        "customers_train_test": f"{v.n_train} / {v.n_test}",
        "calibration": table(v.calibration),
        "spend_by_segment": v.spend_not_modelled or table(by_segment),
        "spend_verdict": v.spend_not_modelled or verdict,
        "spend_by_segment_noise": "noise: how far the actual spend strays by chance alone (one "
        "standard error, relative to it); an error within twice the noise says little about "
        "the forecast, one well beyond it is the model's",
        "spend_by_segment_grouped_by": (
            f"the segments of {v.segments_as_of}, before the outcomes"
            if v.segments_as_of
            else f"the segments of {t.through}, the day the models were trained (no assignment "
            "recorded before the outcomes; a segment of inactive customers is then partly "
            "chosen by not having bought)"
        ),
        "mean_churn_risk": round(float(result.scores["churn_risk"].mean()), 4),
    }
    return dg.MaterializeResult(metadata=meta, check_results=[check])


def _forecasts_met(
    con,  # noqa: ANN001
    events: str,
    result: value.Scores,
    current: pl.DataFrame,
    min_group_size: int,
) -> tuple[dict[str, object], dg.AssetCheckResult]:
    """Keep today's forecasts, meet those whose horizon has passed (core.forecasts), and
    describe the last met: metadata and the forecasts_held_up check. A failure here fails the
    check, not the asset: the scores are written, and what comes after them runs (keeping and
    meeting are each one transaction, so nothing is left half done)."""
    meta: dict[str, object] = {}
    try:
        if result.as_of is not None:
            if dropped := forecasts.rewind(con, result.as_of):
                meta["forecasts_dropped"] = dropped
            if result.trained is not None:
                meta["forecasts_kept"] = forecasts.keep(
                    con, result.scores, current, result.as_of, result.trained.horizon
                )
            forecasts.meet(con, events, result.as_of - dt.timedelta(days=1))
    except Exception as e:  # noqa: BLE001 - reported as the check's failure
        error = f"the forecasts could not be kept or met: {type(e).__name__}: {e}"
        return meta | {"forecasts_error": error}, checks.result(health.forecasts_failed(error))
    meta["forecasts_waiting"] = forecasts.waiting(con)
    o = forecasts.latest(con)
    if o is None:
        return meta, checks.result(health.forecasts_held(None, 0, 0))
    by_segment = forecasts.published(o.by_segment, min_group_size)
    spend = (
        value.spend_verdict(by_segment) if not by_segment.is_empty() else "spend was not forecast"
    )
    summary = forecasts.summary(o)
    meta |= {
        "forecasts_met": f"{summary}; spend per segment of that day: {spend}",
        "forecasts_met_auc": _round(o.auc),
        "forecasts_met_auc_bgnbd": _round(o.auc_bgnbd),
    }
    if not by_segment.is_empty():
        meta["forecasts_met_by_segment"] = table(by_segment)
    missed, judged = forecasts.missed(by_segment)
    return meta, checks.result(health.forecasts_held(summary, missed, judged))


@dg.asset(
    group_name="segmentation",
    kinds={"duckdb", "sklearn"},
    deps=[customer_segments, dg.AssetKey("stg_shop__events")],
    pool=DUCKDB_POOL,
)
def customer_interests(
    warehouse: WarehouseResource, model_store: ModelStoreResource
) -> dg.MaterializeResult:
    """What customers write, as interests: topics of their search queries and reviews
    (TF-IDF + NMF fitted on the shop's own text, each topic named by its top terms) and the
    sentiment of their reviews (learned from the shop's star ratings). Per segment: the top
    topics and the mean sentiment. The models are kept and refitted every
    ``text.refit_days`` days of events; in between, only changed documents are weighed."""
    cfg = project.load()
    kept_file = model_store.dir / text.MODELS_FILE
    kept, unreadable = text.load_models(kept_file)
    with warehouse.connect() as con:
        previous = (
            con.sql(f"select * from {segments.INTERESTS_TABLE}").pl()
            if kept and table_exists(con, *segments.INTERESTS_TABLE.split("."))
            else None
        )
        found = text.interests(con, "main.stg_shop__events", cfg.text, kept, previous)
        if found.refitted and found.models is not None:
            text.save_models(kept_file, found.models)  # first: the table names its fit, so
            # a kill in between leaves rows the next run weighs again, never mixed fits
        replace_table(con, segments.INTERESTS_TABLE, found.table)
        current = _members(con)
    meta: dict[str, object] = {
        "dagster/row_count": found.table.height,
        "seconds": round(found.seconds, 2),
    }
    if found.topics is None or found.models is None:
        meta["not_fitted"] = found.reason
        return dg.MaterializeResult(metadata=meta)
    meta["models"] = (
        f"fitted in this run: {unreadable or found.refitted}"
        if found.refitted
        else f"kept from the run on events up to {found.models.stamp.through}: "
        f"{found.table.height - found.unchanged} changed documents weighed, "
        f"{found.unchanged} rows kept"
    )
    names, sizes = _names_and_sizes(current)
    by_segment = text.segment_topics(found.table, current, found.topics).with_columns(
        segment_name=pl.col("segment_id").replace_strict(names, default=None)
    )
    # a row describes the segment's writers only: a few of them are too few to publish
    small = privacy.small_groups(sizes, by_segment, cfg.privacy.min_group_size, "writers")
    meta |= {
        "topics": table(
            pl.DataFrame(
                {
                    "topic": list(range(1, len(found.topics.terms) + 1)),
                    "top_terms": [", ".join(t) for t in found.topics.terms],
                }
            )
        ),  # fmt: skip
        "interests_by_segment": table(
            privacy.suppress(
                by_segment.select(
                    "segment_id", "segment_name", "writers", "top_topics", "sentiment"
                ),
                small,
                ["writers", "top_topics", "sentiment"],
            )  # fmt: skip
        ),
        "with_sentiment": int(found.table["sentiment"].is_not_null().sum()),
    }
    return dg.MaterializeResult(metadata=meta)


def _members(con) -> pl.DataFrame:  # noqa: ANN001
    """customer_id (as text), segment_id, segment_name of today's assignment."""
    return con.sql(
        f"select customer_id::varchar as customer_id, segment_id, segment_name "
        f"from {segments.SEGMENTS_TABLE}"
    ).pl()


def _names_and_sizes(members: pl.DataFrame) -> tuple[dict[int, str], dict[int, int]]:
    """Segment names and sizes (customers) of today's assignment."""
    names = dict(members.select("segment_id", "segment_name").unique().iter_rows())
    sizes = dict(members.group_by("segment_id").len().iter_rows())
    return names, sizes


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


@dg.asset(
    group_name="segmentation",
    kinds={"duckdb"},
    deps=[customer_segments],
    pool=DUCKDB_POOL,
)
def segment_migrations(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Customers moving between segments from the previous assignment (an earlier snapshot or
    an earlier model) to the current one, as a from x to matrix."""
    with warehouse.connect() as con:
        cur, prev, previous = segments.previous_assignment(con)
        current = segments.published_members(con)
        matrix = lifecycle.migration_matrix(previous, current).with_columns(
            from_snapshot=pl.lit(prev[0] if prev else None, dtype=pl.Date),
            from_model_version=pl.lit(prev[1] if prev else None, dtype=pl.Int32),
            to_snapshot=pl.lit(cur[0], dtype=pl.Date),
            to_model_version=pl.lit(cur[1], dtype=pl.Int32),
        )
        replace_table(con, MIGRATIONS_TABLE, matrix)
        labels = registry.labels(con)
    unchanged = lifecycle.unchanged_share(previous, current) if prev else None
    pivot = lifecycle.migration_pivot(matrix, labels, project.load().privacy.min_group_size)
    return dg.MaterializeResult(
        metadata={
            "from": f"{prev[0]} v{prev[1]}" if prev else "nothing (first assignment)",
            "to": f"{cur[0]} v{cur[1]}",
            "unchanged_share": unchanged,
            "matrix": table(pivot),
        }
    )


def _export_identity(current: pl.DataFrame) -> str:
    """The exports' customer column: the keyed pseudonym unless the project file says raw."""
    raw = project.load().privacy.export_ids == "raw"
    return "customer_id" if raw else privacy.PSEUDONYM


def _previous_export(prev: Path | None, ident: str, current: pl.DataFrame) -> pl.DataFrame:
    """(ident, segment_id) of the previous export; one written with raw ids is pseudonymised
    to compare. One with pseudonyms cannot be compared with raw ids: everyone has joined."""
    empty = current.select(ident, "segment_id").clear()
    if prev is None:
        return empty
    old = pl.read_parquet(prev)
    if ident in old.columns:
        return old.select(ident, "segment_id")
    if "customer_id" in old.columns:
        secret = privacy.key(Paths.from_env().data_dir)
        return privacy.pseudonymise(old.select("customer_id", "segment_id"), secret)
    return empty


@dg.asset(
    group_name="segmentation",
    kinds={"duckdb", "parquet"},
    deps=[customer_segments, segment_profiles, customer_value],
    pool=DUCKDB_POOL,
)
def segment_export(warehouse: WarehouseResource, exports: ExportResource) -> dg.MaterializeResult:
    """Segment membership for activation tools, as Parquet and CSV: the full list (with each
    segment's playbook) and the changes since the previous export (one row per customer that
    joined or left a segment). Customers appear as keyed pseudonyms (privacy.export_ids)."""
    with warehouse.connect() as con:
        current = segments.export_list(con)
        snapshot, version = current["snapshot_date"].max(), int(current["model_version"].max())
        stem = f"segments_{snapshot}_v{version:04d}"
        prev = segments.last_export(con, other_than=exports.dir / f"{stem}.parquet")
        ident = _export_identity(current)
        if ident == privacy.PSEUDONYM:
            current = privacy.pseudonymise(current, privacy.key(Paths.from_env().data_dir))
        previous = _previous_export(prev, ident, current)
        changes = lifecycle.membership_changes(
            previous.rename({ident: "customer_id"}),
            current.select(ident, "segment_id").rename({ident: "customer_id"}),
        ).rename({"customer_id": ident})
        full = exports.write(current, stem)
        delta = exports.write(changes, stem + "_changes")
        n_joined = changes.filter(pl.col("change") == "joined").height
        n_left = changes.height - n_joined
        segments.record_export(
            con, snapshot, version, full, delta, current.height, n_joined, n_left
        )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": current.height,
            "full_list": dg.MetadataValue.path(str(full)),
            "changes": dg.MetadataValue.path(str(delta)),
            "joined": n_joined,
            "left": n_left,
        }
    )
