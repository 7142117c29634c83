"""Model lifecycle: re-segmentation (fit a challenger, compare, align, decide), stable segment
ids across refits, and the transitions between two segmentations.

:func:`resegment` is the whole flow, a plain function the ``segmentation_model`` asset, the
CLI and the benchmarks call:

1. **fit** a challenger on today's features (:func:`clustering.fit`), and look for a dense
   group of customers far from every champion centroid (:func:`extend_champion`): a new
   behaviour forming next to segments that still describe everyone else;
2. **compare** what both models make of today's customers: the champion's current segments
   (the published assignment) against the challenger's clusters, customer by customer;
3. **align**: a challenger cluster that holds the members of a current segment keeps that
   segment's id, whatever the refit did to the scaled feature space (members are matched
   first, centroids break near-ties); the rest are named by MONIC's vocabulary (Spiliopoulou
   et al., KDD 2006): a segment is *kept*, *split* (a part of it became a new segment),
   *merged* (into another kept one), *retired* (emptied or scattered), or a cluster is *new*;
4. **decide** (silhouettes of both segmentations on a common sample of today's customers):
   promote a challenger that adds segments (new, split) when it describes today's customers
   better; one that retires segments the customers have left (a segment holding less than
   ``vanished_share`` of its share at fit, merged or retired) unless it is worse by more than
   ``structure_tolerance``; any challenger that is better by more than ``promotion_margin``.
   Otherwise the champion stays, nobody moves, and the champion is re-validated on today's
   features (the drift monitor's reference becomes today's snapshot): behaviour shifted within
   the segments, and the daily assignment already moves the customers who changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import polars as pl
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import silhouette_score

from segmentation_dagster.core import checks, clustering, naming, profiling
from segmentation_dagster.core.clustering import FittedModel, sample_idx

#: MONIC's kinds of transition between two segmentations.
KINDS = ("kept", "split", "merged", "new", "retired")


@dataclass(frozen=True)
class LifecycleConfig:
    """How a challenger is matched to the champion's segments and when it is promoted."""

    #: a challenger cluster keeps a current segment's id when their members overlap at least
    #: this much (Jaccard: shared / either)
    keep_overlap: float = 0.5
    #: ... or at least half this much while their centroids are this close (standardised
    #: units in the challenger's space)
    max_match_distance: float = 1.5
    #: a part of a segment counts in a split or merge when it holds this share of it
    part_share: float = 0.2
    #: a new or split-off segment must hold this share of today's customers to count
    min_change_share: float = 0.02
    #: a segment has emptied when it holds less than this share of its share at fit
    vanished_share: float = 0.25
    #: a challenger that retires emptied segments is promoted unless its silhouette is more
    #: than this below the champion's on today's customers
    structure_tolerance: float = 0.05
    #: any challenger is promoted when its silhouette beats the champion's by more than this
    promotion_margin: float = 0.02
    #: a customer is far from their segment when farther from its centroid than this quantile
    #: of its members' distances at fit; dense groups of far customers are candidate segments
    far_quantile: float = 0.95
    #: customers both silhouettes are computed on (fixed seed)
    sample: int = 5_000
    seed: int = 0

    #: each field's range (docs/configuration.md, "Ranges")
    RULES: ClassVar[dict[str, checks.Rule]] = {
        "keep_overlap": checks.fraction(),
        "max_match_distance": checks.number(0, low_open=True),
        "part_share": checks.fraction(),
        "min_change_share": checks.fraction(),
        "vanished_share": checks.fraction(),
        "structure_tolerance": checks.number(0, 2),
        "promotion_margin": checks.number(0, 2),
        "far_quantile": checks.number(0, 1, low_open=True, high_open=True),
        "sample": checks.whole(2),
        "seed": checks.whole(0, 2**32 - 1),
    }

    def __post_init__(self) -> None:
        checks.apply(self, self.RULES)


@dataclass(frozen=True)
class Transition:
    """One MONIC transition: which current segments became which challenger segments."""

    kind: str  # one of KINDS
    old_ids: tuple[int, ...]
    new_ids: tuple[int, ...]
    customers: int  # today's customers involved (the new segment's, or the old one's)
    overlap: float | None = None  # Jaccard of the members, for kept segments
    shift: float | None = None  # how far a kept segment's centroid moved (challenger space)

    def as_row(self) -> dict[str, object]:
        return {
            "transition": self.kind,
            "from": ", ".join(map(str, self.old_ids)),
            "to": ", ".join(map(str, self.new_ids)),
            "customers": self.customers,
            "overlap": None if self.overlap is None else round(self.overlap, 3),
            "centroid_shift": None if self.shift is None else round(self.shift, 3),
        }


