"""Realistic discovery documents and masterplans for cassettes, built deterministically.

Each project kind (:data:`PROJECTS`) is described by compact tables: the stack it is built
with, its bounded contexts, the entities each context owns, the workflow features on top
of them, the screens and the end-to-end journeys. The builders turn those tables into the
documents an LLM is asked for (DESIGN.md §3): a discovery document and a masterplan of
100–130 atomic tasks with dependencies that cross milestones and phases. The same input
always gives the same output; nothing here is random.

:func:`render_reply` wraps a document the way models answer (bare, fenced, or surrounded
by prose), and the mutators produce the faulty variants the fault cassettes need.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

__all__ = [
    "PROJECTS",
    "Project",
    "discovery_for",
    "iter_tasks",
    "masterplan_for",
    "render_reply",
    "request_for",
    "truncate_text",
    "with_cycle",
    "with_dangling_dependency",
    "with_duplicate_task_number",
    "with_wrong_total",
    "without_fields",
]

Complexity = Literal["low", "medium", "high"]
ReplyStyle = Literal["plain", "fenced", "prose"]

MIN_TASK_TOKENS = 200
MAX_TASK_TOKENS = 800

# =========================================================================== table types


@dataclass(frozen=True)
class Stack:
    """How a project is built: the tech stack, its vocabulary and where files live.

    ``words`` and ``paths`` are merged into one mapping used to format every template;
    entity path templates may use ``{snake} {kebab} {Name} {Plural} {plural_snake}
    {plural_kebab} {table} {app} {seq} {app_seq} {ts}``.
    """

    tech_stack: Mapping[str, str]
    architecture_style: str
    words: Mapping[str, str]
    paths: Mapping[str, str]


@dataclass(frozen=True)
class Entity:
    """A persistent domain entity; every entity becomes seven backend tasks."""

    name: str
    context: str
    description: str
    fields: tuple[str, ...]
    filters: str
    validation: str
    rules: str
    test_focus: str
    access: str
    parent: str | None = None
    refs: tuple[str, ...] = ()
    #: Aggregate root (``False``: part of its parent's aggregate).
    root: bool = True
    plural: str | None = None
    #: Routes nest under the parent's (``/projects/{project_id}/tasks``); default: not root.
    nested: bool | None = None

    @property
    def plural_name(self) -> str:
        return self.plural or self.name + "s"

    @property
    def is_nested(self) -> bool:
        return self.parent is not None and (not self.root if self.nested is None else self.nested)


@dataclass(frozen=True)
class Feature:
    """One hand-written task on top of the entities (a workflow, an integration, a screen)."""

    title: str
    description: str
    files: tuple[str, ...]
    complexity: Complexity
    #: Task keys this task depends on: ``Entity.step``, ``foundation key`` or ``feature:KEY``.
    needs: tuple[str, ...]
    key: str = ""


@dataclass(frozen=True)
class Milestone:
    """A named group of features (phases 3 and 4) or of entities (phase 2)."""

    name: str
    description: str
    features: tuple[Feature, ...] = ()
    entities: tuple[str, ...] = ()


@dataclass(frozen=True)
class Screen:
    """CRUD screens to build for one entity: any of ``list``, ``form``, ``detail``."""

    entity: str
    kinds: tuple[str, ...] = ("list", "form", "detail")


@dataclass(frozen=True)
class Project:
    """Everything needed to build one project's request, discovery and masterplan."""

    kind: str
    request: str
    domain: str
    project_name: str
    description: str
    stack: Stack
    contexts: tuple[tuple[str, str], ...]
    context_modules: Mapping[str, str]
    roles: str
    tenant_scope: str
    entities: tuple[Entity, ...]
    value_objects: tuple[tuple[str, str], ...]
    events: tuple[tuple[str, str, str, str], ...]
    services: tuple[tuple[str, str], ...]
    assumptions: tuple[str, ...]
    risks: tuple[str, ...]
    core_milestones: tuple[Milestone, ...]
    workflow_milestones: tuple[Milestone, ...]
    screens: tuple[Screen, ...]
    screen_milestone: tuple[str, str]
    ui_milestone: Milestone
    #: End-to-end journeys: (file stem, title, sentence, task keys it needs).
    journeys: tuple[tuple[str, str, str, tuple[str, ...]], ...]
    hot_endpoint: str
    hot_needs: tuple[str, ...]
    #: Aggregates that only workflow features build: (name, context, description, entities, invariants).
    extra_aggregates: tuple[tuple[str, str, str, tuple[str, ...], tuple[str, ...]], ...] = ()

    def entity(self, name: str) -> Entity:
        """The entity called ``name``."""
        for entity in self.entities:
            if entity.name == name:
                return entity
        raise KeyError(name)


def _f(
    key: str, title: str, complexity: Complexity, needs: Sequence[str], files: Sequence[str], description: str
) -> Feature:
    """Compact constructor for the feature tables below."""
    return Feature(
        title=title, description=description, files=tuple(files), complexity=complexity, needs=tuple(needs), key=key
    )


# =========================================================================== stacks

FASTAPI_REACT = Stack(
    tech_stack={
        "backend": "Python 3.12, FastAPI, SQLAlchemy 2, Alembic, Pydantic v2",
        "frontend": "React 18, TypeScript, Vite, TanStack Query",
        "database": "PostgreSQL 16, Redis 7 for caching and job queues",
        "infrastructure": "Docker, GitHub Actions, AWS ECS Fargate, Terraform",
        "testing": "pytest, httpx test client, Vitest, Playwright",
    },
    architecture_style="Modular monolith with layered architecture (API → services → repositories) and an event outbox",
    words={
        "lang": "Python",
        "model_kind": "SQLAlchemy model",
        "migration_kind": "Alembic revision",
        "repository_kind": "repository",
        "schema_kind": "Pydantic v2 schemas",
        "router_kind": "FastAPI router",
        "guard_kind": "FastAPI dependency",
        "unit_runner": "pytest",
        "frontend_kind": "React",
        "e2e_runner": "Playwright",
        "worker": "an arq worker on Redis",
        "settings_lib": "pydantic-settings",
        "lint": "ruff and mypy",
        "cloud": "AWS ECS Fargate",
        "iac_tool": "Terraform",
        "ci_tool": "GitHub Actions",
        "layout": "backend/, frontend/, infra/",
    },
    paths={
        "manifest": "backend/pyproject.toml",
        "makefile": "Makefile",
        "lint_config": ".pre-commit-config.yaml",
        "compose": "docker-compose.yml",
        "settings": "backend/app/core/config.py",
        "logging": "backend/app/core/logging.py",
        "middleware": "backend/app/core/middleware.py",
        "ci": ".github/workflows/ci.yml",
        "db_session": "backend/app/db/session.py",
        "migrations_env": "backend/alembic/env.py",
        "base_model": "backend/app/db/base.py",
        "test_fixtures": "backend/tests/conftest.py",
        "user_model": "backend/app/models/user.py",
        "user_migration": "backend/alembic/versions/001_create_users.py",
        "password": "backend/app/core/security.py",
        "tokens": "backend/app/core/tokens.py",
        "auth_api": "backend/app/api/v1/auth.py",
        "auth_guard": "backend/app/api/deps.py",
        "permissions": "backend/app/core/permissions.py",
        "auth_tests": "backend/tests/api/test_auth.py",
        "app_entry": "backend/app/main.py",
        "router_registry": "backend/app/api/v1/__init__.py",
        "frontend_entry": "frontend/src/main.tsx",
        "frontend_router": "frontend/src/routes.tsx",
        "frontend_layout": "frontend/src/components/layout/AppLayout.tsx",
        "api_client": "frontend/src/api/client.ts",
        "login_page": "frontend/src/pages/auth/LoginPage.tsx",
        "register_page": "frontend/src/pages/auth/RegisterPage.tsx",
        "auth_store": "frontend/src/state/auth.ts",
        "e2e_dir": "e2e/tests",
        "e2e_ext": ".spec.ts",
        "load_test": "perf/k6/board.js",
        "security": "backend/app/core/security_headers.py",
        "a11y": "frontend/src/test/a11y.test.tsx",
        "dockerfile": "backend/Dockerfile",
        "frontend_dockerfile": "frontend/Dockerfile",
        "iac": "infra/terraform/main.tf",
        "iac_db": "infra/terraform/rds.tf",
        "cd": ".github/workflows/deploy.yml",
        "health": "backend/app/api/health.py",
        "metrics": "backend/app/core/metrics.py",
        "alerts": "infra/terraform/alarms.tf",
        "runbook": "docs/runbooks/backup-restore.md",
        "api_docs": "docs/api.md",
        "readme": "README.md",
        # entity templates
        "e_model": "backend/app/models/{snake}.py",
        "e_migration": "backend/alembic/versions/{seq:03d}_create_{table}.py",
        "e_repository": "backend/app/repositories/{snake}_repository.py",
        "e_schemas": "backend/app/schemas/{snake}.py",
        "e_service": "backend/app/services/{snake}_service.py",
        "e_service_test": "backend/tests/services/test_{snake}_service.py",
        "e_api": "backend/app/api/v1/{plural_snake}.py",
        "e_api_test": "backend/tests/api/test_{plural_snake}.py",
        "e_ui_list": "frontend/src/pages/{plural_kebab}/{Plural}ListPage.tsx",
        "e_ui_form": "frontend/src/pages/{plural_kebab}/{Name}Form.tsx",
        "e_ui_detail": "frontend/src/pages/{plural_kebab}/{Name}DetailPage.tsx",
        "e_ui_hook": "frontend/src/api/{plural_kebab}.ts",
        "e_ui_test": "frontend/src/pages/{plural_kebab}/{Name}Form.test.tsx",
    },
)

NEST_NEXT = Stack(
    tech_stack={
        "backend": "Node.js 20, TypeScript, NestJS 10, TypeORM, class-validator",
        "frontend": "Next.js 14 (App Router), React 18, Tailwind CSS",
        "database": "PostgreSQL 16, Redis 7 for carts, sessions and BullMQ queues",
        "infrastructure": "Docker, GitHub Actions, Kubernetes (EKS) with Helm, Cloudflare CDN",
        "testing": "Jest, Supertest, Testcontainers, Playwright",
    },
    architecture_style="Modular monolith with one NestJS module per bounded context and domain events over BullMQ",
    words={
        "lang": "TypeScript",
        "model_kind": "TypeORM entity",
        "migration_kind": "TypeORM migration",
        "repository_kind": "repository",
        "schema_kind": "class-validator DTOs",
        "router_kind": "NestJS controller",
        "guard_kind": "NestJS guard",
        "unit_runner": "Jest",
        "frontend_kind": "Next.js",
        "e2e_runner": "Playwright",
        "worker": "a BullMQ worker",
        "settings_lib": "@nestjs/config with a Joi schema",
        "lint": "ESLint and Prettier",
        "cloud": "Kubernetes on EKS",
        "iac_tool": "Terraform and Helm",
        "ci_tool": "GitHub Actions",
        "layout": "apps/api, apps/web, packages/shared (pnpm workspaces)",
    },
    paths={
        "manifest": "package.json",
        "makefile": "pnpm-workspace.yaml",
        "lint_config": ".eslintrc.cjs",
        "compose": "docker-compose.yml",
        "settings": "apps/api/src/config/configuration.ts",
        "logging": "apps/api/src/common/logging/logger.module.ts",
        "middleware": "apps/api/src/common/middleware/request-id.middleware.ts",
        "ci": ".github/workflows/ci.yml",
        "db_session": "apps/api/src/database/data-source.ts",
        "migrations_env": "apps/api/src/database/migrations/1717000000000-Baseline.ts",
        "base_model": "apps/api/src/database/base.entity.ts",
        "test_fixtures": "apps/api/test/setup-db.ts",
        "user_model": "apps/api/src/users/entities/user.entity.ts",
        "user_migration": "apps/api/src/database/migrations/1717000001000-CreateUsers.ts",
        "password": "apps/api/src/auth/password.service.ts",
        "tokens": "apps/api/src/auth/token.service.ts",
        "auth_api": "apps/api/src/auth/auth.controller.ts",
        "auth_guard": "apps/api/src/auth/jwt-auth.guard.ts",
        "permissions": "apps/api/src/auth/roles.guard.ts",
        "auth_tests": "apps/api/test/auth.e2e-spec.ts",
        "app_entry": "apps/api/src/main.ts",
        "router_registry": "apps/api/src/app.module.ts",
        "frontend_entry": "apps/web/app/layout.tsx",
        "frontend_router": "apps/web/middleware.ts",
        "frontend_layout": "apps/web/components/layout/SiteShell.tsx",
        "api_client": "packages/shared/src/api-client.ts",
        "login_page": "apps/web/app/(auth)/login/page.tsx",
        "register_page": "apps/web/app/(auth)/register/page.tsx",
        "auth_store": "apps/web/lib/session.ts",
        "e2e_dir": "apps/web/e2e",
        "e2e_ext": ".spec.ts",
        "load_test": "perf/k6/catalogue.js",
        "security": "apps/api/src/common/security/helmet.config.ts",
        "a11y": "apps/web/e2e/a11y.spec.ts",
        "dockerfile": "apps/api/Dockerfile",
        "frontend_dockerfile": "apps/web/Dockerfile",
        "iac": "infra/terraform/eks.tf",
        "iac_db": "infra/terraform/rds.tf",
        "cd": ".github/workflows/deploy.yml",
        "health": "apps/api/src/health/health.controller.ts",
        "metrics": "apps/api/src/common/metrics/metrics.module.ts",
        "alerts": "infra/helm/roastshop/templates/prometheus-rules.yaml",
        "runbook": "docs/runbooks/backup-restore.md",
        "api_docs": "docs/api.md",
        "readme": "README.md",
        "e_model": "apps/api/src/{plural_kebab}/entities/{kebab}.entity.ts",
        "e_migration": "apps/api/src/database/migrations/{ts}-Create{Plural}.ts",
        "e_repository": "apps/api/src/{plural_kebab}/{plural_kebab}.repository.ts",
        "e_schemas": "apps/api/src/{plural_kebab}/dto/{kebab}.dto.ts",
        "e_service": "apps/api/src/{plural_kebab}/{plural_kebab}.service.ts",
        "e_service_test": "apps/api/src/{plural_kebab}/{plural_kebab}.service.spec.ts",
        "e_api": "apps/api/src/{plural_kebab}/{plural_kebab}.controller.ts",
        "e_api_test": "apps/api/test/{plural_kebab}.e2e-spec.ts",
        "e_ui_list": "apps/web/app/admin/{plural_kebab}/page.tsx",
        "e_ui_form": "apps/web/components/admin/{Name}Form.tsx",
        "e_ui_detail": "apps/web/app/admin/{plural_kebab}/[id]/page.tsx",
        "e_ui_hook": "apps/web/lib/api/{plural_kebab}.ts",
        "e_ui_test": "apps/web/components/admin/{Name}Form.test.tsx",
    },
)

