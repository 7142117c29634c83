"""Retention of the report folder: every drift check writes an Evidently report and every
validation a GX report, so without a rule the folder grows by megabytes a day. Each kind keeps
its newest ``SEGMENTATION_REPORT_KEEP`` files (default 30); older ones are deleted after a new
one is written. The links in older materialisations' metadata then point at nothing, which the
report's absence says plainly."""

from __future__ import annotations

import os
import re
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

KEEP_ENV = "SEGMENTATION_REPORT_KEEP"
DEFAULT_KEEP = 30


def keep_from_env() -> int:
    """How many reports of each kind to keep (``$SEGMENTATION_REPORT_KEEP``, at least 1)."""
    raw = os.environ.get(KEEP_ENV, str(DEFAULT_KEEP)).strip()
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{KEEP_ENV}={raw!r}: expected a whole number of reports, at least 1")
    return int(raw)


def drift_pattern() -> re.Pattern[str]:
    """The behaviour drift reports (``behaviour_drift_<date>_ref<version>.html``)."""
    return re.compile(r"behaviour_drift_\d{4}-\d{2}-\d{2}_ref\d{4}\.html")


def validation_pattern(suite: str) -> re.Pattern[str]:
    """One suite's validation reports (``<suite>_<timestamp>_<run>.md``)."""
    return re.compile(re.escape(suite) + r"_\d{8}T\d{6}_[0-9a-f-]{1,8}\.md")


def prune(folder: Path, pattern: re.Pattern[str], keep: int) -> list[Path]:
    """Delete all but the ``keep`` newest files of ``folder`` whose whole name matches
    ``pattern`` (newest by modification time, then name); returns the deleted paths. Only
    entries of the folder itself are considered, and a link is removed, never followed."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if pattern.fullmatch(p.name) and not p.is_dir()]
    found.sort(key=lambda p: (p.lstat().st_mtime, p.name), reverse=True)
    for old in found[keep:]:
        old.unlink(missing_ok=True)
    return found[keep:]


URL_ENV = "SEGMENTATION_REPORT_URL"
#: where `make ui` serves the report folder (``segmentation serve-reports``)
DEFAULT_PORT = 3001
DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}"


def url_for(report: Path, folder: Path) -> str | None:
    """The browser link of ``report`` (a file of ``folder``) under ``$SEGMENTATION_REPORT_URL``
    (default: where `make ui` serves the folder; empty: no links)."""
    base = os.environ.get(URL_ENV, DEFAULT_URL).strip().rstrip("/")
    if not base:
        return None
    if not re.fullmatch(r"https?://[A-Za-z0-9.\-]+(:\d+)?(/[A-Za-z0-9._~\-/]*)?", base):
        raise ValueError(f"{URL_ENV}={base!r}: expected an http(s) URL such as {DEFAULT_URL}")
    if report.parent.resolve() != folder.resolve():
        return None
    return f"{base}/{quote(report.name)}"


def serve(folder: Path, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> ThreadingHTTPServer:
    """A server of ``folder``'s report files (not yet serving: call ``serve_forever``). Only
    regular files directly in the folder are served; links, sub-folders and any path that
    leaves the folder get 404."""
    root = folder.resolve()

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
            super().__init__(*args, directory=str(root), **kwargs)

        def send_head(self):  # noqa: ANN202
            name = unquote(urlsplit(self.path).path).lstrip("/")
            target = root / name
            if name and ("/" in name or target.is_symlink() or not target.is_file()):
                self.send_error(404, "not a report")
                return None
            return super().send_head()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    return ThreadingHTTPServer((host, port), Handler)
