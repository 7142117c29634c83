"""Launchpad Config classes derived from the core dataclasses they configure.

A tunable is defined once, in its core dataclass (its default and its meaning). The project
file (``segmentation.yml``, :mod:`segmentation_dagster.core.project`) sets it for every run;
the Dagster Config that shows it in the launchpad overrides it for one run. A launchpad field
is empty unless set (:func:`core_field`, its description names the built-in default), and
:func:`to_core` lays the fields that are set over the project file's dataclass, so no default
is written twice and a run without run config (a schedule, the sensor) uses the file.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import dagster as dg
from pydantic import Field

from segmentation_dagster.core import checks, clustering, lifecycle, segments

T = TypeVar("T")


def core_field(defaults: object, name: str, description: str) -> Any:
    """A launchpad field for ``defaults.<name>`` (a core dataclass instance): empty (None)
    means the project file's value, else the built-in default, shown in the description."""
    value = getattr(defaults, name)
    if isinstance(value, tuple):
        value = list(value)
    return Field(default=None, description=f"{description} Empty: project file, else {value!r}.")


def to_core(cls: type[T], config: dg.Config, base: T | None = None, **values: object) -> T:
    """The core dataclass ``cls``: ``base`` (the project file's, default the built-in
    defaults) with every Config field of the same name that is set laid over it (a list back
    to a tuple where the dataclass has a tuple), and ``values`` (fields named or typed
    differently) that are not None."""
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(values) - fields
    if unknown:
        raise TypeError(f"{cls.__name__} has no field(s) {sorted(unknown)}")
    base = base if base is not None else cls()
    kwargs: dict[str, object] = {k: v for k, v in values.items() if v is not None}
    for name in fields - set(values):
        if name in type(config).model_fields and getattr(config, name) is not None:
            value = getattr(config, name)
            kwargs[name] = tuple(value) if isinstance(getattr(base, name), tuple) else value
    try:  # the dataclass checks every value against its RULES
        return dataclasses.replace(base, **kwargs)  # type: ignore[type-var]
    except checks.CheckError as e:
        raise ValueError(checks.where("run config", cls.__name__, e)) from e


_SEL = clustering.SelectionConfig()
_LIFE = lifecycle.LifecycleConfig()


class SegmentationConfig(dg.Config):
    """How a challenger is selected and when it replaces the champion (launchpad-editable).
    Defaults are the core dataclasses' (clustering.SelectionConfig, lifecycle.LifecycleConfig)."""

    k_min: int | None = core_field(_SEL, "k_min", "Smallest number of segments tried.")
    k_max: int | None = core_field(_SEL, "k_max", "Largest number of segments tried.")
    algorithms: list[str] | None = core_field(
        _SEL,
        "algorithms",
        f"Candidate families, from {', '.join(clustering.ALGORITHMS)} (gmm: a diagonal "
        "Gaussian mixture).",
    )
    silhouette_sample: int | None = core_field(
        _SEL, "silhouette_sample", "Customers sampled (fixed seed) for every pairwise metric."
    )
    search_sample: int | None = core_field(
        _SEL, "search_sample", "Candidates and bootstraps are fitted on this many customers."
    )
    fit_sample: int | None = core_field(
        _SEL, "fit_sample", "A chosen KMeans is refitted on this many customers."
    )
    min_segment_share: float | None = core_field(
        _SEL, "min_segment_share", "A candidate with a smaller segment than this share is out."
    )
    silhouette_tolerance: float | None = core_field(
        _SEL,
        "silhouette_tolerance",
        "Fewest segments whose silhouette is within this of the best. Unset everywhere (the "
        "default): one standard error of the best candidate's silhouette.",
    )
    min_stability: float | None = core_field(
        _SEL, "min_stability", "Minimum bootstrap stability (mean ARI between refits)."
    )
    exclude_features: list[str] | None = core_field(
        _SEL, "exclude", "customer_features columns kept out of the fit (still profiled)."
    )
    keep_overlap: float | None = core_field(
        _LIFE,
        "keep_overlap",
        "A challenger segment keeps a current segment's id when their members overlap at "
        "least this much (Jaccard).",
    )
    structure_tolerance: float | None = core_field(
        _LIFE,
        "structure_tolerance",
        "A challenger that retires segments the customers have left is promoted unless its "
        "silhouette is worse by more than this.",
    )
    far_quantile: float | None = core_field(
        _LIFE,
        "far_quantile",
        "A customer is far from their segment beyond this quantile of its members' distances "
        "at fit; a dense group of far customers can become a new segment.",
    )
    promotion_margin: float | None = core_field(
        _LIFE,
        "promotion_margin",
        "Without a structural change the challenger must beat the champion's silhouette on "
        "today's customers by this.",
    )
    seed: int | None = core_field(_SEL, "seed", "Random seed for sampling and fitting.")

    def selection(
        self, base: clustering.SelectionConfig | None = None
    ) -> clustering.SelectionConfig:
        """The selection in effect: ``base`` (the project file's) with the fields set here."""
        exclude = None if self.exclude_features is None else tuple(self.exclude_features)
        return to_core(clustering.SelectionConfig, self, base, exclude=exclude)

    def lifecycle(
        self,
        base: lifecycle.LifecycleConfig | None = None,
        selection: clustering.SelectionConfig | None = None,
    ) -> lifecycle.LifecycleConfig:
        """The lifecycle in effect; it judges changes by the selection's smallest segment, on
        its sample."""
        selection = selection or self.selection()
        base = base or lifecycle.LifecycleConfig()
        default = lifecycle.LifecycleConfig()
        return to_core(
            lifecycle.LifecycleConfig,
            self,
            base,
            # unless the project file set them
            min_change_share=selection.min_segment_share
            if base.min_change_share == default.min_change_share
            else None,
            sample=selection.silhouette_sample if base.sample == default.sample else None,
        )


_ASSIGN = segments.AssignmentConfig()


class AssignmentConfig(dg.Config):
    """How the daily assignment moves customers between the champion's segments. Defaults are
    the core dataclass's (core.segments.AssignmentConfig)."""

    hysteresis: float | None = core_field(
        _ASSIGN,
        "hysteresis",
        "A customer leaves their segment only for one whose centroid is nearer by more than "
        "this share of the distance to their own (0: always the nearest).",
    )
    free_after_change_days: int | None = core_field(
        _ASSIGN,
        "free_after_change_days",
        "A customer whose behaviour changed significantly in the last this-many days "
        "(customer_features.last_regime_change) moves to the nearest segment freely.",
    )

    def assignment(
        self, base: segments.AssignmentConfig | None = None
    ) -> segments.AssignmentConfig:
        return to_core(segments.AssignmentConfig, self, base)
