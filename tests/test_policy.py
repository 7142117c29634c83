import datetime as dt
from dataclasses import replace

import numpy as np

from segmentation_dagster.core.policy import Observation, PolicyConfig, PolicyState, step

CFG = PolicyConfig(
    enter_threshold=0.3, exit_threshold=0.1, k=2, n=3, cooldown_days=7, retry_days=14
)
START = dt.date(2026, 8, 1)


def run(scores, config=CFG, reference=lambda day: 1, n_customers=1000):
    state, triggers = PolicyState(), []
    for day, score in enumerate(scores):
        obs = Observation(day, (START + dt.timedelta(days=day)).isoformat(), score, n_customers,
                          reference(day))  # fmt: skip
        decision = step(state, obs, config)
        state = PolicyState.from_json(decision.state.to_json())  # as the sensor cursor would
        if decision.trigger:
            triggers.append(day)
    return triggers, state


def test_one_noisy_day_does_not_trigger_but_a_sustained_shift_does():
    quiet = [0.0] * 10
    assert run(quiet + [0.6] + quiet)[0] == []
    assert run(quiet + [0.6, 0.6, 0.6] + quiet)[0] == [11]  # 2 of the last 3 checks


def test_a_noisy_series_gives_at_most_one_trigger_per_episode():
    rng = np.random.default_rng(0)
    episode = list(np.clip(0.5 + rng.normal(0, 0.15, 40), 0.11, 1))  # never below exit
    triggers, _ = run([0.0] * 10 + episode, replace(CFG, retry_days=0))
    assert len(triggers) == 1


def test_a_drift_the_champion_survived_is_retried_every_retry_days():
    # the same reference all along: each re-segmentation kept the champion
    triggers, state = run([0.0] * 10 + [0.6] * 30, replace(CFG, retry_days=14))
    assert triggers == [11, 25, 39]
    # a promotion (new reference) ends the episode: nothing more after it, within the cooldown
    triggers, _ = run([0.0] * 10 + [0.6] * 30, replace(CFG, retry_days=14),
                      reference=lambda d: 1 if d < 20 else 2)  # fmt: skip
    assert triggers == [11, 27]  # 27: the new champion's cooldown passed, still drifted


def test_leaving_below_the_exit_threshold_allows_a_new_episode():
    scores = [0.0] * 10 + [0.6] * 5 + [0.05] + [0.0] * 3 + [0.6] * 3
    assert run(scores)[0] == [11, 20]


def test_cooldown_after_a_new_reference_is_respected():
    # new champion on day 10; drift right after is held back until the cooldown has passed
    triggers, state = run([0.0] * 10 + [0.6] * 10, reference=lambda d: 1 if d < 10 else 2)
    assert triggers == [17]
    assert state.reference_version == 2 and state.reference_since == "2026-08-11"


def test_cooldown_counts_from_the_refit_snapshot_not_the_first_check_seen():
    # champion fitted on 2026-08-01; the sensor first sees a check of it on 08-02
    fitted = START.isoformat()
    state, triggers = PolicyState(), []
    for day in range(1, 12):
        obs = Observation(day, (START + dt.timedelta(days=day)).isoformat(), 0.6, 1000, 1,
                          reference_snapshot=fitted)  # fmt: skip
        decision = step(state, obs, CFG)
        state = decision.state
        if decision.trigger:
            triggers.append(day)
    assert state.reference_since == fitted
    assert triggers == [7]  # 7 days after the fit (it would be day 8 counted from the first check)


def test_too_little_data_is_ignored_and_the_same_check_is_not_counted_twice():
    triggers, _ = run([0.9] * 20, n_customers=10)
    assert triggers == []
    state = PolicyState()
    obs = Observation(1, "2026-09-01", 0.9, 1000, 1)
    first = step(state, obs, CFG)
    again = step(first.state, obs, CFG)
    assert again.reason == "no new drift check" and again.state == first.state


