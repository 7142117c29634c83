"""The health rules (core.health): each passes inside its limit and fails outside it."""

from segmentation_dagster.core import health
from segmentation_dagster.core.policy import PolicyConfig

CFG = health.HealthConfig()


def test_each_rule_passes_inside_its_limit_and_fails_outside():
    policy = PolicyConfig()
    assert health.drift(0.99, policy).passed and not health.drift(1.0, policy).passed
    assert health.share_drift(0.25, CFG).passed and not health.share_drift(0.26, CFG).passed
    assert health.model_fit(1.25, CFG).passed and not health.model_fit(1.3, CFG).passed
    assert health.segment_mix({1: 0.5, 2: 0.5}, CFG).passed
    assert not health.segment_mix({1: 1.0}, CFG).passed  # one segment is no segmentation
    assert not health.segment_mix({1: 0.995, 2: 0.005}, CFG).passed  # too small to act on
    assert not health.segment_mix({}, CFG).passed
    assert health.coverage(100, 0).passed and not health.coverage(100, 1).passed


def test_a_verdict_says_the_value_and_the_limit_in_words():
    h = health.drift(2.5, PolicyConfig(enter_threshold=1.5, exit_threshold=1.0))
    assert (h.value, h.limit, h.passed) == (2.5, 1.5, False)
    assert "2.50" in h.description and "1.5" in h.description
    assert "3 of 100" in health.coverage(100, 3).description
