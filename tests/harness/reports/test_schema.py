"""The published JSON Schema of report.json: in step with the models, and reports validate against it."""

from __future__ import annotations

import copy
import json
from importlib import resources

import jsonschema
import pytest

from harness.reports import REPORT_KIND, SCHEMA_VERSION, build_run_report, json_schema, write_run_reports


def _published() -> dict:
    return json.loads((resources.files("harness.reports") / "report.schema.json").read_text())


def test_published_schema_is_generated_from_the_models() -> None:
    """report.schema.json is exactly what the models generate (regenerate: python -m harness.reports.schema)."""
    assert _published() == json.loads(json.dumps(json_schema()))


def test_written_report_validates_against_the_published_schema(replayed, context, tmp_path) -> None:
    """A report.json written for real runs is valid under the published schema, with its kind and version."""
    folder = write_run_reports("replay", replayed.values(), meta=context, out_dir=tmp_path)
    data = json.loads((folder / "report.json").read_text())
    jsonschema.Draft202012Validator.check_schema(_published())
    jsonschema.Draft202012Validator(_published()).validate(data)
    assert (data["kind"], data["schema_version"]) == (REPORT_KIND, SCHEMA_VERSION) == (REPORT_KIND, 2)
    outcomes = {check["outcome"] for run in data["runs"] for check in run["checks"]}
    assert {"passed", "failed", "blocked", "not_applicable"} <= outcomes  # v2's outcome, in a real run


@pytest.mark.parametrize(
    "spoil",
    [
        lambda d: d["runs"][0]["checks"][0].update(outcome="exploded"),
        lambda d: d.update(schema_version=1),
        lambda d: d["meta"].pop("target"),
        lambda d: d["runs"][0]["first_failure"] or d["runs"][0].update(first_failure={"id": "X"}),
    ],
)
def test_schema_rejects_reports_that_break_it(replayed, context, spoil) -> None:
    """Unknown outcomes, another version, missing metadata and half a finding all fail validation."""
    data = build_run_report("replay", replayed.values(), meta=context).model_dump(mode="json")
    spoiled = copy.deepcopy(data)
    spoil(spoiled)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(spoiled, _published(), cls=jsonschema.Draft202012Validator)