DJANGO_VUE = Stack(
    tech_stack={
        "backend": "Python 3.12, Django 5, Django REST Framework, Celery",
        "frontend": "Vue 3, TypeScript, Pinia, Vite",
        "database": "PostgreSQL 16 (btree_gist for booking constraints), Redis 7 as Celery broker",
        "infrastructure": "Docker, GitLab CI, Azure Container Apps, Bicep",
        "testing": "pytest-django, factory_boy, Vitest, Cypress",
    },
    architecture_style="Django monolith split into apps per bounded context, with service and selector layers",
    words={
        "lang": "Python",
        "model_kind": "Django model",
        "migration_kind": "Django migration",
        "repository_kind": "selector module",
        "schema_kind": "DRF serializers",
        "router_kind": "DRF ViewSet",
        "guard_kind": "DRF authentication class",
        "unit_runner": "pytest-django",
        "frontend_kind": "Vue",
        "e2e_runner": "Cypress",
        "worker": "Celery beat",
        "settings_lib": "django-environ",
        "lint": "ruff, mypy and django-upgrade",
        "cloud": "Azure Container Apps",
        "iac_tool": "Bicep",
        "ci_tool": "GitLab CI",
        "layout": "backend/ (Django project config/ plus one app per context), frontend/, infra/",
    },
    paths={
        "manifest": "backend/pyproject.toml",
        "makefile": "Makefile",
        "lint_config": ".pre-commit-config.yaml",
        "compose": "docker-compose.yml",
        "settings": "backend/config/settings/base.py",
        "logging": "backend/config/logging.py",
        "middleware": "backend/core/middleware.py",
        "ci": ".gitlab-ci.yml",
        "db_session": "backend/config/settings/database.py",
        "migrations_env": "backend/core/migrations/0001_initial.py",
        "base_model": "backend/core/models.py",
        "test_fixtures": "backend/conftest.py",
        "user_model": "backend/accounts/models.py",
        "user_migration": "backend/accounts/migrations/0001_initial.py",
        "password": "backend/config/settings/auth.py",
        "tokens": "backend/accounts/tokens.py",
        "auth_api": "backend/accounts/api/views.py",
        "auth_guard": "backend/core/authentication.py",
        "permissions": "backend/core/permissions.py",
        "auth_tests": "backend/accounts/tests/test_auth_api.py",
        "app_entry": "backend/config/urls.py",
        "router_registry": "backend/config/api_router.py",
        "frontend_entry": "frontend/src/main.ts",
        "frontend_router": "frontend/src/router/index.ts",
        "frontend_layout": "frontend/src/layouts/AppLayout.vue",
        "api_client": "frontend/src/api/client.ts",
        "login_page": "frontend/src/views/auth/LoginView.vue",
        "register_page": "frontend/src/views/auth/RegisterView.vue",
        "auth_store": "frontend/src/stores/auth.ts",
        "e2e_dir": "frontend/cypress/e2e",
        "e2e_ext": ".cy.ts",
        "load_test": "perf/locust/locustfile.py",
        "security": "backend/config/settings/security.py",
        "a11y": "frontend/cypress/e2e/a11y.cy.ts",
        "dockerfile": "backend/Dockerfile",
        "frontend_dockerfile": "frontend/Dockerfile",
        "iac": "infra/bicep/main.bicep",
        "iac_db": "infra/bicep/postgres.bicep",
        "cd": ".gitlab/ci/deploy.yml",
        "health": "backend/core/health.py",
        "metrics": "backend/core/metrics.py",
        "alerts": "infra/bicep/alerts.bicep",
        "runbook": "docs/runbooks/backup-restore.md",
        "api_docs": "docs/api.md",
        "readme": "README.md",
        "e_model": "backend/{app}/models/{snake}.py",
        "e_migration": "backend/{app}/migrations/{app_seq:04d}_{snake}.py",
        "e_repository": "backend/{app}/selectors/{snake}.py",
        "e_schemas": "backend/{app}/serializers/{snake}.py",
        "e_service": "backend/{app}/services/{snake}.py",
        "e_service_test": "backend/{app}/tests/test_{snake}_service.py",
        "e_api": "backend/{app}/api/{snake}_views.py",
        "e_api_test": "backend/{app}/tests/test_{snake}_api.py",
        "e_ui_list": "frontend/src/views/{plural_kebab}/{Plural}List.vue",
        "e_ui_form": "frontend/src/components/{plural_kebab}/{Name}Form.vue",
        "e_ui_detail": "frontend/src/views/{plural_kebab}/{Name}Detail.vue",
        "e_ui_hook": "frontend/src/api/{plural_kebab}.ts",
        "e_ui_test": "frontend/src/components/{plural_kebab}/{Name}Form.spec.ts",
    },
)

# =========================================================================== projects