@dataclass(frozen=True)
class Alignment:
    """How a new model's clusters map onto segment ids, and what happened to each segment."""

    segment_ids: np.ndarray  # published id per cluster index of the new model
    matched: dict[int, tuple[int, float]]  # kept id -> (old id, member overlap)
    new: tuple[int, ...]  # ids minted for clusters no current segment holds
    retired: tuple[int, ...]  # current ids no cluster holds any more
    transitions: tuple[Transition, ...] = field(default=())

    def counts(self) -> dict[str, int]:
        """Transitions of each kind (MONIC), e.g. {"kept": 5, "new": 1, ...}."""
        return {k: sum(t.kind == k for t in self.transitions) for k in KINDS}

    def changed_share(self, n_customers: int) -> float:
        """Share of today's customers in segments that did not simply survive."""
        moved = sum(t.customers for t in self.transitions if t.kind in ("split", "new"))
        moved += sum(t.customers for t in self.transitions if t.kind in ("merged", "retired"))
        return moved / max(n_customers, 1)

    def as_rows(self) -> list[dict[str, object]]:
        return [t.as_row() for t in self.transitions]


def label_centroids(x: np.ndarray, labels: np.ndarray) -> dict[int, np.ndarray]:
    """Mean row of ``x`` per label."""
    return {int(lab): x[labels == lab].mean(axis=0) for lab in np.unique(labels)}


def align_members(
    old_ids: np.ndarray,
    new_idx: np.ndarray,
    k_new: int,
    old_segments: tuple[int, ...] | list[int],
    next_id: int,
    config: LifecycleConfig | None = None,
    centroid_distance: np.ndarray | None = None,
    member_shift: dict[int, float] | None = None,
) -> Alignment:
    """Match the challenger's clusters to the current segments by their members.

    ``old_ids``: each of today's customers' current segment id (negative: none yet);
    ``new_idx``: the same customers' challenger cluster (0..k_new-1); ``old_segments``: every
    active segment id (one with no customer left today is retired as emptied);
    ``centroid_distance[i, j]``: optional distance of cluster i to segment old_segments[j] in
    one space, used when members alone are not decisive; ``member_shift``: optional distance of
    each segment's members today from its centroid (:func:`member_shift`), reported on kept
    transitions.
    """
    config = config or LifecycleConfig()
    olds = sorted({int(o) for o in old_segments} | {int(o) for o in np.unique(old_ids) if o >= 0})
    pos = {o: j for j, o in enumerate(olds)}
    known = old_ids >= 0
    overlap = np.zeros((k_new, len(olds)))
    np.add.at(overlap, (new_idx[known], [pos[int(o)] for o in old_ids[known]]), 1)
    new_size = np.bincount(new_idx, minlength=k_new).astype(float)
    old_size = overlap.sum(axis=0)
    union = new_size[:, None] + old_size[None, :] - overlap
    jaccard = np.divide(overlap, union, out=np.zeros_like(overlap), where=union > 0)
    ids = np.full(k_new, -1)
    matched: dict[int, tuple[int, float]] = {}
    if olds:
        score = jaccard.copy()
        if centroid_distance is not None:  # a near-tie in members goes to the nearer centroid
            score -= 1e-3 * np.minimum(centroid_distance / config.max_match_distance, 1)
        rows, cols = linear_sum_assignment(-score)
        for r, c in zip(rows, cols, strict=True):
            near = centroid_distance is not None and (
                centroid_distance[r, c] <= config.max_match_distance
            )
            if jaccard[r, c] >= config.keep_overlap or (
                near and jaccard[r, c] >= config.keep_overlap / 2
            ):
                ids[r] = olds[c]
                matched[olds[c]] = (olds[c], float(jaccard[r, c]))
    transitions: list[Transition] = []
    for o, (_, j) in sorted(matched.items()):
        i = ids.tolist().index(o)
        shift = None if member_shift is None else member_shift.get(o)
        transitions.append(Transition("kept", (o,), (o,), int(new_size[i]), j, shift))
    minted: list[int] = []
    for i in range(k_new):
        if ids[i] >= 0:
            continue
        ids[i] = next_id
        minted.append(next_id)
        next_id += 1
        sources = [
            olds[j]
            for j in np.argsort(-overlap[i])
            if overlap[i, j] > 0 and overlap[i, j] >= config.part_share * old_size[j]
        ]
        kept_sources = [o for o in sources if o in matched]
        kind = "split" if kept_sources else "new"
        transitions.append(
            Transition(kind, tuple(kept_sources or sources), (int(ids[i]),), int(new_size[i]))
        )
    retired = []
    for j, o in enumerate(olds):
        if o in matched:
            continue
        retired.append(o)
        dest = int(np.argmax(overlap[:, j])) if old_size[j] else -1
        into = int(ids[dest]) if dest >= 0 else None
        merged = (
            into is not None
            and into in matched
            and overlap[dest, j] >= max(config.keep_overlap, config.part_share) * old_size[j]
        )
        transitions.append(
            Transition(
                "merged" if merged else "retired",
                (o,),
                (into,) if merged else (),
                int(old_size[j]),
            )
        )
    return Alignment(ids, matched, tuple(minted), tuple(retired), tuple(transitions))


