"""docs/faults.md is the suite's index: every row names a real test that asserts its ID, and every check has a row."""

from __future__ import annotations

import re
from pathlib import Path

import probes

ROOT = Path(__file__).resolve().parents[2]
_ROW = re.compile(
    r"^\| (?P<fault>[^|]+) \| (?P<how>[^|]+) \| (?P<stage>\w+) \| (?P<id>[A-Z]+\d+) \| `(?P<test>[^`]+)` \|$"
)


def _rows() -> list[dict[str, str]]:
    text = (ROOT / "docs" / "faults.md").read_text()
    return [m.groupdict() for line in text.splitlines() if (m := _ROW.match(line))]


def test_the_table_lists_at_least_30_distinct_faults_over_all_six_stages() -> None:
    """The fault table has 30+ distinct faults and covers env, db, auth, llm, parse and persist."""
    rows = _rows()
    assert len({row["fault"].strip() for row in rows}) >= 30
    assert {row["stage"] for row in rows} == {"env", "db", "auth", "llm", "parse", "persist"}


def test_every_row_names_an_existing_test_that_asserts_its_check() -> None:
    """Each row's test exists, its file mentions the row's ID, and the ID is a check of that stage."""
    problems = []
    for row in _rows():
        path, _, name = row["test"].partition("::")
        source = ROOT / path
        if not source.exists() or not re.search(rf"^(async )?def {re.escape(name)}\(", source.read_text(), re.M):
            problems.append(f"{row['test']}: no such test")
            continue
        if row["id"] not in source.read_text():
            problems.append(f"{row['test']}: never mentions {row['id']}")
        try:
            check = probes.check_by_id(row["id"])
        except KeyError:
            problems.append(f"{row['id']}: not in the probe catalogue")
            continue
        if check.stage.value != row["stage"]:
            problems.append(f"{row['id']}: stage {check.stage.value}, table says {row['stage']}")
    assert problems == []


def test_every_check_of_the_catalogue_has_a_fault_row() -> None:
    """Every check (but the *900 catch-alls and the LLM100 pass marker) is proven by at least one fault row."""
    covered = {row["id"] for row in _rows()}
    missing = [c.id for c in probes.ALL_CHECKS if not c.id.endswith("900") and c.id != "LLM100" and c.id not in covered]
    assert missing == []