TASK_MANAGER = Project(
    kind="task_manager",
    request=(
        "We need a web app where small teams can organise their work into projects, assign tasks with due "
        "dates and priorities, discuss them in comments, move them across a Kanban board and see a weekly "
        "workload report per person."
    ),
    domain="Team task management",
    project_name="TeamBoard",
    description=(
        "Multi-tenant task manager for small teams: workspaces with roles, projects with Kanban boards, "
        "tasks with assignment, labels and comments, notifications, search and workload reporting."
    ),
    stack=FASTAPI_REACT,
    contexts=(
        (
            "Workspace Management",
            "Workspaces, membership and roles; the tenant boundary every other context is scoped to.",
        ),
        ("Project Planning", "Projects and the boards, columns and labels that structure their work."),
        ("Task Tracking", "Tasks through their lifecycle: assignment, movement across columns, comments and history."),
        ("Notifications", "Turns domain events into in-app notifications and daily email digests."),
        ("Reporting", "Read models for workload, throughput and overdue work, rebuilt from task history."),
    ),
    context_modules={
        "Workspace Management": "workspaces",
        "Project Planning": "planning",
        "Task Tracking": "tracking",
        "Notifications": "notifications",
        "Reporting": "reporting",
    },
    roles="owner, admin, member and guest",
    tenant_scope="the caller's workspace",
    entities=(
        Entity(
            name="Workspace",
            context="Workspace Management",
            description="A team's tenant: owns members, projects and billing plan.",
            fields=(
                "name (varchar 120)",
                "slug (varchar 60, unique)",
                "plan (enum free/team/business)",
                "owner_id (FK users)",
            ),
            filters="name and plan",
            validation="name 2–120 characters, slug of lowercase letters, digits and hyphens, unique across workspaces",
            rules="creating a workspace also creates the creator's owner membership in the same transaction; the slug is immutable once created; deleting archives the workspace instead of removing rows",
            test_focus="a duplicate slug answering 409",
            access="workspace owners",
        ),
        Entity(
            name="Membership",
            context="Workspace Management",
            description="A user's role in a workspace.",
            fields=(
                "workspace_id (FK)",
                "user_id (FK users)",
                "role (enum owner/admin/member/guest)",
                "invited_at",
                "joined_at (nullable)",
            ),
            filters="role and join status",
            validation="role must be owner, admin, member or guest; one membership per user per workspace",
            rules="a workspace always keeps at least one owner; admins cannot grant the owner role; removing a member unassigns their open tasks",
            test_focus="removing the last owner answering 409",
            access="workspace owners and admins",
            parent="Workspace",
            root=False,
        ),
        Entity(
            name="Project",
            context="Project Planning",
            description="A body of work inside a workspace with its own board and task numbering.",
            fields=(
                "workspace_id (FK)",
                "name (varchar 120)",
                "key (varchar 6, unique per workspace)",
                "description (text)",
                "status (enum active/archived)",
                "lead_id (FK users, nullable)",
            ),
            filters="status and project lead",
            validation="key of 2–6 uppercase letters unique within the workspace; name required",
            rules="creating a project seeds the default columns To do, In progress, Review and Done; archiving a project makes its tasks read-only",
            test_focus="creating a task in an archived project answering 409",
            access="workspace admins and the project lead",
            parent="Workspace",
        ),
        Entity(
            name="BoardColumn",
            context="Project Planning",
            description="An ordered column of a project's Kanban board, optionally with a WIP limit.",
            fields=(
                "project_id (FK)",
                "name (varchar 60)",
                "position (integer)",
                "wip_limit (integer, nullable)",
                "is_done_column (boolean)",
            ),
            filters="position",
            validation="wip_limit positive when set; exactly one done column per project",
            rules="reordering columns rewrites all positions atomically; a column that still holds tasks cannot be deleted",
            test_focus="deleting a non-empty column answering 409",
            access="workspace admins and the project lead",
            parent="Project",
            root=False,
        ),
        Entity(
            name="Label",
            context="Project Planning",
            description="A coloured tag used to categorise a project's tasks.",
            fields=("project_id (FK)", "name (varchar 40)", "color (char 7 hex)"),
            filters="name",
            validation="color is a #RRGGBB hex value; names unique per project, case-insensitively",
            rules="deleting a label detaches it from tasks without modifying them otherwise",
            test_focus="a case-insensitive duplicate name answering 409",
            access="project members with the member role or above",
            parent="Project",
            root=False,
        ),
        Entity(
            name="Task",
            context="Task Tracking",
            description="A unit of work on a board: title, assignee, priority, due date and position.",
            fields=(
                "project_id (FK)",
                "column_id (FK board_columns)",
                "number (per-project sequence)",
                "title (varchar 200)",
                "description (markdown)",
                "priority (enum low/medium/high/urgent)",
                "assignee_id (FK users, nullable)",
                "due_date (date, nullable)",
                "position (numeric)",
                "completed_at (nullable)",
            ),
            filters="column, assignee, priority, label and due date",
            validation="title 1–200 characters; due_date not in the past on creation; the assignee must be a workspace member",
            rules="task numbers come from a per-project sequence (OPS-42); entering a column enforces its WIP limit; entering the done column sets completed_at and leaving it clears it",
            test_focus="exceeding a column's WIP limit answering 409",
            access="project members with the member role or above",
            parent="Project",
            refs=("BoardColumn",),
            nested=True,
        ),
        Entity(
            name="Comment",
            context="Task Tracking",
            description="A markdown comment on a task, with @mentions.",
            fields=(
                "task_id (FK)",
                "author_id (FK users)",
                "body (markdown)",
                "mentions (uuid[])",
                "edited_at (nullable)",
            ),
            filters="author and creation date",
            validation="body of 1–5,000 characters",
            rules="only the author may edit a comment, and only within 15 minutes; @mentions are resolved to workspace members and stored for notification",
            test_focus="editing another user's comment answering 403",
            access="project members, including guests",
            parent="Task",
            root=False,
        ),
    ),
    value_objects=(
        ("TaskKey", "Human-readable task identifier combining project key and sequence number, e.g. OPS-42."),
        ("Priority", "Ordered priority level: low, medium, high or urgent."),
        ("DueDate", "Calendar date in the workspace's timezone, compared without time of day."),
        ("WipLimit", "Optional positive maximum number of tasks allowed in a board column."),
        ("LabelColor", "A #RRGGBB colour with enough contrast against white text."),
        ("Role", "Membership role with ordered privileges: guest < member < admin < owner."),
    ),
    events=(
        (
            "WorkspaceCreated",
            "Workspace",
            "A user creates a new workspace",
            "Seeds the owner membership and the default settings.",
        ),
        (
            "MemberInvited",
            "Workspace",
            "An admin invites a user by email",
            "Sends the invitation email with a signed join link.",
        ),
        ("TaskCreated", "Task", "A member adds a task to a board column", "Starts the task's activity history."),
        ("TaskAssigned", "Task", "The assignee of a task changes", "Notifies the new assignee."),
        ("TaskMoved", "Task", "A task is moved to another column or position", "Feeds cycle-time metrics."),
        (
            "TaskCompleted",
            "Task",
            "A task enters the project's done column",
            "Updates throughput and notifies watchers.",
        ),
        ("CommentAdded", "Task", "A comment is posted on a task", "Notifies mentioned members and the assignee."),
        ("TaskDueSoon", "Task", "An open task is due within 24 hours", "Reminds the assignee once."),
    ),
    services=(
        ("TaskNumberingService", "Allocates gap-free per-project task numbers under concurrency."),
        ("BoardOrderingService", "Computes task positions when tasks move, rebalancing when gaps run out."),
        ("MembershipPolicy", "Decides what each role may do in a workspace and project."),
        ("NotificationDispatcher", "Fans domain events out to recipients and delivery channels."),
        ("WorkloadReportService", "Aggregates open work and effort per assignee per week."),
    ),
    assumptions=(
        "Teams have up to 50 members and up to 10,000 tasks per workspace.",
        "Authentication is email and password with JWT; single sign-on comes later.",
        "Email delivery goes through a transactional email provider (SMTP relay).",
        "All timestamps are stored in UTC; due dates use the workspace's timezone.",
    ),
    risks=(
        "Concurrent drag-and-drop moves can corrupt positions without row locking.",
        "Notification volume may annoy users without digests and opt-outs.",
        "Full-text search quality on short task titles may disappoint users.",
        "Tenant isolation bugs could leak tasks between workspaces.",
    ),
    core_milestones=(
        Milestone(
            "Workspaces and membership",
            "Tenant model, roles and membership management.",
            entities=("Workspace", "Membership"),
        ),
        Milestone(
            "Projects and boards",
            "Projects with their board columns and labels.",
            entities=("Project", "BoardColumn", "Label"),
        ),
        Milestone("Tasks and comments", "The task lifecycle and discussion on tasks.", entities=("Task", "Comment")),
    ),
    workflow_milestones=(
        Milestone(
            "Board workflow",
            "Moving work across the board, labels, history and bulk edits.",
            features=(
                _f(
                    "move",
                    "Implement task move endpoint with position rebalancing",
                    "high",
                    ("Task.service", "BoardColumn.service"),
                    ("backend/app/services/board_ordering.py", "backend/app/api/v1/tasks.py"),
                    "Add `POST /projects/{id}/tasks/{task_id}/move` taking a target column and position; compute fractional positions, rebalance a column when gaps run out, lock the affected rows and reject moves that break the target column's WIP limit.",
                ),
                _f(
                    "labels",
                    "Attach and detach labels on tasks",
                    "medium",
                    ("Task.migration", "Label.migration", "Task.api"),
                    (
                        "backend/app/models/task_label.py",
                        "backend/alembic/versions/020_create_task_labels.py",
                        "backend/app/api/v1/task_labels.py",
                    ),
                    "Create the `task_labels` association table and `PUT /tasks/{id}/labels` that replaces a task's labels in one call, checking that every label belongs to the task's project.",
                ),
                _f(
                    "activity",
                    "Record task activity history",
                    "high",
                    ("Task.service", "feature:move"),
                    (
                        "backend/app/models/task_activity.py",
                        "backend/alembic/versions/021_create_task_activity.py",
                        "backend/app/services/activity_service.py",
                    ),
                    "Add a `task_activity` table written by TaskService on create, move, assignment change and completion, with actor and before/after values; expose `GET /tasks/{id}/activity` newest first.",
                ),
                _f(
                    "bulk",
                    "Bulk update tasks",
                    "medium",
                    ("feature:move", "permissions"),
                    ("backend/app/api/v1/tasks_bulk.py", "backend/tests/api/test_tasks_bulk.py"),
                    "Add `PATCH /projects/{id}/tasks/bulk` to change assignee, priority or column for up to 100 tasks, all-or-nothing, applying the same permission and WIP-limit checks as single updates.",
                ),
            ),
        ),
        Milestone(
            "Notifications",
            "Domain events delivered as in-app notifications and email digests.",
            features=(
                _f(
                    "outbox",
                    "Publish domain events through an outbox",
                    "high",
                    ("Task.service", "Comment.service", "migrations_env"),
                    (
                        "backend/app/events/outbox.py",
                        "backend/app/events/dispatcher.py",
                        "backend/alembic/versions/022_create_outbox.py",
                    ),
                    "Introduce an `event_outbox` table and dispatcher so TaskAssigned, TaskCompleted and CommentAdded are committed in the same transaction as the change, then relayed by the worker.",
                ),
                _f(
                    "notification_model",
                    "Create Notification model, migration and repository",
                    "medium",
                    ("base_model",),
                    (
                        "backend/app/models/notification.py",
                        "backend/alembic/versions/023_create_notifications.py",
                        "backend/app/repositories/notification_repository.py",
                    ),
                    "Store per-user notifications (type, payload JSON, read_at) with an index on (user_id, read_at) to keep the unread-count query fast.",
                ),
                _f(
                    "notification_handlers",
                    "Turn domain events into notifications",
                    "medium",
                    ("feature:outbox", "feature:notification_model"),
                    ("backend/app/notifications/handlers.py", "backend/tests/notifications/test_handlers.py"),
                    "Subscribe to TaskAssigned, TaskDueSoon and CommentAdded and create one notification per recipient, never notifying the actor about their own action.",
                ),
                _f(
                    "due_soon",
                    "Emit TaskDueSoon events from a scheduled job",
                    "medium",
                    ("feature:outbox", "Task.repository"),
                    ("backend/app/jobs/due_soon.py",),
                    "Every 15 minutes find open tasks due within 24 hours that were not yet announced, emit TaskDueSoon and stamp `due_notified_at` so each task is announced once.",
                ),
                _f(
                    "digest",
                    "Send daily email digest",
                    "medium",
                    ("feature:notification_handlers",),
                    ("backend/app/jobs/email_digest.py", "backend/app/templates/email/digest.html"),
                    "Scheduled job that emails each user their unread notifications once a day through the SMTP adapter, honouring the per-user opt-out and skipping empty digests.",
                ),
                _f(
                    "notifications_api",
                    "Expose notification endpoints",
                    "low",
                    ("feature:notification_model", "auth_guard"),
                    ("backend/app/api/v1/notifications.py",),
                    "`GET /notifications` (unread first, paginated), `POST /notifications/read` to mark many as read and `GET /notifications/unread-count` for the header badge.",
                ),
            ),
        ),
        Milestone(
            "Search and reporting",
            "Finding tasks and understanding the team's workload.",
            features=(
                _f(
                    "search",
                    "Full-text task search",
                    "high",
                    ("Task.migration", "Task.api"),
                    ("backend/alembic/versions/024_task_search_vector.py", "backend/app/api/v1/search.py"),
                    "Add a generated tsvector column over title and description with a GIN index and `GET /search?q=` returning ranked tasks from projects the caller can see.",
                ),
                _f(
                    "workload",
                    "Weekly workload report query",
                    "medium",
                    ("Task.repository",),
                    ("backend/app/reporting/workload.py", "backend/tests/reporting/test_workload.py"),
                    "Aggregate open tasks, priority mix and overdue counts per assignee per ISO week for a project in a single SQL query.",
                ),
                _f(
                    "workload_api",
                    "Expose workload report with CSV export",
                    "medium",
                    ("feature:workload", "permissions"),
                    ("backend/app/api/v1/reports.py",),
                    "`GET /projects/{id}/reports/workload` returning JSON, or CSV when asked via the Accept header; restricted to admins and the project lead.",
                ),
                _f(
                    "throughput",
                    "Cycle time and throughput metrics",
                    "medium",
                    ("feature:activity", "feature:workload"),
                    ("backend/app/reporting/throughput.py",),
                    "Compute cycle time from activity history (first move to In progress until completion) and weekly throughput per project, excluding reopened tasks.",
                ),
            ),
        ),
    ),
    screens=(Screen("Project"), Screen("Task"), Screen("Membership", ("list", "form"))),
    screen_milestone=("Project and task screens", "Screens to manage projects, tasks and members."),
    ui_milestone=Milestone(
        "Board, notifications and reports UI",
        "The Kanban board and the collaboration features on top of it.",
        features=(
            _f(
                "ui_board",
                "Kanban board with drag-and-drop",
                "high",
                ("feature:move", "Task.ui_list"),
                (
                    "frontend/src/pages/board/BoardPage.tsx",
                    "frontend/src/components/board/BoardColumn.tsx",
                    "frontend/src/components/board/TaskCard.tsx",
                ),
                "Render columns with WIP counters and move cards with dnd-kit; update optimistically, roll back and show a toast when the server rejects the move.",
            ),
            _f(
                "ui_notifications",
                "Notification bell and dropdown",
                "medium",
                ("feature:notifications_api", "app_shell"),
                ("frontend/src/components/notifications/NotificationBell.tsx",),
                "Header bell with the unread badge polled every 60 seconds, a dropdown listing recent notifications and mark-all-read.",
            ),
            _f(
                "ui_workload",
                "Workload report page with chart",
                "medium",
                ("feature:workload_api", "api_client"),
                ("frontend/src/pages/reports/WorkloadPage.tsx",),
                "Stacked bar chart of open tasks per assignee per week with a CSV download button and an overdue highlight.",
            ),
            _f(
                "ui_search",
                "Global task search box",
                "low",
                ("feature:search", "app_shell"),
                ("frontend/src/components/search/SearchBox.tsx",),
                "Debounced search box in the header showing the top results with their task keys, navigable with the keyboard.",
            ),
        ),
    ),
    journeys=(
        (
            "onboarding",
            "sign-up and team onboarding",
            "a new user signs up, creates a workspace and invites a member",
            ("auth_store", "Membership.ui_form"),
        ),
        (
            "board-flow",
            "moving work across the board",
            "a member creates a project, adds tasks and moves them across the board to Done",
            ("feature:ui_board", "Project.ui_form"),
        ),
        (
            "mentions",
            "mentions and notifications",
            "a comment with an @mention produces a notification for the mentioned member",
            ("feature:ui_notifications", "Task.ui_detail"),
        ),
    ),
    hot_endpoint="the board listing `GET /projects/{id}/tasks`",
    hot_needs=("Task.api",),
    extra_aggregates=(
        (
            "Notification",
            "Notifications",
            "A message for one user about an event they follow.",
            ("Notification",),
            ("A notification is never created for the actor of the event", "Read state is per user and monotonic"),
        ),
    ),
)

