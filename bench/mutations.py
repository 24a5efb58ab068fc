"""Mutation run: inject one bug at a time into the reference flow and see whether `harness replay` notices.

Each mutation is one exact text replacement in one file of ``harness/flow/`` — the kind of
one-line mistake the seed's team made. For each, the repository's ``harness/``, ``probes/`` and
``cassettes/`` are copied to a temporary folder, the mutation applied there, and ``harness
replay`` run on the copy (``PYTHONPATH`` puts the copy first). A mutation is *killed* when at
least one cassette's verdict differs from its expectation, or a finding appears (a warning
included) that the unmutated flow does not give; it *survives* otherwise — a survivor is a
bug the regression suite would let through. The table names, for each killed mutation, the
first cassette that caught it and the check that did.

    python bench/mutations.py                 # every mutation
    python bench/mutations.py swap-identity   # some of them
    python bench/mutations.py --list

Exit code 1 when a mutation survives (so CI or a reviewer can gate on it), 2 when one no longer
applies (the flow changed under it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutation:
    """One seeded bug in the reference flow."""

    name: str
    file: str
    old: str
    new: str
    #: What a user would lose, in a few words.
    says: str


MUTATIONS: tuple[Mutation, ...] = (
    Mutation(
        "swap-identity",
        "harness/flow/discovery.py",
        "            session_id=session_id,\n            user_id=user_id,\n            user_request=user_request,",
        "            session_id=user_id,\n            user_id=session_id,\n            user_request=user_request,",
        "the discovery is saved with user id and session id swapped",
    ),
    Mutation(
        "discovery-aggregates-empty",
        "harness/flow/discovery.py",
        "aggregates=dump(discovery.aggregates),",
        "aggregates=[],",
        "the discovery's aggregates are saved empty",
    ),
    Mutation(
        "task-description-from-title",
        "harness/flow/masterplan.py",
        '"description": task.description,',
        '"description": task.title,',
        "every task's description is saved from its title",
    ),
    Mutation(
        "task-target-files-empty",
        "harness/flow/masterplan.py",
        '"target_files": list(task.target_files),',
        '"target_files": [],',
        "every task's target_files are saved empty",
    ),
    Mutation(
        "task-complexity-constant",
        "harness/flow/masterplan.py",
        '"complexity": task.complexity.value,',
        '"complexity": "medium",',
        "every task's complexity is saved as medium",
    ),
    Mutation(
        "task-tokens-dropped",
        "harness/flow/masterplan.py",
        '"estimated_tokens": task.estimated_tokens,',
        '"estimated_tokens": None,',
        "tasks lose their estimated tokens",
    ),
    Mutation(
        "tasks-under-wrong-milestone",
        "harness/flow/masterplan.py",
        "owners[slots(task.task_number)]",
        "owners[max(0, slots(task.task_number) - 1)]",
        "batched tasks hang from the milestone before their own",
    ),
    Mutation(
        "last-task-of-batch-dropped",
        "harness/flow/masterplan.py",
        "            if rows:\n                session.execute(insert(MasterPlanTask), rows)",
        "            if rows:\n                session.execute(insert(MasterPlanTask), rows[:-1])",
        "the last task of every batch is never saved",
    ),
    Mutation(
        "batch-edges-reversed",
        "harness/flow/masterplan.py",
        "            edges = [\n                (task_ids[task.task_number], task_ids[number])\n                for task in tasks\n",
        "            edges = [\n                (task_ids[number], task_ids[task.task_number])\n                for task in tasks\n",
        "batched dependency edges are saved backwards",
    ),
    Mutation(
        "single-call-edges-not-saved",
        "harness/flow/masterplan.py",
        "            if edges:\n                session.execute(insert(task_dependencies), _edge_rows(edges))\n            row.project_name = plan.project_name",
        "            row.project_name = plan.project_name",
        "in single-call mode no dependency edge is saved",
    ),
    Mutation(
        "single-call-numbering-per-phase",
        "harness/flow/masterplan.py",
        "                    for task in milestone.tasks:\n                        task_ids[task.task_number] = uuid.uuid4()\n                        tasks.append(_task_row(task, task_ids[task.task_number], masterplan_id, milestone_id))",
        "                    for position, task in enumerate(milestone.tasks, start=1):\n                        task_ids[task.task_number] = uuid.uuid4()\n                        tasks.append(\n                            {**_task_row(task, task_ids[task.task_number], masterplan_id, milestone_id), \"task_number\": phase_index * 1000 + position}\n                        )",
        "in single-call mode task numbers restart in every milestone",
    ),
    Mutation(
        "plan-description-not-saved",
        "harness/flow/masterplan.py",
        "            row.description = skeleton.description",
        "            row.description = None",
        "the plan's description is not saved",
    ),
    Mutation(
        "milestone-named-after-phase",
        "harness/flow/masterplan.py",
        "                            milestone_number=milestone.milestone_number or milestone_index,\n                            name=milestone.name,",
        "                            milestone_number=milestone.milestone_number or milestone_index,\n                            name=phase.name,",
        "milestones are saved with their phase's name",
    ),
    Mutation(
        "plan-draft-before-batches",
        "harness/flow/masterplan.py",
        "            row.batches_total = batches\n",
        "            row.batches_total = batches\n            row.status = MasterPlanStatus.DRAFT\n",
        "the plan says draft while its batches are still arriving",
    ),
    Mutation(
        "plan-never-finished",
        "harness/flow/masterplan.py",
        "            row.status = MasterPlanStatus.DRAFT\n            row.error_message = None\n            row.failed_batch = None\n\n    def _save_plan",
        "            row.error_message = None\n            row.failed_batch = None\n\n    def _save_plan",
        "a batched plan stays generating after its last batch",
    ),
    Mutation(
        "scope-swallows",
        "harness/flow/database.py",
        "    except BaseException:\n        session.rollback()\n        raise",
        "    except Exception:\n        session.rollback()",
        "the session scope rolls back and swallows the exception",
    ),
    Mutation(
        "double-commit",
        "harness/flow/discovery.py",
        "            session.add(row)\n        return row.discovery_id",
        "            session.add(row)\n            session.commit()\n        return row.discovery_id",
        "the discovery save commits inside a scope that commits again",
    ),
    Mutation(
        "expire-on-commit",
        "harness/flow/database.py",
        "sessionmaker(bind=engine, expire_on_commit=False)",
        "sessionmaker(bind=engine)",
        "objects returned after their session closed cannot be read",
    ),
)


def _copy_tree(destination: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("harness", "probes", "cassettes"):
        shutil.copytree(ROOT / name, destination / name, ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", destination / "pyproject.toml")


def _apply(mutation: Mutation, root: Path) -> None:
    path = root / mutation.file
    text = path.read_text(encoding="utf-8")
    found = text.count(mutation.old)
    if found != 1:
        raise LookupError(f"{mutation.name}: its text occurs {found} times in {mutation.file} (must be once)")
    path.write_text(text.replace(mutation.old, mutation.new), encoding="utf-8")


def _findings(report: dict) -> dict[str, set[str]]:
    """Cassette → IDs of the checks that failed or warned in its run (``report`` is replay's report.json)."""
    return {
        run["name"]: {check["id"] for check in run["checks"] if check["outcome"] in ("failed", "warned")}
        for run in report["runs"]
    }


def _replay(root: Path) -> tuple[dict | None, str, float]:
    environ = {**os.environ, "PYTHONPATH": str(root), "HARNESS_LOG_LEVEL": "error"}
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "harness.cli", "replay", "--format", "json", "--reports-dir", str(root / "reports")],
        cwd=root,
        env=environ,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    elapsed = time.perf_counter() - started
    try:
        return json.loads(completed.stdout), completed.stderr, elapsed
    except ValueError:
        return None, completed.stderr, elapsed


