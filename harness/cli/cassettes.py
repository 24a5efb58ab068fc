"""``harness cassettes list|scan|adopt``: what the cassettes hold, that no secret does, and adopting foreign ones.

Any vcrpy cassette is listed and scanned, with or without harness metadata; ``adopt`` gives
one recorded outside the harness (a pytest-recording suite's) what ``harness replay`` needs.
"""

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
    """Inspect recorded cassettes: what they hold, that no secret is left in them; adopt foreign ones.

    Works on any vcrpy cassette, those of a pytest-recording suite included.

    \b
    Example:
      harness cassettes list
      harness cassettes scan cassettes/ tests/cassettes/
      harness cassettes adopt tests/cassettes/test_plan.yaml --user-id u-1 --session-id s-1
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
    """Show each cassette's calls, stop reasons, token usage, content blocks and expected verdict.

    Flags truncated recordings (an answer cut at max_tokens, or a stream that ended
    without its stop events), cassettes with no harness metadata (recorded outside the
    harness, e.g. by pytest-recording: `harness cassettes adopt` them for `harness replay`),
    and cassettes nothing uses: no expectation `harness replay` can check (pass or
    stage:ID) and no test naming them. PATHS are cassette files or folders; the default
    is ./cassettes.

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
        named_by_tests = any(text in test_text for text in {summary.name, summary.path.name, summary.path.stem})
        flags = []
        if summary.truncated:
            flags.append("truncated")
        if meta is None:
            flags.append(_NO_METADATA)
            checked = False
        else:
            checked = bool(_VERDICT.match(meta.expect))
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
                        "name": s.name,
                        "path": str(s.path),
                        "harness_metadata": s.meta is not None,
                        "expect": s.meta.expect if s.meta is not None else None,
                        "description": s.meta.description if s.meta is not None else None,
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
        inputs = sum(c.input_tokens or 0 for c in summary.calls)
        outputs = sum(c.output_tokens or 0 for c in summary.calls)
        shown = [flag for flag in flags if flag != _NO_METADATA]  # said in words on the line itself
        marks = f"  [{', '.join(shown)}]" if shown else ""
        expect = f"expect {summary.meta.expect}" if summary.meta is not None else f"{_NO_METADATA} — adopt it"
        click.echo(f"{summary.name}  {expect}  {len(summary.calls)} call(s), tokens in {inputs} / out {outputs}{marks}")
        for call in summary.calls:
            click.echo(f"    {_call_line(call)}")
    truncated = sum(1 for s, _f, _n in rows if s.truncated)
    unused = sum(1 for _s, flags, _n in rows if "unused" in flags)
    foreign = sum(1 for s, _f, _n in rows if s.meta is None)
    adopt = f", {foreign} with {_NO_METADATA} (harness cassettes adopt FILE)" if foreign else ""
    click.echo(f"{len(rows)} cassette(s): {truncated} truncated, {unused} unused{adopt}.")
    sys.exit(EXIT_OK)


#: How list marks a cassette recorded outside the harness and not adopted yet.
_NO_METADATA = "no harness metadata"