def member_shift(
    champion: FittedModel, features: pl.DataFrame, current: np.ndarray, sample: int = 50_000
) -> dict[int, float]:
    """Per segment, how far its members today sit from the champion's centroid: the distance
    between the centroid and the members' mean, in the champion's own space (standardised
    units). Near 0 when behaviour inside the segment is as at fit time; large when it moved
    (the champion's assignment rule is stale)."""
    idx = sample_idx(features.height, sample, 0)
    x = champion.transform(features[idx])
    labels = np.asarray(current)[idx]
    out: dict[int, float] = {}
    for i, sid in enumerate(champion.segment_ids):
        members = labels == sid
        if members.any():
            out[int(sid)] = float(np.linalg.norm(x[members].mean(axis=0) - champion.centroids[i]))
    return out


def centroid_distances(challenger: FittedModel, champion: FittedModel) -> np.ndarray:
    """Distance of each challenger centroid to each champion centroid (rows: the challenger's
    clusters, columns: the champion's segments in ``segment_ids`` order), in the challenger's
    space: the champion's centroids are mapped back to feature units and through the
    challenger's preprocessing (features the champion did not use are imputed)."""
    old_x = challenger.transform_partial(champion.raw_centroids())
    return np.linalg.norm(challenger.centroids[:, None, :] - old_x[None, :, :], axis=-1)


def align_to_champion(
    challenger: FittedModel,
    champion: FittedModel,
    next_id: int,
    features: pl.DataFrame,
    current: np.ndarray | None = None,
    config: LifecycleConfig | None = None,
) -> Alignment:
    """Align the challenger's clusters with the champion's segment ids on ``features``' customers.

    ``current`` is each customer's current (published) segment id; without it, the champion's
    own assignment of ``features``."""
    if current is None:
        current = champion.assign(features)[0]
    new_idx = challenger.cluster_index_rows(features)[0]
    dist = centroid_distances(challenger, champion)
    ids = [int(s) for s in champion.segment_ids]
    # centroid columns follow the champion's ids; align_members orders segments by id
    order = np.argsort(ids)
    shift = member_shift(champion, features, current)
    return align_members(
        np.asarray(current), new_idx, challenger.k, ids, next_id, config, dist[:, order], shift
    )


@dataclass(frozen=True)
class Decision:
    """Whether the challenger replaces the champion, and why."""

    promote: bool
    reason: str
    challenger_silhouette: float
    champion_silhouette: float | None
    #: the challenger found new segments but would give up segments the customers still hold
    costs_live_segments: bool = False


def _silhouettes(
    challenger: FittedModel,
    champion: FittedModel | None,
    features: pl.DataFrame,
    current: np.ndarray | None,
    config: LifecycleConfig,
) -> tuple[float, float | None]:
    """Both segmentations of the same sample of today's customers, scored in the
    challenger's space (each model fitted its own preprocessing)."""
    idx = sample_idx(features.height, config.sample, config.seed)
    part = features[idx]
    x = challenger.transform(part)

    def score(xs: np.ndarray, labels: np.ndarray) -> float:
        return float(silhouette_score(xs, labels)) if np.unique(labels).size > 1 else -1.0

    ch = score(x, challenger.cluster_index(x)[0])
    if champion is None:
        return ch, None
    old = champion.assign(part)[0] if current is None else np.asarray(current)[idx]
    has = old >= 0
    return ch, score(x[has], old[has])


