"""Stage persist: readback through an independent connection, against rows damaged on purpose."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from harness.config import sqlalchemy_url
from harness.contract import parse_discovery, parse_masterplan
from harness.flow.database import session_scope
from harness.flow.models import DiscoveryDocument
from harness.recording import content
from harness.recording.scenarios import healthy_script
from harness.runner import FlowRequest, RunOptions, run_flow
from probes import persist

KIND = "task_manager"


@pytest.fixture
def saved(stand_in_apis, flow_database_url):
    """A database holding one healthy discovery and plan saved by the flow; yields (url, run)."""
    script = healthy_script(KIND)
    run = run_flow(stand_in_apis(script, flow_database_url), FlowRequest(content.request_for(KIND), "u", "s"))
    assert run.report.verdict == "pass"
    return flow_database_url, run


def _plan():
    return parse_masterplan(content.render_reply(content.masterplan_for(KIND)))


def _sql(postgres_cluster, url: str, statement: str) -> None:
    postgres_cluster.run_sql(statement, make_url(url).database)


@pytest.mark.slow
def test_changed_field_is_persist002(postgres_cluster, saved) -> None:
    """A discovery saved with another domain than generated is named field by field."""
    url, run = saved
    _sql(postgres_cluster, url, "UPDATE discovery_documents SET domain = 'Something else'")
    discovery = parse_discovery(content.render_reply(content.discovery_for(KIND)))
    (finding,) = persist.check_discovery_row(url, run.discovery_id, discovery)
    assert finding.id == "PERSIST002" and finding.evidence["fields"] == ["domain"]


@pytest.mark.slow
def test_missing_children_and_edges_are_persist003_and_004(postgres_cluster, saved) -> None:
    """A task row gone shows as a child count mismatch and as missing dependency edges."""
    url, run = saved
    _sql(postgres_cluster, url, "DELETE FROM masterplan_tasks WHERE task_number = 2")
    ids = {f.id: f for f in persist.check_masterplan_rows(url, run.masterplan_id, _plan())}
    assert ids["PERSIST003"].evidence["saved"]["tasks"] == ids["PERSIST003"].evidence["generated"]["tasks"] - 1
    assert ids["PERSIST004"].evidence["missing"]


@pytest.mark.slow
def test_dropped_dependency_rows_are_persist004(postgres_cluster, saved) -> None:
    """Dependency rows missing from an otherwise complete plan are PERSIST004 with the edges."""
    url, run = saved
    _sql(postgres_cluster, url, "DELETE FROM masterplan_task_dependencies")
    (finding,) = persist.check_masterplan_rows(url, run.masterplan_id, _plan())
    assert finding.id == "PERSIST004" and finding.evidence["extra"] == [] and finding.evidence["missing"]


@pytest.mark.slow
def test_plan_left_generating_is_persist007(postgres_cluster, saved) -> None:
    """A plan whose status never left 'generating' is reported with its status."""
    url, run = saved
    _sql(postgres_cluster, url, "UPDATE masterplans SET status = 'generating'")
    (finding,) = persist.check_masterplan_rows(url, run.masterplan_id, _plan())
    assert finding.id == "PERSIST007" and finding.evidence["status"] == "generating"


@pytest.mark.slow
def test_object_used_after_its_session_closed_is_persist005(saved) -> None:
    """With expire_on_commit=True (the seed's suspicion), a returned row cannot be read: PERSIST005."""
    url, _ = saved
    engine = create_engine(sqlalchemy_url(url))
    try:
        factory = sessionmaker(bind=engine, expire_on_commit=True)
        with session_scope(factory) as session:
            row = session.scalars(select(DiscoveryDocument)).one()
        (finding,) = persist.check_detached(row, ("domain",), "discovery")
    finally:
        engine.dispose()
    assert finding.id == "PERSIST005" and finding.evidence["attribute"] == "domain"


def test_write_refused_by_the_database_is_persist006(postgres_cluster, flow_database_url) -> None:
    """A save the database refuses (read-only) is PERSIST006 with SQLSTATE 25006."""
    name = make_url(flow_database_url).database
    postgres_cluster.run_sql(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    engine = create_engine(sqlalchemy_url(flow_database_url))
    factory = sessionmaker(bind=engine)
    try:
        with pytest.raises(Exception) as caught, session_scope(factory) as session:
            session.add(
                DiscoveryDocument(
                    session_id="s",
                    user_id="u",
                    user_request="r",
                    domain="d",
                    bounded_contexts=[],
                    aggregates=[],
                    value_objects=[],
                    domain_events=[],
                    services=[],
                )
            )
    finally:
        engine.dispose()
    finding = persist.classify(caught.value, "discovery")
    assert finding.id == "PERSIST006" and finding.evidence["sqlstate"] == "25006" and finding.evidence["read_only"]


class CommitOnAddSession(Session):
    """The seed's double commit: an explicit commit inside a scope that commits again."""

    def add(self, instance, *, _warn: bool = True) -> None:
        super().add(instance, _warn=_warn)
        self.commit()


@pytest.mark.slow
def test_double_commit_per_unit_of_work_is_a_persist009_warning(stand_in_apis, flow_database_url) -> None:
    """Sessions that commit inside the unit of work are counted and reported, without failing the run."""
    script = healthy_script(KIND)
    engine = create_engine(sqlalchemy_url(flow_database_url))
    factory = sessionmaker(bind=engine, expire_on_commit=False, class_=CommitOnAddSession)
    try:
        run = run_flow(stand_in_apis(script, flow_database_url), FlowRequest("r", "u", "s"), session_factory=factory)
    finally:
        engine.dispose()
    (finding,) = [f for f in run.report.findings if f.id == "PERSIST009"]
    assert finding.level.name == "WARNING" and max(finding.evidence["repeated"]) >= 2
    assert run.report.verdict == "pass"


def test_canary_cleanup_refuses_non_canary_sessions(flow_database_url) -> None:
    """Only rows whose session id carries the canary prefix can ever be deleted."""
    with pytest.raises(ValueError, match="non-canary"):
        persist.remove_canary_rows(flow_database_url, "sid-of-a-real-user")


def test_canary_cleanup_failure_is_persist008(postgres_cluster, flow_database_url) -> None:
    """A cleanup the database refuses is PERSIST008 naming the session."""
    name = make_url(flow_database_url).database
    postgres_cluster.run_sql(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    findings, deleted = persist.remove_canary_rows(flow_database_url, "harness-canary-abc")
    assert [f.id for f in findings] == ["PERSIST008"] and findings[0].evidence["session_id"] == "harness-canary-abc"


def test_canary_run_tags_rows_and_removes_them(stand_in_apis, flow_database_url) -> None:
    """A canary run writes under a harness-canary- session id and deletes every row afterwards."""
    script = healthy_script(KIND)
    run = run_flow(
        stand_in_apis(script, flow_database_url), FlowRequest("r", "u", "s"), options=RunOptions(canary=True)
    )
    assert run.session_id.startswith(persist.CANARY_PREFIX)
    assert run.report.verdict == "pass" and run.observations["canary"]["rows_deleted"] > 100


@pytest.mark.slow
def test_plan_marked_complete_before_its_batches_arrived_is_persist010(postgres_cluster, saved) -> None:
    """A plan already 'draft' while a batch is still being checked is PERSIST010 with its status."""
    from harness.contract import parse_task_batch

    url, run = saved
    tasks = parse_task_batch(json.dumps({"tasks": list(content.iter_tasks(content.masterplan_for(KIND)))[:50]})).tasks
    findings = persist.check_batch_rows(url, run.masterplan_id, list(tasks), "masterplan.batch-1")
    (finding,) = [f for f in findings if f.id == "PERSIST010"]
    assert finding.evidence["status"] == "draft" and finding.point == "masterplan.batch-1"


def test_rows_lost_after_commit_are_persist001() -> None:
    """Rows a generation committed earlier and no longer finds are a readback failure, naming what is gone."""
    from harness.flow.errors import CommittedRowsMissing

    finding = persist.classify(CommittedRowsMissing("plan-1", "milestone 1 of phase 1"), "masterplan.batch-2")
    assert (finding.id, finding.point) == ("PERSIST001", "masterplan.batch-2")
    assert finding.evidence["missing"] == "milestone 1 of phase 1"


@pytest.mark.slow
def test_batch_save_after_the_skeleton_vanished_raises_committed_rows_missing(postgres_cluster, saved) -> None:
    """A batch saved against a plan whose milestones are gone stops with CommittedRowsMissing, not a KeyError."""
    from harness.config import DEFAULT_MODELS
    from harness.contract import PlanSkeleton
    from harness.flow.batching import plan_batches
    from harness.flow.errors import CommittedRowsMissing
    from harness.flow.masterplan import MasterPlanGenerator
    from harness.recording.scenarios import skeleton_of

    url, run = saved
    _sql(postgres_cluster, url, "DELETE FROM masterplan_tasks; DELETE FROM masterplan_milestones")
    skeleton = PlanSkeleton.model_validate(skeleton_of(content.masterplan_for(KIND)))
    batch = plan_batches(skeleton, DEFAULT_MODELS.batch_max_tasks)[0]
    engine = create_engine(sqlalchemy_url(url))
    try:
        generator = MasterPlanGenerator(None, sessionmaker(bind=engine, expire_on_commit=False), models=DEFAULT_MODELS)
        with pytest.raises(CommittedRowsMissing, match="milestone 1 of phase 1"):
            generator._save_batch(run.masterplan_id, skeleton, batch, [], None)
    finally:
        engine.dispose()
