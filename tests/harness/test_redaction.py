"""Redaction: known and secret-shaped values never survive."""

from __future__ import annotations

from harness.redaction import (
    find_secrets,
    mask,
    redact_identifiers,
    redact_text,
    redact_url,
    redact_value,
    register_secret,
)


def test_key_shapes_bearer_tokens_and_url_passwords_are_redacted() -> None:
    """Every secret shape is replaced, the surrounding text kept."""
    text = (
        "key sk-ant-api03-abcdefghijklmnop and sk-proj-ABCDEFGHIJKLMNOPQRST "
        "Authorization: Bearer tok_1234567890abc url postgresql://app:hunter2pass@db:5432/prod "
        "dsn host=db password=s3cr3tpass"
    )
    cleaned = redact_text(text)
    for secret in ("abcdefghijklmnop", "ABCDEFGHIJKLMNOPQRST", "tok_1234567890abc", "hunter2pass", "s3cr3tpass"):
        assert secret not in cleaned
    assert "postgresql://app:***@db:5432/prod" in cleaned
    assert find_secrets(cleaned) == []


def test_registered_secret_is_redacted_even_without_a_known_shape() -> None:
    """A registered value is hidden wherever it appears, nested values included."""
    register_secret("plain-looking-value-42")
    value = redact_value({"a": ["x plain-looking-value-42 y"], "n": 3})
    assert value == {"a": ["x *** y"], "n": 3}


def test_redact_url_keeps_everything_but_the_password() -> None:
    """User, host, port and database stay readable."""
    assert redact_url("postgresql://me:pw-123456@h:1/db") == "postgresql://me:***@h:1/db"
    assert redact_url("postgresql://me@h/db") == "postgresql://me@h/db"


def test_mask_shows_shape_not_value() -> None:
    """A masked key shows its prefix and length only."""
    assert mask("sk-ant-abcdefgh1234") == "sk-ant-*** (19 chars)"
    assert mask(None) == "(not set)"


def test_find_secrets_reports_offsets() -> None:
    """The scanner says where a secret sits."""
    text = "ok\nAuthorization: Bearer abcdefghijkl"
    hits = find_secrets(text)
    assert hits and text[hits[0][1] :].startswith("abcdefghijkl")


def test_words_that_merely_contain_sk_dash_are_not_keys() -> None:
    """Hyphenated words such as task-management-service survive; a real key shape is still caught."""
    text = "the desk-booking-system-for-offices and task-management-service-api modules"
    assert redact_text(text) == text
    assert find_secrets(text) == []
    assert "sk-proj-ABCDEFGHIJKLMNOPQRST" not in redact_text("key=sk-proj-ABCDEFGHIJKLMNOPQRST")


def test_request_organization_and_project_ids_are_redacted_with_their_prefix() -> None:
    """Identifiers that name an account or a request keep their prefix and lose their value."""
    text = (
        '{"request_id": "req_011CabcdefGHIJKLmnop"} in organization org-AbCdEfGhIjKlMnOpQrStUv, proj_0123456789abcdef'
    )
    assert redact_identifiers(text) == '{"request_id": "req_***"} in organization org-***, proj_***'
