"""Approver tokens: OIDC tokens verified against a JWKS from a local file or over HTTP."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest

from lgpd_tasks.credentials.oidc import ApproverVerifier, VerifiedApprover
from lgpd_tasks.credentials.tokens import TokenKey
from lgpd_tasks.errors import (
    TokenAlgorithmRejected,
    TokenAudienceInvalid,
    TokenError,
    TokenExpired,
    TokenIssuerInvalid,
    TokenKeyUnknown,
    TokenSignatureInvalid,
)

IDP = "https://idp.example.com.br/realms/lgpd"
CLIENT = "lgpd-tasks"


@pytest.fixture(scope="module")
def keys() -> list[TokenKey]:
    return [TokenKey.generate("rsa-1", "RS256"), TokenKey.generate("ec-1", "ES256")]


@pytest.fixture
def jwks_file(tmp_path: Path, keys: list[TokenKey]) -> Path:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [k.public_jwk() for k in keys]}))
    return path


@pytest.fixture(scope="module")
def jwks_url(keys: list[TokenKey]) -> Iterator[str]:
    body = json.dumps({"keys": [k.public_jwk() for k in keys]}).encode()
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            if self.path != "/certs":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/certs"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _token(key: TokenKey, **overrides: Any) -> str:
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "iss": IDP,
        "aud": [CLIENT, "account"],
        "sub": "maria.silva",
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "groups": ["dpo", "data-eng"],
    }
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, key.signing, algorithm=key.algorithm, headers={"kid": key.kid})


def _verifier(source: str | Path, **kwargs: Any) -> ApproverVerifier:
    return ApproverVerifier(jwks=str(source), issuer=IDP, audience=CLIENT, **kwargs)


@pytest.mark.parametrize("which", [0, 1], ids=["RS256", "ES256"])
def test_approver_token_verified_against_a_local_jwks(
    keys: list[TokenKey], jwks_file: Path, which: int
) -> None:
    approver = _verifier(jwks_file).verify(_token(keys[which]))
    assert approver == VerifiedApprover("maria.silva", frozenset({"dpo", "data-eng"}), IDP)
    assert approver.may_approve(["group:dpo"])


def test_approver_token_verified_against_a_jwks_served_over_http(
    keys: list[TokenKey], jwks_url: str
) -> None:
    verifier = _verifier(jwks_url)
    assert verifier.verify(_token(keys[0])).subject == "maria.silva"
    assert verifier.verify(_token(keys[1], sub="joao")).subject == "joao"
    with pytest.raises(TokenKeyUnknown):
        verifier.verify(_token(TokenKey.generate("rotated-out", "RS256")))


def test_unreachable_jwks_is_an_error_not_a_pass(keys: list[TokenKey]) -> None:
    verifier = _verifier("http://127.0.0.1:1/certs", timeout=2)
    with pytest.raises(TokenError, match="cannot fetch the JWKS"):
        verifier.verify(_token(keys[0]))


def test_plain_http_jwks_is_refused_off_loopback() -> None:
    with pytest.raises(TokenError, match="https"):
        _verifier("http://idp.example.com.br/certs")


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        pytest.param({"iss": "https://evil.example"}, TokenIssuerInvalid, id="issuer"),
        pytest.param({"aud": "another-app"}, TokenAudienceInvalid, id="audience"),
        pytest.param({"exp": datetime.now(UTC) - timedelta(hours=1)}, TokenExpired, id="expired"),
        pytest.param({"sub": None}, TokenError, id="no-subject"),
    ],
)
def test_bad_approver_tokens_are_refused(
    keys: list[TokenKey], jwks_file: Path, overrides: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        _verifier(jwks_file).verify(_token(keys[0], **overrides))


def test_approver_token_forgeries_are_refused(keys: list[TokenKey], jwks_file: Path) -> None:
    verifier = _verifier(jwks_file)
    payload = jwt.decode(_token(keys[0]), options={"verify_signature": False})
    with pytest.raises(TokenAlgorithmRejected):
        verifier.verify(jwt.encode(payload, None, algorithm="none", headers={"kid": "rsa-1"}))
    with pytest.raises(TokenAlgorithmRejected):
        verifier.verify(jwt.encode(payload, "s" * 32, algorithm="HS256", headers={"kid": "rsa-1"}))
    # an ES256 signature presented under the RSA key's kid
    with pytest.raises(TokenAlgorithmRejected):
        verifier.verify(
            jwt.encode(payload, keys[1].signing, algorithm="ES256", headers={"kid": "rsa-1"})
        )
    impostor = TokenKey.generate("rsa-1", "RS256")
    with pytest.raises(TokenSignatureInvalid):
        verifier.verify(_token(impostor))


def test_groups_claim_may_be_a_nested_path_or_a_string(
    keys: list[TokenKey], jwks_file: Path
) -> None:
    nested = _verifier(jwks_file, groups_claim="realm_access.roles")
    token = _token(keys[0], groups=None, realm_access={"roles": ["approver", "viewer"]})
    assert nested.verify(token).groups == frozenset({"approver", "viewer"})
    spaced = _verifier(jwks_file, groups_claim="scope")
    assert spaced.verify(_token(keys[0], scope="openid lgpd:approve")).groups == frozenset(
        {"openid", "lgpd:approve"}
    )
    assert _verifier(jwks_file).verify(_token(keys[0], groups=None)).groups == frozenset()


def test_symmetric_algorithms_cannot_be_configured_for_approvers(jwks_file: Path) -> None:
    with pytest.raises(TokenAlgorithmRejected):
        _verifier(jwks_file, algorithms=["HS256"])


def test_missing_or_broken_jwks_file(tmp_path: Path, keys: list[TokenKey]) -> None:
    with pytest.raises(TokenError, match="cannot read the JWKS file"):
        _verifier(tmp_path / "absent.json").verify(_token(keys[0]))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(TokenError, match="not a JWKS document"):
        _verifier(broken).verify(_token(keys[0]))


def test_approver_rights_from_policy_entries() -> None:
    who = VerifiedApprover("maria.silva", frozenset({"dpo"}), IDP)
    assert who.may_approve([])
    assert who.may_approve(["group:dpo"])
    assert who.may_approve(["maria.silva"])
    assert not who.may_approve(["group:ops", "joao"])