ONLINE_SHOP = Project(
    kind="online_shop",
    request=(
        "Build an online shop for our specialty coffee roastery: a catalogue of coffees with size and grind "
        "variants, a cart and checkout with card payments, order tracking for customers, and an admin area "
        "where staff manage stock and fulfil orders."
    ),
    domain="Direct-to-consumer e-commerce",
    project_name="RoastShop",
    description=(
        "Online store for a specialty coffee roaster: catalogue with variants, guest and customer carts, "
        "checkout with Stripe payments, inventory reservations, fulfilment and transactional emails."
    ),
    stack=NEST_NEXT,
    contexts=(
        ("Catalog", "Categories, products and their sellable variants with prices."),
        ("Inventory", "Stock levels, reservations and movements per variant."),
        ("Customer Accounts", "Customer profiles, addresses and consent."),
        ("Ordering", "Carts, checkout and orders with their lifecycle."),
        ("Payments", "Payment intents, webhooks and refunds with the payment provider."),
        ("Fulfilment", "Picking, packing, shipping and customer notifications."),
    ),
    context_modules={
        "Catalog": "catalog",
        "Inventory": "inventory",
        "Customer Accounts": "customers",
        "Ordering": "ordering",
        "Payments": "payments",
        "Fulfilment": "fulfilment",
    },
    roles="customer, staff and admin",
    tenant_scope="the calling customer whenever the caller is a customer",
    entities=(
        Entity(
            name="Category",
            context="Catalog",
            description="A node in the storefront's category tree.",
            fields=(
                "name (varchar 80)",
                "slug (varchar 80, unique)",
                "parent_id (self FK, nullable)",
                "position (integer)",
                "is_visible (boolean)",
            ),
            filters="parent category and visibility",
            validation="slug unique and URL-safe; a category can never become its own ancestor",
            rules="moving a category re-validates the tree to prevent cycles; hiding a category hides its products from the storefront",
            test_focus="moving a category under its own descendant answering 422",
            access="admins",
            plural="Categories",
        ),
        Entity(
            name="Product",
            context="Catalog",
            description="A coffee as presented in the catalogue, with origin, roast and tasting notes.",
            fields=(
                "category_id (FK)",
                "name (varchar 150)",
                "slug (unique)",
                "description (rich text)",
                "origin (varchar 80)",
                "roast_level (enum light/medium/dark)",
                "tasting_notes (text[])",
                "is_published (boolean)",
                "published_at (nullable)",
            ),
            filters="category, roast level and published state",
            validation="name 2–150 characters; slug unique; tasting notes at most 5 entries",
            rules="publishing requires at least one active variant with a price; unpublishing never affects placed orders",
            test_focus="publishing a product without variants answering 422",
            access="staff and admins",
            parent="Category",
        ),
        Entity(
            name="ProductVariant",
            context="Catalog",
            description="A sellable SKU of a product: bag size and grind, with its price.",
            fields=(
                "product_id (FK)",
                "sku (varchar 32, unique)",
                "weight_grams (integer)",
                "grind (enum whole_bean/espresso/filter)",
                "price_cents (integer)",
                "currency (char 3)",
                "is_active (boolean)",
            ),
            filters="product, grind and active state",
            validation="SKU unique and uppercase; price_cents greater than zero; weight one of 250, 500 or 1000 grams",
            rules="prices are stored in minor units; changing a price never alters placed orders, which keep a price snapshot",
            test_focus="a duplicate SKU answering 409",
            access="staff and admins",
            parent="Product",
            root=False,
        ),
        Entity(
            name="StockItem",
            context="Inventory",
            description="On-hand and reserved quantity of one variant.",
            fields=(
                "variant_id (FK, unique)",
                "on_hand (integer)",
                "reserved (integer)",
                "reorder_point (integer)",
                "updated_at",
            ),
            filters="below-reorder-point flag",
            validation="on_hand and reserved never negative; reserved never above on_hand",
            rules="every adjustment is recorded as a stock movement with a reason; reservations lock the row (SELECT … FOR UPDATE) so the last unit is never sold twice",
            test_focus="two concurrent reservations for the last unit, exactly one succeeding",
            access="staff and admins",
            parent="ProductVariant",
        ),
        Entity(
            name="Customer",
            context="Customer Accounts",
            description="A registered buyer with contact details and marketing consent.",
            fields=(
                "user_id (FK users, unique)",
                "first_name",
                "last_name",
                "phone (E.164, nullable)",
                "marketing_opt_in (boolean)",
                "default_address_id (nullable)",
            ),
            filters="name, email and sign-up date",
            validation="phone in E.164 format when given; first and last name required",
            rules="customers read and change only their own profile; deleting an account anonymises personal data but keeps orders for accounting",
            test_focus="reading another customer's profile answering 403",
            access="the customer themself, and admins",
        ),
        Entity(
            name="Address",
            context="Customer Accounts",
            description="A shipping address in a customer's address book.",
            fields=(
                "customer_id (FK)",
                "line1",
                "line2 (nullable)",
                "city",
                "postal_code",
                "country_code (char 2)",
                "is_default (boolean)",
            ),
            filters="country",
            validation="country must be in the shipping-countries list; postal code format checked per country",
            rules="exactly one default address per customer; setting a new default clears the previous one",
            test_focus="setting a second default address clearing the first",
            access="the owning customer",
            parent="Customer",
            root=False,
            plural="Addresses",
        ),
        Entity(
            name="Order",
            context="Ordering",
            description="A placed order with its totals, address snapshot and status.",
            fields=(
                "number (varchar 12, unique)",
                "customer_id (FK, nullable for guests)",
                "email",
                "status (enum pending_payment/paid/fulfilling/shipped/delivered/cancelled/refunded)",
                "subtotal_cents",
                "shipping_cents",
                "tax_cents",
                "total_cents",
                "shipping_address (jsonb snapshot)",
                "placed_at",
            ),
            filters="status, date range and customer",
            validation="status changes only along the allowed state machine; totals non-negative",
            rules="orders are created only by checkout; status moves pending_payment → paid → fulfilling → shipped → delivered, cancellation is allowed only before shipping, and every change is appended to the order history",
            test_focus="the illegal transition shipped → pending_payment answering 409",
            access="staff and admins (customers read their own orders)",
            parent="Customer",
        ),
        Entity(
            name="OrderLine",
            context="Ordering",
            description="One purchased variant within an order, with a price snapshot.",
            fields=(
                "order_id (FK)",
                "variant_id (FK)",
                "sku",
                "product_name (snapshot)",
                "quantity (integer)",
                "unit_price_cents",
                "line_total_cents",
            ),
            filters="order",
            validation="quantity from 1 to 50; line total equals quantity times unit price",
            rules="lines are immutable once the order is paid; line totals are recomputed server-side, never trusted from the client",
            test_focus="changing a line of a paid order answering 409",
            access="staff and admins",
            parent="Order",
            refs=("ProductVariant",),
            root=False,
        ),
    ),
    value_objects=(
        ("Money", "Amount in minor units with an ISO 4217 currency; arithmetic only within one currency."),
        ("Sku", "Uppercase stock-keeping unit code, unique per variant."),
        ("Weight", "Bag weight in grams: 250, 500 or 1000."),
        ("ShippingAddress", "Immutable address snapshot stored on an order."),
        ("OrderNumber", "Customer-facing order number such as RS-240117-0042."),
        ("TaxRate", "VAT rate applied for a destination country at the time of purchase."),
    ),
    events=(
        (
            "ProductPublished",
            "Product",
            "Staff publish a product with active variants",
            "Makes the product visible and indexes it for search.",
        ),
        (
            "StockReserved",
            "StockItem",
            "Checkout reserves quantity for an order",
            "Reduces sellable stock until payment or expiry.",
        ),
        (
            "StockBelowReorderPoint",
            "StockItem",
            "On-hand quantity drops below the reorder point",
            "Alerts operations to roast more.",
        ),
        ("OrderPlaced", "Order", "Checkout converts a cart into an order", "Starts payment and reserves stock."),
        (
            "PaymentSucceeded",
            "Order",
            "Stripe confirms the payment intent",
            "Marks the order paid and sends the confirmation email.",
        ),
        (
            "PaymentFailed",
            "Order",
            "Stripe reports a failed payment",
            "Keeps the order pending and informs the customer.",
        ),
        (
            "OrderShipped",
            "Order",
            "Staff ship the order with a tracking number",
            "Emails the tracking link to the customer.",
        ),
        (
            "OrderRefunded",
            "Order",
            "An admin refunds an order fully or partly",
            "Returns money and, where applicable, stock.",
        ),
    ),
    services=(
        ("CheckoutService", "Turns a cart into an order atomically: validation, pricing, reservation, snapshot."),
        ("PricingService", "Computes line totals, shipping and tax for a cart."),
        ("StockReservationService", "Reserves and releases stock with row-level locking."),
        ("PaymentGateway", "Port to the payment provider (Stripe) for intents and refunds."),
        ("FulfilmentService", "Drives picking, packing and shipping of paid orders."),
    ),
    assumptions=(
        "Single currency (EUR) and shipping only to EU countries at launch.",
        "Stripe is the only payment provider; card data never touches our servers.",
        "Up to 2,000 orders per month and a catalogue of under 200 variants.",
        "Guests can check out without an account; an account can be created afterwards.",
    ),
    risks=(
        "Overselling the last bags when two customers check out at once.",
        "Missed or duplicated Stripe webhooks leaving orders in the wrong state.",
        "VAT rules per destination country changing over time.",
        "Cart abandonment if checkout needs too many steps.",
    ),
    core_milestones=(
        Milestone(
            "Catalogue",
            "Categories, products and sellable variants.",
            entities=("Category", "Product", "ProductVariant"),
        ),
        Milestone(
            "Inventory and customers",
            "Stock levels and customer accounts with addresses.",
            entities=("StockItem", "Customer", "Address"),
        ),
        Milestone("Orders", "Orders and their lines with an enforced lifecycle.", entities=("Order", "OrderLine")),
    ),
    workflow_milestones=(
        Milestone(
            "Cart and checkout",
            "From a guest or customer cart to a placed order.",
            features=(
                _f(
                    "cart_model",
                    "Create Cart and CartItem entities with migration",
                    "medium",
                    ("ProductVariant.model", "Customer.model"),
                    (
                        "apps/api/src/carts/entities/cart.entity.ts",
                        "apps/api/src/carts/entities/cart-item.entity.ts",
                        "apps/api/src/database/migrations/1717000020000-CreateCarts.ts",
                    ),
                    "Carts belong to a customer or to a guest token from a cookie, hold items with a unit price snapshot and expire after 30 days of inactivity; unique (cart_id, variant_id).",
                ),
                _f(
                    "cart_service",
                    "Implement cart service",
                    "high",
                    ("feature:cart_model", "ProductVariant.service"),
                    ("apps/api/src/carts/carts.service.ts", "apps/api/src/carts/carts.service.spec.ts"),
                    "Add, change quantity and remove items; re-price on read when variant prices changed and flag it to the client; merge the guest cart into the customer's cart on login.",
                ),
                _f(
                    "cart_api",
                    "Expose cart endpoints",
                    "medium",
                    ("feature:cart_service", "auth_guard"),
                    ("apps/api/src/carts/carts.controller.ts",),
                    "`GET /cart`, `POST /cart/items`, `PATCH /cart/items/:id` and `DELETE /cart/items/:id`, identifying the cart by session cookie or bearer token.",
                ),
                _f(
                    "shipping",
                    "Shipping rate calculation",
                    "medium",
                    ("ProductVariant.model", "settings"),
                    ("apps/api/src/ordering/shipping-rates.ts", "apps/api/src/ordering/shipping-rates.spec.ts"),
                    "Compute shipping from destination country and total weight using the rate table in configuration, with free shipping above the threshold.",
                ),
                _f(
                    "tax",
                    "VAT calculation for checkout",
                    "medium",
                    ("Order.model",),
                    ("apps/api/src/ordering/tax.service.ts", "apps/api/src/ordering/tax.service.spec.ts"),
                    "Calculate VAT per destination country with tax-inclusive prices for EU buyers and store the applied rate on each order.",
                ),
                _f(
                    "checkout",
                    "Implement checkout orchestration",
                    "high",
                    (
                        "feature:cart_service",
                        "StockItem.service",
                        "Order.service",
                        "OrderLine.service",
                        "feature:shipping",
                        "feature:tax",
                    ),
                    ("apps/api/src/ordering/checkout.service.ts", "apps/api/src/ordering/checkout.service.spec.ts"),
                    "In one transaction: validate the cart, reserve stock for every line, snapshot address and prices into a new Order with OrderLines and mark the cart converted; release reservations on any failure.",
                ),
                _f(
                    "checkout_api",
                    "Expose checkout endpoint with idempotency keys",
                    "medium",
                    ("feature:checkout",),
                    (
                        "apps/api/src/ordering/checkout.controller.ts",
                        "apps/api/src/common/idempotency/idempotency.interceptor.ts",
                    ),
                    "`POST /checkout` requires an `Idempotency-Key` header; a repeated key returns the original order instead of creating a second one.",
                ),
            ),
        ),
        Milestone(
            "Payments",
            "Card payments through Stripe, webhooks and refunds.",
            features=(
                _f(
                    "payment_model",
                    "Create Payment entity and migration",
                    "low",
                    ("Order.migration",),
                    (
                        "apps/api/src/payments/entities/payment.entity.ts",
                        "apps/api/src/database/migrations/1717000021000-CreatePayments.ts",
                    ),
                    "Store provider, provider intent id (unique), amount, currency, status and the last raw event, linked to the order.",
                ),
                _f(
                    "stripe",
                    "Stripe PaymentIntent adapter",
                    "medium",
                    ("settings",),
                    ("apps/api/src/payments/stripe.gateway.ts", "apps/api/src/payments/payment-gateway.interface.ts"),
                    "Wrap the Stripe SDK behind a PaymentGateway interface to create, retrieve and refund intents; read keys from configuration and set request timeouts.",
                ),
                _f(
                    "webhooks",
                    "Handle Stripe webhooks",
                    "high",
                    ("feature:payment_model", "feature:stripe", "Order.service"),
                    ("apps/api/src/payments/stripe-webhook.controller.ts", "apps/api/test/stripe-webhook.e2e-spec.ts"),
                    "`POST /webhooks/stripe` verifies the signature on the raw body, de-duplicates by event id and marks orders paid or payment_failed; unknown events are acknowledged and ignored.",
                ),
                _f(
                    "expiry",
                    "Release stock for unpaid orders",
                    "medium",
                    ("feature:webhooks", "StockItem.service"),
                    ("apps/api/src/ordering/jobs/expire-unpaid-orders.processor.ts",),
                    "BullMQ repeatable job cancelling orders left in pending_payment for 30 minutes and releasing their stock reservations.",
                ),
                _f(
                    "refunds",
                    "Refund flow for cancelled orders",
                    "high",
                    ("feature:stripe", "Order.service", "permissions"),
                    ("apps/api/src/payments/refunds.service.ts", "apps/api/src/payments/refunds.controller.ts"),
                    "Admins refund paid orders fully or per line; refunds go through the gateway, update the order status and optionally return stock.",
                ),
            ),
        ),
        Milestone(
            "Fulfilment and discovery",
            "Shipping orders, keeping customers informed and helping them find coffee.",
            features=(
                _f(
                    "emails",
                    "Transactional emails",
                    "medium",
                    ("feature:webhooks",),
                    (
                        "apps/api/src/notifications/order-mailer.service.ts",
                        "apps/api/src/notifications/templates/order-confirmation.hbs",
                    ),
                    "Queue order confirmation, shipped (with tracking link) and refund emails through BullMQ and send them with templated HTML via the email provider.",
                ),
                _f(
                    "fulfilment",
                    "Fulfilment workflow for staff",
                    "medium",
                    ("Order.service", "StockItem.service"),
                    (
                        "apps/api/src/fulfilment/fulfilment.controller.ts",
                        "apps/api/src/fulfilment/fulfilment.service.ts",
                    ),
                    "`POST /admin/orders/:id/pack` and `POST /admin/orders/:id/ship` with carrier and tracking number; shipping decrements on_hand and reserved together.",
                ),
                _f(
                    "low_stock",
                    "Low stock alerts",
                    "low",
                    ("StockItem.service", "feature:emails"),
                    ("apps/api/src/inventory/low-stock.listener.ts",),
                    "When on_hand falls below the reorder point, alert the operations mailbox at most once per variant per day.",
                ),
                _f(
                    "search",
                    "Product search and filtering",
                    "high",
                    ("Product.api", "ProductVariant.migration"),
                    (
                        "apps/api/src/catalog/search/product-search.service.ts",
                        "apps/api/src/database/migrations/1717000022000-ProductSearchIndex.ts",
                    ),
                    "PostgreSQL full-text search over name, origin and tasting notes with filters for roast level and price range, backed by a GIN index and paginated.",
                ),
            ),
        ),
    ),
    screens=(Screen("Product"), Screen("Category", ("list", "form")), Screen("Order", ("list", "detail"))),
    screen_milestone=("Admin screens", "Back-office screens for catalogue and order management."),
    ui_milestone=Milestone(
        "Shopping experience",
        "The storefront: browsing, cart, checkout and order history.",
        features=(
            _f(
                "ui_storefront",
                "Storefront product listing and product page",
                "high",
                ("feature:search", "app_shell"),
                ("apps/web/app/(shop)/coffees/page.tsx", "apps/web/app/(shop)/coffees/[slug]/page.tsx"),
                "Server-rendered listing with roast and price filters, and a product page with variant selection, stock badge and structured data for SEO.",
            ),
            _f(
                "ui_cart",
                "Cart drawer and checkout pages",
                "high",
                ("feature:cart_api", "feature:checkout_api", "api_client"),
                ("apps/web/components/cart/CartDrawer.tsx", "apps/web/app/(shop)/checkout/page.tsx"),
                "Cart drawer with quantity steppers and price-change notices, and a checkout page collecting email, address and shipping choice.",
            ),
            _f(
                "ui_payment",
                "Stripe Payment Element integration",
                "medium",
                ("feature:stripe", "feature:ui_cart"),
                ("apps/web/components/checkout/PaymentStep.tsx",),
                "Mount the Stripe Payment Element with the intent's client secret, handle 3-D Secure redirects and show a clear failure state.",
            ),
            _f(
                "ui_orders",
                "Customer order history page",
                "medium",
                ("Order.api", "auth_store"),
                ("apps/web/app/(account)/orders/page.tsx", "apps/web/app/(account)/orders/[number]/page.tsx"),
                "List the customer's orders with status badges and an order detail page with tracking link and invoice download.",
            ),
        ),
    ),
    journeys=(
        (
            "guest-checkout",
            "guest checkout with card payment",
            "a guest adds a coffee to the cart, checks out and pays with a Stripe test card",
            ("feature:ui_payment", "feature:ui_storefront"),
        ),
        (
            "publish-product",
            "publishing a product",
            "staff publish a product with two variants and adjust its stock",
            ("auth_store", "Product.ui_form"),
        ),
        (
            "ship-order",
            "shipping an order",
            "staff pack and ship an order and the customer sees the tracking link",
            ("feature:fulfilment", "Order.ui_detail", "feature:ui_orders"),
        ),
    ),
    hot_endpoint="the product listing `GET /products`",
    hot_needs=("feature:search",),
    extra_aggregates=(
        (
            "Cart",
            "Ordering",
            "A customer's or guest's basket before checkout.",
            ("Cart", "CartItem"),
            ("One line per variant per cart", "A converted cart can no longer change"),
        ),
        (
            "Payment",
            "Payments",
            "A payment intent with the provider for one order.",
            ("Payment",),
            ("Provider events are applied at most once", "The paid amount equals the order total"),
        ),
    ),
)

