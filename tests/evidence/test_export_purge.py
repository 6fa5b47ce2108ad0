"""audit export to S3 (moto server, real HTTP) and to a folder; audit purge with checkpoints."""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from lgpd_tasks.audit import AuditStore, record_hash
from lgpd_tasks.audit.schema import SCHEMA_VERSION
from lgpd_tasks.cli import main
from lgpd_tasks.errors import EvidenceError
from lgpd_tasks.evidence.export import export_audit, exported_positions, range_digest
from lgpd_tasks.evidence.objects import open_target
from lgpd_tasks.evidence.purge import purge_before
from lgpd_tasks.identity import TaskIdentity

from .conftest import fill

ADMIN = TaskIdentity.for_cli("dpo")


def _objects(s3: Any, bucket: str) -> list[str]:
    found = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    return sorted(o["Key"] for o in found)


def _get(s3: Any, bucket: str, key: str) -> bytes:
    return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def test_export_to_s3_writes_batches_and_a_manifest_with_the_chain_head(
    s3: Any, s3_endpoint: str, audit_url: str
) -> None:
    s3.create_bucket(Bucket="audit-plain")
    store = AuditStore.from_url(audit_url)
    fill(store, 25)
    code = main(
        [
            "audit",
            "export",
            "--db",
            audit_url,
            "--to",
            "s3://audit-plain/lgpd",
            "--endpoint-url",
            s3_endpoint,
            "--batch-records",
            "10",
        ]
    )
    assert code == 0
    keys = _objects(s3, "audit-plain")
    assert keys == [
        "lgpd/batches/000000000001-000000000010.jsonl",
        "lgpd/batches/000000000011-000000000020.jsonl",
        "lgpd/batches/000000000021-000000000025.jsonl",
        "lgpd/manifests/000000000025.json",
    ]
    manifest = json.loads(_get(s3, "audit-plain", "lgpd/manifests/000000000025.json"))
    head = store.verify().head
    assert manifest["head_hash"] == head
    assert manifest["range"] == {"first_seq": 1, "last_seq": 25}
    assert manifest["counts"]["records"] == 25
    assert manifest["counts"]["by_kind"] == {"note": 25}
    assert manifest["previous"] is None
    assert manifest["object_lock"] == {"mode": None, "retain_until": None}
    exported: list[dict[str, Any]] = []
    for batch in manifest["batches"]:
        body = _get(s3, "audit-plain", f"lgpd/{batch['key']}")
        assert hashlib.sha256(body).hexdigest() == batch["sha256"]
        rows = [json.loads(line) for line in body.decode().splitlines()]
        assert batch["chain_digest"] == range_digest(r["hash"] for r in rows)
        exported.extend(rows)
    # every exported record recomputes to its hash and follows the one before it
    assert [r["seq"] for r in exported] == list(range(1, 26))
    for before, row in zip([None, *exported], exported, strict=False):
        assert record_hash(row) == row["hash"]
        if before is not None:
            assert row["prev_hash"] == before["hash"]


def test_export_resumes_with_only_the_new_records(
    s3: Any, s3_endpoint: str, audit_url: str
) -> None:
    s3.create_bucket(Bucket="audit-resume")
    store = AuditStore.from_url(audit_url)
    target = open_target("s3://audit-resume/x", endpoint_url=s3_endpoint)
    fill(store, 5)
    first = export_audit(store, target)
    assert (first.first_seq, first.last_seq, first.records) == (1, 5, 5)
    again = export_audit(store, target)
    assert again.records == 0
    fill(store, 3)
    second = export_audit(store, target)
    assert (second.first_seq, second.last_seq, second.records) == (6, 8, 3)
    manifest = json.loads(_get(s3, "audit-resume", "x/manifests/000000000008.json"))
    assert manifest["previous"]["last_seq"] == 5
    assert manifest["previous"]["manifest"] == first.manifest
    assert manifest["batches"][0]["first_prev_hash"] == first.head
    assert exported_positions(store) == {"s3://audit-resume/x": 8}


def test_object_lock_bucket_gets_compliance_retention_from_the_policy(
    s3: Any, s3_endpoint: str, audit_url: str, tmp_path: Path
) -> None:
    s3.create_bucket(Bucket="audit-locked", ObjectLockEnabledForBucket=True)
    policy = Path(__file__).parents[1] / "fixtures" / "policy.yaml"  # longest retention 180d
    store = AuditStore.from_url(audit_url)
    fill(store, 4)
    code = main(
        [
            "audit",
            "export",
            "--db",
            audit_url,
            "--to",
            "s3://audit-locked/a",
            "--endpoint-url",
            s3_endpoint,
            "--policy",
            str(policy),
            "--format",
            "parquet",
        ]
    )
    assert code == 0
    keys = _objects(s3, "audit-locked")
    assert keys == ["a/batches/000000000001-000000000004.parquet", "a/manifests/000000000004.json"]
    for key in keys:
        head = s3.head_object(Bucket="audit-locked", Key=key)
        assert head["ObjectLockMode"] == "COMPLIANCE"
        until = head["ObjectLockRetainUntilDate"]
        expected = datetime.now(UTC) + timedelta(days=180)
        assert abs((until - expected).total_seconds()) < 3600
    manifest = json.loads(_get(s3, "audit-locked", "a/manifests/000000000004.json"))
    assert manifest["object_lock"]["mode"] == "COMPLIANCE"
    frame = pd.read_parquet(io.BytesIO(_get(s3, "audit-locked", keys[0])))
    assert list(frame["seq"]) == [1, 2, 3, 4]
    assert record_hash(frame.iloc[2].to_dict() | {"seq": 3, "attempt": 1}) == frame.iloc[2]["hash"]