def can_score(model: FittedModel, features: pl.DataFrame) -> bool:
    """Whether ``features`` has every column ``model`` was fitted on."""
    return all(c in features.columns for c in model.plan.used)


def decide(
    challenger: FittedModel,
    champion: FittedModel | None,
    features: pl.DataFrame,
    alignment: Alignment | None = None,
    current: np.ndarray | None = None,
    config: LifecycleConfig | None = None,
    fit_shares: dict[int, float] | None = None,
    grafted: bool = False,
) -> Decision:
    """Promote when there is no champion or it cannot score today's data; when the challenger
    adds segments and is better, or retires emptied segments and is not worse; or when it is
    clearly better (module docstring). ``fit_shares``: each champion segment's share of the
    customers it was fitted on. ``grafted``: the challenger is the champion plus segments a
    refit found (:func:`graft`); its additions are judged like the retirement of emptied
    segments, a structural fact that stands unless the silhouette is clearly worse (an extra
    segment next to others lowers the silhouette even when it is real)."""
    config = config or LifecycleConfig()
    if champion is None:
        ch, _ = _silhouettes(challenger, None, features, None, config)
        return Decision(True, "first champion: there was none before", ch, None)
    if not can_score(champion, features):
        missing = [c for c in champion.plan.used if c not in features.columns]
        ch, _ = _silhouettes(challenger, None, features, None, config)
        why = f"champion cannot score today's data (features missing: {', '.join(missing)})"
        return Decision(True, why, ch, None)
    ch, old = _silhouettes(challenger, champion, features, current, config)
    transitions = alignment.transitions if alignment else ()
    n = features.height
    adds = [
        t for t in transitions
        if t.kind in ("new", "split") and t.customers >= config.min_change_share * n
    ]  # fmt: skip

    def emptied(t: Transition) -> bool:
        before = (fit_shares or {}).get(t.old_ids[0], 0.0)
        return t.customers / n < config.vanished_share * before or t.customers == 0

    removes = [t for t in transitions if t.kind in ("merged", "retired") and emptied(t)]
    # segments the customers still hold that the challenger would give up
    losses = [
        t for t in transitions
        if t.kind in ("merged", "retired") and not emptied(t)
        and t.customers >= config.min_change_share * n
    ]  # fmt: skip
    scores = f"challenger silhouette {ch:.3f} vs champion {old:.3f}"

    def what(ts: list[Transition]) -> str:
        return "; ".join(
            f"{t.kind} {'+'.join(map(str, t.old_ids)) or '-'} -> "
            f"{'+'.join(map(str, t.new_ids)) or '-'} ({t.customers:,} customers)"
            for t in ts
        )

    costs = bool(adds and losses)
    if adds and ch > old and not losses:
        return Decision(True, f"new segments: {what(adds + removes)}; {scores}", ch, old)
    if removes and not costs and ch >= old - config.structure_tolerance:
        return Decision(True, f"segments emptied: {what(removes + adds)}; {scores}", ch, old)
    if ch > old + config.promotion_margin and not costs:
        return Decision(True, f"{scores}: better by > {config.promotion_margin}", ch, old)
    if grafted and adds and not losses and ch >= old - config.structure_tolerance:
        why = f"new segments grafted onto the champion: {what(adds)}; {scores}"
        return Decision(True, why, ch, old)
    if costs:  # never at the cost of segments the customers still hold (see graft)
        why = f"champion kept: {what(adds)} would cost live segments ({what(losses)})"
        return Decision(False, f"{why}; {scores}", ch, old, costs)
    if adds or removes:
        why = f"champion kept: {what(adds + removes)} would not describe today's customers better"
    else:
        why = "champion kept: same segments"
    return Decision(False, f"{why}; {scores}", ch, old)


def far_quantiles(champion: FittedModel, reference: pl.DataFrame, q: float) -> np.ndarray:
    """Per champion cluster, the ``q`` quantile of its members' distances to the centroid on
    the snapshot it was fitted on (clusters with no member: infinity)."""
    idx, dist, _ = champion.cluster_index_rows(reference)
    return np.array(
        [np.quantile(dist[idx == i], q) if (idx == i).any() else np.inf for i in range(champion.k)]
    )


