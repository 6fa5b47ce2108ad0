"""``approvals approve --token``: the verified subject is recorded; policy may require one."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lgpd_tasks.approvals import ApprovalStore, NewRequest
from lgpd_tasks.audit import AuditStore, EntryFilter
from lgpd_tasks.cli import main
from lgpd_tasks.credentials.tokens import TokenKey
from lgpd_tasks.errors import Reason
from lgpd_tasks.identity import TaskIdentity
from tests.idp import IDP, id_token

ASKER = TaskIdentity("airflow", "contractor", "purge", run_id="manual__1", user="maria")


@pytest.fixture(scope="module")
def key() -> TokenKey:
    return TokenKey.generate("idp-1", "ES256")


@pytest.fixture
def world(tmp_path: Path, key: TokenKey) -> dict[str, Any]:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [key.public_jwk()]}))
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    store = ApprovalStore(AuditStore.from_url(url))
    request = store.request(
        ASKER,
        NewRequest(
            fingerprint="f" * 64,
            scope="contractor.purge",
            purpose="contractor_report",
            legal_basis="legitimate_interest",
            statement_kind="delete",
            normalized="DELETE FROM staging.orders_raw",
            reasons=[Reason("unbounded_write", "approve", "DELETE without WHERE")],
            ttl=timedelta(hours=1),
        ),
    )

    def policy(require: bool, approvers: list[str]) -> str:
        path = tmp_path / f"policy-{require}-{len(approvers)}.yaml"
        path.write_text(
            f"""\
version: 1
approvals:
  require_verified_identity: {str(require).lower()}
  approvers: {json.dumps(approvers)}
  oidc:
    issuer: {IDP}
    audience: lgpd-tasks
    jwks: {jwks}
"""
        )
        return str(path)

    return {"url": url, "store": store, "id": request.id, "policy": policy}


def _approve(world: dict[str, Any], *extra: str) -> int:
    return main(["approvals", "approve", world["id"], "--db", world["url"], *extra])


def test_approve_with_token_records_the_verified_subject(
    world: dict[str, Any], key: TokenKey
) -> None:
    policy = world["policy"](True, ["group:dpo"])
    assert _approve(world, "--policy", policy, "--token", id_token(key)) == 0
    (decision,) = world["store"].get(world["id"]).decisions
    assert (decision.approver, decision.verified, decision.issuer) == ("joao", True, IDP)
    events = world["store"].audit.entries(EntryFilter(kind="approval"))
    assert events[-1].details["verified"] is True
    assert events[-1].details["approver"] == "joao"


def test_unverified_approval_is_refused_when_the_policy_requires_identity(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _approve(world, "--policy", world["policy"](True, []), "--as", "joao") == 1
    assert "requires a verified approver identity" in capsys.readouterr().err
    assert world["store"].get(world["id"]).decisions == ()


def test_unverified_approval_is_recorded_as_such_when_allowed(world: dict[str, Any]) -> None:
    assert _approve(world, "--policy", world["policy"](False, []), "--as", "joao") == 0
    (decision,) = world["store"].get(world["id"]).decisions
    assert (decision.approver, decision.verified) == ("joao", False)


def test_token_outside_the_approver_groups_is_refused(
    world: dict[str, Any], key: TokenKey, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = world["policy"](True, ["group:dpo"])
    assert _approve(world, "--policy", policy, "--token", id_token(key, groups=("sales",))) == 1
    assert "not among the policy's approvers" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(
            lambda k: id_token(k, exp=datetime.now(UTC) - timedelta(hours=1)),
            "expired",
            id="expired",
        ),
        pytest.param(
            lambda k: id_token(TokenKey.generate("idp-1", "ES256")), "signature", id="forged"
        ),
        pytest.param(lambda k: id_token(k, iss="https://evil.example"), "issued by", id="issuer"),
    ],
)
def test_bad_tokens_do_not_approve(
    world: dict[str, Any],
    key: TokenKey,
    capsys: pytest.CaptureFixture[str],
    make: Any,
    message: str,
) -> None:
    assert _approve(world, "--policy", world["policy"](True, []), "--token", make(key)) == 1
    assert message in capsys.readouterr().err
    assert world["store"].get(world["id"]).decisions == ()


def test_token_from_stdin_and_the_asker_cannot_approve_with_aid_token(
    world: dict[str, Any],
    key: TokenKey,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(id_token(key, sub="maria") + "\n"))
    assert _approve(world, "--policy", world["policy"](True, []), "--token", "-") == 1
    assert "cannot decide" in capsys.readouterr().err


def test_token_without_a_policy_is_a_clear_error(
    world: dict[str, Any], key: TokenKey, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _approve(world, "--token", id_token(key)) == 2
    assert "--token needs --policy" in capsys.readouterr().err


def test_a_single_use_token_decides_once(world: dict[str, Any], key: TokenKey) -> None:
    from lgpd_tasks.approvals.identity import resolve_approver
    from lgpd_tasks.credentials.tokens import InMemoryReplayCache
    from lgpd_tasks.errors import TokenReplayed
    from lgpd_tasks.policy import load_policy

    settings = load_policy(world["policy"](True, ["group:dpo"])).approvals
    used = InMemoryReplayCache()
    token = id_token(key)
    assert resolve_approver(settings, token=token, single_use=used).name == "joao"
    with pytest.raises(TokenReplayed, match="already used"):
        resolve_approver(settings, token=token, single_use=used)
    # what is remembered is a digest, never the token itself
    assert len(used) == 1
    assert token not in repr(used._seen)
    # without single_use (the CLI, Airflow's UI) the same token may decide again
    assert resolve_approver(settings, token=token).name == "joao"
