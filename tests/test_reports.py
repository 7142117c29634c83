"""Report retention: each kind keeps its newest reports, nothing else in the folder is touched."""

import os

import pytest

from segmentation_dagster.core import reports


def _touch(folder, name, mtime):
    p = folder / name
    p.write_text("x")
    os.utime(p, (mtime, mtime))
    return p


def test_each_kind_keeps_its_newest_reports_and_nothing_else_is_touched(tmp_path):
    drift = [
        _touch(tmp_path, f"behaviour_drift_2026-09-{d:02d}_ref0001.html", d) for d in range(1, 6)
    ]
    gx = [_touch(tmp_path, f"raw_events_2026090{d}T120000_ab12cd3{d}.md", d) for d in range(1, 4)]
    other_suite = _touch(tmp_path, "raw_events_extra_20260901T120000_ab12cd30.md", 0)
    mine = _touch(tmp_path, "behaviour_drift_notes.txt", 0)
    outside = tmp_path.parent / "keep_me.html"
    outside.write_text("x")
    link = tmp_path / "behaviour_drift_2026-09-30_ref0001.html"
    link.symlink_to(outside)
    os.utime(link, (0, 0), follow_symlinks=False)  # the oldest is a link

    deleted = reports.prune(tmp_path, reports.drift_pattern(), 2)
    assert sorted(p.name for p in tmp_path.glob("behaviour_drift_2026-*")) == [
        drift[3].name, drift[4].name
    ]  # fmt: skip
    assert len(deleted) == 4 and outside.exists()  # the link went, not what it points at
    reports.prune(tmp_path, reports.validation_pattern("raw_events"), 1)
    assert [p.exists() for p in gx] == [False, False, True]
    assert other_suite.exists() and mine.exists()  # another suite, another file


def test_the_number_kept_comes_from_the_environment_and_is_checked(monkeypatch):
    assert reports.keep_from_env() == reports.DEFAULT_KEEP
    monkeypatch.setenv(reports.KEEP_ENV, "7")
    assert reports.keep_from_env() == 7
    for bad in ("0", "-3", "lots", "1e3"):
        monkeypatch.setenv(reports.KEEP_ENV, bad)
        with pytest.raises(ValueError, match=reports.KEEP_ENV):
            reports.keep_from_env()


def test_a_report_gets_a_link_under_the_configured_url(tmp_path, monkeypatch):
    report = tmp_path / "behaviour_drift_2026-09-01_ref0001.html"
    assert reports.url_for(report, tmp_path) == f"{reports.DEFAULT_URL}/{report.name}"
    monkeypatch.setenv(reports.URL_ENV, "https://reports.example.com/shop/")
    assert reports.url_for(report, tmp_path) == f"https://reports.example.com/shop/{report.name}"
    assert reports.url_for(tmp_path / "sub" / "x.md", tmp_path) is None  # not in the folder
    monkeypatch.setenv(reports.URL_ENV, "")
    assert reports.url_for(report, tmp_path) is None  # links off
    for bad in ("javascript:alert(1)", "file:///etc/passwd", "http://x/a b"):
        monkeypatch.setenv(reports.URL_ENV, bad)
        with pytest.raises(ValueError, match=reports.URL_ENV):
            reports.url_for(report, tmp_path)


def test_the_server_serves_report_files_and_nothing_outside_the_folder(tmp_path):
    import threading
    import urllib.error
    import urllib.request

    folder = tmp_path / "reports"
    folder.mkdir()
    (folder / "r 1.html").write_text("<p>drift</p>")
    secret = tmp_path / "secret.txt"
    secret.write_text("no")
    (folder / "link.html").symlink_to(secret)
    (folder / "sub").mkdir()
    (folder / "sub" / "x.md").write_text("x")
    server = reports.serve(folder, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with urllib.request.urlopen(f"{base}/r%201.html") as r:
            assert r.status == 200 and r.read() == b"<p>drift</p>"
        for path in ("/link.html", "/../secret.txt", "/%2e%2e/secret.txt", "/sub/x.md", "/nope"):
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(base + path)
            assert e.value.code == 404, path
    finally:
        server.shutdown()
        server.server_close()
