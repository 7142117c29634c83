"""Range checks for configuration values: configuration is untrusted input.

Each configuration dataclass declares a ``RULES`` table (field name -> :class:`Rule`) and
applies it in ``__post_init__`` (:func:`apply`); a loader checks the raw values of a file or an
environment variable against the same table before any type conversion (:func:`check_raw`), so
``true`` is never read as 1 nor ``"8"`` as 8. A failed rule is a :class:`CheckError` whose
message is ``<key>: <rule>, got <value>``; :func:`where` puts the file (or the environment
variable the value came from) and the section in front of it::

    segmentation.yml: selection: k_max: must be a whole number >= 2, got 1

No dagster import: the CLI, the jobs and the schedules module read the same checks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any


class CheckError(ValueError):
    """A configuration value broke its rule; ``key`` and ``rule`` name which."""

    def __init__(self, key: str, rule: str, value: object, detail: str | None = None) -> None:
        self.key, self.rule, self.value = key, rule, value
        why = f" ({detail})" if detail else ""
        super().__init__(f"{key}: must be {rule}, got {value!r}{why}")


@dataclass(frozen=True)
class Rule:
    """What a value must be (``text`` completes "must be ...") and the test of it."""

    text: str
    test: Callable[[Any], bool]
    #: what exactly is wrong with a value that failed (added to the message), if it can say
    explain: Callable[[Any], str | None] | None = None

    def check(self, key: str, value: object) -> None:
        """Raise :class:`CheckError` naming ``key`` unless ``value`` passes."""
        try:
            ok = bool(self.test(value))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise CheckError(key, self.text, value, self.explain(value) if self.explain else None)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    if not isinstance(v, int | float) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # a whole number too large for a float (400 digits)
        return False


def whole(minimum: int = 0, maximum: int | None = None) -> Rule:
    """A whole number (not a bool) >= ``minimum`` (and <= ``maximum``)."""
    text = (
        f"a whole number >= {minimum}"
        if maximum is None
        else f"a whole number in [{minimum}, {maximum}]"
    )
    return Rule(text, lambda v: _is_int(v) and v >= minimum and (maximum is None or v <= maximum))


def number(
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> Rule:
    """A finite number (not a bool) in the range; ``*_open`` leaves that end out."""

    def test(v: object) -> bool:
        if not _is_number(v):
            return False
        x = float(v)  # type: ignore[arg-type]
        if low is not None and (x <= low if low_open else x < low):
            return False
        return not (high is not None and (x >= high if high_open else x > high))

    if low is not None and high is not None:
        text = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low is not None:
        text = f"a finite number {'>' if low_open else '>='} {low:g}"
    elif high is not None:
        text = f"a finite number {'<' if high_open else '<='} {high:g}"
    else:
        text = "a finite number"
    return Rule(text, test)


def fraction() -> Rule:
    """A share: a number in (0, 1]."""
    return number(0, 1, low_open=True)


def one_of(allowed: Collection[object]) -> Rule:
    """One of the ``allowed`` values (bools are not 0 and 1)."""
    items = tuple(allowed)
    return Rule(
        f"one of {', '.join(map(str, items))}",
        lambda v: type(v) in {type(a) for a in items} and v in items,
    )


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def identifier() -> Rule:
    """A non-empty plain name (letters, digits, _; not starting with a digit)."""
    return Rule(
        "a non-empty identifier (letters, digits, _)",
        lambda v: isinstance(v, str) and len(v) <= 128 and _IDENTIFIER.fullmatch(v) is not None,
    )


def optional(rule: Rule) -> Rule:
    """Empty (None), or ``rule``."""
    return Rule(f"empty or {rule.text}", lambda v: v is None or rule.test(v))


def each(rule: Rule, *, non_empty: bool = True, unique: bool = False) -> Rule:
    """A list (or tuple) whose every item passes ``rule``."""
    text = f"a {'non-empty ' if non_empty else ''}list{' without repeats' if unique else ''}"
    return Rule(
        f"{text}, each {rule.text}",
        lambda v: (
            isinstance(v, list | tuple)
            and (bool(v) or not non_empty)
            and all(rule.test(x) for x in v)
            and (not unique or len(set(v)) == len(v))
        ),
    )


# --- cron ----------------------------------------------------------------------------------

_MONTHS = ("jan feb mar apr may jun jul aug sep oct nov dec").split()
_DAYS = ("sun mon tue wed thu fri sat").split()
#: the five fields: name, lowest, highest, names (the first name is ``lowest``)
CRON_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, tuple(_MONTHS)),
    ("day of week", 0, 7, tuple(_DAYS)),  # 0 and 7: Sunday
)


def _cron_value(text: str, low: int, high: int, names: tuple[str, ...]) -> int | None:
    if text.isdigit():
        v = int(text)
        return v if low <= v <= high else None
    if text.lower() in names:
        return low + names.index(text.lower())
    return None


def cron_problem(expression: object) -> str | None:
    """Why ``expression`` is not a five-field cron expression (None when it is one): each
    field ``*``, ``*/n``, ``a``, ``a-b``, ``a-b/n`` or a comma list of those, within the
    field's range (month and day-of-week names such as ``jan``, ``mon`` too)."""
    if not isinstance(expression, str):
        return "not text"
    parts = expression.split()
    if len(parts) != 5:
        return f"{len(parts)} fields, need 5"
    for part, (name, low, high, names) in zip(parts, CRON_FIELDS, strict=True):
        for item in part.split(","):
            base, _, step = item.partition("/")
            if step and not (step.isdigit() and 1 <= int(step) <= high):
                return f"{name} {part!r}: step {step!r} must be a whole number in [1, {high}]"
            if base == "*":
                continue
            lo, dash, hi = base.partition("-")
            a = _cron_value(lo, low, high, names)
            b = _cron_value(hi, low, high, names) if dash else a
            if a is None or b is None or a > b:
                return (
                    f"{name} {part!r}: expected *, */n, a, a-b or a list, each in [{low}, {high}]"
                )
            if step and not dash:
                return f"{name} {part!r}: a step needs * or a range before it"
    return None


def cron() -> Rule:
    """A five-field cron expression (see :func:`cron_problem`)."""
    return Rule(
        "a cron expression of 5 fields (minute hour day-of-month month day-of-week)",
        lambda v: cron_problem(v) is None,
        cron_problem,
    )


# --- applying a table ------------------------------------------------------------------------


def apply(config: object, rules: Mapping[str, Rule]) -> None:
    """Check every field of ``config`` named in ``rules`` (a dataclass's ``__post_init__``)."""
    for key, rule in rules.items():
        rule.check(key, getattr(config, key))


def check_raw(raw: Mapping[str, object], rules: Mapping[str, Rule]) -> None:
    """Check the values a file or variable gave, as given (before any type conversion)."""
    for key, value in raw.items():
        if key in rules:
            rules[key].check(str(key), value)


def where(source: object, section: str, error: ValueError) -> str:
    """The message of ``error`` with the file (or environment variable) and the section in
    front: ``<source>: <section>: <key>: <rule>, got <value>``."""
    return f"{source}: {section}: {error}"