def test_folder_target_works_the_same_way(audit_url: str, tmp_path: Path) -> None:
    store = AuditStore.from_url(audit_url)
    fill(store, 3)
    folder = tmp_path / "evidence"
    assert main(["audit", "export", "--db", audit_url, "--to", folder.as_uri()]) == 0
    manifest = json.loads((folder / "manifests" / "000000000003.json").read_text())
    assert manifest["head_hash"] == store.verify().head
    batch = folder / manifest["batches"][0]["key"]
    assert hashlib.sha256(batch.read_bytes()).hexdigest() == manifest["batches"][0]["sha256"]
    fill(store, 2)
    assert main(["audit", "export", "--db", audit_url, "--to", folder.as_uri()]) == 0
    assert (folder / "manifests" / "000000000005.json").exists()


def test_export_refuses_a_broken_chain(audit_url: str, tmp_path: Path) -> None:
    store = AuditStore.from_url(audit_url)
    fill(store, 3)
    with sqlite3.connect(audit_url.removeprefix("sqlite:///")) as raw:
        raw.execute("UPDATE lgpd_audit_log SET task = 'other' WHERE seq = 2")
    assert main(["audit", "export", "--db", audit_url, "--to", str(tmp_path / "out")]) == 1
    assert not (tmp_path / "out" / "manifests").exists()


def _cutoff(store: AuditStore, seq: int) -> datetime:
    """The time record ``seq`` was written: purging before it removes the records before it."""
    entry = next(e for e in store.entries() if e.seq == seq)
    return datetime.fromisoformat(entry.ts)


def test_purge_keeps_the_chain_verifiable_and_still_detects_tampering(
    audit_url: str, tmp_path: Path
) -> None:
    store = AuditStore.from_url(audit_url)
    fill(store, 6)
    fill(store, 4)
    before = _cutoff(store, 7).isoformat()
    assert main(["audit", "export", "--db", audit_url, "--to", str(tmp_path / "e")]) == 0
    assert main(["audit", "purge", "--db", audit_url, "--before", before]) == 0
    remaining = store.entries()
    assert [e.seq for e in remaining] == [7, 8, 9, 10, 11]
    checkpoint = remaining[-1]
    assert checkpoint.kind == "purge"
    assert (checkpoint.details["first_seq"], checkpoint.details["last_seq"]) == (1, 6)
    manifest = json.loads((tmp_path / "e" / "manifests" / "000000000010.json").read_text())
    exported = [
        json.loads(line)
        for b in manifest["batches"]
        for line in (tmp_path / "e" / b["key"]).read_text().splitlines()
    ]
    assert checkpoint.details["last_hash"] == exported[5]["hash"]
    assert checkpoint.details["range_digest"] == range_digest(r["hash"] for r in exported[:6])
    assert main(["audit", "verify", "--db", audit_url]) == 0
    # tampering with what remains is still found
    with sqlite3.connect(audit_url.removeprefix("sqlite:///")) as raw:
        raw.execute("UPDATE lgpd_audit_log SET task = 'forged' WHERE seq = 8")
    assert main(["audit", "verify", "--db", audit_url]) == 1
    with sqlite3.connect(audit_url.removeprefix("sqlite:///")) as raw:
        raw.execute("UPDATE lgpd_audit_log SET task = 'extract' WHERE seq = 8")
        raw.execute("DELETE FROM lgpd_audit_log WHERE seq = 7")
    result = store.verify()
    assert not result.ok
    assert result.breaks[0].seq == 8


def test_removing_the_purge_checkpoint_breaks_the_chain(audit_url: str, tmp_path: Path) -> None:
    store = AuditStore.from_url(audit_url)
    fill(store, 2)
    fill(store, 2)
    export_audit(store, open_target(str(tmp_path / "e")))
    result = purge_before(store, _cutoff(store, 3), identity=ADMIN)
    assert (result.first_seq, result.last_seq) == (1, 2)
    assert store.verify().ok
    with sqlite3.connect(audit_url.removeprefix("sqlite:///")) as raw:
        raw.execute("DELETE FROM lgpd_audit_log WHERE kind = 'purge'")
    assert not store.verify().ok


