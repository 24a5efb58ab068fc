"""Replay: the marginal cost of one cassette once the cluster is up.

Timed in process with :func:`harness.replay.replay_cassette` — the whole flow (pre-flight
probes, both LLM calls answered by vcrpy, parsing, saving, the independent readbacks) —
on a fresh database per run, a clone of the migrated template as in ``harness replay`` (the
schema checks judged once per template and inherited); creating and dropping that database is
timed separately (it is the "create + drop" row). One warm-up replay first, so imports are not counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.cassettes import CassetteMeta, load_meta
from harness.contract import extract_json, iter_tasks, parse_masterplan
from harness.postgres import DatabaseFactory
from harness.replay import replay_cassette

__all__ = ["CassetteTimes", "measure_replay"]

CASSETTES = Path(__file__).resolve().parent.parent / "cassettes"


@dataclass(frozen=True)
class CassetteTimes:
    """One cassette's replay samples (seconds), its verdict and the size of its plan."""

    name: str
    tasks: int
    verdict: str
    samples: list[float]


def _plan_tasks(meta: CassetteMeta) -> int:
    """How many tasks the cassette's plan holds: one whole-plan answer, or the sum of its batches (0 if none)."""
    import json

    import yaml

    data = yaml.safe_load(meta.path.read_text())
    best = batched = 0
    for interaction in data.get("interactions", []):
        body = interaction["response"]["body"]["string"]
        text = "".join(
            json.loads(line[5:]).get("delta", {}).get("text", "")
            for line in body.splitlines()
            if line.startswith("data: ") and '"text_delta"' in line
        )
        if '"tasks"' not in text:
            continue
        try:
            if '"phases"' in text:  # a whole plan in one answer (single-call mode)
                best = max(best, len(list(iter_tasks(parse_masterplan(text)))))
            else:  # one batch of tasks (batched mode): the plan is the sum of its batches
                batched += len(extract_json(text).get("tasks", []))
        except Exception:  # noqa: BLE001 - a broken plan is a cassette about that; count it as none
            pass
    return max(best, batched)


def measure_replay(factory: DatabaseFactory, runs: int, pattern: str = "healthy-*.yaml") -> list[CassetteTimes]:
    """``runs`` replays of each cassette matching ``pattern``, each on its own fresh database."""
    metas = [load_meta(path) for path in sorted(CASSETTES.glob(pattern))]
    # As `harness replay` runs a cassette: on a clone of the template, whose schema verdict is judged
    # once (on the warm-up's clone) and inherited by every later clone.
    warm = factory.new_database()
    template = factory.template
    try:
        replay_cassette(metas[0], warm, template=template)
    finally:
        factory.drop(warm)
    results = []
    for meta in metas:
        samples = []
        verdict = ""
        for _ in range(runs):
            url = factory.new_database()
            try:
                result = replay_cassette(meta, url, template=template)
            finally:
                factory.drop(url)
            samples.append(result.duration_s)
            verdict = result.verdict
        results.append(CassetteTimes(meta.name, _plan_tasks(meta), verdict, samples))
    return results