def test_a_revalidated_champion_becomes_the_reference_and_is_looked_at_again_soon():
    # champion v1 fitted on 08-01; behaviour shifts on day 10; the re-segmentation requested on
    # day 11 keeps the champion and re-validates it on that day's features (same version, newer
    # reference snapshot): the state starts over, with the short cooldown
    cfg = replace(CFG, retry_days=3)
    state, triggers = PolicyState(), []
    for day in range(25):
        ref = START + dt.timedelta(days=11 if day > 11 else 0)
        score = 0.6 if day >= 10 else 0.0
        obs = Observation(day, (START + dt.timedelta(days=day)).isoformat(), score, 1000, 1,
                          reference_snapshot=ref.isoformat())  # fmt: skip
        decision = step(state, obs, cfg)
        state = PolicyState.from_json(decision.state.to_json())
        if decision.trigger:
            triggers.append(day)
    assert triggers[:2] == [11, 14]  # 14: three days after the re-validation, still drifted
    assert (
        state.revalidated and state.reference_since == (START + dt.timedelta(days=11)).isoformat()
    )
    # a new champion (not a re-validation) waits the full cooldown
    triggers, _ = run([0.0] * 10 + [0.6] * 15, cfg, reference=lambda d: 1 if d <= 11 else 2)
    assert triggers[:2] == [11, 19]


def test_repeated_revalidations_back_off():
    # a slow drift inside the segments: every re-segmentation keeps the champion and
    # re-validates it the day it runs; the looks come 3, 6, 12, ... days apart
    cfg = replace(CFG, retry_days=3, max_retry_days=12)
    state, triggers, ref = PolicyState(), [], START
    for day in range(60):
        score = 0.6 if day >= 10 else 0.0
        obs = Observation(day, (START + dt.timedelta(days=day)).isoformat(), score, 1000, 1,
                          reference_snapshot=ref.isoformat())  # fmt: skip
        decision = step(state, obs, cfg)
        state = PolicyState.from_json(decision.state.to_json())
        if decision.trigger:
            triggers.append(day)
            ref = START + dt.timedelta(days=day)  # the re-segmentation re-validates that day
    gaps = [b - a for a, b in zip(triggers, triggers[1:], strict=False)]
    assert triggers[0] == 11 and gaps[:4] == [3, 6, 12, 12]


def test_a_small_shop_can_drift():
    state, triggers = PolicyState(), []
    config = PolicyConfig(cooldown_days=0)  # defaults otherwise: 300 active customers count
    for day, score in enumerate([2.0, 2.0, 2.0], start=1):
        obs = Observation(day, f"2026-09-{day:02d}", score, 300, 1, "2026-08-31")
        decision = step(state, obs, config)
        state, triggers = decision.state, [*triggers, decision.trigger]
    assert triggers == [False, True, False]


def test_a_check_of_a_snapshot_already_judged_is_not_counted_again():
    # the monitor re-run on the same day's data (a second `segmentation daily`, a
    # re-materialisation from the UI) must not count as another day of drift
    state = PolicyState()
    config = replace(CFG, cooldown_days=0)
    first = step(state, Observation(1, "2026-09-01", 0.9, 1000, 1, "2026-08-01"), config)
    again = step(first.state, Observation(2, "2026-09-01", 0.9, 1000, 1, "2026-08-01"), config)
    assert not again.trigger and "not counted again" in again.reason
    assert again.state.recent == first.state.recent == (0.9,)
    later = step(again.state, Observation(3, "2026-09-02", 0.9, 1000, 1, "2026-08-01"), config)
    assert later.trigger and later.state.recent == (0.9, 0.9)


def test_another_warehouse_behind_the_same_sensor_starts_afresh():
    # the sensor's cursor lives in the Dagster instance; a new data folder with older dates
    # (its own champion v1) must not be judged "no new data" against the old folder's dates
    config = replace(CFG, cooldown_days=0)
    old = step(PolicyState(), Observation(1, "2026-11-01", 0.9, 1000, 1, "2026-10-01"), config)
    new = step(old.state, Observation(2, "2026-06-02", 0.9, 1000, 1, "2026-06-01"), config)
    assert "not counted again" not in new.reason
    assert new.state.reference_since == "2026-06-01" and new.state.recent == (0.9,)
    assert not new.state.revalidated
