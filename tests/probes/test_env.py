"""Stage env: presence, shape and placeholders of the settings, always shown masked."""

from __future__ import annotations

import pytest

from harness.config import EnvFileError, Settings, load_env_file
from probes import env

GOOD = {
    "DATABASE_URL": "postgresql://app:s3cret-pass-9@db.internal:5432/app",
    "ANTHROPIC_API_KEY": "sk-ant-api03-abcdefghijklmnop",
    "OPENAI_API_KEY": "sk-proj-abcdefghijklmnopqrst",
}


def _ids(environ: dict) -> list[str]:
    return [finding.id for finding in env.check_settings(Settings.from_env(environ))]


def test_complete_settings_pass() -> None:
    """Well-formed settings produce no finding."""
    assert _ids(GOOD) == []


@pytest.mark.parametrize(
    ("variable", "value", "check"),
    [
        ("DATABASE_URL", None, "ENV001"),
        ("ANTHROPIC_API_KEY", None, "ENV002"),
        ("OPENAI_API_KEY", None, "ENV003"),
        ("DATABASE_URL", "mysql://app:pw@db/app", "ENV004"),
        ("DATABASE_URL", "not a url at all", "ENV004"),
        ("DATABASE_URL", "postgresql://user:password@localhost/app", "ENV005"),
        ("ANTHROPIC_API_KEY", "your-api-key-here", "ENV005"),
        ("ANTHROPIC_API_KEY", "changeme", "ENV005"),
        ("ANTHROPIC_API_KEY", "sk-proj-abcdefghijklmnopqrst", "ENV006"),
        ("OPENAI_API_KEY", "sk-ant-api03-abcdefghijklmnop", "ENV006"),
    ],
)
def test_each_setting_problem_has_its_check(variable: str, value: str | None, check: str) -> None:
    """Missing, malformed, placeholder and swapped settings are each reported by their own check."""
    environ = dict(GOOD)
    if value is None:
        environ.pop(variable)
    else:
        environ[variable] = value
    assert _ids(environ) == [check]


def test_evidence_never_shows_a_value() -> None:
    """A malformed URL's password and a swapped key never appear in the findings."""
    environ = {**GOOD, "DATABASE_URL": "mysql://app:hunter2-secret@db/app", "OPENAI_API_KEY": GOOD["ANTHROPIC_API_KEY"]}
    text = str([f.to_dict() for f in env.check_settings(Settings.from_env(environ))])
    assert "hunter2-secret" not in text and "abcdefghijklmnop" not in text


def test_env_file_values_win_and_errors_name_the_line(tmp_path) -> None:
    """An env file parses dotenv syntax; a bad line is reported with file and line number."""
    good = tmp_path / "prod.env"
    good.write_text("# prod\nexport DATABASE_URL='postgresql://a:b@h/d'\nANTHROPIC_API_KEY=sk-ant-x # note\n")
    assert load_env_file(str(good)) == {"DATABASE_URL": "postgresql://a:b@h/d", "ANTHROPIC_API_KEY": "sk-ant-x"}
    bad = tmp_path / "bad.env"
    bad.write_text("A=1\nthis is not a setting\n")
    with pytest.raises(EnvFileError, match=r"bad.env:2"):
        load_env_file(str(bad))
    with pytest.raises(EnvFileError, match="no such env file"):
        load_env_file(str(tmp_path / "missing.env"))