def extend_champion(
    champion: FittedModel,
    features: pl.DataFrame,
    far: np.ndarray,
    next_id: int,
    config: LifecycleConfig | None = None,
    sample: int = 50_000,
) -> FittedModel | None:
    """The champion plus a segment for each dense group of customers that sit far from every
    champion centroid (beyond ``far`` of their nearest segment, see :func:`far_quantiles`),
    or None when there is no such group of at least ``min_change_share`` of the customers.

    A new behaviour taken up by a part of the population first shows as customers leaving the
    segments' cores in the same direction; a refit of everyone may not yet give them a cluster
    of their own (the selection prefers fewer segments), but HDBSCAN on the far customers
    alone finds them as one dense group. The extended model keeps the champion's preprocessing
    and centroids (its segments and ids are untouched) and assigns by the nearest centroid."""
    from sklearn.cluster import HDBSCAN

    config = config or LifecycleConfig()
    idx = sample_idx(features.height, sample, config.seed)
    x = champion.transform(features[idx])
    d = np.sqrt(((x[:, None, :] - champion.centroids[None]) ** 2).sum(-1))
    nearest = d.argmin(axis=1)
    is_far = d[np.arange(len(idx)), nearest] > far[nearest]
    need = config.min_change_share * len(idx)
    if is_far.sum() < need:
        return None
    groups = HDBSCAN(min_cluster_size=max(10, int(need)), min_samples=10, copy=True).fit_predict(
        x[is_far]
    )
    centres = []
    for g in np.unique(groups[groups >= 0]):
        centre = x[is_far][groups == g].mean(axis=0)
        gap = np.sqrt(((champion.centroids - centre) ** 2).sum(-1))
        if (gap > far).all():  # far from every segment, not the tail of one
            centres.append(centre)
    if centres:  # a new centre must win its customers from the champion's, not a few tails
        all_centres = np.vstack([champion.centroids, *centres])
        won = ((x[:, None, :] - all_centres[None]) ** 2).sum(-1).argmin(axis=1)
        centres = [c for j, c in enumerate(centres) if (won == champion.k + j).sum() >= need]
    if not centres:
        return None
    return _with_centres(
        champion, centres, np.arange(next_id, next_id + len(centres)), features.height,
        f"the champion's {champion.k} segments plus {len(centres)} dense group(s) of customers "
        f"far from all of them ({int(is_far.sum()):,} far of {len(idx):,} sampled)",
    )  # fmt: skip


def graft(
    champion: FittedModel,
    challenger: FittedModel,
    features: pl.DataFrame,
    new_ids: list[int],
    sample: int = 50_000,
    seed: int = 0,
) -> FittedModel | None:
    """The champion plus the challenger's segments ``new_ids`` (published ids of the aligned
    challenger): each one's centre is its members' mean in the champion's space. For a
    challenger that found a new group but merged segments the customers still hold (the
    selection prefers fewer segments): the new group is taken, the live segments are kept."""
    idx = sample_idx(features.height, sample, seed)
    part = features[idx]
    ids = challenger.assign(part)[0]
    x = champion.transform(part)
    centres = [x[ids == i].mean(axis=0) for i in new_ids if (ids == i).any()]
    kept = [i for i in new_ids if (ids == i).any()]
    if not centres:
        return None
    return _with_centres(
        champion, centres, np.asarray(kept), features.height,
        f"the champion's {champion.k} segments plus {len(centres)} new segment(s) of a refit "
        "that would have merged segments the customers still hold",
    )  # fmt: skip


def _candidate(model: FittedModel, decision: Decision) -> clustering.Candidate:
    """The record of a model built from the champion (not searched): its silhouette is the one
    the decision measured on today's customers; the search's other scores do not apply."""
    return clustering.Candidate(
        algorithm=model.algorithm,
        k=model.k,
        silhouette=decision.challenger_silhouette,
        davies_bouldin=float("nan"),
        calinski_harabasz=float("nan"),
        min_segment_share=float("nan"),
        rejected=None,
    )


def _with_centres(
    champion: FittedModel, centres: list[np.ndarray], new_ids: np.ndarray, n: int, why: str
) -> FittedModel:
    """The champion with ``centres`` appended (ids ``new_ids``): same preprocessing and
    segments, assignment by the nearest centroid."""
    estimator = clustering.CentroidClusters()
    estimator.cluster_centers_ = np.vstack([champion.centroids, *centres])
    estimator.n_clusters_ = estimator.cluster_centers_.shape[0]
    return FittedModel(
        preprocessor=champion.preprocessor,
        estimator=estimator,
        algorithm=champion.algorithm,
        plan=champion.plan,
        k=estimator.n_clusters_,
        candidates=[],  # not a searched candidate: resegment records the decision's score
        selection_reason=why,
        n_train=n,
        segment_ids=np.r_[champion.segment_ids, new_ids],
    )


