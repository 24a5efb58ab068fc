"""report.html: self-contained, and a failing run rendered in headless Chromium shows its stage and fix."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.reports import build_run_report, render, write_run_reports

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: Flags that let Chromium run headless as root in a container, fetching nothing by itself.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium); .ci/run installs it"
)


class _Text(HTMLParser):
    """The text a reader sees: everything outside <style>, <script> and <title>."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag, attrs) -> None:
        self._hidden += tag in ("style", "script", "title")

    def handle_endtag(self, tag) -> None:
        self._hidden -= tag in ("style", "script", "title")

    def handle_data(self, data) -> None:
        if not self._hidden:
            self.chunks.append(data)

    @classmethod
    def of(cls, html: str) -> str:
        parser = cls()
        parser.feed(html)
        return re.sub(r"\s+", " ", " ".join(parser.chunks))


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    profile.mkdir()
    return subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_html_fetches_nothing_from_elsewhere(replayed, context) -> None:
    """No script, no external src or href, and a CSP that forbids fetching anything."""
    html = render(build_run_report("replay", replayed.values(), meta=context), "html")
    assert "<script" not in html.lower()
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html, re.I)
    assert "Content-Security-Policy" in html and "default-src 'none'" in html


def test_html_says_what_replayed_calls_cost_and_that_nothing_was_spent(replayed, context) -> None:
    """The LLM line keeps the recorded calls' cost; the runs table's cost column is what the run spent."""
    text = _Text.of(render(build_run_report("replay", replayed.values(), meta=context), "html"))
    assert re.search(r"output tokens, \$0 spent \(the recorded calls cost \$\d+\.\d{4}\)", text)
    assert "LLM cost spent" in text and text.count("$0.0000") >= len(replayed)


@needs_chromium
def test_failing_run_in_chromium_shows_failing_stage_finding_and_fix(replayed, context, tmp_path) -> None:
    """Rendered headless, the max_tokens run's page names the llm stage, LLM001 and its fix; a screenshot is kept."""
    folder = write_run_reports("replay", [replayed["masterplan-max-tokens"]], meta=context, out_dir=tmp_path / "r")
    url = (folder / "report.html").as_uri()
    dumped = _chromium(tmp_path, "--dump-dom", url)
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    text = _Text.of(dumped.stdout)
    assert "Failing stage: llm at point masterplan" in text
    assert "LLM001 The masterplan answer stopped at max_tokens" in text
    assert "Fix: Generate the plan in batches of at most 50 tasks" in text
    assert "failed · " in text and "✘ LLM001" in text  # the timeline's label on the highlighted bar
    assert re.search(r'<rect class="stage failed"[^>]*stroke="#7f0000"', dumped.stdout)  # highlighted bar
    screenshot = tmp_path / "report.png"
    shot = _chromium(tmp_path, "--window-size=1100,1000", f"--screenshot={screenshot}", url)
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 10_000
