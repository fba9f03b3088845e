"""The daily report in a real browser: Debian's headless Chromium loads every image, logs no error.

A test-only copy of the page gets two small scripts: one at the top records every error event
(script errors and resources that fail to load), one on ``load`` writes the state of every image
into the DOM, which ``--dump-dom`` hands back. Console messages are read from Chromium's own log
on stderr. The network is cut (``--host-resolver-rules``) so a page that reached out for anything
would show broken resources instead of silently fetching them.
"""

from __future__ import annotations

import html
import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from contactrank.settings import Settings

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian chromium is not installed (`make system` installs it)"
)

_HEAD_PROBE = (
    """<script>
window.__errors = [];
window.addEventListener("error", function (e) {
  window.__errors.push(e.message || ("failed to load " + """
    """((e.target && (e.target.src || e.target.href)) || "?")));
}, true);
</script>"""
)

_LOAD_PROBE = """<script>
window.addEventListener("load", function () {
  var images = Array.prototype.map.call(document.images, function (img) {
    return {alt: img.alt, complete: img.complete, width: img.naturalWidth, height: img.naturalHeight};
  });
  var out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({images: images, errors: window.__errors,
                                    sections: document.querySelectorAll("section").length});
  document.body.appendChild(out);
});
</script>"""


def _unit_helpers():
    """The hand-built lake of the unit tests (one world for both test files)."""
    path = Path(__file__).resolve().parents[1] / "unit" / "test_report.py"
    spec = importlib.util.spec_from_file_location("report_lake_helpers", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def _render(page: Path, workdir: Path) -> tuple[dict, list[str]]:
    """Open a probed copy of ``page`` in headless Chromium; return the probe and the console lines."""
    text = page.read_text(encoding="utf-8")
    assert "<script" not in text, "the report itself must not need scripts"
    probed = workdir / "probed.html"
    probed.write_text(
        text.replace("<head>", "<head>" + _HEAD_PROBE, 1).replace("</body>", _LOAD_PROBE + "</body>", 1),
        encoding="utf-8",
    )
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={workdir / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
        "--dump-dom",
        probed.as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"the load probe never ran; stderr: {proc.stderr[-2000:]}"
    probe = json.loads(html.unescape(found.group(1)))
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return probe, console


def test_full_report_renders_every_image_without_console_errors(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from contactrank.ml.report import PANELS, report

    helpers = _unit_helpers()
    world = helpers.build_lake(settings, days=8, train_days=4)
    helpers.use_champion(monkeypatch, world["model"])
    page = report(settings, helpers.D)

    probe, console = _render(page, tmp_path)

    assert probe["sections"] == len(PANELS)
    assert len(probe["images"]) == len(PANELS)
    broken = [
        img for img in probe["images"] if not img["complete"] or img["width"] <= 0 or img["height"] <= 0
    ]
    assert broken == [], broken
    assert probe["errors"] == []
    assert console == [], console


def test_report_of_an_empty_home_renders_cleanly(settings: Settings, tmp_path: Path) -> None:
    from datetime import date

    from contactrank.ml.report import PANELS, report

    page = report(settings, date(2026, 3, 20))

    probe, console = _render(page, tmp_path)

    assert probe["sections"] == len(PANELS)
    assert probe["images"] == []
    assert probe["errors"] == []
    assert console == []
