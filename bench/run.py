"""Run every benchmark of issues 8 and 14 and write the results table.

    python bench/run.py                  # everything (the suite once each way: ~15 minutes on 2 cores)
    python bench/run.py --suite-runs 0   # everything but the test-suite timings (~4 minutes)

Writes ``bench/results.md`` (the table) and ``bench/results.json`` (every sample) and prints
the table. Every figure is the median of several runs; a ratio is the median of the
baseline over ours, both measured in this run, interleaved. Times are wall clock on a
shared machine: read them as medians, never as guarantees.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Row, fmt_ms, fmt_s, median

HERE = Path(__file__).resolve().parent


def _verdict(value: float, limit: float, unit: str = "ms") -> str:
    """ "met", or by how much ``value`` misses the upper ``limit``."""
    if value <= limit:
        return "met"
    if unit == "ms":
        return f"missed by {(value - limit) * 1000:.0f} ms ({value / limit:.1f}× the target)"
    return f"missed by {value - limit:.2f} s ({value / limit:.1f}× the target)"


def _ratio_verdict(ratio: float, wanted: float) -> str:
    return "met" if ratio >= wanted else f"missed: {ratio:.1f}× of the {wanted:g}× wanted"


def disposable_rows(runs: int, factory, cluster) -> list[Row]:
    from bench.disposable import measure_create_drop, measure_session_ready

    rows = []
    ready = measure_session_ready(runs)
    ours = median(ready.ours)
    baseline_name, baseline = "pytest-postgresql `postgresql_proc`", ready.pytest_postgresql
    note = ""
    if not baseline:
        baseline_name, baseline = "initdb + `pg_ctl start -w`", ready.initdb_pg_ctl
        note = f"pytest-postgresql not measured: {ready.pgpp_skipped}"
    ratio = median(baseline) / ours
    rows.append(
        Row(
            "Disposable database",
            "session ready: our `postgres_cluster` fixture",
            fmt_s(ours),
            f"{baseline_name} {fmt_s(median(baseline))} → **{ratio:.1f}× faster**",
            "≥ 3× faster",
            _ratio_verdict(ratio, 3),
            runs,
            ready.ours + baseline,
            note,
        )
    )
    rows.append(
        Row(
            "Disposable database",
            "session ready: `initdb` + `pg_ctl start -w` by hand",
            fmt_s(median(ready.initdb_pg_ctl)),
            f"ours is {median(ready.initdb_pg_ctl) / ours:.1f}× faster",
            "",
            "",
            runs,
            ready.initdb_pg_ctl,
        )
    )
    from harness.flow.database import migrate
    from harness.postgres import DatabaseFactory

    on_demand = DatabaseFactory(cluster, prepare_template=migrate, spare=False)
    creates, totals, on_demand_totals = measure_create_drop(factory, runs * 5, on_demand)
    rows.append(
        Row(
            "Disposable database",
            "per-test database: take the clone made ahead + drop (a 50 ms test between, not counted)",
            fmt_ms(median(totals)),
            f"cloned when asked (`spare=False`) {fmt_ms(median(on_demand_totals))}"
            f" → {median(on_demand_totals) / median(totals):.1f}×; taking the spare alone {fmt_ms(median(creates))}",
            "≤ 20 ms",
            _verdict(median(totals), 0.020),
            runs * 5,
            totals + on_demand_totals,
        )
    )
    return rows


def replay_rows(runs: int, factory) -> list[Row]:
    from bench.replay import measure_replay

    rows = []
    for cassette in measure_replay(factory, runs):
        value = median(cassette.samples)
        rows.append(
            Row(
                "Replay",
                f"one cassette, cluster up: `{cassette.name}` ({cassette.tasks} tasks, verdict {cassette.verdict})",
                fmt_ms(value),
                "",
                "≤ 100 ms (120-task plan)",
                _verdict(value, 0.100),
                runs,
                cassette.samples,
            )
        )
    return rows


def library_rows(runs: int) -> list[Row]:
    from bench.library import ONE_CASSETTE, measure_library

    times = measure_library(runs)
    one, jobs1, jobs2 = median(times.one), median(times.jobs1), median(times.jobs2)
    failed = "; ".join(times.failures[:3])
    n = times.cassettes
    rows = [
        Row(
            "Replay",
            f"`harness replay` of one cassette (`{ONE_CASSETTE.stem}`), end to end",
            fmt_s(one),
            "",
            "",
            "FAILED: " + failed if any(f.startswith("one") for f in times.failures) else "",
            len(times.one),
            times.one,
            "start-up, PostgreSQL, the template, one cassette, the reports: what every `harness replay` pays",
        ),
        Row(
            "Replay",
            f"`harness replay -j 1` of the cassette library ({n} cassettes), end to end",
            fmt_s(jobs1),
            f"one cassette {fmt_s(one)} → library ÷ one cassette = **{jobs1 / one:.1f}×**; "
            f"{fmt_ms((jobs1 - one) / (n - 1))} for each further cassette",
            "",
            "FAILED: " + failed if any("-j 1" in f for f in times.failures) else "",
            len(times.jobs1),
            times.jobs1,
            f"the cassettes' own `duration_s` in its report add up to {fmt_s(median(times.jobs1_cassette_sum))}",
        ),
        Row(
            "Replay",
            f"`harness replay -j 2` of the cassette library ({n} cassettes), end to end",
            fmt_s(jobs2),
            f"`-j 1` {fmt_s(jobs1)} → -j 1 ÷ -j 2 = **{jobs1 / jobs2:.2f}×**",
            "≤ 3 s",
            ("FAILED: " + failed) if any("-j 2" in f for f in times.failures) else _verdict(jobs2, 3.0, unit="s"),
            len(times.jobs2),
            times.jobs2,
        ),
        Row(
            "Replay",
            "importing the reference flow alone (`python -c 'import harness.flow.entry'`: the flow and its SDKs)",
            fmt_s(median(times.flow_import)) if times.flow_import else "",
            f"the library with `-j 2` {fmt_s(jobs2)} → the import is "
            f"**{100 * median(times.flow_import) / jobs2:.0f}%** of it" if times.flow_import else "",
            "",
            ("FAILED: " + failed) if any(f.startswith("flow import") for f in times.failures) else "",
            len(times.flow_import),
            times.flow_import,
            "paid before any cassette can replay: the floor under which no replay of this flow goes",
        ),
    ]
    return rows


def persistence_rows(runs: int, factory) -> list[Row]:
    from bench.persistence import measure_persistence

    times = measure_persistence(factory, runs)
    ours = median(times.ours_total)
    parts = [_verdict(ours, 0.050)] if ours > 0.050 else []
    parts += [_ratio_verdict(times.ratio, 3)] if times.ratio < 3 else []
    return [
        Row(
            "Persistence",
            "120-task plan with dependencies: commit + independent readback",
            fmt_ms(ours),
            f"naive add-and-flush {fmt_ms(median(times.naive_total))} → **{times.ratio:.1f}× faster**",
            "≤ 50 ms and ≥ 3×",
            "; ".join(parts) or "met",
            runs,
            times.ours_total + times.naive_total,
            f"save alone: ours {fmt_ms(median(times.ours_save))}, naive {fmt_ms(median(times.naive_save))}",
        )
    ]


def startup_rows(runs: int) -> list[Row]:
    from bench.cli import measure_startup

    help_times, baseline = measure_startup(runs)
    above = median(help_times) - median(baseline)
    return [
        Row(
            "Start-up",
            "`harness --help`",
            fmt_s(median(help_times)),
            f"`python -c pass` {fmt_s(median(baseline))} → {above:+.2f} s above it",
            "≤ 0.3 s above the baseline",
            _verdict(above, 0.3, unit="s"),
            runs,
            help_times + baseline,
        )
    ]


def verdict_rows(runs: int) -> list[Row]:
    from bench.cli import DIAGNOSE_ARGS, diagnose_available, measure_time_to_verdict

    command = "`harness " + " ".join(DIAGNOSE_ARGS) + "`"
    if not diagnose_available():
        return [
            Row(
                "Time to verdict",
                f"{command}, database on {scenario}",
                "not yet measurable",
                "",
                "≤ 2.5 s",
                "not yet measurable: this checkout has no `harness diagnose`",
                0,
            )
            for scenario in ("a closed port", "a listener that never answers")
        ]
    rows = []
    for result in measure_time_to_verdict(runs):
        value = median(result.samples)
        rows.append(
            Row(
                "Time to verdict",
                f"{command}, database on a {result.scenario}",
                fmt_s(value),
                f"exit codes {sorted(set(result.exit_codes))}, reported {', '.join(result.checks) or 'no DB check'}",
                "≤ 2.5 s",
                _verdict(value, 2.5, unit="s"),
                runs,
                result.samples,
            )
        )
    return rows


def suite_rows(runs: int) -> list[Row]:
    from bench.suite import run_suite, xdist_available

    serial, parallel = [], []
    for _ in range(runs):
        serial.append(run_suite())
        if xdist_available():
            parallel.append(run_suite(workers=2))
    rows = [
        Row(
            "Test suite",
            "whole suite, one process (`-n 0`)",
            fmt_s(median([r.seconds for r in serial])),
            serial[-1].summary,
            "≤ 90 s",
            _verdict(median([r.seconds for r in serial]), 90.0, unit="s")
            if all(r.passed for r in serial)
            else "FAILED: " + serial[-1].summary,
            runs,
            [r.seconds for r in serial],
        )
    ]
    if not parallel:
        rows.append(Row("Test suite", "whole suite, `-n 2`", "not measured", "", "", "pytest-xdist not installed", 0))
        return rows
    speedup = median([r.seconds for r in serial]) / median([r.seconds for r in parallel])
    rows.append(
        Row(
            "Test suite",
            "whole suite, `pytest` as is: pytest-xdist `-n 2 --dist loadfile` (a cluster per worker)",
            fmt_s(median([r.seconds for r in parallel])),
            f"{parallel[-1].summary}; {speedup:.2f}× the one-process speed",
            "≤ 90 s; no shared-state failures",
            _verdict(median([r.seconds for r in parallel]), 90.0, unit="s") + "; no failures"
            if all(r.passed for r in parallel)
            else "FAILED: " + parallel[-1].summary,
            runs,
            [r.seconds for r in parallel],
        )
    )
    return rows


def render(rows: list[Row], header: str) -> str:
    lines = [
        header,
        "",
        "| section | what | median | baseline, same run | target | verdict | runs |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = [row.section, row.what, row.result, row.baseline, row.target, row.verdict, str(row.runs)]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    notes = [f"- {row.what}: {row.note}" for row in rows if row.note]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="samples per figure (create + drop takes 5x this)")
    parser.add_argument("--suite-runs", type=int, default=1, help="runs of the whole test suite each way (0 skips)")
    parser.add_argument("--out", type=Path, default=HERE / "results.md", help="where to write the table")
    args = parser.parse_args(argv)

    from harness.flow.database import migrate
    from harness.postgres import DatabaseFactory, start_cluster

    started = time.perf_counter()
    rows: list[Row] = []
    cluster = start_cluster()
    try:
        factory = DatabaseFactory(cluster, prepare_template=migrate)
        for name, section in (
            ("disposable database", lambda: disposable_rows(args.runs, factory, cluster)),
            ("persistence", lambda: persistence_rows(args.runs + 2, factory)),
            ("replay", lambda: replay_rows(args.runs, factory)),
        ):
            print(f"measuring {name} ...", file=sys.stderr, flush=True)
            rows += section()
        provider = cluster.info.provider
    finally:
        cluster.stop()
    for name, section in (
        ("start-up", lambda: startup_rows(args.runs * 2)),
        ("replay of the cassette library", lambda: library_rows(args.runs)),
        ("time to verdict", lambda: verdict_rows(max(3, args.runs // 2))),
        ("test suite", lambda: suite_rows(args.suite_runs) if args.suite_runs > 0 else []),
    ):
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        rows += section()

    # Measured when they can be (the library replay after the in-process cluster is stopped), shown by section.
    order = ["Disposable database", "Persistence", "Replay", "Start-up", "Time to verdict", "Test suite"]
    rows.sort(key=lambda row: order.index(row.section) if row.section in order else len(order))
    load = os.getloadavg()
    header = (
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {platform.node() or 'this machine'}: "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, PostgreSQL from {provider}, "
        f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min), "
        f"benchmark took {time.perf_counter() - started:.0f} s."
    )
    table = render(rows, header)
    args.out.write_text(table)
    args.out.with_suffix(".json").write_text(json.dumps([asdict(row) for row in rows], indent=1) + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