CLINIC_BOOKING = Project(
    kind="clinic_booking",
    request=(
        "Our physiotherapy clinic wants an online booking system: patients book an appointment with a "
        "practitioner for a treatment type, get SMS or email reminders and can reschedule or cancel; the "
        "front desk manages practitioners' schedules and rooms and sees the day's agenda."
    ),
    domain="Healthcare appointment scheduling",
    project_name="ClinicFlow",
    description=(
        "Appointment booking for a multi-practitioner physiotherapy clinic: practitioner availability and "
        "time off, online booking without double booking, reminders, a cancellation policy and a front-desk agenda."
    ),
    stack=DJANGO_VUE,
    contexts=(
        ("Clinic Setup", "Practitioners, treatment types and rooms: the clinic's bookable resources."),
        ("Scheduling", "Availability rules, time off and appointments, including the no-double-booking guarantee."),
        ("Patient Records", "Patient identity and contact details, with consent and access auditing."),
        ("Communications", "Reminders and confirmations over SMS and email, with delivery tracking."),
        ("Front Desk", "Daily agenda, check-in, no-shows and utilisation reporting."),
    ),
    context_modules={
        "Clinic Setup": "clinic",
        "Scheduling": "scheduling",
        "Patient Records": "patients",
        "Communications": "communications",
        "Front Desk": "frontdesk",
    },
    roles="patient, receptionist, practitioner and clinic admin",
    tenant_scope="the calling patient whenever the caller is a patient",
    entities=(
        Entity(
            name="Practitioner",
            context="Clinic Setup",
            description="A bookable clinician with specialties and a calendar colour.",
            fields=(
                "user_id (FK users, unique)",
                "display_name",
                "title",
                "specialties (varchar[])",
                "bio (text)",
                "is_bookable (boolean)",
                "color (char 7)",
            ),
            filters="specialty and bookable state",
            validation="display_name required; color a #RRGGBB value; specialties from the clinic's list",
            rules="deactivating a practitioner blocks new bookings but keeps past appointments; it is refused while future appointments remain unassigned",
            test_focus="deactivating with future appointments answering 409",
            access="clinic admins",
        ),
        Entity(
            name="TreatmentType",
            context="Clinic Setup",
            description="A kind of session patients can book, with duration, buffer and price.",
            fields=(
                "name",
                "duration_minutes (integer)",
                "buffer_minutes (integer)",
                "price_cents (integer)",
                "room_type (enum treatment/gym/hydro)",
                "is_online_bookable (boolean)",
            ),
            filters="room type and online-bookable flag",
            validation="duration 15–120 minutes in 5-minute steps; buffer 0–30 minutes; price non-negative",
            rules="changing the duration applies only to appointments booked afterwards",
            test_focus="a duration that is not a multiple of 5 answering 400",
            access="clinic admins",
        ),
        Entity(
            name="Room",
            context="Clinic Setup",
            description="A physical room with a type and a capacity.",
            fields=("name", "room_type (enum treatment/gym/hydro)", "capacity (integer)", "is_active (boolean)"),
            filters="room type and active state",
            validation="capacity from 1 to 10; names unique",
            rules="a room holds at most `capacity` overlapping appointments; deactivating a room with future bookings is refused",
            test_focus="deactivating a room with future bookings answering 409",
            access="clinic admins",
        ),
        Entity(
            name="AvailabilityRule",
            context="Scheduling",
            description="A weekly recurring working window of a practitioner.",
            fields=(
                "practitioner_id (FK)",
                "weekday (0–6)",
                "start_time",
                "end_time",
                "valid_from (date)",
                "valid_until (date, nullable)",
            ),
            filters="practitioner and weekday",
            validation="start before end; rules of one practitioner never overlap on the same weekday and validity range",
            rules="rules are stored in clinic local time and expanded to UTC slots per date, handling daylight-saving changes",
            test_focus="an overlapping rule answering 422",
            access="clinic admins and the practitioner themself",
            parent="Practitioner",
            nested=True,
        ),
        Entity(
            name="TimeOff",
            context="Scheduling",
            description="A period when a practitioner cannot be booked.",
            fields=("practitioner_id (FK)", "starts_at", "ends_at", "reason (varchar 120)"),
            filters="practitioner and date range",
            validation="ends_at after starts_at; at most 60 days long",
            rules="time off overlapping booked appointments is refused with the list of conflicts unless the caller confirms and the appointments are moved first",
            test_focus="an overlap with a booked appointment answering 409 listing the conflicts",
            access="clinic admins and the practitioner themself",
            parent="Practitioner",
            nested=True,
            plural="TimeOff",
        ),
        Entity(
            name="Patient",
            context="Patient Records",
            description="A person who books treatments, with contact preferences and consent.",
            fields=(
                "user_id (FK users, nullable)",
                "first_name",
                "last_name",
                "date_of_birth",
                "phone (E.164)",
                "email (nullable)",
                "preferred_channel (enum sms/email)",
                "reminder_consent_at (nullable)",
            ),
            filters="name, phone and date of birth",
            validation="phone in E.164 format; date of birth in the past; email or phone required",
            rules="patients see only their own record; every staff read is written to the audit trail; contact fields are encrypted at rest",
            test_focus="a patient reading another patient's record answering 404 rather than 403",
            access="receptionists and clinic admins (patients read their own)",
        ),
        Entity(
            name="Appointment",
            context="Scheduling",
            description="A booked session of a patient with a practitioner in a room.",
            fields=(
                "practitioner_id (FK)",
                "patient_id (FK)",
                "treatment_type_id (FK)",
                "room_id (FK)",
                "starts_at",
                "ends_at",
                "status (enum booked/confirmed/checked_in/completed/cancelled/no_show)",
                "booked_via (enum online/front_desk)",
                "cancelled_late (boolean)",
            ),
            filters="practitioner, patient, status and date",
            validation="starts_at in the future, on a 5-minute boundary and inside the practitioner's availability",
            rules="booking checks availability, time off and room capacity in one transaction; cancellations within 24 hours are flagged late per clinic policy",
            test_focus="booking an already taken slot answering 409",
            access="receptionists, clinic admins and the booking patient",
            parent="Patient",
            refs=("Practitioner", "TreatmentType", "Room"),
        ),
    ),
    value_objects=(
        ("TimeSlot", "A half-open [start, end) interval in UTC, rendered in the clinic's timezone."),
        ("WeeklyWindow", "Weekday plus local start and end time for recurring availability."),
        ("Duration", "Minutes in 5-minute steps between 15 and 120."),
        ("PhoneNumber", "E.164 phone number used for SMS reminders."),
        ("CancellationPolicy", "How late a patient may cancel without being flagged, and the late fee."),
        ("ContactPreference", "Preferred reminder channel with the time consent was recorded."),
    ),
    events=(
        (
            "AppointmentBooked",
            "Appointment",
            "A patient or receptionist books a slot",
            "Sends the confirmation and schedules reminders.",
        ),
        (
            "AppointmentRescheduled",
            "Appointment",
            "The appointment moves to another slot",
            "Re-schedules reminders and notifies the practitioner.",
        ),
        (
            "AppointmentCancelled",
            "Appointment",
            "The patient or clinic cancels",
            "Frees the slot and offers it to the waitlist.",
        ),
        (
            "PatientCheckedIn",
            "Appointment",
            "The front desk checks the patient in",
            "Shows the patient as arrived on the agenda.",
        ),
        ("AppointmentNoShow", "Appointment", "The patient did not arrive", "Applies the no-show policy."),
        (
            "TimeOffScheduled",
            "Practitioner",
            "Time off is added for a practitioner",
            "Removes the affected slots from online booking.",
        ),
        ("ReminderSent", "Appointment", "A reminder is delivered", "Recorded in the message log."),
    ),
    services=(
        ("SlotFinder", "Expands availability minus time off, bookings and buffers into free slots."),
        ("BookingService", "Books, reschedules and cancels appointments under the clinic policy."),
        ("ReminderScheduler", "Decides which reminders to send when, respecting consent."),
        ("Notifier", "Port to SMS and email providers."),
        ("AgendaService", "Builds the front desk's daily agenda per practitioner and room."),
    ),
    assumptions=(
        "One clinic location with up to 15 practitioners and 8 rooms.",
        "Clinic timezone is Europe/Amsterdam; all instants are stored in UTC.",
        "Clinical notes stay in the existing EHR; this system stores no diagnoses.",
        "Online payment is out of scope; treatments are paid at the desk.",
    ),
    risks=(
        "Double booking under concurrent requests without a database-level guarantee.",
        "Daylight-saving transitions producing wrong or missing slots.",
        "GDPR obligations for patient data: consent, access logging, retention.",
        "SMS delivery failures leaving patients without reminders.",
    ),
    core_milestones=(
        Milestone(
            "Clinic setup",
            "Practitioners, treatment types and rooms.",
            entities=("Practitioner", "TreatmentType", "Room"),
        ),
        Milestone(
            "Availability", "Working hours and time off per practitioner.", entities=("AvailabilityRule", "TimeOff")
        ),
        Milestone(
            "Patients and appointments",
            "Patient records and the appointment lifecycle.",
            entities=("Patient", "Appointment"),
        ),
    ),
    workflow_milestones=(
        Milestone(
            "Booking engine",
            "Free slots, guaranteed single booking, online booking and the waitlist.",
            features=(
                _f(
                    "slots",
                    "Compute bookable slots",
                    "high",
                    ("AvailabilityRule.service", "TimeOff.service", "Appointment.repository", "TreatmentType.model"),
                    ("backend/scheduling/services/slot_finder.py", "backend/scheduling/tests/test_slot_finder.py"),
                    "Expand availability rules minus time off, existing appointments, buffers and room capacity into free slots for a treatment type over a date range, in the clinic's timezone and across DST changes.",
                ),
                _f(
                    "slots_api",
                    "Expose available slots endpoint",
                    "medium",
                    ("feature:slots", "auth_guard"),
                    ("backend/scheduling/api/slot_views.py",),
                    "`GET /api/slots?treatment=&practitioner=&from=&to=` cached for 60 seconds per query in Redis and invalidated on every booking change.",
                ),
                _f(
                    "exclusion",
                    "Add double-booking exclusion constraint",
                    "medium",
                    ("Appointment.migration",),
                    ("backend/scheduling/migrations/0004_appointment_no_overlap.py",),
                    "Enable btree_gist and add an EXCLUDE constraint on practitioner and tstzrange(starts_at, ends_at) for non-cancelled appointments; map the violation to 409 in the API.",
                ),
                _f(
                    "booking",
                    "Online booking flow for patients",
                    "high",
                    ("feature:slots", "feature:exclusion", "Appointment.service"),
                    ("backend/scheduling/services/booking.py", "backend/scheduling/api/booking_views.py"),
                    "`POST /api/bookings` re-checks the slot, creates the appointment and emits AppointmentBooked; first-time patients verify their phone with a one-time code before booking.",
                ),
                _f(
                    "reschedule",
                    "Reschedule and cancel with policy",
                    "medium",
                    ("feature:booking",),
                    ("backend/scheduling/services/rescheduling.py", "backend/scheduling/tests/test_rescheduling.py"),
                    "Patients reschedule or cancel up to 24 hours before the start; later cancellations are recorded as late and may carry the fee from the clinic's policy.",
                ),
                _f(
                    "waitlist",
                    "Waitlist for fully booked days",
                    "high",
                    ("feature:reschedule",),
                    ("backend/scheduling/models/waitlist_entry.py", "backend/scheduling/services/waitlist.py"),
                    "Patients join a waitlist for a treatment and date; when a slot frees up the first matching entry is offered it for 30 minutes before moving on.",
                ),
            ),
        ),
        Milestone(
            "Reminders and messages",
            "Reminders over the patient's preferred channel, with a delivery log.",
            features=(
                _f(
                    "notifier",
                    "SMS and email adapters",
                    "medium",
                    ("settings",),
                    ("backend/communications/notifier.py", "backend/communications/providers/twilio_sms.py"),
                    "Wrap Twilio SMS and the SMTP provider behind a Notifier interface with retries, timeouts and a sandbox mode outside production.",
                ),
                _f(
                    "reminders",
                    "Schedule appointment reminders",
                    "medium",
                    ("feature:notifier", "Appointment.repository"),
                    ("backend/communications/tasks.py", "backend/communications/tests/test_reminders.py"),
                    "Celery beat task every 5 minutes sending reminders 24 hours and 2 hours before each appointment over the preferred channel, once each, only with recorded consent.",
                ),
                _f(
                    "confirm_links",
                    "Confirm or cancel from the reminder",
                    "medium",
                    ("feature:reminders", "feature:reschedule"),
                    ("backend/communications/signed_links.py", "backend/scheduling/api/link_views.py"),
                    "Signed single-use links in reminders let patients confirm or cancel without logging in; links expire at the appointment start.",
                ),
                _f(
                    "message_log",
                    "Message delivery log",
                    "low",
                    ("feature:notifier",),
                    ("backend/communications/models/message_log.py", "backend/communications/api/status_callback.py"),
                    "Store every outbound message with the provider id and delivery status from Twilio status callbacks, shown on the appointment for staff.",
                ),
            ),
        ),
        Milestone(
            "Front desk operations",
            "The day's agenda, patient arrival and utilisation.",
            features=(
                _f(
                    "agenda",
                    "Daily agenda query",
                    "medium",
                    ("Appointment.repository",),
                    ("backend/frontdesk/selectors/agenda.py", "backend/frontdesk/tests/test_agenda.py"),
                    "Selector returning one day's appointments per practitioner and room with patient name and status in the clinic timezone, in a single query.",
                ),
                _f(
                    "checkin",
                    "Check-in, completion and no-show transitions",
                    "medium",
                    ("Appointment.service", "permissions"),
                    ("backend/frontdesk/api/checkin_views.py",),
                    "Endpoints for the front desk to check in, complete or mark an appointment as no-show, enforcing allowed transitions and recording timestamps.",
                ),
                _f(
                    "audit",
                    "Audit trail for patient data access",
                    "medium",
                    ("Patient.api",),
                    ("backend/patients/models/access_log.py", "backend/patients/middleware.py"),
                    "Record who read or changed which patient record and when; provide a read-only admin view and keep entries for seven years.",
                ),
                _f(
                    "utilisation",
                    "Practitioner utilisation report",
                    "medium",
                    ("feature:agenda", "feature:slots"),
                    ("backend/frontdesk/reports/utilisation.py",),
                    "Booked versus available minutes per practitioner per week plus the no-show rate, exported as CSV for the clinic manager.",
                ),
            ),
        ),
    ),
    screens=(
        Screen("Practitioner", ("list", "form")),
        Screen("TreatmentType", ("list", "form")),
        Screen("Patient"),
        Screen("Appointment", ("list", "detail")),
    ),
    screen_milestone=("Staff screens", "Screens for clinic setup, patients and appointments."),
    ui_milestone=Milestone(
        "Booking and agenda UI",
        "The patient booking wizard and the front-desk calendar.",
        features=(
            _f(
                "ui_wizard",
                "Patient booking wizard",
                "high",
                ("feature:slots_api", "feature:booking", "app_shell"),
                ("frontend/src/views/booking/BookingWizard.vue", "frontend/src/components/booking/SlotPicker.vue"),
                "Steps treatment → practitioner (or any) → slot → confirm, showing slots in the clinic timezone and handling a slot taken in the meantime.",
            ),
            _f(
                "ui_agenda",
                "Front desk agenda calendar",
                "high",
                ("feature:agenda", "feature:checkin", "api_client"),
                ("frontend/src/views/frontdesk/AgendaView.vue", "frontend/src/components/frontdesk/AgendaColumn.vue"),
                "Day view with one column per practitioner, status colours, and check-in and no-show actions refreshing every 30 seconds.",
            ),
            _f(
                "ui_schedule",
                "Practitioner schedule editor",
                "medium",
                ("AvailabilityRule.api", "TimeOff.api", "app_shell"),
                ("frontend/src/views/practitioners/ScheduleEditor.vue",),
                "Edit weekly availability windows and add time off, surfacing overlap conflicts returned by the API inline.",
            ),
            _f(
                "ui_my_appointments",
                "Patient self-service: my appointments",
                "medium",
                ("feature:reschedule", "auth_store"),
                ("frontend/src/views/patient/MyAppointments.vue",),
                "Upcoming and past appointments with reschedule and cancel actions, showing the late-cancellation warning when it applies.",
            ),
        ),
    ),
    journeys=(
        (
            "online-booking",
            "online booking",
            "a patient books an online appointment and receives the confirmation",
            ("feature:ui_wizard", "auth_store"),
        ),
        (
            "reschedule-link",
            "rescheduling from a reminder",
            "a patient reschedules through the link in a reminder",
            ("feature:confirm_links", "feature:ui_my_appointments"),
        ),
        (
            "front-desk-day",
            "front desk check-in and no-show",
            "the front desk checks one patient in and marks another as a no-show",
            ("feature:ui_agenda",),
        ),
    ),
    hot_endpoint="the slot search `GET /api/slots`",
    hot_needs=("feature:slots_api",),
    extra_aggregates=(
        (
            "WaitlistEntry",
            "Scheduling",
            "A patient's request to be offered a freed slot.",
            ("WaitlistEntry",),
            ("An offer is held for 30 minutes", "Entries are offered in the order they joined"),
        ),
        (
            "OutboundMessage",
            "Communications",
            "A reminder or confirmation sent to a patient.",
            ("OutboundMessage",),
            (
                "Each reminder is sent at most once per appointment and offset",
                "Messages are only sent with recorded consent",
            ),
        ),
    ),
)

