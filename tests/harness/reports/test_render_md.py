"""report.md: a summary a CI step can show as is."""

from __future__ import annotations

from dataclasses import replace

from harness.reports import build_run_report, render


def test_markdown_has_a_row_per_run_and_the_failing_finding_with_its_fix(replayed, context) -> None:
    """Each run is a table row; a failing run gets its finding, fix and evidence."""
    text = render(build_run_report("replay", replayed.values(), meta=context), "md")
    assert text.startswith("## ✅ harness replay: 3 run(s), 3 as expected, 0 not")
    for name in replayed:
        assert f"| {name} |" in text
    assert "**LLM001** at `llm/masterplan`" in text and "**Fix:** Generate the plan in batches" in text
    assert '"stop_reason": "max_tokens"' in text
    assert "output tokens, $0 spent (the recorded calls cost $" in text  # replayed answers spent nothing
    assert all(line.endswith("| $0.0000 |") for line in text.splitlines() if line.startswith(("| ✅ |", "| ❌ |")))


def test_markdown_escapes_table_pipes(replayed, context) -> None:
    """A pipe in a run name cannot break the table."""
    run = replace(replayed["healthy-task-manager"], name="a|b")
    text = render(build_run_report("replay", [run], meta=context), "md")
    assert "| a\\|b |" in text and text.startswith("## ✅")
