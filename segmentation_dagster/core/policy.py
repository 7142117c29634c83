"""When is behaviour drift real enough to re-segment? A small state machine with hysteresis.

- **Enter** "drifted" when the score is at or above ``enter_threshold`` in ``k`` of the last
  ``n`` checks (one noisy day is not a shift).
- **Trigger** a re-segmentation once per drifted episode, only after ``cooldown_days`` since
  the reference was last reset (a refit, or the first check of a new champion).
- **Retry** while still drifted ``retry_days`` after a trigger with no new champion (the
  challenger found the same structure: e.g. a new group of customers was still too small to
  form a segment of its own). Without it a shift the first challenger could not capture would
  never be re-fitted.
- **Leave** "drifted" when the score falls below ``exit_threshold``.
- Checks with fewer than ``min_customers`` customers are ignored.
- A new champion (reference version) resets the state: its own snapshot is the new reference.
  So does a re-segmentation that kept the champion: it re-validated the champion on that day's
  features, which become the reference (same version, newer reference snapshot); the cooldown
  after a re-validation is ``retry_days``, so a change still forming (a new group of customers
  too small to be a segment yet) is looked at again within days, doubling with every further
  re-validation in a row (up to ``max_retry_days``): a slow drift within the segments is not
  re-fitted every few days for months.

The state is plain JSON so the sensor can keep it in its cursor.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import asdict, dataclass, field, fields, replace
from typing import ClassVar

from segmentation_dagster.core import checks

#: A JSON object of :class:`PolicyConfig` fields overriding the defaults, e.g.
#: ``{"enter_threshold": 1.2, "cooldown_days": 3}`` (read by the drift sensor).
POLICY_ENV = "SEGMENTATION_DRIFT_POLICY"


@dataclass(frozen=True)
class PolicyConfig:
    """Thresholds on the behaviour drift score (``core.drift.BehaviourDrift.score``: the largest
    effect as a multiple of its calibrated threshold; >= 1 means a feature moved more than
    chance allows). How the defaults behave on the demo's scenarios (quiet days, shifts) is
    measured by ``make adapt`` (benchmarks/adapt.py)."""

    enter_threshold: float = 1.0
    exit_threshold: float = 0.6
    k: int = 2
    n: int = 3
    cooldown_days: int = 7
    retry_days: int = 3  # 0: never retry within an episode
    max_retry_days: int = 28
    #: the drift thresholds are calibrated to the monitor's sample size, so a small shop's
    #: score is as trustworthy as a large one's; below this many customers it is not
    min_customers: int = 100

    #: each field's range (docs/configuration.md, "Ranges"); besides, exit <= enter, k <= n
    RULES: ClassVar[dict[str, checks.Rule]] = {
        "enter_threshold": checks.number(0, low_open=True),
        "exit_threshold": checks.number(0, low_open=True),
        "k": checks.whole(1),
        "n": checks.whole(1, 100),
        "cooldown_days": checks.whole(0),
        "retry_days": checks.whole(0),
        "max_retry_days": checks.whole(0),
        "min_customers": checks.whole(0),
    }

    @classmethod
    def env_values(cls) -> dict[str, object]:
        """The fields ``$SEGMENTATION_DRIFT_POLICY`` sets, each checked against its rule (a
        :class:`ValueError` naming the variable, the section and the key)."""
        try:
            raw = json.loads(os.environ.get(POLICY_ENV) or "{}")
        except json.JSONDecodeError as e:
            raise ValueError(f"{POLICY_ENV}: not JSON ({e})") from e
        if not isinstance(raw, dict):
            raise ValueError(f"{POLICY_ENV}: must be a JSON object of PolicyConfig fields")
        unknown = set(raw) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"{POLICY_ENV}: policy: unknown field(s) {sorted(unknown)}")
        try:
            checks.check_raw(raw, cls.RULES)
        except checks.CheckError as e:
            raise ValueError(checks.where(POLICY_ENV, "policy", e)) from e
        return raw

    @classmethod
    def from_env(cls, base: PolicyConfig | None = None) -> PolicyConfig:
        """``base`` (default the built-in defaults) with the fields the JSON object in
        ``$SEGMENTATION_DRIFT_POLICY`` sets laid over it."""
        raw = cls.env_values()
        try:
            return replace(base or cls(), **raw)
        except checks.CheckError as e:
            raise ValueError(checks.where(POLICY_ENV, "policy", e)) from e

    def __post_init__(self) -> None:
        """Every field within its range: thresholds finite and positive with exit <= enter,
        1 <= k <= n, days and minimums not negative. The message names the key; the loader
        puts the file or the variable and the section in front."""
        checks.apply(self, self.RULES)
        if self.exit_threshold > self.enter_threshold:
            raise checks.CheckError(
                "exit_threshold",
                f"<= enter_threshold ({self.enter_threshold})",
                self.exit_threshold,
            )
        if self.k > self.n:
            raise checks.CheckError("k", f"<= n ({self.n})", self.k)


@dataclass(frozen=True)
class Observation:
    """One drift check as the sensor reads it from materialisation metadata."""

    check_id: int
    snapshot_date: str
    score: float
    n_customers: int
    reference_version: int
    #: the snapshot the reference was fitted on: the cooldown counts from the refit, not from
    #: the first check the sensor happened to see after it
    reference_snapshot: str | None = None


@dataclass(frozen=True)
class PolicyState:
    """Everything the policy remembers between checks."""

    reference_version: int | None = None
    reference_since: str | None = None
    recent: tuple[float, ...] = ()
    drifted: bool = False
    triggered_this_episode: bool = False
    last_check_id: int | None = None
    last_trigger: str | None = None
    revalidated: bool = False  # the reference is the champion's, re-validated (not a refit)
    revalidations: int = 0  # re-validations of this champion in a row
    last_snapshot: str | None = None  # the snapshot of the last check counted

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str | None) -> PolicyState:
        if not text:
            return cls()
        raw = json.loads(text)
        raw["recent"] = tuple(raw.get("recent", ()))
        return cls(**raw)


@dataclass(frozen=True)
class PolicyDecision:
    """Whether to re-segment now, and why (also when not)."""

    trigger: bool
    reason: str
    state: PolicyState = field(default_factory=PolicyState)


def _days(a: str, b: str) -> int:
    return (dt.date.fromisoformat(b) - dt.date.fromisoformat(a)).days


def step(state: PolicyState, obs: Observation, config: PolicyConfig) -> PolicyDecision:
    """Advance the policy by one check."""
    if state.last_check_id is not None and obs.check_id == state.last_check_id:
        return PolicyDecision(False, "no new drift check", state)
    # a reference older than the one the state knows: another warehouse (or a restored one)
    # behind the same sensor; its checks start afresh rather than being judged "not new"
    new_champion = obs.reference_version != state.reference_version or (
        obs.reference_snapshot is not None
        and state.reference_since is not None
        and obs.reference_snapshot < state.reference_since
    )
    revalidated = (
        not new_champion
        and obs.reference_snapshot is not None
        and state.reference_since is not None
        and obs.reference_snapshot > state.reference_since
    )
    if new_champion or revalidated:
        state = PolicyState(
            reference_version=obs.reference_version,
            reference_since=obs.reference_snapshot or obs.snapshot_date,
            revalidated=revalidated,
            revalidations=state.revalidations + 1 if revalidated else 0,
        )
    state = replace(state, last_check_id=obs.check_id)
    if (
        not (new_champion or revalidated)
        and state.last_snapshot is not None
        and obs.snapshot_date <= state.last_snapshot
    ):  # the monitor ran again on data already judged (a re-run, a second daily call)
        why = (
            f"the data still end on {obs.snapshot_date}, judged by the check of "
            f"{state.last_snapshot}: not counted again (a re-run, or only late files dated "
            "before it)"
        )
        return PolicyDecision(False, why, state)
    state = replace(state, last_snapshot=obs.snapshot_date)
    if obs.n_customers < config.min_customers:
        why = f"{obs.n_customers} customers < {config.min_customers}: too little data to judge"
        return PolicyDecision(False, why, state)
    recent = (*state.recent, obs.score)[-config.n :]
    state = replace(state, recent=recent)
    high = sum(s >= config.enter_threshold for s in recent)
    if state.drifted and obs.score < config.exit_threshold:
        state = replace(state, drifted=False, triggered_this_episode=False)
        return PolicyDecision(
            False, f"drift over: {obs.score:.2f} < {config.exit_threshold}", state
        )
    if not state.drifted and high >= config.k:
        state = replace(state, drifted=True)
    if not state.drifted:
        why = f"stable: {high} of the last {len(recent)} checks >= {config.enter_threshold}"
        return PolicyDecision(False, why, state)
    if state.triggered_this_episode:
        waited = _days(state.last_trigger or obs.snapshot_date, obs.snapshot_date)
        if not config.retry_days or waited < config.retry_days:
            why = f"drifted; re-segmentation requested {waited} day(s) ago, champion kept"
            return PolicyDecision(False, why, state)
    since = _days(state.reference_since or obs.snapshot_date, obs.snapshot_date)
    if state.revalidated and config.retry_days:
        backoff = config.retry_days * 2 ** max(state.revalidations - 1, 0)
        cooldown = min(backoff, max(config.max_retry_days, config.retry_days))
    else:
        cooldown = config.cooldown_days
    if since < cooldown:
        why = f"drifted, but {since} day(s) since the reference < cooldown {cooldown}"
        return PolicyDecision(False, why, state)
    if state.triggered_this_episode:
        why = (
            f"still drifted {_days(state.last_trigger or obs.snapshot_date, obs.snapshot_date)} "
            f"days after a re-segmentation kept the champion (latest {obs.score:.2f}): retry"
        )
    else:
        why = (
            f"behaviour drifted: {high} of the last {len(recent)} checks >= "
            f"{config.enter_threshold} (latest {obs.score:.2f})"
        )
    state = replace(state, triggered_this_episode=True, last_trigger=obs.snapshot_date)
    return PolicyDecision(True, why, state)