@dataclass
class Resegmentation:
    """What one re-segmentation produced: the challenger (ids aligned), how its segments relate
    to the current ones, the decision, and names for the segments it introduces."""

    challenger: FittedModel
    alignment: Alignment | None
    decision: Decision
    names: dict[int, str]


def resegment(
    features: pl.DataFrame,
    champion: FittedModel | None,
    current: np.ndarray | None,
    next_id: int,
    active_names: dict[int, str],
    selection: clustering.SelectionConfig | None = None,
    config: LifecycleConfig | None = None,
    fit_shares: dict[int, float] | None = None,
    far: np.ndarray | None = None,
) -> Resegmentation:
    """Fit a challenger on ``features`` and decide whether it replaces ``champion``.

    ``current``: each row's published segment id under the champion (negative: none yet);
    ``next_id``: the first never-used segment id; ``active_names``: names of the champion's
    segments (a kept segment keeps its name, a new one is named from its profile);
    ``fit_shares``: each champion segment's share at fit (to see which ones emptied);
    ``far``: per champion cluster, the distance beyond which a customer is far from it
    (:func:`far_quantiles`); with it, a dense group of far customers is a candidate too."""
    config = config or LifecycleConfig()
    challenger = clustering.fit(features, selection)
    alignment = None
    scorable = champion is not None and can_score(champion, features)
    if not scorable:
        challenger.segment_ids = np.arange(next_id, next_id + challenger.k)
    else:
        alignment = align_to_champion(challenger, champion, next_id, features, current, config)
        challenger.segment_ids = alignment.segment_ids
    decision = decide(challenger, champion, features, alignment, current, config, fit_shares)
    # a challenger that found new segments but would give up live ones: the champion plus
    # the new segments, when that is promoted on its own terms
    fresh = [i for t in (alignment.transitions if alignment else ())
             if t.kind in ("new", "split") for i in t.new_ids if i >= next_id]  # fmt: skip
    if scorable and not decision.promote and decision.costs_live_segments and fresh:
        grafted = graft(champion, challenger, features, fresh, seed=config.seed)
        if grafted is not None:
            g_align = align_to_champion(grafted, champion, next_id, features, current, config)
            grafted.segment_ids = g_align.segment_ids
            g_decision = decide(
                grafted, champion, features, g_align, current, config, fit_shares, grafted=True
            )
            if g_decision.promote:
                challenger, alignment, decision = grafted, g_align, g_decision
    if scorable and not decision.promote and far is not None:
        extended = extend_champion(champion, features, far, next_id, config)
        if extended is not None:
            ext_align = align_to_champion(extended, champion, next_id, features, current, config)
            extended.segment_ids = ext_align.segment_ids
            ext_decision = decide(
                extended, champion, features, ext_align, current, config, fit_shares
            )
            if ext_decision.promote:
                challenger, alignment, decision = extended, ext_align, ext_decision
    if not challenger.candidates:  # built from the champion (graft, extension): not searched
        challenger.candidates = [_candidate(challenger, decision)]
    names: dict[int, str] = {}
    if decision.promote:
        ids = {int(s) for s in challenger.segment_ids}
        fresh = ids - set(alignment.matched if alignment else ())
        taken = {n for sid, n in active_names.items() if sid in ids}
        names = names_for(challenger, features, fresh, taken)
    return Resegmentation(challenger, alignment, decision, names)


def names_for(
    model: FittedModel, features: pl.DataFrame, segment_ids: set[int], taken: set[str]
) -> dict[int, str]:
    """Names for ``segment_ids`` of ``model`` from their profiles (names in ``taken`` are
    not reused)."""
    if not segment_ids:
        return {}
    ids, _, _ = model.assign(features)
    segments = features.select("customer_id").with_columns(segment_id=ids)
    cols = list(model.plan.used)  # name by what the model could see, not by absent features
    prof = profiling.profile_segments(features, segments, cols)
    z = naming.zscores(prof.filter(pl.col("segment_id").is_in(list(segment_ids))), features, cols)
    return naming.name_segments(z, taken) if z.height else {}