#: The project kinds content can be built for, by kind.
PROJECTS: Mapping[str, Project] = {project.kind: project for project in (TASK_MANAGER, ONLINE_SHOP, CLINIC_BOOKING)}

# =========================================================================== plan templates

#: Foundation (phase 1): (milestone, description, tasks); task = (key, title, complexity, needs, file keys, description).
_FOUNDATION: tuple[
    tuple[str, str, tuple[tuple[str, str, Complexity, tuple[str, ...], tuple[str, ...], str], ...]], ...
] = (
    (
        "Repository and tooling",
        "Repository layout, local environment and continuous integration.",
        (
            (
                "manifest",
                "Initialise repository layout and dependency manifest",
                "low",
                (),
                ("manifest", "makefile"),
                "Create the {layout} layout and pin runtime and development dependencies in `{manifest}`, with setup, lint, test and run commands for local development.",
            ),
            (
                "lint",
                "Configure linting, formatting and pre-commit hooks",
                "low",
                ("manifest",),
                ("lint_config",),
                "Configure {lint} with the team's rules and a pre-commit hook, so formatting and type errors are caught before a commit.",
            ),
            (
                "compose",
                "Add docker-compose for local PostgreSQL and Redis",
                "low",
                ("manifest",),
                ("compose",),
                "Define PostgreSQL 16 and Redis 7 services with health checks, named volumes and a development database user created on first start.",
            ),
            (
                "settings",
                "Create typed settings loaded from the environment",
                "medium",
                ("manifest",),
                ("settings",),
                "Load the database URL, secrets, CORS origins and feature flags with {settings_lib} in `{settings}`; fail fast at start-up naming any missing variable.",
            ),
            (
                "logging",
                "Set up structured logging and request ids",
                "medium",
                ("settings",),
                ("logging", "middleware"),
                "Emit JSON logs carrying a request id taken from `X-Request-ID` (generated when absent), and make sure secrets and personal data are never logged.",
            ),
            (
                "ci",
                "Create CI pipeline for lint and tests",
                "medium",
                ("lint", "compose"),
                ("ci",),
                "{ci_tool} pipeline in `{ci}` running lint, type checks and unit tests against a PostgreSQL service container on every merge request, with dependency caching.",
            ),
        ),
    ),
    (
        "Persistence foundation",
        "Database access, migrations and test isolation.",
        (
            (
                "db_session",
                "Configure database connection and session management",
                "medium",
                ("settings",),
                ("db_session",),
                "Create the connection pool from settings with a bounded pool size and statement timeout, and a unit-of-work scope that commits on success and rolls back and re-raises on error.",
            ),
            (
                "migrations_env",
                "Initialise migrations with a baseline revision",
                "medium",
                ("db_session",),
                ("migrations_env",),
                "Set up {migration_kind}s with naming conventions for constraints and an empty baseline, and run pending migrations from the start-up script.",
            ),
            (
                "base_model",
                "Add shared base model with UUID keys and timestamps",
                "low",
                ("db_session",),
                ("base_model",),
                "Abstract base in `{base_model}` providing UUID primary keys, created_at and updated_at set by the database, and a version column for optimistic locking.",
            ),
            (
                "test_fixtures",
                "Create test database fixtures with per-test isolation",
                "medium",
                ("migrations_env", "compose"),
                ("test_fixtures",),
                "Build the test database once per run from the migrations, isolate every test in a transaction rolled back at teardown, and add factories for the core entities.",
            ),
        ),
    ),
    (
        "Authentication and access control",
        "User accounts, tokens and role-based permissions.",
        (
            (
                "user_model",
                "Create User model and migration",
                "medium",
                ("base_model", "migrations_env"),
                ("user_model", "user_migration"),
                "User with email (unique, case-insensitive), password hash, display name, is_active and last_login, and a migration adding a unique index on lower(email).",
            ),
            (
                "password",
                "Implement password hashing and credential checks",
                "low",
                ("user_model",),
                ("password",),
                "Hash passwords with Argon2id, verify in constant time, rehash on login when parameters change, and require at least 12 characters.",
            ),
            (
                "tokens",
                "Issue and verify JWT access and refresh tokens",
                "high",
                ("password", "settings"),
                ("tokens",),
                "Access tokens valid for 15 minutes and rotating refresh tokens stored hashed, with reuse detection that revokes the whole token family.",
            ),
            (
                "auth_api",
                "Expose register, login, refresh and logout endpoints",
                "medium",
                ("tokens",),
                ("auth_api",),
                "`POST /auth/register`, `/auth/login`, `/auth/refresh` and `/auth/logout`, rate-limiting login and answering with messages that never reveal whether an email exists.",
            ),
            (
                "auth_guard",
                "Protect routes with an authentication {guard_kind}",
                "medium",
                ("tokens",),
                ("auth_guard",),
                "Resolve the current user from the bearer token on every protected route, answer 401 for missing or expired tokens, and hand the user to the handlers.",
            ),
            (
                "permissions",
                "Implement role-based permission checks",
                "high",
                ("auth_guard",),
                ("permissions",),
                "Encode what the {roles} roles may do, scoped to {tenant_scope}, as one reusable check in `{permissions}`; deny by default and answer 403 naming the missing permission.",
            ),
            (
                "auth_tests",
                "Write authentication API tests",
                "medium",
                ("auth_api", "permissions", "test_fixtures"),
                ("auth_tests",),
                "Cover registration, login with a wrong password, refresh-token rotation and reuse detection, expired tokens and a forbidden role.",
            ),
        ),
    ),
)

_SHELL: tuple[tuple[str, str, Complexity, tuple[str, ...], tuple[str, ...], str], ...] = (
    (
        "app_shell",
        "Scaffold the {frontend_kind} app with routing and layout",
        "medium",
        ("manifest",),
        ("frontend_entry", "frontend_router", "frontend_layout"),
        "Create the app entry, the routes and the authenticated layout with navigation, an error boundary and a not-found page.",
    ),
    (
        "api_client",
        "Create the typed API client",
        "medium",
        ("auth_api", "app_shell"),
        ("api_client",),
        "Generate TypeScript types from the backend's OpenAPI description into `{api_client}` and wrap fetch with auth headers, request ids and normalised errors.",
    ),
    (
        "auth_screens",
        "Build login and registration screens",
        "medium",
        ("api_client",),
        ("login_page", "register_page"),
        "Login and registration pages with field validation, server error display and a redirect back to the page the user came from.",
    ),
    (
        "auth_store",
        "Keep the session alive with silent token refresh",
        "high",
        ("auth_screens", "tokens"),
        ("auth_store",),
        "Hold the access token in memory, refresh it shortly before expiry, retry a failed request once after refreshing and log out when refresh-token reuse is detected.",
    ),
)

_HARDENING: tuple[tuple[str, str, Complexity, tuple[str, ...], tuple[str, ...], str], ...] = (
    (
        "load_test",
        "Load test the busiest endpoint",
        "medium",
        ("compose", "ci"),
        ("load_test",),
        "Scenario in `{load_test}` ramping to 200 virtual users against {hot_endpoint}; record p95 latency and fix any query above 100 ms found with EXPLAIN ANALYZE.",
    ),
    (
        "security",
        "Harden HTTP security",
        "medium",
        ("auth_api", "ci"),
        ("security", "ci"),
        "Add security headers, strict CORS from settings, rate limits on authentication and write endpoints, and dependency vulnerability scanning in CI.",
    ),
    (
        "a11y",
        "Accessibility audit of key screens",
        "low",
        ("auth_screens",),
        ("a11y",),
        "Run axe checks on the login, list and form screens; fix contrast, missing labels and keyboard navigation problems that it reports.",
    ),
)

