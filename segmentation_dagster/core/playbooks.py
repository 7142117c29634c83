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
from segmentation_dagster.core.settings import (
    DBT_PROJECT_DIR,
    config_dir,
    load_yaml,
    read_yaml_mapping,
)

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


def _problem(path: Path, where: str, rule: checks.Rule, key: str, value: Any) -> str | None:  # noqa: ANN401
    try:
        rule.check(key, value)
    except checks.CheckError as e:
        return checks.where(path, where, e)
    return None


def _playbook(path: Path, where: str, raw: Any, fallback: bool = False) -> Playbook:  # noqa: ANN401
    """One playbook, every broken key of it named at once (:class:`PlaybookError`)."""
    if not isinstance(raw, dict):
        keys = "name, action, recommend" if fallback else "name, action, when, recommend"
        raise PlaybookError(f"{path}: {where}: must be a mapping ({keys})")
    problems: list[str] = []
    allowed = {"name", "action", "recommend"} | (set() if fallback else {"when"})
    unknown = sorted(str(k) for k in set(raw) - allowed)
    if unknown:
        problems.append(f"{path}: {where}: unknown key(s) {unknown} (known: {sorted(allowed)})")
    name = raw.get("name")
    if bad := _problem(path, where, RULES["name"], "name", name):
        problems.append(bad)
    else:
        where = f"{where} ({name.strip()})"
    recommend = raw.get("recommend", "nothing")
    for key, value in (("action", raw.get("action")), ("recommend", recommend)):
        if bad := _problem(path, where, RULES[key], key, value):
            problems.append(bad)
    conditions: list[Condition] = []
    when = raw.get("when")
    if not fallback and (not isinstance(when, dict) or not when):
        problems.append(f"{path}: {where}.when: must map features to conditions")
    for feature, test in (when or {}).items() if isinstance(when, dict) else ():
        if not isinstance(test, dict) or not test:
            problems.append(
                f"{path}: {where}.when.{feature}: must be a mapping such as {{z_above: 0.5}}"
            )
            continue
        for op, value in test.items():
            if op not in OPERATORS:
                problems.append(
                    f"{path}: {where}.when.{feature}: unknown operator {op!r} "
                    f"(known: {', '.join(OPERATORS)})"
                )
            elif bad := _problem(path, f"{where}.when.{feature}", VALUE, op, value):
                problems.append(bad)
            else:
                conditions.append(Condition(str(feature), op, float(value)))
    if problems:
        raise PlaybookError("\n".join(problems))
    return Playbook(name.strip(), raw["action"].strip(), tuple(conditions), recommend)


def load(path: Path | None = None) -> Playbooks:
    """Parse and check a playbooks file (default: :func:`playbook_file`); every broken value
    of the file is named in one :class:`PlaybookError`, one line each."""
    path = path or playbook_file()
    raw = read_yaml_mapping(path, PlaybookError, "playbooks and a fallback")
    problems: list[str] = []
    unknown = sorted(str(k) for k in set(raw) - {"playbooks", "fallback"})
    if unknown:
        problems.append(f"{path}: unknown key(s) {unknown} (known: playbooks, fallback)")
    items = raw.get("playbooks")
    if not isinstance(items, list) or not items:
        problems.append(f"{path}: playbooks: must be a non-empty list")
        items = []
    parts = [(f"playbooks[{i}]", r, False) for i, r in enumerate(items)]
    if raw.get("fallback") is not None:
        parts.append(("fallback", raw["fallback"], True))
    parsed: list[Playbook] = []
    for where, item, is_fallback in parts:
        try:
            parsed.append(_playbook(path, where, item, fallback=is_fallback))
        except PlaybookError as e:
            problems.append(str(e))
    names = [r.get("name") for r in items if isinstance(r, dict)]
    repeated = sorted({str(n) for n in names if names.count(n) > 1})
    if repeated:  # named with the others, not once they are fixed
        problems.append(f"{path}: playbooks: names must be unique, {repeated} repeated")
    if problems:
        raise PlaybookError("\n".join(problems))
    if raw.get("fallback") is not None:
        *rules, fallback = parsed
    else:
        rules, fallback = parsed, Playbook("none", "No targeted action", (), "nothing")
    return Playbooks(tuple(rules), fallback, path)


#: dbt data types of customer_features' contract that are numbers (profiled features)
_NUMERIC_TYPES = ("bigint", "integer", "int", "smallint", "double", "float", "real", "decimal")


def contract_features() -> list[str]:
    """The features a segment is profiled on, known before any data: the numeric columns of
    ``customer_features``' enforced contract (``dbt_project/models/marts/_marts.yml``), as
    :func:`clustering.candidate_columns` takes them from the table."""
    from segmentation_dagster.core.clustering import ID_COLUMNS, NON_FEATURES

    spec = load_yaml((DBT_PROJECT_DIR / "models" / "marts" / "_marts.yml").read_text())
    model = next(m for m in spec["models"] if m["name"] == "customer_features")
    return [
        c["name"]
        for c in model["columns"]
        if str(c.get("data_type", "")).split("(")[0].lower() in _NUMERIC_TYPES
        and c["name"] not in (*ID_COLUMNS, *NON_FEATURES)
    ]


def load_checked(path: Path | None = None) -> Playbooks:
    """:func:`load`, and every condition's feature checked against :func:`contract_features`
    (what ``segmentation check`` and a run's start read: a misspelt feature is refused before
    anything is loaded)."""
    rules = load(path)
    check_features(rules, contract_features())
    return rules


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