def migration_matrix(previous: pl.DataFrame, current: pl.DataFrame) -> pl.DataFrame:
    """Customers moving between segments: one row per (from, to) pair with a count.

    Both frames have ``customer_id`` and ``segment_id``. Customers only in ``current`` come
    from segment NULL (joined); only in ``previous`` go to NULL (left).
    """
    joined = previous.select("customer_id", from_segment="segment_id").join(
        current.select("customer_id", to_segment="segment_id"),
        on="customer_id",
        how="full",
        coalesce=True,
    )
    return (
        joined.group_by("from_segment", "to_segment")
        .agg(customers=pl.len())
        .sort("from_segment", "to_segment", nulls_last=True)
    )


def migration_pivot(
    matrix: pl.DataFrame, labels: dict[int, str], min_group_size: int = 0
) -> pl.DataFrame:
    """from x to, rows and columns in segment-id order, labelled "name (id)"; customers who
    are new or left are the "new" row and the "left" column. A cell of fewer than
    ``min_group_size`` customers (but some) is empty: too few to publish; so is the smallest
    other cell of its row or column where it would otherwise be the total less the rest
    (:func:`_complement_cells`)."""

    def label(col: str, missing: str) -> pl.Expr:
        return (
            pl.col(col).replace_strict(labels, default=None, return_dtype=pl.String)
            .fill_null(pl.col(col).cast(pl.String)).fill_null(missing)
        )  # fmt: skip

    order = [labels.get(i, str(i)) for i in sorted(matrix["to_segment"].drop_nulls().unique())]
    small = pl.col("customers") < min_group_size
    pivot = (
        matrix.sort("from_segment", "to_segment", nulls_last=True)
        .with_columns(
            from_segment=label("from_segment", "new"),
            to=label("to_segment", "left"),
            customers=pl.when(small).then(-1).otherwise(pl.col("customers").cast(pl.Int64)),
        )
        .pivot(on="to", index="from_segment", values="customers")
        .fill_null(0)  # no customer moved that way
    )
    cols = [c for c in order if c in pivot.columns] + (["left"] if "left" in pivot.columns else [])
    values = _complement_cells(pivot.select(cols).to_numpy().astype(np.int64))
    hidden = pl.DataFrame(values, schema=cols, orient="row")
    return pivot.select("from_segment").with_columns(
        pl.when(hidden[c] >= 0).then(hidden[c]).alias(c) for c in cols
    )


def _complement_cells(values: np.ndarray) -> np.ndarray:
    """``values`` (-1: a hidden cell) with more cells hidden until no row or column has
    exactly one: their totals (the segments' sizes before and after) are published, and one
    hidden cell would be the total less the cells shown. The cell that goes is one with
    customers in that row or column: the smallest whose column (or row) also has one hidden
    cell alone, so one cell closes both, else the smallest. An empty cell (0) is no one's and
    stays."""
    out = values.copy()
    changed = True
    while changed:
        changed = False
        for grid in (out, out.T):  # rows, then columns (a view: hides in ``out``)
            for line in grid:
                shown = np.flatnonzero(line > 0)
                if (line < 0).sum() != 1 or not shown.size:
                    continue
                closing = [j for j in shown if (grid[:, j] < 0).sum() == 1]
                pick = closing or list(shown)
                line[min(pick, key=lambda j: line[j])] = -1
                changed = True
    return out


def unchanged_share(previous: pl.DataFrame, current: pl.DataFrame) -> float:
    """Share of customers present in both whose segment id did not change."""
    j = previous.join(current, on="customer_id", how="inner", suffix="_now")
    return float((j["segment_id"] == j["segment_id_now"]).mean()) if j.height else float("nan")


def membership_changes(previous: pl.DataFrame, current: pl.DataFrame) -> pl.DataFrame:
    """Rows (customer_id, segment_id, change) for everyone who joined or left a segment."""
    both = previous.join(current, on="customer_id", how="full", coalesce=True, suffix="_now")
    moved = both.filter(pl.col("segment_id").ne_missing(pl.col("segment_id_now")))
    left = moved.filter(pl.col("segment_id").is_not_null()).select(
        "customer_id", "segment_id", change=pl.lit("left")
    )
    joined = moved.filter(pl.col("segment_id_now").is_not_null()).select(
        "customer_id", segment_id="segment_id_now", change=pl.lit("joined")
    )
    return pl.concat([left, joined]).sort("customer_id", "change")
