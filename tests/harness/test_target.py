"""Targets: the [tool.masterplan-harness] table is found, read and checked the way a user would expect."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.target import Target, TargetError, find_config, load_target, reference_config


def _write(folder: Path, table: str, *, project: str = "shop") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pyproject.toml"
    path.write_text(f'[project]\nname = "{project}"\n\n[tool.masterplan-harness]\n{table}\n', encoding="utf-8")
    return path


def test_no_table_anywhere_means_the_reference_flow(tmp_path: Path) -> None:
    """With no table from the working directory up, the target is the bundled reference flow, read the same way."""
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "unrelated"\n', encoding="utf-8")
    config = find_config(start=tmp_path)
    assert config.reference and config.flow == "harness.flow.entry:run"
    assert config.migrations is not None and config.migrations.name == "alembic.ini"
    assert config.points["llm"] and config.points["events"]


def test_nearest_table_upward_wins_and_paths_are_relative_to_its_file(tmp_path: Path) -> None:
    """The nearest pyproject.toml holding the table is used; its paths resolve against its own folder."""
    (tmp_path / "app" / "src").mkdir(parents=True)
    (tmp_path / "app" / "alembic.ini").write_text("[alembic]\n", encoding="utf-8")
    _write(tmp_path / "app", 'flow = "shop.entry:run"\nmigrations = "alembic.ini"\napp-path = "src"')
    deep = tmp_path / "app" / "src" / "shop" / "services"
    deep.mkdir(parents=True)
    config = find_config(start=deep)
    assert config.name == "shop" and config.flow == "shop.entry:run"
    assert config.migrations == (tmp_path / "app" / "alembic.ini").resolve()
    assert config.app_path == ((tmp_path / "app" / "src").resolve(),)
    assert config.database_url_env == "DATABASE_URL"


def test_config_file_given_explicitly_works_from_anywhere(tmp_path: Path) -> None:
    """--config ../app/pyproject.toml: paths are relative to that file, not to the working directory."""
    (tmp_path / "app" / "db").mkdir(parents=True)
    (tmp_path / "app" / "db" / "alembic.ini").write_text("[alembic]\n", encoding="utf-8")
    path = _write(tmp_path / "app", 'flow = "shop.entry:run"\nmigrations = "db/alembic.ini"\ndatabase-url-env = "SHOP_DB"')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cwd = os.getcwd()
    os.chdir(elsewhere)
    try:
        config = find_config(Path("..") / "app" / "pyproject.toml")
    finally:
        os.chdir(cwd)
    assert config.source == path.resolve()
    assert config.migrations == (tmp_path / "app" / "db" / "alembic.ini").resolve()
    assert config.database_url_env == "SHOP_DB"


@pytest.mark.parametrize(
    ("table", "says"),
    [
        ('metadata = "shop.db:Base"', "needs flow"),
        ('flow = "shop.entry"', "'module:attribute'"),
        ('flow = "shop.entry:run"\nmigratoins = "alembic.ini"', "unknown key(s): migratoins"),
        ('flow = "shop.entry:run"\nmigrations = "nowhere.ini"', "does not exist"),
        ('flow = "shop.entry:run"\napp-path = "missing"', "is not a folder"),
        ('flow = "shop.entry:run"\n[tool.masterplan-harness.points]\nsave = ["shop:save"]', "unknown stage(s) save"),
        ('flow = "shop.entry:run"\n[tool.masterplan-harness.points]\nllm = ["shop.llm"]', "'module:attribute'"),
        ('flow = "shop.entry:run"\ndatabase-url-env = "my url"', "environment variable name"),
        ('flow = "shop.entry:run"\nloop-stall-threshold = -1', "loop-stall-threshold"),
    ],
)
def test_bad_tables_are_one_error_naming_the_file_and_key(tmp_path: Path, table: str, says: str) -> None:
    """Each mistake in the table is a TargetError that names the file and what is wrong, never a traceback later."""
    path = _write(tmp_path, table)
    with pytest.raises(TargetError) as caught:
        find_config(path)
    assert str(path) in str(caught.value) and says in str(caught.value)


def test_a_file_without_the_table_or_not_toml_is_refused(tmp_path: Path) -> None:
    """--config naming a file with no table, or a file that is not TOML, is refused with the reason."""
    plain = tmp_path / "pyproject.toml"
    plain.write_text('[project]\nname = "x"\n', encoding="utf-8")
    with pytest.raises(TargetError, match="has no \\[tool.masterplan-harness\\] table"):
        find_config(plain)
    broken = tmp_path / "broken.toml"
    broken.write_text("flow = \n", encoding="utf-8")
    with pytest.raises(TargetError, match="not valid TOML"):
        find_config(broken)
    with pytest.raises(TargetError, match="no such file"):
        find_config(tmp_path / "missing.toml")


def test_an_app_that_does_not_import_is_named_with_its_error(tmp_path: Path) -> None:
    """A flow whose module fails to import is a TargetError with the import's own error."""
    (tmp_path / "src" / "brokenapp").mkdir(parents=True)
    (tmp_path / "src" / "brokenapp" / "__init__.py").write_text("import does_not_exist_anywhere\n", encoding="utf-8")
    path = _write(tmp_path, 'flow = "brokenapp:run"\napp-path = "src"')
    target = load_target(path)
    with pytest.raises(TargetError, match="importing brokenapp failed: ModuleNotFoundError"):
        _ = target.flow


def test_reference_target_loads_its_flow_metadata_and_code() -> None:
    """The reference flow loads like any app: an async flow, its metadata's tables, frames under harness/flow."""
    target = Target(reference_config())
    assert target.is_async
    assert "masterplan_tasks" in target.metadata.tables
    assert target.code.owns(str(Path(target.flow.__code__.co_filename)))
    assert not target.code.owns(__file__)


def test_a_point_that_does_not_resolve_is_a_target_error(tmp_path: Path) -> None:
    """A misspelt function in points is found when the target loads, naming the stage and the name."""
    path = _write(
        tmp_path, 'flow = "harness.flow.entry:run"\n[tool.masterplan-harness.points]\nllm = ["harness.flow.llm:create_mesage"]'
    )
    with pytest.raises(TargetError, match=r"points\.llm: harness\.flow\.llm:create_mesage: .* has no create_mesage"):
        load_target(path).check_points()


def test_probes_with_config_says_what_each_check_needs(tmp_path: Path) -> None:
    """`harness probes --config` marks the checks a bare table cannot support with the entry they need."""
    import subprocess
    import sys

    path = _write(tmp_path, 'flow = "harness.flow.entry:run"')
    out = subprocess.run(
        [sys.executable, "-m", "harness.cli", "probes", "--config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    lines = {line.split()[0]: line for line in out.stdout.splitlines() if line.strip()}
    assert lines["DB011"].endswith("[needs migrations]")
    assert lines["DB006"].endswith("[needs metadata]")
    assert lines["LLM102"].endswith("[needs points.llm]")
    assert lines["LLM001"].endswith("[applies]")