def _call_line(call: Any) -> str:
    """One recorded call as list and adopt show it: request, status, answer kind, outcome, blocks, flags."""
    where = f"{call.path}?{call.query}" if call.query else call.path
    kind = f"SSE {call.events} events" if call.streamed else "JSON"
    blocks = f"  {', '.join(call.blocks)}" if call.blocks else ""
    tokens = (
        f"  tokens in {call.input_tokens if call.input_tokens is not None else '-'} / out {call.output_tokens or '-'}"
    )
    extra = f"  [{', '.join(call.flags)}]" if call.flags else ""
    model = f"  {call.model}" if call.model else ""
    return f"{call.method} {where:<15} {call.status} {kind:<15} {call.outcome}{blocks}{model}{tokens}{extra}"


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

    Scans every file given, and every *.yaml / *.yml file in the folders given — any YAML,
    whoever recorded it (a pytest-recording suite's cassettes included), harness metadata
    or not. Looks for API-key shapes, bearer tokens and passwords in URLs, and for the
    values of ANTHROPIC_API_KEY, OPENAI_API_KEY and DATABASE_URL's password in this
    environment (and the fake keys the harness itself replays with), in the raw file and
    in every decoded string (escapes, !!binary, gzip). A file that is not valid YAML is
    still scanned as text, and said so. Prints FILE:LINE and the kind of secret — never
    the value.

    \b
    Example:
      harness cassettes scan
      harness cassettes scan cassettes/ tests/cassettes/ my-cassettes/prod-failure.yaml

    Exits 0 when none is found, 1 when one is, 2 when a path is missing or a folder holds no YAML.
    """
    from harness.cassettes import CassetteError, discover_cassettes, scan_cassette
    from harness.redaction import register_secret

    try:
        files = discover_cassettes(list(paths) or [Path("cassettes")])
    except CassetteError as exc:
        raise UsageProblem(str(exc)) from None
    for value in _known_secrets():
        register_secret(value)
    hits = []
    for path in files:
        try:
            hits.extend(scan_cassette(path))
        except OSError as exc:
            raise UsageProblem(f"{path}: cannot be read ({exc.__class__.__name__})") from None
        if not _is_yaml(path):
            click.echo(f"{path}: not valid YAML; scanned as text", err=True)
    for hit in hits:
        click.echo(str(hit))
    if hits:
        holding = len({hit.path for hit in hits})
        click.echo(f"{len(hits)} secret(s) in {holding} of {len(files)} file(s): re-record or redact them.", err=True)
        sys.exit(EXIT_FINDINGS)
    click.echo(f"{len(files)} file(s) scanned: no secret found.")
    sys.exit(EXIT_OK)


def _is_yaml(path: Path) -> bool:
    import yaml

    try:
        yaml.compose(
            path.read_text(encoding="utf-8", errors="replace"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        )
    except yaml.YAMLError:
        return False
    return True


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


@cassettes.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--request",
    help="The chat request the application's flow is called with. Default: the first user message the "
    "cassette recorded (right when the flow sends its request as that message).",
)
@click.option(
    "--expect",
    default="pass",
    show_default=True,
    help="The verdict replaying it must produce: pass, or <stage>:<check ID> of the first failure.",
)
@click.option("--user-id", help="conversation.user_id the flow is called with.")
@click.option("--session-id", help="Socket session id the flow is called with.")
@click.option("--name", help="Cassette name in reports (default: the file's stem).")
@click.option("--description", help="What the recording shows (kept in its metadata).")
@click.option(
    "--flow-env",
    "flow_env",
    multiple=True,
    metavar="NAME=VALUE",
    help="A setting the flow reads that shapes its requests (repeatable), set when the cassette is replayed.",
)
@click.option("--force", is_flag=True, help="Replace harness metadata the cassette already has.")
def adopt(
    file: Path,
    request: str | None,
    expect: str,
    user_id: str | None,
    session_id: str | None,
    name: str | None,
    description: str | None,
    flow_env: tuple[str, ...],
    force: bool,
) -> None:
    """Adopt a cassette recorded outside the harness (e.g. by pytest-recording) so `harness replay` can run it.

    Adds harness metadata to FILE — the request the flow is called with, who asked, and the
    verdict a replay must produce — and rewrites it redacted as `harness record` redacts
    (keys, cookies, organization and request ids, x-stainless-* and user-agent headers and
    key-shaped text removed; compressed bodies decoded), in vcrpy's current format. Then
    scans it for secrets. Replay matches requests on method, path and JSON body, so the
    flow must send the requests the cassette recorded.

    \b
    Example:
      harness cassettes adopt tests/cassettes/test_plan/test_saves_plan.yaml --user-id u-1 --session-id s-1
      harness cassettes adopt prod.yaml --request "A CRM for a bakery" --expect parse:PARSE003 --force

    Exits 0 when adopted and no secret is left, 1 when the scan still finds one, 2 for a
    missing or broken file, metadata it already has (without --force), a malformed --expect
    or no request to be had.
    """
    from harness.adopt import adopt_cassette
    from harness.cassettes import CassetteError
    from harness.redaction import redact_text, register_secret

    env = {}
    for item in flow_env:
        key, sep, value = item.partition("=")
        if not sep or not key.replace("_", "").isalnum():
            raise UsageProblem(f"--flow-env {item!r}: write NAME=VALUE")
        env[key] = value
    for value in _known_secrets():
        register_secret(value)
    if not file.is_file():
        raise UsageProblem(f"{file}: no such file")
    try:
        adopted = adopt_cassette(
            file,
            request=request,
            expect=expect,
            name=name,
            description=description,
            user_id=user_id,
            session_id=session_id,
            env=env,
            force=force,
        )
    except CassetteError as exc:
        raise UsageProblem(str(exc)) from None

    meta = adopted.meta
    click.echo(f"Adopted {adopted.path} as {meta.name}: {len(adopted.calls)} call(s), expect {meta.expect}.")
    shown = meta.request if len(meta.request) <= 100 else meta.request[:97] + "..."
    click.echo(redact_text(f"  request: {shown!r} (from {adopted.request_from})"))
    for number, call in enumerate(adopted.calls, 1):
        click.echo(f"  {number}. {_call_line(call)}")
    for warning in adopted.warnings:
        click.echo(f"  warning: {warning}")
    if not meta.user_id or not meta.session_id:
        click.echo("  note: no --user-id/--session-id: the flow is called without them (the auth stage may say so).")
    for hit in adopted.secrets:
        click.echo(str(hit))
    if adopted.secrets:
        click.echo(f"{len(adopted.secrets)} secret(s) left in {adopted.path} after redaction: remove them.", err=True)
        sys.exit(EXIT_FINDINGS)
    click.echo(f"Scanned {adopted.path}: no secret found. Replay it with `harness replay {adopted.path}`.")
    sys.exit(EXIT_OK)