_DELIVERY: tuple[tuple[str, str, Complexity, tuple[str, ...], tuple[str, ...], str], ...] = (
    (
        "docker",
        "Write production Dockerfiles",
        "medium",
        ("manifest", "app_shell"),
        ("dockerfile", "frontend_dockerfile"),
        "Multi-stage builds for the API and the web app that run as a non-root user, with a container health check and a pinned base image.",
    ),
    (
        "health",
        "Add liveness and readiness endpoints",
        "low",
        ("db_session",),
        ("health",),
        "`/health/live` answers without touching dependencies; `/health/ready` checks the database and Redis with a 2-second timeout each.",
    ),
    (
        "iac",
        "Provision infrastructure with {iac_tool}",
        "high",
        ("docker",),
        ("iac", "iac_db"),
        "Define networking, the managed PostgreSQL instance, Redis and the {cloud} services, with secrets from the cloud secret store and separate staging and production.",
    ),
    (
        "cd",
        "Deployment pipeline with migrations",
        "high",
        ("iac", "ci", "health"),
        ("cd",),
        "{ci_tool} job that builds and pushes images, runs migrations as a one-off task before the rollout, deploys main to staging and tags to production, and rolls back when readiness fails.",
    ),
    (
        "metrics",
        "Metrics, tracing and alerts",
        "medium",
        ("logging", "iac"),
        ("metrics", "alerts"),
        "Expose request latency, error rate and queue depth metrics, trace database calls, and alert on the 5xx rate and p95 latency.",
    ),
    (
        "runbook",
        "Backups and restore runbook",
        "low",
        ("iac",),
        ("runbook",),
        "Enable point-in-time recovery for the database and document, then rehearse, a restore into staging.",
    ),
    (
        "docs",
        "API documentation and README",
        "low",
        ("cd",),
        ("api_docs", "readme"),
        "Publish the OpenAPI description, document authentication and error codes, and write setup, test and deployment instructions.",
    ),
)

_PHASES = (
    ("Foundation", "Repository, tooling, persistence and authentication that the rest of the plan builds on."),
    (
        "Core domain",
        "The core entities of {domain_lower}, each with model, migration, data access, validation, business rules, API and tests.",
    ),
    ("Workflows and integrations", "Business workflows spanning several entities: {workflow_names}."),
    ("Frontend", "The {frontend_kind} application: shell, management screens and the main user experience."),
    ("Quality and delivery", "End-to-end tests, hardening, deployment and operations."),
)

_COMPLEXITY_BASE = {"low": 240, "medium": 390, "high": 560}
_COMPLEXITY_MINUTES = {"low": 15, "medium": 30, "high": 55}
#: Rough price per estimated task token when the plan is executed by a code-generating model.
_USD_PER_TOKEN = 0.000045


# =========================================================================== naming helpers


def _words(name: str) -> list[str]:
    return re.findall(r"[A-Z][a-z0-9]*", name)


def _snake(name: str) -> str:
    return "_".join(word.lower() for word in _words(name))


def _kebab(name: str) -> str:
    return "-".join(word.lower() for word in _words(name))


def _spaced(name: str) -> str:
    return " ".join(word.lower() for word in _words(name))


def _column_names(entity: Entity, limit: int = 3) -> str:
    names = [spec.split(" (")[0] for spec in entity.fields]
    shown = [name for name in names if not name.endswith("_id")][:limit]
    return ", ".join(shown[:-1]) + " and " + shown[-1] if len(shown) > 1 else shown[0]


