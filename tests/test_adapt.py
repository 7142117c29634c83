"""The adaptation benchmark runs end to end on a tiny shop (no score or timing is asserted:
those depend on the scale and the machine; `make adapt` measures them)."""

import json

import pytest

from benchmarks import adapt

pytestmark = pytest.mark.slow  # the adaptation benchmark, end to end


def test_the_adaptation_benchmark_replays_a_scenario_and_writes_its_results(tmp_path):
    out = tmp_path / "adapt"
    adapt.main([
        "--scenarios", "emerging_segment", "--customers", "400", "--history-days", "10",
        "--days", "3", "--shift-after", "1", "--jobs", "1", "--out", str(out),
        "--work", str(tmp_path / "work"),
    ])  # fmt: skip
    results = json.loads(out.with_suffix(".json").read_text())["results"]
    (r,) = results
    assert r["scenario"] == "emerging_segment" and r["days"] == 3
    # the fit's day, then 3 daily checks; the shift comes on the second check
    assert [t["offset"] for t in r["timeline"]] == [-2, -1, 0, 1]
    assert all(0 <= t["ari"] <= 1 for t in r["timeline"])
    assert r["timeline"][0]["flip_rate"] is None and r["timeline"][1]["flip_rate"] is not None
    assert set(r["emerging_share"]) == {"+0", "+1"}
    # the floor: who of the new persona came back since the shift; it only grows
    seen = r["emerging_seen"]
    assert set(seen) == {"+0", "+1"} and 0 < seen["+0"] <= seen["+1"] <= 1
    md = out.with_suffix(".md").read_text()
    assert "| emerging_segment |" in md and "## emerging_segment" in md
