"""``harness cassettes list`` and ``harness cassettes scan``: what the cassettes hold, and that no secret does."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import click

from harness.cli.app import EXIT_FINDINGS, EXIT_OK, UsageProblem, cli

#: A verdict ``harness replay`` can check: ``pass`` or ``<stage>:<check id>``.
_VERDICT = re.compile(r"^(pass|[a-z]+:[A-Z]+[0-9]{3})$")

_paths_argument = click.argument("paths", nargs=-1, type=click.Path(path_type=Path))


def _load_all(paths: tuple[Path, ...]) -> list[Any]:
    from harness.cassettes import CassetteError, discover_cassettes, load_cassette

    try:
        return [load_cassette(path) for path in discover_cassettes(list(paths) or [Path("cassettes")])]
    except CassetteError as exc:
        raise UsageProblem(str(exc)) from None


@cli.group()
def cassettes() -> None:
    """Inspect recorded cassettes: what they hold, and that no secret is left in them.

    \b
    Example:
      harness cassettes list
      harness cassettes scan cassettes/
    """


@cassettes.command("list")
@_paths_argument
@click.option(
    "--tests",
    "test_dirs",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folders of tests that name cassettes (default: ./tests if it exists).",
)
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True)
def list_cassettes(paths: tuple[Path, ...], test_dirs: tuple[Path, ...], output_format: str) -> None:
    """Show each cassette's calls, stop reasons, token usage and expected verdict.

    Flags truncated recordings (an answer cut at max_tokens, or a stream that ended
    without its stop events), and cassettes nothing uses: no expectation `harness replay`
    can check (pass or stage:ID) and no test naming them. PATHS are cassette files or
    folders; the default is ./cassettes.

    \b
    Example:
      harness cassettes list
      harness cassettes list cassettes/ --tests tests/ --format json

    Exits 0; 2 when a path is missing or a cassette is broken.
    """
    summaries = _load_all(paths)
    dirs = list(test_dirs) or ([Path("tests")] if Path("tests").is_dir() else [])
    test_text = _test_sources(dirs)
    rows = []
    for summary in summaries:
        meta = summary.meta
        checked = bool(_VERDICT.match(meta.expect))
        named_by_tests = meta.name in test_text or meta.path.name in test_text
        flags = []
        if summary.truncated:
            flags.append("truncated")
        if not checked:
            flags.append(f"no checkable expectation ({meta.expect!r})")
        if not checked and not named_by_tests:
            flags.append("unused")
        rows.append((summary, flags, named_by_tests))

    if output_format == "json":
        import json

        click.echo(
            json.dumps(
                [
                    {
                        "name": s.meta.name,
                        "path": str(s.meta.path),
                        "expect": s.meta.expect,
                        "description": s.meta.description,
                        "named_by_tests": named,
                        "flags": flags,
                        "calls": [call.to_dict() for call in s.calls],
                        "usage": {
                            "input_tokens": sum(c.input_tokens or 0 for c in s.calls),
                            "output_tokens": sum(c.output_tokens or 0 for c in s.calls),
                        },
                    }
                    for s, flags, named in rows
                ],
                indent=2,
            )
        )
        sys.exit(EXIT_OK)

    for summary, flags, _named in rows:
        meta = summary.meta
        inputs = sum(c.input_tokens or 0 for c in summary.calls)
        outputs = sum(c.output_tokens or 0 for c in summary.calls)
        marks = f"  [{', '.join(flags)}]" if flags else ""
        click.echo(
            f"{meta.name}  expect {meta.expect}  {len(summary.calls)} call(s), tokens in {inputs} / out {outputs}{marks}"
        )
        for call in summary.calls:
            kind = f"SSE {call.events} events" if call.streamed else "JSON"
            extra = f"  [{', '.join(call.flags)}]" if call.flags else ""
            click.echo(f"    {call.method} {call.path:<15} {call.status} {kind:<15} {call.outcome}{extra}")
    truncated = sum(1 for s, _f, _n in rows if s.truncated)
    unused = sum(1 for _s, flags, _n in rows if "unused" in flags)
    click.echo(f"{len(rows)} cassette(s): {truncated} truncated, {unused} unused.")
    sys.exit(EXIT_OK)


def _test_sources(dirs: list[Path]) -> str:
    texts = []
    for folder in dirs:
        for source in sorted(folder.rglob("*.py")):
            try:
                texts.append(source.read_text(encoding="utf-8", errors="replace"))
            except OSError:
                continue
    return "\n".join(texts)


@cassettes.command()
@_paths_argument
def scan(paths: tuple[Path, ...]) -> None:
    """Fail if any cassette still holds a secret-shaped or known secret value (a CI gate).

    Looks for API-key shapes, bearer tokens and passwords in URLs, and for the values of
    ANTHROPIC_API_KEY, OPENAI_API_KEY and DATABASE_URL's password in this environment
    (and the fake keys the harness itself replays with), in the raw file and
    in every decoded string. Prints FILE:LINE and the kind of secret — never the value.

    \b
    Example:
      harness cassettes scan
      harness cassettes scan cassettes/ my-cassettes/prod-failure.yaml

    Exits 0 when none is found, 1 when one is, 2 when a path is missing or a cassette is broken.
    """
    from harness.cassettes import scan_cassette
    from harness.redaction import register_secret

    summaries = _load_all(paths)
    for value in _known_secrets():
        register_secret(value)
    hits = [hit for summary in summaries for hit in scan_cassette(summary.meta.path)]
    for hit in hits:
        click.echo(str(hit))
    if hits:
        files = len({hit.path for hit in hits})
        click.echo(f"{len(hits)} secret(s) in {files} of {len(summaries)} cassette(s): re-record them.", err=True)
        sys.exit(EXIT_FINDINGS)
    click.echo(f"{len(summaries)} cassette(s) scanned: no secret found.")
    sys.exit(EXIT_OK)


def _known_secrets() -> list[str]:
    """Secrets of this environment, and the fake keys the harness replays with (any other key is found by its shape)."""
    from harness.config import Settings
    from harness.replay import REPLAY_ANTHROPIC_KEY, REPLAY_OPENAI_KEY

    settings = Settings.from_env()
    values = [settings.anthropic_api_key, settings.openai_api_key, REPLAY_ANTHROPIC_KEY, REPLAY_OPENAI_KEY]
    if settings.database_url:
        from sqlalchemy.engine import make_url

        try:
            values.append(make_url(settings.database_url).password)
        except Exception:
            pass  # not a URL: nothing to look for
    return [value for value in values if value]
