"""Playbooks: a recommended action per segment, chosen from the segment's measured profile.

The rules are a readable YAML file (the default beside this module; ``playbooks.yml`` in the
configuration folder replaces it): each playbook names an action, the conditions on the
segment's features under which it applies, and what to recommend with it. A segment gets the
first playbook whose conditions all hold, else the fallback; the evidence (each condition with
the segment's value, the population's and the distance in standard deviations) goes with it,
so nobody has to trust a name.

The file is configuration, so untrusted: it is parsed into typed conditions (a feature name
checked against the profiled features, an operator from a fixed list, a finite number);
nothing in it is evaluated or reaches SQL.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from segmentation_dagster.core import checks
from segmentation_dagster.core.settings import config_dir, read_yaml_mapping

FILE_NAME = "playbooks.yml"
DEFAULT_FILE = Path(__file__).with_name(FILE_NAME)
#: operator -> (compared quantity, direction)
OPERATORS = {"z_above": ("z", 1), "z_below": ("z", -1), "above": ("mean", 1), "below": ("mean", -1)}
RECOMMEND = ("top_categories", "top_products", "nothing")


class PlaybookError(ValueError):
    """The playbooks file is not valid (the message names the file and the key)."""


@dataclass(frozen=True)
class Condition:
    feature: str
    operator: str
    value: float

    def holds(self, mean: float | None, z: float | None) -> bool:
        quantity, direction = OPERATORS[self.operator]
        x = z if quantity == "z" else mean
        if x is None or not math.isfinite(x):
            return False  # a feature the data cannot measure proves nothing
        return (x - self.value) * direction > 0

    def evidence(self, mean: float, population: float, z: float) -> str:
        return f"{self.feature} {mean:.3g} vs {population:.3g} overall (z {z:+.2f})"


@dataclass(frozen=True)
class Playbook:
    name: str
    action: str
    when: tuple[Condition, ...]
    recommend: str


@dataclass(frozen=True)
class Playbooks:
    """The rules in order, the fallback, and the file they came from."""

    rules: tuple[Playbook, ...]
    fallback: Playbook
    path: Path

    def features(self) -> set[str]:
        return {c.feature for p in self.rules for c in p.when}


def playbook_file() -> Path:
    """The configuration folder's ``playbooks.yml`` when there is one, else the default."""
    own = config_dir() / FILE_NAME
    return own if own.is_file() else DEFAULT_FILE


#: each playbook key's rule (a condition's value: a finite number)
RULES: dict[str, checks.Rule] = {
    "name": checks.Rule(
        "a non-empty text of at most 60 chars",
        lambda v: isinstance(v, str) and bool(v.strip()) and len(v) <= 60,
    ),
    "action": checks.Rule(
        "a non-empty text of at most 300 chars",
        lambda v: isinstance(v, str) and bool(v.strip()) and len(v) <= 300,
    ),
    "recommend": checks.one_of(RECOMMEND),
}
VALUE = checks.number()


def _check(path: Path, where: str, rule: checks.Rule, key: str, value: Any) -> None:  # noqa: ANN401
    try:
        rule.check(key, value)
    except checks.CheckError as e:
        raise PlaybookError(checks.where(path, where, e)) from e


def _text(path: Path, where: str, key: str, value: Any) -> str:  # noqa: ANN401
    _check(path, where, RULES[key], key, value)
    return value.strip()