def baseline() -> dict[str, set[str]]:
    """What the unmutated flow's replay finds, per cassette (warnings it is expected to give included)."""
    with tempfile.TemporaryDirectory(prefix="harness-baseline-") as folder:
        root = Path(folder)
        _copy_tree(root)
        report, stderr, _ = _replay(root)
    if report is None:
        raise RuntimeError(f"the unmutated replay failed: {stderr.strip()[-400:]}")
    return _findings(report)


def run(mutation: Mutation, expected: dict[str, set[str]]) -> dict:
    """Replay every cassette against the reference flow with ``mutation`` applied; what did the suite say?"""
    with tempfile.TemporaryDirectory(prefix="harness-mutant-") as folder:
        root = Path(folder)
        _copy_tree(root)
        _apply(mutation, root)
        report, stderr, elapsed = _replay(root)
    if report is None:
        return {"name": mutation.name, "killed": None, "error": stderr.strip()[-400:], "seconds": elapsed}
    found = _findings(report)
    caught = [c for c in report["runs"] if not c["matched"]]
    new = {name: sorted(ids - expected.get(name, set())) for name, ids in found.items() if ids - expected.get(name, set())}
    first = caught[0] if caught else None
    verdict = first["verdict"] if first else None
    if first is None and new:
        name, ids = next(iter(new.items()))
        first, verdict = {"name": name}, "new finding " + ", ".join(ids)
    return {
        "name": mutation.name,
        "says": mutation.says,
        "killed": first is not None,
        "cassettes": len(caught) or len(new),
        "first": first["name"] if first else None,
        "verdict": verdict,
        "seconds": round(elapsed, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="mutations to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.list:
        for mutation in MUTATIONS:
            print(f"{mutation.name:32} {mutation.says}")
        return 0
    chosen = [m for m in MUTATIONS if not args.names or m.name in args.names]
    expected = baseline()
    results = []
    for mutation in chosen:
        try:
            result = run(mutation, expected)
        except LookupError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        results.append(result)
        mark = {True: "killed  ", False: "SURVIVED", None: "error   "}[result["killed"]]
        where = f"{result['first']} -> {result['verdict']}" if result.get("first") else result.get("error", "")
        print(f"{mark} {mutation.name:32} {where}  ({result['seconds']} s)", flush=True)
    survivors = [r for r in results if r["killed"] is False]
    print(f"\n{len(results) - len(survivors)} of {len(results)} mutation(s) killed; {len(survivors)} survived.")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 1 if survivors or any(r["killed"] is None for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
