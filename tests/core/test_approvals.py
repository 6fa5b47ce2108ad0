"""Approval requests: the state machine, four eyes, self-approval, expiry, audit trail."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from lgpd_tasks.approvals import ApprovalStore, Approver, NewRequest, Status
from lgpd_tasks.audit import AuditStore, EntryFilter
from lgpd_tasks.audit.schema import SCHEMA_VERSION
from lgpd_tasks.errors import ApprovalError, Reason
from lgpd_tasks.identity import TaskIdentity

ASKER = TaskIdentity("airflow", "contractor", "purge", run_id="manual__1", user="maria")


def _new(ttl: timedelta = timedelta(hours=1), min_approvers: int = 1) -> NewRequest:
    return NewRequest(
        fingerprint="f" * 64,
        scope="contractor.purge",
        purpose="contractor_report",
        legal_basis="legitimate_interest",
        statement_kind="delete",
        normalized="DELETE FROM staging.orders_raw",
        reasons=[Reason("unbounded_write", "approve", "DELETE without WHERE")],
        ttl=ttl,
        min_approvers=min_approvers,
    )


@pytest.fixture
def approvals(tmp_path: Path) -> ApprovalStore:
    return ApprovalStore(AuditStore.from_url(f"sqlite:///{tmp_path}/audit.db"))


def test_request_is_pending_and_deduplicated(approvals: ApprovalStore) -> None:
    first = approvals.request(ASKER, _new())
    again = approvals.request(ASKER, _new())
    assert first.status is Status.PENDING
    assert again.id == first.id
    assert first.requested_by == "airflow:contractor.purge"
    assert [r.id for r in approvals.list_requests(status="pending")] == [first.id]


def test_approval_records_who_when_and_why(approvals: ApprovalStore) -> None:
    request = approvals.request(ASKER, _new())
    done = approvals.approve(request.id, Approver("joao"), "checked the staging table")
    assert done.status is Status.APPROVED
    assert done.usable
    (decision,) = done.decisions
    assert (decision.approver, decision.reason, decision.verified) == (
        "joao",
        "checked the staging table",
        False,
    )
    events = [e.details["event"] for e in approvals.audit.entries(EntryFilter(kind="approval"))]
    assert events == ["requested", "approve"]
    assert approvals.audit.verify().ok


def test_requester_cannot_approve_own_request(approvals: ApprovalStore) -> None:
    request = approvals.request(ASKER, _new())
    with pytest.raises(ApprovalError, match="asked for approval request"):
        approvals.approve(request.id, Approver("maria"))
    with pytest.raises(ApprovalError, match="cannot decide"):
        approvals.approve(request.id, Approver("airflow:contractor.purge"))


def test_denial_needs_a_reason_and_is_final(approvals: ApprovalStore) -> None:
    request = approvals.request(ASKER, _new())
    with pytest.raises(ApprovalError, match="needs a reason"):
        approvals.deny(request.id, Approver("joao"), "  ")
    denied = approvals.deny(request.id, Approver("joao"), "purge window is closed")
    assert denied.status is Status.DENIED
    with pytest.raises(ApprovalError, match="already denied"):
        approvals.approve(request.id, Approver("ana"))


def test_four_eyes_needs_two_different_approvers(approvals: ApprovalStore) -> None:
    request = approvals.request(ASKER, _new(min_approvers=2))
    once = approvals.approve(request.id, Approver("joao"))
    assert once.status is Status.PENDING
    with pytest.raises(ApprovalError, match="already decided"):
        approvals.approve(request.id, Approver("joao"))
    twice = approvals.approve(request.id, Approver("ana"))
    assert twice.status is Status.APPROVED
    assert [d.approver for d in twice.decisions] == ["joao", "ana"]


def test_timeout_never_approves(approvals: ApprovalStore) -> None:
    request = approvals.request(ASKER, _new(ttl=timedelta(milliseconds=200)))
    time.sleep(0.3)
    assert approvals.get(request.id).status is Status.EXPIRED
    with pytest.raises(ApprovalError, match="already expired"):
        approvals.approve(request.id, Approver("joao"))
    events = [e.details["event"] for e in approvals.audit.entries(EntryFilter(kind="approval"))]
    assert events == ["requested", "expired"]


def test_an_approval_is_used_once(approvals: ApprovalStore) -> None:
    request = approvals.request(ASKER, _new())
    approvals.approve(request.id, Approver("joao"))
    assert approvals.consume(request.id, ASKER) is True
    assert approvals.consume(request.id, ASKER) is False
    assert not approvals.get(request.id).usable


def test_unknown_request_is_an_error(approvals: ApprovalStore) -> None:
    with pytest.raises(ApprovalError, match="no approval request 'apr_nope'"):
        approvals.get("apr_nope")


def test_policy_approvers_list_is_enforced(tmp_path: Path) -> None:
    from lgpd_tasks.policy.model import ApprovalsSpec

    store = ApprovalStore(
        AuditStore.from_url(f"sqlite:///{tmp_path}/a.db"),
        ApprovalsSpec(approvers=["dpo", "group:privacy"]),
    )
    request = store.request(ASKER, _new())
    with pytest.raises(ApprovalError, match="not among the policy's approvers"):
        store.approve(request.id, Approver("joao"))
    # groups count only when a verified token carries them
    with pytest.raises(ApprovalError, match="not among the policy's approvers"):
        store.approve(request.id, Approver("ana", groups=("privacy",)))
    member = Approver("ana", verified=True, issuer="https://idp", groups=("privacy",))
    assert store.approve(request.id, member).status is Status.APPROVED


def test_unverified_approver_refused_when_policy_requires_verification(tmp_path: Path) -> None:
    from lgpd_tasks.policy.model import ApprovalsSpec

    store = ApprovalStore(
        AuditStore.from_url(f"sqlite:///{tmp_path}/a.db"),
        ApprovalsSpec(require_verified_identity=True),
    )
    request = store.request(ASKER, _new())
    with pytest.raises(ApprovalError, match="verified approver identity"):
        store.approve(request.id, Approver("joao"))
    done = store.approve(request.id, Approver("joao", verified=True, issuer="https://idp"))
    assert done.decisions[0].verified


def _push_expiry_into_the_past(store: ApprovalStore, request_id: str) -> None:
    """As if the request had been asked for a month ago (its TTL long gone)."""
    from sqlalchemy import update

    from lgpd_tasks.audit.schema import approval_requests

    with store.engine.begin() as conn:
        conn.execute(
            update(approval_requests)
            .where(approval_requests.c.id == request_id)
            .values(expires_at="2020-01-02T00:00:00.000000+00:00")
        )


def test_an_unused_approval_expires_and_cannot_be_used(approvals: ApprovalStore) -> None:
    request = approvals.request(ASKER, _new())
    approvals.approve(request.id, Approver("joao"))
    _push_expiry_into_the_past(approvals, request.id)
    # the row still says approved, but neither the property nor the store lets it admit a run
    with approvals.engine.connect() as conn:
        from sqlalchemy import text

        assert conn.execute(text("SELECT status FROM lgpd_approval_requests")).scalar() == (
            "approved"
        )
    assert approvals.consume(request.id, ASKER) is False
    expired = approvals.get(request.id)
    assert expired.status is Status.EXPIRED
    assert not expired.usable
    assert [r.id for r in approvals.list_requests(status="approved")] == []
    (record,) = [
        e
        for e in approvals.audit.entries(EntryFilter(kind="approval"))
        if e.details["event"] == "expired"
    ]
    assert record.details["was"] == "approved"
    assert record.details["expires_at"] == "2020-01-02T00:00:00.000000+00:00"
    assert approvals.audit.verify().ok


def test_a_used_approval_does_not_expire(approvals: ApprovalStore) -> None:
    request = approvals.request(ASKER, _new())
    approvals.approve(request.id, Approver("joao"))
    assert approvals.consume(request.id, ASKER) is True
    _push_expiry_into_the_past(approvals, request.id)
    assert approvals.expire_due() == []
    assert approvals.get(request.id).status is Status.APPROVED


def test_a_request_is_bound_to_its_partition(approvals: ApprovalStore) -> None:

    january = replace(ASKER, partition="2023-01-01")
    request = approvals.request(january, _new())
    assert request.partition == "2023-01-01"
    assert request.to_dict()["partition"] == "2023-01-01"
    approvals.approve(request.id, Approver("joao"))
    assert approvals.find("f" * 64, january) is not None
    # the same run and task, another partition: the approval is not found
    assert approvals.find("f" * 64, replace(ASKER, partition="2099-01-01")) is None
    assert approvals.find("f" * 64, ASKER) is None
    other = approvals.request(replace(ASKER, partition="2099-01-01"), _new())
    assert other.id != request.id
    assert other.status is Status.PENDING
    (asked, *_) = approvals.audit.entries(EntryFilter(kind="approval"))
    assert asked.details["partition"] == "2023-01-01"


def test_a_group_entry_is_never_matched_by_a_name(tmp_path: Path) -> None:
    from lgpd_tasks.approvals.identity import resolve_approver
    from lgpd_tasks.policy.model import ApprovalsSpec

    rules = ApprovalsSpec(approvers=["group:dpo"])
    store = ApprovalStore(AuditStore.from_url(f"sqlite:///{tmp_path}/a.db"), rules)
    request = store.request(ASKER, _new())
    with pytest.raises(ApprovalError, match="'group:dpo' is not an approver name"):
        resolve_approver(rules, name="group:dpo")
    for impostor in (Approver("group:dpo"), Approver("group:dpo", verified=True)):
        with pytest.raises(ApprovalError, match="not an approver name"):
            store.approve(request.id, impostor)
    with pytest.raises(ApprovalError, match="not among the policy's approvers"):
        store.approve(request.id, Approver("dpo"))
    with pytest.raises(ApprovalError, match="not among the policy's approvers"):
        store.approve(request.id, Approver("ana", groups=("dpo",)))  # unverified groups
    assert store.get(request.id).status is Status.PENDING
    member = Approver("ana", verified=True, issuer="https://idp", groups=("dpo",))
    assert store.approve(request.id, member).status is Status.APPROVED


def test_cli_refuses_a_group_as_approver_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lgpd_tasks.cli import main

    url = f"sqlite:///{tmp_path}/a.db"
    request = ApprovalStore.from_url(url).request(ASKER, _new())
    policy = tmp_path / "policy.yaml"
    example = Path(__file__).parents[2] / "examples" / "dagster" / "policy.yaml"
    policy.write_text(
        example.read_text().replace("approvers: [maria.souza]", "approvers: ['group:dpo']")
    )
    argv = ["approvals", "approve", request.id, "--db", url, "--policy", str(policy)]
    assert main([*argv, "--as", "group:dpo", "--reason", "x"]) == 1
    assert "'group:dpo' is not an approver name" in capsys.readouterr().err
    assert ApprovalStore.from_url(url).get(request.id).status is Status.PENDING


def test_a_version_3_store_gains_the_partition_column(tmp_path: Path) -> None:
    import sqlite3

    url = f"sqlite:///{tmp_path}/old.db"
    store = ApprovalStore.from_url(url)
    old = store.request(ASKER, _new())
    with sqlite3.connect(tmp_path / "old.db") as raw:
        raw.execute("ALTER TABLE lgpd_approval_requests DROP COLUMN partition_key")
        raw.execute("ALTER TABLE lgpd_approval_requests DROP COLUMN map_key")
        raw.execute("ALTER TABLE lgpd_approval_requests DROP COLUMN bound_values")
        raw.execute("UPDATE lgpd_meta SET value = '3' WHERE key = 'schema_version'")
    from lgpd_tasks.audit import dispose_engines

    dispose_engines()
    again = ApprovalStore.from_url(url)
    assert again.audit.init() == SCHEMA_VERSION
    assert again.get(old.id).partition is None

    new = again.request(replace(ASKER, partition="p1"), _new())
    assert again.get(new.id).partition == "p1"
    assert again.audit.verify().ok


def test_a_version_4_store_gains_the_mapped_instance_column(tmp_path: Path) -> None:
    import sqlite3

    from lgpd_tasks.audit import dispose_engines

    url = f"sqlite:///{tmp_path}/old.db"
    old = ApprovalStore.from_url(url).request(ASKER, _new())
    with sqlite3.connect(tmp_path / "old.db") as raw:
        raw.execute("ALTER TABLE lgpd_approval_requests DROP COLUMN map_key")
        raw.execute("ALTER TABLE lgpd_approval_requests DROP COLUMN bound_values")
        raw.execute("UPDATE lgpd_meta SET value = '4' WHERE key = 'schema_version'")
    dispose_engines()
    again = ApprovalStore.from_url(url)
    assert again.audit.init() == SCHEMA_VERSION == 5
    with sqlite3.connect(tmp_path / "old.db") as raw:
        kinds = {r[1]: r[2] for r in raw.execute("PRAGMA table_info(lgpd_approval_requests)")}
    assert (kinds["map_key"], kinds["bound_values"]) == ("VARCHAR(250)", "VARCHAR(200)")
    assert again.get(old.id).instance is None
    found = again.find(old.fingerprint, ASKER)
    assert found is not None
    assert found.id == old.id
    mapped = again.request(replace(ASKER, map_index=2), _new())
    assert again.get(mapped.id).instance == "2"
    assert again.audit.verify().ok


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"map_index": 0}, {"map_index": 1}),
        ({"map_index": 0}, {}),
        ({}, {"map_index": 0}),
        ({"mapping_key": "sp"}, {"mapping_key": "rj"}),
        ({"mapping_key": "0"}, {"map_index": 1}),
    ],
    ids=["airflow-other-index", "airflow-unmapped", "airflow-mapped", "dagster-other-key", "mixed"],
)
def test_an_approval_admits_only_the_mapped_instance_that_asked(
    tmp_path: Path, first: dict[str, Any], second: dict[str, Any]
) -> None:
    """Mapped instances of one task run the same statement; approving one must not admit
    the others (each asks, and is approved, on its own)."""
    store = ApprovalStore.from_url(f"sqlite:///{tmp_path}/a.db")
    asker, other = replace(ASKER, **first), replace(ASKER, **second)
    request = store.request(asker, _new())
    assert request.instance == asker.instance
    store.approve(request.id, Approver("ana"), "ok")
    assert store.find(request.fingerprint, other) is None
    found = store.find(request.fingerprint, asker)
    assert found is not None
    assert found.id == request.id
    assert found.usable
    theirs = store.request(other, _new())
    assert theirs.id != request.id
    assert theirs.status is Status.PENDING
    assert theirs.instance == other.instance
    (record,) = [
        r.entry
        for r in store.audit.records(EntryFilter(kind="approval"))
        if r.entry.details.get("request_id") == theirs.id
        and r.entry.details.get("event") == "requested"
    ]
    assert record.details["instance"] == other.instance


def test_mapped_instances_get_distinct_attempt_keys() -> None:
    """Per-attempt database roles are named from the attempt key: two mapped instances
    running at once must not share one."""
    keys = {
        TaskIdentity("dagster", "job", "op", run_id="r", mapping_key=k).attempt_key
        for k in ("sp", "rj", None)
    }
    keys |= {TaskIdentity("airflow", "d", "t", run_id="r", map_index=i).attempt_key for i in (0, 1)}
    assert len(keys) == 5


@pytest.mark.postgres
def test_a_version_3_store_on_postgres_gains_both_request_columns(
    postgres_dsn: str, pg_schema: str
) -> None:
    import psycopg

    from lgpd_tasks.audit import dispose_engines

    url = f"{postgres_dsn}?options=-csearch_path%3D{pg_schema}"
    old = ApprovalStore.from_url(url).request(ASKER, _new())
    with psycopg.connect(postgres_dsn, autocommit=True) as raw:
        raw.execute(f'ALTER TABLE "{pg_schema}".lgpd_approval_requests DROP COLUMN partition_key')
        raw.execute(f'ALTER TABLE "{pg_schema}".lgpd_approval_requests DROP COLUMN map_key')
        raw.execute(f'ALTER TABLE "{pg_schema}".lgpd_approval_requests DROP COLUMN bound_values')
        raw.execute(
            f"UPDATE \"{pg_schema}\".lgpd_meta SET value = '3' WHERE key = 'schema_version'"
        )
    dispose_engines()
    again = ApprovalStore.from_url(url)
    assert again.audit.init() == SCHEMA_VERSION
    assert again.get(old.id).instance is None
    mapped = again.request(replace(ASKER, map_index=1, partition="2024-05"), _new())
    stored = again.get(mapped.id)
    assert (stored.instance, stored.partition) == ("1", "2024-05")
    assert again.audit.verify().ok
