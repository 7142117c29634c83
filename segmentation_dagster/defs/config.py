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
    return dataclasses.replace(base, **kwargs)  # type: ignore[type-var]
