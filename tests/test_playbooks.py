"""Playbooks: chosen from measured profiles (not names), from a checked rules file."""

import polars as pl
import pytest

from segmentation_dagster.core import playbooks
from segmentation_dagster.core.playbooks import PlaybookError


def _lift(rows: dict[int, dict[str, tuple[float, float, float | None]]]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {"segment_id": s, "feature": f, "segment_mean": m, "population_mean": p, "z": z}
            for s, feats in rows.items()
            for f, (m, p, z) in feats.items()
        ],
        schema_overrides={"z": pl.Float64},
    )


TOP = pl.DataFrame(
    {
        "segment_id": [1, 1, 1, 2],
        "kind": ["category", "category", "product", "product"],
        "item": ["toys", "home", "p9", "p3"],
        "purchases": [5, 9, 4, 2],
    }  # fmt: skip
)
BASE = {"recency_days": (30.0, 30.0, 0.0), "monetary": (100.0, 100.0, 0.0),
        "cart_abandonment_rate": (0.4, 0.4, 0.0), "discount_share": (0.3, 0.3, 0.0),
        "top_category_share": (0.4, 0.4, 0.0), "views_per_session": (6.0, 6.0, 0.0),
        "activity_trend": (0.0, 0.0, 0.0),
        "view_to_purchase_rate": (0.2, 0.2, 0.0), "tenure_days": (300.0, 300.0, 0.0)}  # fmt: skip


def test_the_profile_chooses_the_playbook_and_the_evidence_says_why():
    rules = playbooks.load(playbooks.DEFAULT_FILE)
    lift = _lift({
        1: {**BASE, "recency_days": (80.0, 30.0, 1.4), "monetary": (300.0, 100.0, 1.1)},
        2: {**BASE, "cart_abandonment_rate": (0.8, 0.4, 1.3)},
        3: dict(BASE),
    })  # fmt: skip
    out = {r["segment_id"]: r for r in playbooks.choose(lift, TOP, rules).iter_rows(named=True)}
    assert out[1]["playbook"] == "win_back"  # lapsed and valuable, whatever it is called
    assert "recency_days 80 vs 30 overall (z +1.40)" in out[1]["evidence"]
    assert out[1]["recommended"] == "home, toys"  # top categories, most purchased first
    assert out[2]["playbook"] == "cart_reminder" and out[2]["recommended"] == "p3"
    assert out[3]["playbook"] == "newsletter" and "no playbook" in out[3]["evidence"]


def test_a_feature_the_data_cannot_measure_matches_nothing():
    rules = playbooks.load(playbooks.DEFAULT_FILE)
    lift = _lift({1: {**BASE, "cart_abandonment_rate": (None, None, None)}})
    assert playbooks.choose(lift, TOP, rules)["playbook"].to_list() == ["newsletter"]


def test_your_own_file_replaces_the_default(tmp_path, monkeypatch):
    (tmp_path / "playbooks.yml").write_text(
        "playbooks:\n  - name: vip\n    action: Call them\n    when: {monetary: {above: 200}}\n"
        "fallback: {name: none, action: Nothing}\n"
    )
    monkeypatch.setenv("SEGMENTATION_CONFIG_DIR", str(tmp_path))
    rules = playbooks.load()
    lift = _lift({1: {"monetary": (250.0, 100.0, 1.5)}, 2: {"monetary": (150.0, 100.0, 0.5)}})
    assert playbooks.choose(lift, TOP, rules)["playbook"].to_list() == ["vip", "none"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("playbooks:\n  - {name: a, action: b, when: {monetary: {bigger: 1}}}\n",
         "unknown operator 'bigger'"),
        ("playbooks:\n  - {name: a, action: b, when: {monetary: {above: '1; drop table x'}}}\n",
         "when.monetary: above: must be a finite number, got '1; drop table x'"),
        ("playbooks:\n  - {name: a, action: b, when: {monetary: {above: .nan}}}\n",
         "when.monetary: above: must be a finite number, got nan"),
        ("playbooks:\n  - {name: a, action: b, when: {}}\n", "must map features"),
        ("playbooks:\n  - {name: a, action: b, when: {x: {above: 1}}, run: rm}\n",
         "unknown key(s) ['run']"),
        ("playbooks:\n  - {name: a, action: b, when: {x: {above: 1}}, recommend: all}\n",
         "(a): recommend: must be one of top_categories, top_products, nothing, got 'all'"),
        ("playbooks: !!python/object/apply:os.system ['true']\n", "not valid YAML"),
        ("playbooks: []\n", "non-empty list"),
    ],
)  # fmt: skip
def test_a_bad_rules_file_is_refused_naming_the_file_and_key(tmp_path, text, message):
    path = tmp_path / "playbooks.yml"
    path.write_text(text)
    with pytest.raises(PlaybookError, match=str(path)) as e:
        playbooks.load(path)
    assert message in str(e.value)


def test_every_broken_value_of_the_file_is_named_at_once(tmp_path):
    path = tmp_path / "playbooks.yml"
    path.write_text(
        "playbooks:\n"
        "  - {name: a, action: '', when: {monetary: {bigger: 1}}}\n"
        "  - {name: b, action: c, when: {recency: {above: x}}, recommend: all}\n"
        "  - {name: b, action: c, when: {recency: {above: 1}}}\n"
        "fallback: {name: none, action: Nothing, when: {}}\n"
        "extra: 1\n"
    )
    with pytest.raises(PlaybookError) as e:
        playbooks.load(path)
    lines = str(e.value).splitlines()
    assert all(line.startswith(str(path)) for line in lines)
    for part in ["unknown key(s) ['extra']", "playbooks[0] (a): action: must be a non-empty",
                 "playbooks[0] (a).when.monetary: unknown operator 'bigger'",
                 "playbooks[1] (b): recommend: must be one of",
                 "playbooks[1] (b).when.recency: above: must be a finite number, got 'x'",
                 "fallback: unknown key(s) ['when']",
                 "playbooks: names must be unique, ['b'] repeated"]:  # fmt: skip
        assert sum(part in line for line in lines) == 1, (part, lines)
    assert len(lines) == 7


def test_an_unknown_feature_is_a_typo_not_a_silent_no_match(tmp_path):
    path = tmp_path / "playbooks.yml"
    path.write_text("playbooks:\n  - {name: a, action: b, when: {monetery: {above: 1}}}\n")
    with pytest.raises(PlaybookError, match=r"unknown feature\(s\) \['monetery'\]"):
        playbooks.choose(_lift({1: BASE}), TOP, playbooks.load(path))