def _join(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _sentence(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:]


def _tokens(title: str, description: str, complexity: Complexity) -> int:
    jitter = int.from_bytes(hashlib.sha256(title.encode()).digest()[:2], "big") % 120
    estimate = _COMPLEXITY_BASE[complexity] + len(description) // 6 + jitter - 40
    return max(MIN_TASK_TOKENS, min(MAX_TASK_TOKENS, estimate))


# =========================================================================== builders


@dataclass
class _PlanBuilder:
    """Numbers tasks in order and resolves symbolic dependencies to earlier task numbers."""

    project: Project
    numbers: dict[str, int] = field(default_factory=dict)
    phases: list[dict[str, Any]] = field(default_factory=list)
    migration_seq: int = 1
    app_seq: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        p = self.project
        clash = set(p.stack.words) & set(p.stack.paths)
        if clash:
            raise ValueError(f"stack words and paths share keys: {sorted(clash)}")
        self.vars: dict[str, str] = {
            **p.stack.words,
            **p.stack.paths,
            "roles": p.roles,
            "tenant_scope": p.tenant_scope,
            "hot_endpoint": p.hot_endpoint,
            "domain_lower": p.domain[0].lower() + p.domain[1:],
            "workflow_names": _join([m.name.lower() for m in p.workflow_milestones]),
        }

    # -- structure -------------------------------------------------------------------

    def phase(self, name: str, description: str) -> None:
        self.phases.append(
            {
                "phase_number": len(self.phases) + 1,
                "name": name,
                "description": description.format(**self.vars),
                "milestones": [],
            }
        )

    def milestone(self, name: str, description: str) -> None:
        milestones = self.phases[-1]["milestones"]
        milestones.append(
            {"milestone_number": len(milestones) + 1, "name": name, "description": description, "tasks": []}
        )

    def task(
        self, key: str, title: str, description: str, complexity: Complexity, needs: Sequence[str], files: Sequence[str]
    ) -> None:
        if key in self.numbers:
            raise ValueError(f"duplicate task key {key!r}")
        missing = [need for need in needs if need not in self.numbers]
        if missing:
            raise ValueError(f"task {key!r} needs {missing} before they are planned")
        number = len(self.numbers) + 1
        self.numbers[key] = number
        self.phases[-1]["milestones"][-1]["tasks"].append(
            {
                "task_number": number,
                "title": title,
                "description": description,
                "complexity": complexity,
                "depends_on": sorted({self.numbers[need] for need in needs}),
                "target_files": list(dict.fromkeys(files)),
                "estimated_tokens": _tokens(title, description, complexity),
            }
        )

    def templated(
        self, spec: tuple[str, str, Complexity, tuple[str, ...], tuple[str, ...], str], extra_needs: Sequence[str] = ()
    ) -> None:
        key, title, complexity, needs, file_keys, description = spec
        self.task(
            key,
            title.format(**self.vars),
            description.format(**self.vars),
            complexity,
            [*needs, *extra_needs],
            [self.vars[file_key] for file_key in file_keys],
        )

    def feature(self, feature: Feature) -> None:
        needs = [need.removeprefix("feature:") if need.startswith("feature:") else need for need in feature.needs]
        self.task(feature.key, feature.title, feature.description, feature.complexity, needs, feature.files)

    # -- entities --------------------------------------------------------------------

    def entity_vars(self, entity: Entity) -> dict[str, Any]:
        app = self.project.context_modules[entity.context]
        self.migration_seq += 1
        self.app_seq[app] = self.app_seq.get(app, 0) + 1
        plural = entity.plural_name
        names = {
            "Name": entity.name,
            "Plural": plural,
            "snake": _snake(entity.name),
            "kebab": _kebab(entity.name),
            "plural_snake": _snake(plural),
            "plural_kebab": _kebab(plural),
            "table": _snake(plural),
            "app": app,
            "seq": self.migration_seq,
            "app_seq": self.app_seq[app],
            "ts": 1717000000000 + self.migration_seq * 1000,
        }
        paths = {
            key: template.format(**names) for key, template in self.project.stack.paths.items() if key.startswith("e_")
        }
        return {**self.vars, **names, **paths}

    def route(self, entity: Entity) -> str:
        base = "/" + _kebab(entity.plural_name)
        if entity.is_nested and entity.parent:
            parent = self.project.entity(entity.parent)
            return f"{self.route(parent)}/{{{_snake(parent.name)}_id}}{base}"
        return base

    def entity_tasks(self, entity: Entity) -> None:
        v = self.entity_vars(entity)
        p = self.project
        name, spaced, plural_spaced = entity.name, _spaced(entity.name), _spaced(entity.plural_name)
        parents = [entity.parent] if entity.parent else []
        relation = ""
        if entity.parent:
            relation = (
                f" Part of the {entity.parent} aggregate (rows are deleted with their {_spaced(entity.parent)})."
                if not entity.root
                else f" References its {_spaced(entity.parent)}."
            )
        if entity.refs:
            relation += f" Also references {_join([_spaced(ref) for ref in entity.refs])}."
        self.task(
            f"{name}.model",
            f"Create {name} {v['model_kind']}",
            f"Define `{name}` in `{v['e_model']}`: {entity.description[0].lower()}{entity.description[1:-1]}. "
            f"Columns: {_join(list(entity.fields))}.{relation}",
            "medium" if len(entity.fields) >= 6 else "low",
            ["base_model", *(f"{ref}.model" for ref in [*parents, *entity.refs])],
            [v["e_model"]],
        )
        foreign = [_snake(self.project.entity(ref).plural_name) for ref in [*parents, *entity.refs]]
        fk_clause = f"foreign keys to {_join([f'`{t}`' for t in foreign])}, " if foreign else ""
        self.task(
            f"{name}.migration",
            f"Add {v['migration_kind']} for the {v['table']} table",
            f"Create `{v['table']}` with {fk_clause}indexes supporting filters by {entity.filters}, and database "
            "constraints for the invariants that can be expressed in SQL; check upgrade and downgrade on an empty database.",
            "low",
            [f"{name}.model", "migrations_env", *(f"{ref}.migration" for ref in [*parents, *entity.refs])],
            [v["e_migration"]],
        )
        self.task(
            f"{name}.repository",
            f"Implement {name} {v['repository_kind']}",
            f"Queries in `{v['e_repository']}`: get by id, paginated list filtered by {entity.filters}, create, update "
            f"and delete, all scoped to {p.tenant_scope}; load related rows eagerly where lists need them.",
            "medium",
            [f"{name}.model"],
            [v["e_repository"]],
        )
        self.task(
            f"{name}.schemas",
            f"Define {name} {v['schema_kind']} with validation",
            f"Create, update and read shapes for {spaced} in `{v['e_schemas']}`. Validation: {entity.validation}.",
            "low",
            [f"{name}.model"],
            [v["e_schemas"]],
        )
        self.task(
            f"{name}.service",
            f"Implement {spaced} business rules",
            f"In `{v['e_service']}`: {entity.rules}. Raise domain errors that the API maps to 404, 409 and 422, and "
            "unit-test every rule.",
            "high" if entity.rules.count(";") >= 2 else "medium",
            [f"{name}.repository", f"{name}.schemas", "permissions", *(f"{ref}.service" for ref in parents)],
            [v["e_service"], v["e_service_test"]],
        )
        route = self.route(entity)
        self.task(
            f"{name}.api",
            f"Expose {spaced} endpoints",
            f"{v['router_kind']} in `{v['e_api']}` for `GET/POST {route}` and `GET/PATCH/DELETE {route}/{{id}}` "
            f"using the {spaced} service; authentication required and writes allowed for {entity.access}. "
            "Lists are paginated and return a total count.",
            "medium",
            [f"{name}.service", "auth_guard"],
            [v["e_api"], v["router_registry"]],
        )
        self.task(
            f"{name}.tests",
            f"Write API tests for {plural_spaced}",
            f"Cover create, list with filters and pagination, validation errors, a caller without permission, and {entity.test_focus}.",
            "medium",
            [f"{name}.api", "test_fixtures"],
            [v["e_api_test"]],
        )

    def screen_tasks(self, screen: Screen) -> None:
        entity = self.project.entity(screen.entity)
        v = self.entity_vars(entity)
        spaced, plural_spaced = _spaced(entity.name), _spaced(entity.plural_name)
        children = [e for e in self.project.entities if e.parent == entity.name and not e.root]
        child_text = f" together with its {_join([_spaced(c.plural_name) for c in children])}" if children else ""
        base_needs = [f"{entity.name}.api", "api_client"]
        for kind in screen.kinds:
            if kind == "list":
                self.task(
                    f"{entity.name}.ui_list",
                    f"Build {plural_spaced} list page",
                    f"Page at `{v['e_ui_list']}` with a table of {_column_names(entity)}, filters for {entity.filters}, "
                    "pagination, and empty, loading and error states.",
                    "medium",
                    base_needs,
                    [v["e_ui_list"], v["e_ui_hook"]],
                )
            elif kind == "form":
                self.task(
                    f"{entity.name}.ui_form",
                    f"Build {spaced} create and edit form",
                    f"Form in `{v['e_ui_form']}` mirroring the API validation ({entity.validation}), showing server "
                    "errors inline, with a component test.",
                    "medium",
                    [*base_needs, *([f"{entity.name}.ui_list"] if "list" in screen.kinds else [])],
                    [v["e_ui_form"], v["e_ui_test"]],
                )
            elif kind == "detail":
                self.task(
                    f"{entity.name}.ui_detail",
                    f"Build {spaced} detail view",
                    f"Page at `{v['e_ui_detail']}` showing the {spaced}{child_text}, with edit and delete actions "
                    f"shown only to {entity.access}.",
                    "low",
                    [*base_needs, *([f"{entity.name}.ui_list"] if "list" in screen.kinds else [])],
                    [v["e_ui_detail"]],
                )
            else:
                raise ValueError(f"unknown screen kind {kind!r}")


def _build_masterplan(project: Project) -> dict[str, Any]:
    b = _PlanBuilder(project)

    b.phase(*_PHASES[0])
    for milestone_name, milestone_description, specs in _FOUNDATION:
        b.milestone(milestone_name, milestone_description)
        for spec in specs:
            b.templated(spec)

    b.phase(*_PHASES[1])
    for milestone in project.core_milestones:
        b.milestone(milestone.name, milestone.description)
        for name in milestone.entities:
            b.entity_tasks(project.entity(name))

    b.phase(*_PHASES[2])
    for milestone in project.workflow_milestones:
        b.milestone(milestone.name, milestone.description)
        for feature in milestone.features:
            b.feature(feature)

    b.phase(*_PHASES[3])
    b.milestone("Application shell", "Frontend scaffold, API client and the session.")
    for spec in _SHELL:
        b.templated(spec)
    b.milestone(*project.screen_milestone)
    for screen in project.screens:
        b.screen_tasks(screen)
    b.milestone(project.ui_milestone.name, project.ui_milestone.description)
    for feature in project.ui_milestone.features:
        b.feature(feature)

    b.phase(*_PHASES[4])
    b.milestone("Quality and hardening", "End-to-end journeys, performance, security and accessibility.")
    for stem, title, sentence, needs in project.journeys:
        path = f"{b.vars['e2e_dir']}/{stem}{b.vars['e2e_ext']}"
        b.task(
            f"e2e:{stem}",
            f"End-to-end test: {title}",
            f"{b.vars['e2e_runner']} test in `{path}` in which {sentence}; it runs against the docker-compose "
            "stack with seeded data and fails on any console error.",
            "medium",
            [need.removeprefix("feature:") for need in needs],
            [path],
        )
    for spec in _HARDENING:
        hot_needs = [need.removeprefix("feature:") for need in project.hot_needs]
        b.templated(spec, extra_needs=hot_needs if spec[0] == "load_test" else ())
    b.milestone("Deployment and operations", "Containers, infrastructure, delivery pipeline and observability.")
    for spec in _DELIVERY:
        b.templated(spec)

    tasks = [task for phase in b.phases for group in phase["milestones"] for task in group["tasks"]]
    return {
        "project_name": project.project_name,
        "description": project.description,
        "tech_stack": dict(project.stack.tech_stack),
        "architecture_style": project.stack.architecture_style,
        "total_tasks": len(tasks),
        "estimated_cost_usd": round(sum(task["estimated_tokens"] for task in tasks) * _USD_PER_TOKEN, 2),
        "estimated_duration_minutes": sum(_COMPLEXITY_MINUTES[task["complexity"]] for task in tasks),
        "phases": b.phases,
    }


def _build_discovery(project: Project) -> dict[str, Any]:
    contexts = [{"name": name, "description": description} for name, description in project.contexts]
    aggregates = []
    for entity in project.entities:
        if not entity.root:
            continue
        members = [entity.name] + [e.name for e in project.entities if e.parent == entity.name and not e.root]
        aggregates.append(
            {
                "name": entity.name,
                "bounded_context": entity.context,
                "description": entity.description,
                "entities": members,
                "invariants": [_sentence(rule) for rule in entity.rules.split(";")],
            }
        )
    for name, context, description, extra_members, invariants in project.extra_aggregates:
        aggregates.append(
            {
                "name": name,
                "bounded_context": context,
                "description": description,
                "entities": list(extra_members),
                "invariants": list(invariants),
            }
        )
    return {
        "domain": project.domain,
        "bounded_contexts": contexts,
        "aggregates": aggregates,
        "value_objects": [{"name": name, "description": description} for name, description in project.value_objects],
        "domain_events": [
            {"name": name, "aggregate": aggregate, "trigger": trigger, "description": description}
            for name, aggregate, trigger, description in project.events
        ],
        "services": [{"name": name, "description": description} for name, description in project.services],
        "assumptions": list(project.assumptions),
        "risks": list(project.risks),
    }


@cache
def _cached_masterplan(kind: str) -> str:
    return json.dumps(_build_masterplan(_project(kind)))


@cache
def _cached_discovery(kind: str) -> str:
    return json.dumps(_build_discovery(_project(kind)))


def _project(kind: str) -> Project:
    try:
        return PROJECTS[kind]
    except KeyError:
        raise KeyError(f"unknown project kind {kind!r}; known: {', '.join(PROJECTS)}") from None


# =========================================================================== public builders


def request_for(kind: str) -> str:
    """The user's ``/masterplan`` request sentence for a project kind."""
    return _project(kind).request


def discovery_for(kind: str) -> dict[str, Any]:
    """A fresh discovery document (DESIGN.md §3) for a project kind."""
    document: dict[str, Any] = json.loads(_cached_discovery(kind))
    return document


def masterplan_for(kind: str) -> dict[str, Any]:
    """A fresh masterplan (100–130 tasks, DESIGN.md §3) for a project kind."""
    document: dict[str, Any] = json.loads(_cached_masterplan(kind))
    return document


def iter_tasks(plan: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every task of a masterplan, in document order."""
    for phase in plan.get("phases", []):
        for milestone in phase.get("milestones", []):
            yield from milestone.get("tasks", [])


# =========================================================================== rendering


def _is_masterplan(doc: Mapping[str, Any]) -> bool:
    return "phases" in doc or "project_name" in doc


def _describe(doc: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """Sentences a model would put around ``doc``: fenced intro/outro, prose intro/outro."""
    if _is_masterplan(doc):
        tasks = sum(1 for _ in iter_tasks(doc))
        phases = len(doc.get("phases", []))
        return (
            f"Here is the complete masterplan, {tasks} tasks across {phases} phases, as JSON:",
            (
                "Tasks are numbered so that every dependency points to an earlier task, and each one is small "
                "enough to implement and review on its own."
            ),
            (
                f"Based on the discovery document I broke the work into {phases} phases and {tasks} atomic tasks. "
                "Foundation work comes first, then the core domain, the workflows that span several entities, the "
                "frontend, and finally quality and delivery.\n\nThe plan follows."
            ),
            (
                "The cost and duration estimates assume one developer working through the tasks in order. "
                "Milestones without dependencies between them can run in parallel, which shortens the calendar "
                "time considerably."
            ),
        )
    contexts = len(doc.get("bounded_contexts", []))
    domain = doc.get("domain", "the requested domain")
    return (
        "Here is the domain analysis for your project, following the requested schema:",
        "I kept the bounded contexts coarse on purpose; they can be split later if the team grows.",
        (
            f"I analysed the request from a domain-driven design perspective. The core of the system is "
            f"{str(domain).lower()}, and I identified {contexts} bounded contexts with clear ownership of their "
            "data.\n\nHere is the structured discovery document."
        ),
        (
            "The assumptions and risks at the end deserve a review with the stakeholders. If any assumption is "
            "wrong, the aggregates of the affected context need another look before the plan is generated."
        ),
    )


def render_reply(doc: Mapping[str, Any], style: ReplyStyle = "plain", *, indent: int | None = 2) -> str:
    """The text an LLM would answer with ``doc`` in it.

    ``plain``: the bare JSON. ``fenced``: a sentence, the JSON in a ```json fence, a sentence.
    ``prose``: paragraphs before and after the bare JSON (the prose has no braces or backticks).
    """
    body = json.dumps(doc, indent=indent, ensure_ascii=False)
    if style == "plain":
        return body
    fenced_intro, fenced_outro, prose_intro, prose_outro = _describe(doc)
    if style == "fenced":
        return f"{fenced_intro}\n\n```json\n{body}\n```\n\n{fenced_outro}"
    if style == "prose":
        return f"{prose_intro}\n\n{body}\n\n{prose_outro}"
    raise ValueError(f"unknown reply style {style!r}; use plain, fenced or prose")


# =========================================================================== mutators

_PATH_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+|\*)\]")


def _parse_path(path: str) -> list[str | int]:
    parts: list[str | int] = []
    for name, index in _PATH_TOKEN.findall(path):
        if index:
            parts.append("*" if index == "*" else int(index))
        elif name.isdigit():
            parts.append(int(name))
        else:
            parts.append(name)
    if not parts:
        raise ValueError(f"empty field path {path!r}")
    return parts


def _remove(node: Any, parts: list[str | int]) -> int:
    head, rest = parts[0], parts[1:]
    if head == "*":
        if isinstance(node, list):
            targets: list[Any] = list(range(len(node)))
        elif isinstance(node, dict):
            targets = list(node)
        else:
            return 0
    else:
        targets = [head]
    removed = 0
    if not rest:
        for target in reversed(targets):  # back to front, so list indices stay valid
            if _has(node, target):
                del node[target]
                removed += 1
        return removed
    for target in targets:
        if _has(node, target):
            removed += _remove(node[target], rest)
    return removed


def _has(node: Any, key: Any) -> bool:
    """Whether ``node[key]`` exists (a dict key, or an in-range list index)."""
    if isinstance(node, dict):
        return key in node
    return isinstance(node, list) and isinstance(key, int) and -len(node) <= key < len(node)


def without_fields(doc: Mapping[str, Any], *paths: str) -> dict[str, Any]:
    """A copy of ``doc`` with the fields at ``paths`` removed.

    Paths are dotted with list indices, e.g. ``"domain"``, ``"phases[0].milestones[1].tasks[2].title"``
    (``phases.0.name`` works too); ``[*]`` or ``*`` matches every item. A path that matches
    nothing raises ``KeyError``, so a fault cassette cannot silently lose its fault.
    """
    result = copy.deepcopy(dict(doc))
    for path in paths:
        if _remove(result, _parse_path(path)) == 0:
            raise KeyError(f"no field at {path!r}")
    return result


def _tasks_by_number(plan: Mapping[str, Any]) -> dict[int, dict[str, Any]]:
    return {task["task_number"]: task for task in iter_tasks(plan)}


def with_dangling_dependency(plan: Mapping[str, Any], task_number: int | None = None) -> dict[str, Any]:
    """A copy where one task (default: the middle one) depends on a task number that does not exist."""
    result = copy.deepcopy(dict(plan))
    tasks = list(iter_tasks(result))
    numbers = {task["task_number"] for task in tasks}
    target = task_number if task_number is not None else tasks[len(tasks) // 2]["task_number"]
    missing = max(numbers) + 17
    _tasks_by_number(result)[target]["depends_on"].append(missing)
    return result


def _ancestors(plan: Mapping[str, Any]) -> dict[int, set[int]]:
    """Task number → every task it depends on, directly or not (tasks come in dependency order)."""
    result: dict[int, set[int]] = {}
    for task in sorted(iter_tasks(plan), key=lambda t: t["task_number"]):
        found: set[int] = set()
        for dep in task["depends_on"]:
            found |= {dep} | result.get(dep, set())
        result[task["task_number"]] = found
    return result


def with_cycle(plan: Mapping[str, Any]) -> dict[str, Any]:
    """A copy where three tasks of one milestone form a dependency cycle a → c → b → a.

    The three are chosen so that none already depends on another, so the new cycle is
    the only one and has exactly three members; every dependency still resolves.
    """
    result = copy.deepcopy(dict(plan))
    ancestors = _ancestors(result)

    def unrelated(x: dict[str, Any], y: dict[str, Any]) -> bool:
        nx, ny = x["task_number"], y["task_number"]
        return nx not in ancestors[ny] and ny not in ancestors[nx]

    for phase in result["phases"][1:] + result["phases"][:1]:
        for milestone in phase["milestones"]:
            tasks = milestone["tasks"]
            for i, a in enumerate(tasks):
                for j in range(i + 1, len(tasks)):
                    b = tasks[j]
                    if not unrelated(a, b):
                        continue
                    for c in tasks[j + 1 :]:
                        if unrelated(a, c) and unrelated(b, c):
                            b["depends_on"] = sorted([*b["depends_on"], a["task_number"]])
                            c["depends_on"] = sorted([*c["depends_on"], b["task_number"]])
                            a["depends_on"] = sorted([*a["depends_on"], c["task_number"]])
                            return result
    raise ValueError("no milestone has three mutually independent tasks to form a cycle")


def with_wrong_total(plan: Mapping[str, Any], delta: int = 7) -> dict[str, Any]:
    """A copy whose ``total_tasks`` disagrees with the number of tasks by ``delta``."""
    if delta == 0:
        raise ValueError("delta must not be 0")
    result = copy.deepcopy(dict(plan))
    result["total_tasks"] = sum(1 for _ in iter_tasks(result)) + delta
    return result


def with_duplicate_task_number(plan: Mapping[str, Any]) -> dict[str, Any]:
    """A copy where one task reuses the previous task's number.

    The renumbered task is one nothing depends on, so the duplicate (and the gap it
    leaves) is the only fault: every dependency still resolves.
    """
    result = copy.deepcopy(dict(plan))
    tasks = list(iter_tasks(result))
    depended_on = {number for task in tasks for number in task["depends_on"]}
    middle = len(tasks) // 2
    for index in [*range(middle, len(tasks)), *range(1, middle)]:
        if tasks[index]["task_number"] not in depended_on:
            tasks[index]["task_number"] = tasks[index - 1]["task_number"]
            return result
    raise ValueError("every task is depended on; cannot duplicate a number without dangling dependencies")


def truncate_text(text: str, fraction: float) -> str:
    """The first ``fraction`` (strictly between 0 and 1) of ``text``: a reply cut mid-JSON."""
    if not 0 < fraction < 1:
        raise ValueError("fraction must be strictly between 0 and 1")
    return text[: max(1, int(len(text) * fraction))]
