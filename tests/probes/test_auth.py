"""Stage auth: identity from flags or a verified bearer token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from probes import auth


def _jwt(claims: dict, secret: str, alg: str = "HS256") -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    signature = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


def test_token_gives_user_and_session() -> None:
    """A valid HS256 token yields the user id (sub) and session id (sid)."""
    identity = auth.identity_from_token(_jwt({"sub": "u-1", "sid": "s-1", "exp": 4102444800}, "k"), "k")
    assert (identity.user_id, identity.session_id, identity.source) == ("u-1", "s-1", "token")


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (_jwt({"sub": "u"}, "other-secret"), "signature does not verify"),
        (_jwt({"sub": "u", "exp": 1}, "k"), "expired"),
        (_jwt({"sub": "u"}, "k", alg="none"), "unsupported algorithm"),
        ("not-a-token", "not a JWT"),
        ("a.b.c", "not base64url JSON"),
    ],
)
def test_invalid_tokens_say_why(token: str, reason: str) -> None:
    """Each way a token can be wrong is explained, and becomes AUTH003."""
    with pytest.raises(auth.TokenInvalid, match=reason) as caught:
        auth.identity_from_token(token, "k")
    (finding,) = auth.check_identity(auth.Identity(None, None), str(caught.value))
    assert finding.id == "AUTH003"


def test_missing_ids_spell_out_the_consequence() -> None:
    """No user id and no session id are two findings, each saying what breaks."""
    findings = auth.check_identity(auth.Identity(None, None, "environment"))
    assert [f.id for f in findings] == ["AUTH001", "AUTH002"]
    assert "ValueError" in findings[0].message and "progress" in findings[1].message
