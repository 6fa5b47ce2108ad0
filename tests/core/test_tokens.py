"""Task tokens: each way a token can be wrong is refused with its own error."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from lgpd_tasks.credentials.tokens import (
    InMemoryReplayCache,
    SqlReplayCache,
    TaskTokenIssuer,
    TaskTokenVerifier,
    TokenKey,
)
from lgpd_tasks.errors import (
    TokenAlgorithmRejected,
    TokenAudienceInvalid,
    TokenError,
    TokenExpired,
    TokenIssuerInvalid,
    TokenKeyUnknown,
    TokenNotYetValid,
    TokenReplayed,
    TokenSignatureInvalid,
)
from lgpd_tasks.identity import TaskIdentity

IDENT = TaskIdentity("dagster", "contractor", "load", run_id="run-7", attempt=2, map_index=3)
ISS, AUD = "lgpd-tasks", "warehouse"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.fixture(scope="module")
def key() -> TokenKey:
    return TokenKey.generate("k1")


def _pair(key: TokenKey, **verifier_kwargs: object) -> tuple[TaskTokenIssuer, TaskTokenVerifier]:
    issuer = TaskTokenIssuer(key, issuer=ISS, audience=AUD)
    verifier = TaskTokenVerifier([key.public()], issuer=ISS, audience=AUD, **verifier_kwargs)  # type: ignore[arg-type]
    return issuer, verifier


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256", "RS256"])
def test_token_round_trip_carries_identity_scope_purpose_and_run(algorithm: str) -> None:
    issuer, verifier = _pair(TokenKey.generate("k", algorithm))
    token = issuer.issue(IDENT, scope="report.load", purpose="report")
    assert jwt.get_unverified_header(token)["alg"] == algorithm
    claims = verifier.verify(token)
    assert claims.identity == IDENT
    assert (claims.scope, claims.purpose, claims.run, claims.kid) == (
        "report.load",
        "report",
        "run-7",
        "k",
    )
    payload = jwt.decode(token, options={"verify_signature": False})
    assert set(payload) >= {"iss", "aud", "sub", "iat", "nbf", "exp", "jti"}
    assert payload["sub"] == IDENT.principal


def test_expired_token_is_refused(key: TokenKey) -> None:
    issuer, verifier = _pair(key)
    token = issuer.issue(IDENT, scope="s", purpose="p", now=datetime.now(UTC) - timedelta(hours=1))
    with pytest.raises(TokenExpired):
        verifier.verify(token)


def test_token_not_valid_yet_is_refused(key: TokenKey) -> None:
    issuer, verifier = _pair(key)
    later = datetime.now(UTC) + timedelta(hours=1)
    with pytest.raises(TokenNotYetValid):
        verifier.verify(issuer.issue(IDENT, scope="s", purpose="p", not_before=later))
    with pytest.raises(TokenNotYetValid):
        verifier.verify(issuer.issue(IDENT, scope="s", purpose="p", now=later))


def test_wrong_audience_or_issuer_is_refused(key: TokenKey) -> None:
    token = TaskTokenIssuer(key, issuer=ISS, audience=AUD).issue(IDENT, scope="s", purpose="p")
    other_aud = TaskTokenVerifier([key.public()], issuer=ISS, audience="another-db")
    with pytest.raises(TokenAudienceInvalid):
        other_aud.verify(token)
    other_iss = TaskTokenVerifier([key.public()], issuer="someone-else", audience=AUD)
    with pytest.raises(TokenIssuerInvalid):
        other_iss.verify(token)


def test_unsigned_token_is_refused(key: TokenKey) -> None:
    issuer, verifier = _pair(key)
    payload = jwt.decode(
        issuer.issue(IDENT, scope="s", purpose="p"), options={"verify_signature": False}
    )
    unsigned = jwt.encode(payload, None, algorithm="none", headers={"kid": "k1"})
    with pytest.raises(TokenAlgorithmRejected, match="alg none"):
        verifier.verify(unsigned)


def _resign_hs256(token: str, secret: bytes) -> str:
    head, body, _ = token.split(".")
    header = json.loads(_unb64(head))
    header["alg"] = "HS256"
    head = _b64(json.dumps(header).encode())
    mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(mac)}"


def test_hs256_token_signed_with_the_public_key_is_refused(key: TokenKey) -> None:
    issuer, verifier = _pair(key)
    public_pem = key.verifying.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    forged = _resign_hs256(issuer.issue(IDENT, scope="s", purpose="p"), public_pem)
    with pytest.raises(TokenAlgorithmRejected):
        verifier.verify(forged)
    # even when HS256 is configured for another kid, the asymmetric kid keeps its algorithm
    mixed = TaskTokenVerifier(
        [key.public(), TokenKey.hmac(b"s" * 32, kid="shared")],
        issuer=ISS,
        audience=AUD,
        allow_symmetric=True,
    )
    with pytest.raises(TokenAlgorithmRejected, match="k1"):
        mixed.verify(forged)


def test_tampered_payload_is_refused(key: TokenKey) -> None:
    issuer, verifier = _pair(key)
    head, body, sig = issuer.issue(IDENT, scope="report.load", purpose="p").split(".")
    payload = json.loads(_unb64(body))
    payload["scope"] = "report.everything"
    tampered = f"{head}.{_b64(json.dumps(payload).encode())}.{sig}"
    with pytest.raises(TokenSignatureInvalid):
        verifier.verify(tampered)


def test_replayed_jti_is_refused_unless_replay_detection_is_off(key: TokenKey) -> None:
    issuer, verifier = _pair(key)
    token = issuer.issue(IDENT, scope="s", purpose="p")
    verifier.verify(token)
    with pytest.raises(TokenReplayed):
        verifier.verify(token)
    _, lenient = _pair(key, replay_cache=None)
    lenient.verify(token)
    lenient.verify(token)


def test_in_memory_replay_cache_forgets_expired_ids() -> None:
    cache = InMemoryReplayCache()
    past = datetime.now(UTC) - timedelta(seconds=1)
    for n in range(1024):
        assert cache.remember(f"old-{n}", past)
    assert cache.remember("fresh", datetime.now(UTC) + timedelta(minutes=5))
    assert len(cache) == 1
    assert not cache.remember("fresh", datetime.now(UTC) + timedelta(minutes=5))


def test_replay_cache_table_is_shared_between_verifiers_sqlite(
    key: TokenKey, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'jti.db'}"
    issuer = TaskTokenIssuer(key, issuer=ISS, audience=AUD)
    token = issuer.issue(IDENT, scope="s", purpose="p")
    first = TaskTokenVerifier([key], issuer=ISS, audience=AUD, replay_cache=SqlReplayCache(url))
    second = TaskTokenVerifier([key], issuer=ISS, audience=AUD, replay_cache=SqlReplayCache(url))
    first.verify(token)
    with pytest.raises(TokenReplayed):
        second.verify(token)


@pytest.mark.postgres
def test_replay_cache_table_on_postgres(key: TokenKey, postgres_dsn: str, pg_schema: str) -> None:
    pytest.importorskip("psycopg")
    url = postgres_dsn.replace("postgresql://", "postgresql+psycopg://")
    caches = [SqlReplayCache(url, schema=pg_schema) for _ in range(2)]
    issuer = TaskTokenIssuer(key, issuer=ISS, audience=AUD)
    token = issuer.issue(IDENT, scope="s", purpose="p")
    try:
        TaskTokenVerifier([key], issuer=ISS, audience=AUD, replay_cache=caches[0]).verify(token)
        with pytest.raises(TokenReplayed):
            TaskTokenVerifier([key], issuer=ISS, audience=AUD, replay_cache=caches[1]).verify(token)
    finally:
        for cache in caches:
            cache.close()


def test_key_rotation_by_kid() -> None:
    old, new = TokenKey.generate("2024-01"), TokenKey.generate("2024-07", "ES256")
    old_token = TaskTokenIssuer(old, issuer=ISS, audience=AUD).issue(IDENT, scope="s", purpose="p")
    new_token = TaskTokenIssuer(new, issuer=ISS, audience=AUD).issue(IDENT, scope="s", purpose="p")
    during = TaskTokenVerifier([new.public(), old.public()], issuer=ISS, audience=AUD)
    assert during.verify(old_token).kid == "2024-01"
    assert during.verify(new_token).kid == "2024-07"
    after = TaskTokenVerifier([new.public()], issuer=ISS, audience=AUD)
    with pytest.raises(TokenKeyUnknown, match="2024-01"):
        after.verify(old_token)


def test_keys_load_from_files_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    generated = TokenKey.generate("unused", "RS256")
    private_pem = generated.signing.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = generated.verifying.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "signer-2024.pem").write_bytes(private_pem)
    (tmp_path / "signer-2024.pub.pem").write_bytes(public_pem)
    signing = TokenKey.from_file(tmp_path / "signer-2024.pem")
    assert (signing.kid, signing.algorithm) == ("signer-2024", "RS256")
    verifying = TokenKey.from_file(tmp_path / "signer-2024.pub.pem", kid="signer-2024")
    assert verifying.signing is None
    monkeypatch.setenv("LGPD_TEST_TOKEN_KEY", private_pem.decode())
    from_env = TokenKey.from_env("LGPD_TEST_TOKEN_KEY", kid="signer-2024")
    token = TaskTokenIssuer(from_env, issuer=ISS, audience=AUD).issue(IDENT, scope="s", purpose="p")
    TaskTokenVerifier([verifying], issuer=ISS, audience=AUD).verify(token)
    with pytest.raises(TokenError, match="cannot read key file"):
        TokenKey.from_file(tmp_path / "missing.pem")
    with pytest.raises(TokenError, match="not a usable PEM"):
        TokenKey.from_pem("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----", kid="x")


def test_hs256_only_when_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LGPD_TEST_HMAC", "x" * 40)
    shared = TokenKey.from_env("LGPD_TEST_HMAC", kid="shared", algorithm="HS256")
    with pytest.raises(TokenAlgorithmRejected, match="allow_symmetric"):
        TaskTokenIssuer(shared, issuer=ISS, audience=AUD)
    with pytest.raises(TokenAlgorithmRejected, match="allow_symmetric"):
        TaskTokenVerifier([shared], issuer=ISS, audience=AUD)
    issuer = TaskTokenIssuer(shared, issuer=ISS, audience=AUD, allow_symmetric=True)
    verifier = TaskTokenVerifier([shared], issuer=ISS, audience=AUD, allow_symmetric=True)
    assert verifier.verify(issuer.issue(IDENT, scope="s", purpose="p")).identity == IDENT
    with pytest.raises(TokenError, match="at least 32 bytes"):
        TokenKey.hmac(b"short", kid="weak")


def test_other_jwts_do_not_pass_as_task_tokens(key: TokenKey) -> None:
    _, verifier = _pair(key)
    now = datetime.now(UTC)
    id_token = jwt.encode(
        {
            "iss": ISS,
            "aud": AUD,
            "sub": "maria",
            "iat": now,
            "nbf": now,
            "jti": "j",
            "exp": now + timedelta(minutes=5),
        },
        key.signing,
        algorithm="EdDSA",
        headers={"kid": "k1"},
    )
    with pytest.raises(TokenError, match="not a task token"):
        verifier.verify(id_token)
    with pytest.raises(TokenError, match="well-formed"):
        verifier.verify("not.a.jwt")


def test_token_missing_a_required_claim_is_refused(key: TokenKey) -> None:
    _, verifier = _pair(key)
    now = datetime.now(UTC)
    no_jti = jwt.encode(
        {
            "iss": ISS,
            "aud": AUD,
            "sub": "x",
            "iat": now,
            "nbf": now,
            "exp": now + timedelta(minutes=5),
        },
        key.signing,
        algorithm="EdDSA",
        headers={"kid": "k1", "typ": "lgpd-task+jwt"},
    )
    with pytest.raises(TokenError, match="'jti'"):
        verifier.verify(no_jti)