def _playbook(path: Path, where: str, raw: Any, fallback: bool = False) -> Playbook:
    if not isinstance(raw, dict):
        raise PlaybookError(f"{path}: {where}: must be a mapping (name, action, when, recommend)")
    allowed = {"name", "action", "recommend"} | (set() if fallback else {"when"})
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise PlaybookError(f"{path}: {where}: unknown key(s) {unknown} (known: {sorted(allowed)})")
    name = _text(path, where, "name", raw.get("name"))
    where = f"{where} ({name})"
    action = _text(path, where, "action", raw.get("action"))
    recommend = raw.get("recommend", "nothing")
    _check(path, where, RULES["recommend"], "recommend", recommend)
    conditions: list[Condition] = []
    when = raw.get("when")
    if not fallback:
        if not isinstance(when, dict) or not when:
            raise PlaybookError(f"{path}: {where}.when: must map features to conditions")
        for feature, test in when.items():
            if not isinstance(test, dict) or not test:
                raise PlaybookError(
                    f"{path}: {where}.when.{feature}: must be a mapping such as {{z_above: 0.5}}"
                )
            for op, value in test.items():
                if op not in OPERATORS:
                    raise PlaybookError(
                        f"{path}: {where}.when.{feature}: unknown operator {op!r} "
                        f"(known: {', '.join(OPERATORS)})"
                    )
                _check(path, f"{where}.when.{feature}", VALUE, op, value)
                conditions.append(Condition(str(feature), op, float(value)))
    return Playbook(name, action, tuple(conditions), recommend)


def load(path: Path | None = None) -> Playbooks:
    """Parse and check a playbooks file (default: :func:`playbook_file`)."""
    path = path or playbook_file()
    raw = read_yaml_mapping(path, PlaybookError, "playbooks and a fallback")
    unknown = sorted(set(raw) - {"playbooks", "fallback"})
    if unknown:
        raise PlaybookError(f"{path}: unknown key(s) {unknown} (known: playbooks, fallback)")
    items = raw.get("playbooks")
    if not isinstance(items, list) or not items:
        raise PlaybookError(f"{path}: playbooks: must be a non-empty list")
    rules = tuple(_playbook(path, f"playbooks[{i}]", r) for i, r in enumerate(items))
    names = [r.name for r in rules]
    if len(set(names)) != len(names):
        raise PlaybookError(f"{path}: playbooks: names must be unique, got {names}")
    fallback = (
        _playbook(path, "fallback", raw["fallback"], fallback=True)
        if raw.get("fallback") is not None
        else Playbook("none", "No targeted action", (), "nothing")
    )
    return Playbooks(rules, fallback, path)


def check_features(playbooks: Playbooks, known: Collection[str]) -> None:
    """Every condition names a profiled feature (an unknown name is a typo, not a no-match)."""
    unknown = sorted(playbooks.features() - set(known))
    if unknown:
        raise PlaybookError(
            f"{playbooks.path}: unknown feature(s) {unknown} in `when` "
            f"(known: {', '.join(sorted(known))})"
        )


def choose(lift: pl.DataFrame, top_items: pl.DataFrame, playbooks: Playbooks) -> pl.DataFrame:
    """One row per segment of ``lift`` (segment_id, feature, segment_mean, population_mean, z):
    the playbook, its action, the evidence and the recommended items (from ``top_items``:
    segment_id, kind ('category' | 'product'), item, purchases)."""
    check_features(playbooks, set(lift["feature"].unique()))
    kinds = {"top_categories": "category", "top_products": "product"}
    rows = []
    for (segment_id,), part in lift.partition_by("segment_id", as_dict=True).items():
        stats = {
            r["feature"]: (r["segment_mean"], r["population_mean"], r["z"])
            for r in part.iter_rows(named=True)
        }
        chosen, evidence = playbooks.fallback, ["no playbook's conditions all hold"]
        for rule in playbooks.rules:
            if all(c.holds(stats[c.feature][0], stats[c.feature][2]) for c in rule.when):
                chosen = rule
                evidence = [c.evidence(*stats[c.feature]) for c in rule.when]
                break
        items = (
            top_items.filter(
                (pl.col("segment_id") == segment_id) & (pl.col("kind") == kinds[chosen.recommend])
            )
            .sort("purchases", descending=True)["item"]
            .cast(pl.String)
            .to_list()
            if chosen.recommend in kinds
            else []
        )
        rows.append(
            {
                "segment_id": int(segment_id),
                "playbook": chosen.name,
                "action": chosen.action,
                "evidence": "; ".join(evidence),
                "recommended": ", ".join(items),
            }
        )
    schema = {"segment_id": pl.Int64, "playbook": pl.String, "action": pl.String,
              "evidence": pl.String, "recommended": pl.String}  # fmt: skip
    return pl.DataFrame(rows, schema=schema).sort("segment_id")
