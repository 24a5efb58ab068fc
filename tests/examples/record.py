"""Re-make the example apps' healthy cassettes: ``python -m tests.examples.record [atlas] [beacon]``.

Each app runs once, migrated into a disposable database, against the local stand-in APIs
(the real SDKs over HTTP), while :func:`harness.cassettes.recording` keeps every exchange,
redacted, as if made against the official hosts. A run that fails, leaves rows unsaved or
leaves scripted answers unused writes no cassette.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.cassettes import recording, scan_cassette
from harness.postgres import DisposableCluster, start_cluster
from tests.examples.bugs import APPS_DIR
from tests.examples.runs import KINDS, SESSION_ID, USER_ID, load_app, migrate, read_saved, run_flow, script_for, serving

__all__ = ["DESCRIPTIONS", "main", "record_app"]

DESCRIPTIONS = {
    "atlas": "atlas, healthy: a fenced discovery, then the whole task-manager plan (109 tasks) in one call.",
    "beacon": (
        "beacon, healthy: discovery, example retrieval by embeddings, a streamed skeleton, then the online-shop "
        "plan's 117 tasks in three streamed batches."
    ),
}


def record_app(name: str, cluster: DisposableCluster) -> Path:
    """Run app ``name`` once while recording; returns the cassette written."""
    app = load_app(APPS_DIR / name / "pyproject.toml")
    path = APPS_DIR / name / "cassettes" / "healthy.yaml"
    scripted = script_for(name)
    database = cluster.create_database()
    url = cluster.info.libpq_dsn(database)
    meta = {
        "name": f"{name}-healthy",
        "description": DESCRIPTIONS[name],
        "request": scripted.request,
        "user_id": USER_ID,
        "session_id": SESSION_ID,
        "expect": "pass",
        "made_with": "tests.support.wire_server (local stand-in for the Anthropic and OpenAI APIs)",
        "kind": KINDS[name],
    }
    path.unlink(missing_ok=True)
    try:
        migrate(app, url)
        with serving(scripted.script) as apis, recording(path, meta, stand_ins=apis.official):
            outcome = run_flow(app, url, apis.environ, request=scripted.request)
            unused = apis.unused()
        saved = read_saved(name, url)
    finally:
        cluster.drop_database(database)
    problems = []
    if outcome.error is not None:
        problems.append(f"the flow raised {type(outcome.error).__name__}: {outcome.error}")
    if unused:
        problems.append(f"unused scripted answers: {unused}")
    if len(saved.tasks) != scripted.plan["total_tasks"]:
        problems.append(f"{len(saved.tasks)} tasks saved of {scripted.plan['total_tasks']}")
    problems += [str(hit) for hit in scan_cassette(path)]
    if problems:
        path.unlink(missing_ok=True)
        raise RuntimeError(f"{name}: no cassette written: " + "; ".join(problems))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Record the example apps' healthy cassettes.")
    parser.add_argument("apps", nargs="*", help=f"apps to record: {', '.join(KINDS)} (default: all)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.apps) - set(KINDS))
    if unknown:
        parser.error(f"unknown app(s): {', '.join(unknown)}")
    with start_cluster() as cluster:
        for name in args.apps or list(KINDS):
            try:
                path = record_app(name, cluster)
            except RuntimeError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
            print(f"recorded {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
