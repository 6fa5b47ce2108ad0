"""The audit store: an append-only, hash-chained log of statements, masking steps and approvals."""

from __future__ import annotations

import functools
import hashlib
import json
import sqlite3
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Select, func, inspect, select, text
from sqlalchemy.exc import SQLAlchemyError

from lgpd_tasks.audit.engine import (
    get_engine,
    parse_db_url,
    redact_url,
    refuse_in_memory,
    sqlite_file,
)
from lgpd_tasks.audit.schema import (
    SCHEMA_VERSION,
    V2_TRAIL_TABLES,
    approval_requests,
    audit_log,
    meta,
    metadata,
    subject_digests,
    subject_links,
)
from lgpd_tasks.errors import AuditChainBroken, AuditStoreUnusable, AuditUnavailable, ChainBreak
from lgpd_tasks.identity import TaskIdentity

GENESIS = "0" * 64
"""The ``prev_hash`` of the first record of a chain."""

# PostgreSQL advisory lock taken by every writer of the chain (an arbitrary, fixed key)
_PG_CHAIN_LOCK = 0x6C67_7064_6175_6474 & 0x7FFF_FFFF_FFFF_FFFF

#: The fields each record's hash covers, in the canonical JSON.
HASHED_FIELDS = (
    "seq",
    "record_id",
    "ts",
    "kind",
    "ref",
    "orchestrator",
    "pipeline",
    "task",
    "run_id",
    "attempt",
    "principal",
    "scope",
    "purpose",
    "legal_basis",
    "decision",
    "fingerprint",
    "details",
    "prev_hash",
)


#: Digests (or links) per block when a version 2 trail is folded into blocks.
_FOLD_BLOCK = 65_536


def _add_request_columns(conn: Connection) -> None:
    """Versions 4 and 5: approval requests name their partition and mapped instance and bind
    their values (older requests have none of these)."""
    present = {c["name"] for c in inspect(conn).get_columns(approval_requests.name)}
    for name in ("partition_key", "map_key", "bound_values"):
        if name not in present:
            kind = approval_requests.c[name].type.compile(dialect=conn.dialect)
            conn.execute(text(f"ALTER TABLE {approval_requests.name} ADD COLUMN {name} {kind}"))


def _fold_v2_trail(conn: Connection) -> None:
    """Pack a version 2 trail (one row per subject, one per link) into blocks, then drop it."""
    present = set(inspect(conn).get_table_names())
    trail, links = V2_TRAIL_TABLES
    if trail in present:
        rows = conn.execute(text(f"SELECT access, subject FROM {trail} ORDER BY access"))
        access: bytes | None = None
        part = 0
        chunk: list[bytes] = []

        def put() -> None:
            if chunk and access is not None:
                conn.execute(
                    subject_digests.insert().values(
                        access=access, part=part, count=len(chunk), digests=b"".join(chunk)
                    )
                )

        for batch in rows.partitions(10_000):
            for row_access, subject in batch:
                row_access, subject = bytes(row_access), bytes(subject)
                if row_access != access or len(chunk) >= _FOLD_BLOCK:
                    put()
                    part = part + 1 if row_access == access else 0
                    access, chunk = row_access, []
                chunk.append(subject)
        put()
        conn.execute(text(f"DROP TABLE {trail}"))
    if links in present:
        pairs: list[bytes] = []
        for batch in conn.execute(text(f"SELECT pk, subject FROM {links}")).partitions(10_000):
            pairs.extend(bytes(pk) + bytes(subject) for pk, subject in batch)
            while len(pairs) >= _FOLD_BLOCK:
                block, pairs = pairs[:_FOLD_BLOCK], pairs[_FOLD_BLOCK:]
                conn.execute(subject_links.insert().values(count=len(block), links=b"".join(block)))
        if pairs:
            conn.execute(subject_links.insert().values(count=len(pairs), links=b"".join(pairs)))
        conn.execute(text(f"DROP TABLE {links}"))


def utcnow() -> datetime:
    return datetime.now(UTC)


