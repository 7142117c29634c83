"""Launchpad Config classes derived from the core dataclasses they configure.

A tunable is defined once, in its core dataclass (its default and its meaning); the Dagster
Config that shows it in the launchpad takes its default from there (:func:`core_field`) and
turns back into the dataclass with :func:`to_core`, so no default is written twice.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import dagster as dg
from pydantic import Field

T = TypeVar("T")


def core_field(defaults: object, name: str, description: str) -> Any:
    """A launchpad field whose default is ``defaults.<name>`` (a core dataclass instance).
    A tuple becomes a list (the launchpad edits lists)."""
    value = getattr(defaults, name)
    if isinstance(value, tuple):
        value = list(value)
    return Field(default=value, description=description)


def to_core(cls: type[T], config: dg.Config, **values: object) -> T:
    """The core dataclass ``cls`` from the launchpad ``config``: each of its fields from the
    Config field of the same name (a list back to a tuple where the dataclass has a tuple),
    ``values`` for fields named or typed differently; fields the launchpad does not show keep
    the dataclass's default."""
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(values) - fields
    if unknown:
        raise TypeError(f"{cls.__name__} has no field(s) {sorted(unknown)}")
    defaults = cls()
    kwargs: dict[str, object] = dict(values)
    for name in fields - set(values):
        if name in type(config).model_fields:
            value = getattr(config, name)
            kwargs[name] = tuple(value) if isinstance(getattr(defaults, name), tuple) else value
    return cls(**kwargs)