def test_purge_refuses_records_no_export_target_received(audit_url: str, tmp_path: Path) -> None:
    store = AuditStore.from_url(audit_url)
    fill(store, 5)
    with pytest.raises(EvidenceError, match="no export target"):
        purge_before(store, datetime.now(UTC), identity=ADMIN)
    # a target that received #1..#5 blocks a purge of #1..#6
    target = open_target(str(tmp_path / "e"))
    export_audit(store, target)
    fill(store, 1)
    fill(store, 1)
    cutoff = _cutoff(store, 7)
    with pytest.raises(EvidenceError, match=r"received only up to #5"):
        purge_before(store, cutoff, identity=ADMIN)
    assert store.count() == 7
    assert main(["audit", "purge", "--db", audit_url, "--before", cutoff.isoformat()]) == 1
    export_audit(store, target)
    assert purge_before(store, cutoff, identity=ADMIN).records == 6
    assert store.verify().ok


def test_an_older_store_is_upgraded_in_place(audit_url: str) -> None:
    store = AuditStore.from_url(audit_url)
    fill(store, 2)
    with sqlite3.connect(audit_url.removeprefix("sqlite:///")) as raw:
        for table in (
            "lgpd_subject_access",
            "lgpd_subject_digests",
            "lgpd_subject_link_blocks",
            "lgpd_exports",
        ):
            raw.execute(f"DROP TABLE {table}")
        raw.execute("UPDATE lgpd_meta SET value = '1' WHERE key = 'schema_version'")
    again = AuditStore(store.engine, url=audit_url)
    assert again.init() == SCHEMA_VERSION == 5
    with sqlite3.connect(audit_url.removeprefix("sqlite:///")) as raw:
        assert raw.execute("SELECT value FROM lgpd_meta").fetchone() == (str(SCHEMA_VERSION),)
        assert raw.execute("SELECT count(*) FROM lgpd_exports").fetchone() == (0,)
    assert again.verify().ok


def test_a_version_2_trail_is_folded_into_blocks(audit_url: str, masking_key: str) -> None:
    """One row per subject (version 2) becomes blocks; the person is still found."""
    import uuid

    from lgpd_tasks.evidence.subjects import SubjectHasher, accesses_of_digest, trail_key

    store = AuditStore.from_url(audit_url)
    fill(store, 2)
    entries = store.entries()
    hasher = SubjectHasher(trail_key(None))
    people = [f"{n:011d}" for n in range(1, 70_001)]
    subjects = [hasher.subject(p) for p in people]
    first, second = (uuid.UUID(e.record_id).bytes for e in entries[:2])
    pk = hasher.primary_key("main.customers", 7)
    assert pk is not None
    with sqlite3.connect(audit_url.removeprefix("sqlite:///")) as raw:
        raw.execute("DROP TABLE lgpd_subject_digests")
        raw.execute("DROP TABLE lgpd_subject_link_blocks")
        raw.execute("CREATE TABLE lgpd_subject_trail (access BLOB NOT NULL, subject BLOB NOT NULL)")
        raw.execute("CREATE INDEX ix_lgpd_subject_trail_subject ON lgpd_subject_trail (subject)")
        raw.execute(
            "CREATE TABLE lgpd_subject_links (pk BLOB, subject BLOB, PRIMARY KEY (pk, subject))"
        )
        raw.executemany(
            "INSERT INTO lgpd_subject_trail VALUES (?, ?)", [(first, d) for d in subjects]
        )
        raw.execute("INSERT INTO lgpd_subject_trail VALUES (?, ?)", (second, pk))
        raw.execute("INSERT INTO lgpd_subject_links VALUES (?, ?)", (pk, subjects[-1]))
        raw.execute("UPDATE lgpd_meta SET value = '2' WHERE key = 'schema_version'")
    again = AuditStore(store.engine, url=audit_url)
    assert again.init() == SCHEMA_VERSION
    with sqlite3.connect(audit_url.removeprefix("sqlite:///")) as raw:
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert not tables & {"lgpd_subject_trail", "lgpd_subject_links"}
        blocks = raw.execute(
            "SELECT part, count, length(digests) FROM lgpd_subject_digests ORDER BY access, part"
        ).fetchall()
    # 70,000 digests of the first statement in two blocks, the primary key of the second
    assert sorted(blocks) == [(0, 1, 16), (0, 65_536, 65_536 * 16), (1, 4_464, 4_464 * 16)]
    ids = [e.record_id for e in entries[:2]]
    assert accesses_of_digest(again, hasher.subject(people[3])) == {ids[0]}
    assert accesses_of_digest(again, hasher.subject(people[-1])) == set(ids)
    assert accesses_of_digest(again, hasher.subject("99999999999")) == set()