def isotime(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


@functools.cache
def _scrubber() -> Callable[[str], str]:
    # imported here: the masking engine loads pandas, which reading the audit does not need
    from lgpd_tasks.masking.text import TextScrubber

    return TextScrubber()


def scrub_text(text: str) -> str:
    """``text`` with CPF, CNPJ, e-mail, phone and card spans replaced by type tokens.

    For names the audit stores or shows that a caller chose (an object's path, a source):
    ``file:///r/relatorio-529.982.247-25.csv`` becomes ``file:///r/relatorio-[CPF].csv``.
    """
    return _scrubber()(text)


def record_hash(row: Mapping[str, Any]) -> str:
    """sha256 over the canonical JSON of a record's fields, ``prev_hash`` included."""
    payload = json.dumps(
        {name: row.get(name) for name in HASHED_FIELDS},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class AuditEntry:
    """One stored record of the chain."""

    seq: int
    record_id: str
    ts: str
    kind: str
    ref: str | None
    orchestrator: str
    pipeline: str
    task: str
    run_id: str
    attempt: int
    principal: str
    scope: str | None
    purpose: str | None
    legal_basis: str | None
    decision: str | None
    fingerprint: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str
    details_json: str = field(default="", repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in (*HASHED_FIELDS, "hash")}


@dataclass(frozen=True)
class AuditRecord:
    """What a reader means by "a record": a statement's intent with its outcome, if any."""

    entry: AuditEntry
    outcome: AuditEntry | None = None

    @property
    def status(self) -> str:
        if self.entry.kind != "statement":
            return str(self.entry.details.get("event", self.entry.kind))
        if self.entry.details.get("event") == "refused":
            waiting = self.entry.details.get("approval_status")
            return f"approval {waiting}" if waiting else "refused"
        if self.outcome is None:
            return "incomplete"
        return str(self.outcome.details.get("status", "?"))

    @property
    def rows(self) -> int | None:
        if self.outcome is None:
            return None
        rows = self.outcome.details.get("rows")
        return int(rows) if rows is not None else None

    def to_dict(self) -> dict[str, Any]:
        data = self.entry.to_dict()
        data["status"] = self.status
        if self.outcome is not None:
            data["outcome"] = self.outcome.to_dict()
        return data


@dataclass(frozen=True)
class NewEntry:
    """What a writer supplies; the store adds sequence, time, id and hashes."""

    kind: str
    identity: TaskIdentity
    details: Mapping[str, Any]
    ref: str | None = None
    scope: str | None = None
    purpose: str | None = None
    legal_basis: str | None = None
    decision: str | None = None
    fingerprint: str | None = None
    record_id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass(frozen=True)
class Verification:
    """The result of recomputing the chain."""

    records: int
    head: str
    breaks: tuple[ChainBreak, ...]

    @property
    def ok(self) -> bool:
        return not self.breaks


@dataclass(frozen=True)
class EntryFilter:
    """Which records :meth:`AuditStore.entries` returns; ``None`` matches anything."""

    pipeline: str | None = None
    task: str | None = None
    run_id: str | None = None
    decision: str | None = None
    kind: str | None = None
    ref: str | None = None
    since_seq: int | None = None
    record_id: str | None = None


class AuditStore:
    """The audit log on SQLite or PostgreSQL.

    >>> import tempfile, os
    >>> store = AuditStore.from_url(f"sqlite:///{tempfile.mkdtemp()}/audit.db")
    >>> who = TaskIdentity("cli", "cli", "maria", user="maria")
    >>> entry = store.append(NewEntry(kind="note", identity=who, details={"what": "hello"}))
    >>> entry.seq, entry.prev_hash == GENESIS
    (1, True)
    >>> store.verify().ok
    True
    """

    def __init__(self, engine: Engine, *, url: str | None = None) -> None:
        # the one check for every way a store is made (from_url, open_existing, an engine)
        refuse_in_memory(engine.url, url)
        self.engine = engine
        self.url = redact_url(url or engine.url)
        self._ready = False

    @classmethod
    def from_url(cls, url: str) -> AuditStore:
        """The store at ``url``, created on first use (for writers and ``db init``)."""
        return cls(get_engine(url), url=url)

    @classmethod
    def open_existing(cls, url: str) -> AuditStore:
        """The store at ``url`` for commands that read or maintain it: never created here.

        A SQLite file that does not exist, or a database without the audit log, is refused
        (:class:`AuditStoreUnusable`) instead of being made an empty store: a mistyped path
        would otherwise verify as an intact chain of 0 records.
        """
        path = sqlite_file(parse_db_url(url))  # None in memory: refused by the constructor
        hint = (
            f"check the URL, or create the store with `lgpd-tasks db init --db {redact_url(url)}`"
        )
        if path is not None and not path.is_file():
            raise AuditStoreUnusable(
                f"audit store {redact_url(url)}: no such file {str(path.absolute())!r}; {hint}"
            )
        store = cls.from_url(url)
        if not store._has_log(path):
            raise AuditStoreUnusable(
                f"audit store {store.url} holds no audit log (table {audit_log.name}); {hint}"
            )
        return store

    def _has_log(self, path: Path | None) -> bool:
        """Whether the audit log table exists, looked up without writing anything."""
        try:
            if path is not None:
                # read-only: opening through the engine would switch a stranger's file to WAL
                with closing(
                    sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
                ) as db:
                    found = db.execute(
                        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                        (audit_log.name,),
                    ).fetchone()
                return found is not None
            with self.engine.connect() as conn:
                return bool(inspect(conn).has_table(audit_log.name))
        except (sqlite3.Error, SQLAlchemyError) as err:
            raise self._unavailable("cannot be read", err) from None

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    # -- schema ---------------------------------------------------------------------------

    def init(self) -> int:
        """Create or check the tables; returns the schema version (``lgpd-tasks db init``)."""
        try:
            with self.engine.begin() as conn:
                if self.is_postgres:
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_CHAIN_LOCK})
                metadata.create_all(conn, checkfirst=True)
                found = conn.execute(
                    select(meta.c.value).where(meta.c.key == "schema_version")
                ).scalar()
                if found is None:
                    conn.execute(
                        meta.insert().values(key="schema_version", value=str(SCHEMA_VERSION))
                    )
                elif int(found) > SCHEMA_VERSION:
                    raise AuditUnavailable(
                        f"audit store {self.url} has schema version {found}; "
                        f"this lgpd-tasks knows up to {SCHEMA_VERSION}: upgrade lgpd-tasks"
                    )
                elif int(found) < SCHEMA_VERSION:
                    # 2 only added tables, which create_all has just made; 3 packs the
                    # version 2 subject trail into blocks; 4 and 5 add columns to the requests
                    if int(found) < 3:
                        _fold_v2_trail(conn)
                    _add_request_columns(conn)
                    conn.execute(
                        meta.update()
                        .where(meta.c.key == "schema_version")
                        .values(value=str(SCHEMA_VERSION))
                    )
        except SQLAlchemyError as err:
            raise self._unavailable("cannot be initialised", err) from None
        self._ready = True
        return SCHEMA_VERSION

    def ensure_ready(self) -> None:
        if not self._ready:
            self.init()

    # -- writing --------------------------------------------------------------------------

    def append(self, entry: NewEntry) -> AuditEntry:
        """Append one record to the chain, or raise :class:`AuditUnavailable`."""
        return self.append_many([entry])[0]

    def append_many(self, entries: Sequence[NewEntry]) -> list[AuditEntry]:
        """Append records in one transaction, chained in order."""
        self.ensure_ready()
        try:
            with self.engine.begin() as conn:
                return self._append_locked(conn, entries)
        except SQLAlchemyError as err:
            raise self._unavailable("cannot record", err) from None

    @contextmanager
    def chain_transaction(self) -> Iterator[Connection]:
        """A transaction holding the chain's write lock, for maintenance (``audit purge``)."""
        self.ensure_ready()
        try:
            with self.engine.begin() as conn:
                if self.is_postgres:
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_CHAIN_LOCK})
                yield conn
        except SQLAlchemyError as err:
            raise self._unavailable("cannot record", err) from None

    def append_in(self, conn: Connection, entries: Sequence[NewEntry]) -> list[AuditEntry]:
        """Append records inside a :meth:`chain_transaction`."""
        return self._append_locked(conn, entries)

    def _append_locked(self, conn: Connection, entries: Sequence[NewEntry]) -> list[AuditEntry]:
        if self.is_postgres:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_CHAIN_LOCK})
        head = conn.execute(
            select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
        ).first()
        seq, prev = (int(head[0]), str(head[1])) if head else (0, GENESIS)
        stored: list[AuditEntry] = []
        rows: list[dict[str, Any]] = []
        for new in entries:
            seq += 1
            ident = new.identity
            row: dict[str, Any] = {
                "seq": seq,
                "record_id": new.record_id,
                "ts": isotime(utcnow()),
                "kind": new.kind,
                "ref": new.ref,
                "orchestrator": ident.orchestrator,
                "pipeline": ident.pipeline,
                "task": ident.task,
                "run_id": ident.run_id,
                "attempt": ident.attempt,
                "principal": ident.principal,
                "scope": new.scope,
                "purpose": new.purpose,
                "legal_basis": new.legal_basis,
                "decision": new.decision,
                "fingerprint": new.fingerprint,
                "details": _canonical(new.details),
                "prev_hash": prev,
            }
            row["hash"] = record_hash(row)
            prev = row["hash"]
            rows.append(row)
            stored.append(_entry(row))
        conn.execute(audit_log.insert(), rows)
        return stored

    def record_masking(
        self,
        identity: TaskIdentity,
        report: Mapping[str, Any],
        *,
        source: str,
        destination: str,
        scope: str | None = None,
        purpose: str | None = None,
        legal_basis: str | None = None,
    ) -> AuditEntry:
        """Record one masking step: what was masked, how, and the lineage edge it sits on.

        ``report`` is ``MaskingReport.to_dict()``; ``source`` names where the data came from
        (``airflow:dag.task`` or ``table crm.customers``) and ``destination`` where the masked
        data went (``xcom:dag.task.return_value``, ``io_manager:asset/key``, ``s3://...``).
        Both are recorded through :func:`scrub_text`: a path may name a person.
        """
        source, destination = scrub_text(source), scrub_text(destination)
        return self.append(
            NewEntry(
                kind="masking",
                identity=identity,
                scope=scope,
                purpose=purpose,
                legal_basis=legal_basis,
                decision="masked",
                details={
                    "event": "masked",
                    "source": source,
                    "destination": destination,
                    "report": dict(report),
                    "lineage": [{"target": destination, "sources": [source]}],
                },
            )
        )

    # -- reading --------------------------------------------------------------------------

    def entries(
        self,
        where: EntryFilter | None = None,
        *,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[AuditEntry]:
        """Stored records matching ``where``, oldest first unless ``newest_first``."""
        return self._read(_filtered(where or EntryFilter()), limit, newest_first)

    def _read(self, query: Select[Any], limit: int | None, newest_first: bool) -> list[AuditEntry]:
        self.ensure_ready()
        order = audit_log.c.seq.desc() if newest_first else audit_log.c.seq.asc()
        query = query.order_by(order)
        if limit is not None:
            query = query.limit(limit)
        try:
            with self.engine.connect() as conn:
                return [_entry(dict(r._mapping)) for r in conn.execute(query)]
        except SQLAlchemyError as err:
            raise self._unavailable("cannot be read", err) from None

    def iter_chain(self, batch: int = 5000) -> Iterator[AuditEntry]:
        """Every record in chain order, read in batches."""
        last = 0
        while True:
            chunk = self.entries(EntryFilter(since_seq=last), limit=batch)
            if not chunk:
                return
            yield from chunk
            last = chunk[-1].seq

    def records(self, where: EntryFilter | None = None, *, limit: int = 50) -> list[AuditRecord]:
        """The newest ``limit`` records, oldest first, each statement joined with its outcome."""
        query = _filtered(where or EntryFilter()).where(audit_log.c.kind != "outcome")
        heads = self._read(query, limit, newest_first=True)
        ids = [e.record_id for e in heads if e.kind == "statement"]
        found = (
            self._read(select(audit_log).where(audit_log.c.ref.in_(ids)), None, False)
            if ids
            else []
        )
        outcomes = {e.ref: e for e in found if e.ref is not None}
        return [AuditRecord(e, outcomes.get(e.record_id)) for e in reversed(heads)]

    def count(self) -> int:
        self.ensure_ready()
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(audit_log)).scalar() or 0)

    def verify(self) -> Verification:
        """Recompute the chain; the breaks name the first altered, removed or moved record."""
        breaks: list[ChainBreak] = []
        prev, expected_seq = self.chain_start()
        records = 0
        for entry in self.iter_chain():
            records += 1
            row = entry.to_dict()
            row["details"] = entry.details_json
            if entry.seq != expected_seq:
                breaks.append(
                    ChainBreak(
                        entry.seq,
                        entry.record_id,
                        f"records #{expected_seq}..#{entry.seq - 1} are missing",
                    )
                )
            if entry.prev_hash != prev:
                breaks.append(
                    ChainBreak(
                        entry.seq,
                        entry.record_id,
                        "does not follow the record before it (a record was removed or reordered)",
                    )
                )
            if record_hash(row) != entry.hash:
                breaks.append(
                    ChainBreak(
                        entry.seq, entry.record_id, "content does not match its hash (altered)"
                    )
                )
            prev = entry.hash
            expected_seq = entry.seq + 1
        return Verification(records=records, head=prev, breaks=tuple(breaks))

    def chain_start(self, conn: Connection | None = None) -> tuple[str, int]:
        """The ``prev_hash`` and ``seq`` the stored chain starts from.

        After ``audit purge`` the oldest records are gone; the newest ``purge`` checkpoint
        (itself a chained record, so it cannot be altered or dropped unnoticed) names the
        last purged record's hash and sequence, and the chain resumes right after it.
        """
        if conn is None:
            self.ensure_ready()
        query = (
            select(audit_log.c.details)
            .where(audit_log.c.kind == "purge")
            .order_by(audit_log.c.seq.desc())
            .limit(1)
        )
        try:
            if conn is not None:  # inside a chain_transaction (SQLite would wait on itself)
                raw = conn.execute(query).scalar()
            else:
                with self.engine.connect() as own:
                    raw = own.execute(query).scalar()
        except SQLAlchemyError as err:
            raise self._unavailable("cannot be read", err) from None
        if raw is None:
            return GENESIS, 1
        try:
            details = json.loads(raw) if isinstance(raw, str) else dict(raw)
            return str(details["last_hash"]), int(details["last_seq"]) + 1
        except (ValueError, KeyError, TypeError):
            # an unreadable checkpoint proves nothing: verify from the genesis and fail
            return GENESIS, 1

    def verify_or_raise(self) -> Verification:
        result = self.verify()
        if result.breaks:
            raise AuditChainBroken(result.breaks)
        return result

    def _unavailable(self, what: str, err: BaseException) -> AuditUnavailable:
        detail = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
        return AuditUnavailable(f"audit store {self.url} {what}: {detail}")


def _filtered(where: EntryFilter) -> Select[Any]:
    query = select(audit_log)
    for name in ("pipeline", "task", "run_id", "decision", "kind", "ref", "record_id"):
        value = getattr(where, name)
        if value is not None:
            query = query.where(audit_log.c[name] == value)
    if where.since_seq is not None:
        query = query.where(audit_log.c.seq > where.since_seq)
    return query


def _canonical(details: Mapping[str, Any] | str) -> str:
    if isinstance(details, str):
        return details
    return json.dumps(
        details, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )


def _entry(row: Mapping[str, Any]) -> AuditEntry:
    raw = row["details"]
    details = json.loads(raw) if isinstance(raw, str) else dict(raw)
    return AuditEntry(
        seq=int(row["seq"]),
        record_id=row["record_id"],
        ts=row["ts"],
        kind=row["kind"],
        ref=row["ref"],
        orchestrator=row["orchestrator"],
        pipeline=row["pipeline"],
        task=row["task"],
        run_id=row["run_id"],
        attempt=int(row["attempt"]),
        principal=row["principal"],
        scope=row["scope"],
        purpose=row["purpose"],
        legal_basis=row["legal_basis"],
        decision=row["decision"],
        fingerprint=row["fingerprint"],
        details=details,
        prev_hash=row["prev_hash"],
        hash=row["hash"],
        details_json=raw if isinstance(raw, str) else _canonical(details),
    )
