"""A short-lived PostgreSQL login role per task attempt, granted exactly its scope's columns."""

from __future__ import annotations

import json
import re
import secrets
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from lgpd_tasks.credentials.base import (
    DEFAULT_TTL,
    ScopedCredential,
    libpq_url,
    parse_url,
    redact_url,
    valid_ttl,
)
from lgpd_tasks.dburl import without_login_query
from lgpd_tasks.errors import CredentialError
from lgpd_tasks.identity import TaskIdentity
from lgpd_tasks.policy import ALL, Scope

if TYPE_CHECKING:
    import psycopg

_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")
#: Marker key in the role's comment; a role without it was not made by lgpd-tasks.
MARKER_KEY = "lgpd_tasks"
_HASH_CHARS = 20
_SUFFIX_BYTES = 4
_TERMINATE_WAIT_MS = 5000
_SWEEP_BATCH = 200
#: How a failed drop names what a role still holds (``pg_shdepend.classid``).
_CATALOG_NAMES = {
    "pg_largeobject": "large object",
    "pg_class": "table or view",
    "pg_namespace": "schema",
    "pg_proc": "function",
    "pg_type": "type",
    "pg_database": "database",
    "pg_default_acl": "default privilege",
}


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise CredentialError(
            "PostgreSQL role credentials need psycopg: pip install 'lgpd-tasks[postgres]'"
        ) from None
    return psycopg


@dataclass(frozen=True)
class RoleMarker:
    """What lgpd-tasks writes in ``COMMENT ON ROLE`` so that ``sweep`` can recognise its roles.

    The comment is readable by every database user (``pg_shdescription``), so it holds
    hashes and names only: no principal, no person's name.
    """

    expires_at: datetime
    attempt: str
    scope: str
    database: str
    owner: str

    def to_json(self) -> str:
        return json.dumps(
            {
                MARKER_KEY: 1,
                "expires_at": self.expires_at.isoformat(),
                "attempt": self.attempt,
                "scope": self.scope,
                "db": self.database,
                "owner": self.owner,
            },
            sort_keys=True,
        )

    @classmethod
    def parse(cls, comment: str | None) -> RoleMarker | None:
        """The marker in a role comment, or ``None`` when the role is not ours."""
        if not comment:
            return None
        try:
            data = json.loads(comment)
            if not isinstance(data, dict) or data.get(MARKER_KEY) != 1:
                return None
            expires = datetime.fromisoformat(data["expires_at"])
            if expires.tzinfo is None:
                return None
            return cls(
                expires_at=expires,
                attempt=str(data["attempt"]),
                scope=str(data["scope"]),
                database=str(data["db"]),
                owner=str(data["owner"]),
            )
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True)
class TaskRole:
    """A task role found on the server."""

    name: str
    marker: RoleMarker | None
    can_login: bool
    sessions: int


@dataclass(frozen=True)
class SweptRole:
    """A role ``sweep`` dropped, and why."""

    name: str
    reason: str
    expires_at: datetime | None
    sessions_terminated: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.name,
            "reason": self.reason,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "sessions_terminated": self.sessions_terminated,
        }


@dataclass
class SweepReport:
    """The outcome of :meth:`PostgresRoleBroker.sweep`."""

    dropped: list[SweptRole] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dropped": [r.to_dict() for r in self.dropped],
            "kept": self.kept,
            "skipped": [{"role": r, "reason": why} for r, why in self.skipped],
            "failed": [{"role": r, "error": why} for r, why in self.failed],
        }


class PostgresRoleBroker:
    """Issues a PostgreSQL LOGIN role per task attempt with exactly the scope's privileges.

    The administrator URL is used only inside the broker, on its own connection; it is
    never returned, logged or shown by ``repr``. Each issued role has a random password
    (sent to the server as a SCRAM verifier, so the clear text is never in a statement),
    ``VALID UNTIL`` now + TTL, a connection limit, ``USAGE`` on the scope's schemas, and
    ``SELECT``/``INSERT``/``UPDATE`` on exactly the granted columns (table-level only for
    ``"*"``, ``DELETE`` only for a ``"*"`` write grant). On revoke the large objects a task
    role made are unlinked (their grants would outlive it) and whatever else it came to own
    is reassigned to ``owner_role`` (a long-lived NOLOGIN role), so dropping the login role
    never fails on ownership in its database.

    The constructor does no I/O; the administrator connection opens on first use.

    >>> broker = PostgresRoleBroker("postgresql://admin:secret@db:5432/app")
    >>> "secret" in repr(broker)
    False
    >>> broker.role_name(TaskIdentity("airflow", "dag", "extract", run_id="r1"))[:7]
    'lgpd_t_'
    """

    def __init__(
        self,
        admin_url: str,
        *,
        ttl: timedelta = DEFAULT_TTL,
        connection_limit: int = 2,
        owner_role: str = "lgpd_task_owner",
        role_prefix: str = "lgpd_t_",
        target_url: str | None = None,
    ) -> None:
        ttl = valid_ttl(ttl)
        if connection_limit < 1:
            raise CredentialError(f"connection_limit must be at least 1, got {connection_limit}")
        if not _IDENT.match(owner_role) or len(owner_role.encode()) > 63:
            raise CredentialError(f"owner_role {owner_role!r} is not a lower-case role name")
        if not _IDENT.match(role_prefix) or len(role_prefix.encode()) > 32:
            raise CredentialError(
                f"role_prefix {role_prefix!r} must be a lower-case name of at most 32 bytes"
            )
        admin = parse_url(admin_url)
        target = parse_url(target_url) if target_url else admin
        for which, parsed in (("administrator", admin), ("target", target)):
            if parsed.get_backend_name() != "postgresql":
                raise CredentialError(
                    f"the {which} URL is not PostgreSQL ({parsed.get_backend_name()})"
                )
        for which, parsed in (("administrator", admin), ("target", target)):
            if any(key.lower() == "dbname" for key in parsed.query):
                # libpq would connect there, not to the database the path names
                raise CredentialError(
                    f"the {which} URL names its database in the query string (dbname=); "
                    "name it in the path: postgresql://user@host:5432/DATABASE"
                )
        if not admin.database:
            raise CredentialError("the administrator URL names no database")
        if (target.database or "") != admin.database:
            # grants are per database: roles made through one would be useless in the other
            raise CredentialError(
                f"the administrator URL is for database {admin.database!r} but the target "
                f"is {target.database!r}; both must name the same database"
            )
        self.ttl = ttl
        self.connection_limit = connection_limit
        self.owner_role = owner_role
        self.role_prefix = role_prefix
        self.database: str = admin.database
        self._admin_dsn = libpq_url(admin)
        # the task's URL is the target's without the administrator's login: libpq lets a
        # ?user= (or ?service=, ?passfile=...) in the query string override the URL's user
        self._target = without_login_query(target)
        self._lock = threading.RLock()
        self._conn: psycopg.Connection[Any] | None = None
        self._owner_checked = False

    def __repr__(self) -> str:
        return (
            f"PostgresRoleBroker(target={redact_url(self._target.render_as_string())!r}, "
            f"ttl={self.ttl}, owner_role={self.owner_role!r}, role_prefix={self.role_prefix!r})"
        )

    # -- administrator connection -------------------------------------------------------

    @contextmanager
    def _admin(self) -> Iterator[psycopg.Connection[Any]]:
        """The broker's own connection, opened lazily and reopened when it broke."""
        psycopg = _psycopg()
        with self._lock:
            if self._conn is None or self._conn.closed or self._conn.broken:
                try:
                    self._conn = psycopg.connect(self._admin_dsn, autocommit=True)
                except psycopg.Error as err:
                    raise CredentialError(
                        f"cannot connect to PostgreSQL as the broker's administrator: "
                        f"{_first_line(err)}"
                    ) from None
            conn = self._conn
            assert conn is not None
            try:
                yield conn
            except psycopg.OperationalError:
                conn.close()
                raise

    def close(self) -> None:
        """Close the administrator connection (issued roles stay until revoked or swept)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> PostgresRoleBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- issuing ------------------------------------------------------------------------

    def role_name(self, identity: TaskIdentity) -> str:
        """A fresh role name: prefix, hash of the attempt, random suffix (at most 63 bytes).

        The suffix keeps two connections of one attempt from colliding.
        """
        suffix = secrets.token_hex(_SUFFIX_BYTES)
        return f"{self.role_prefix}{identity.attempt_hash[:_HASH_CHARS]}_{suffix}"

    def issue(
        self, identity: TaskIdentity, scope: Scope, *, ttl: timedelta | None = None
    ) -> ScopedCredential:
        """Create the role for this attempt and return its login URL."""
        psycopg = _psycopg()
        from psycopg import sql

        # an explicit zero is refused, not replaced by the default
        ttl = self.ttl if ttl is None else valid_ttl(ttl)
        if scope.dialect != "postgres":
            raise CredentialError(
                f"scope {scope.name!r} is written for dialect {scope.dialect!r}; "
                "PostgreSQL role credentials need a postgres policy"
            )
        read = _split_grants(scope.read, scope.name, "read")
        write = _split_grants(scope.write, scope.name, "write")
        role = self.role_name(identity)
        password = secrets.token_urlsafe(32)
        expires_at = (datetime.now(UTC) + ttl).replace(microsecond=0)
        marker = RoleMarker(
            expires_at=expires_at,
            attempt=identity.attempt_hash,
            scope=scope.name,
            database=self.database,
            owner=self.owner_role,
        )
        with self._admin() as conn:
            self._ensure_owner(conn)
            verifier = conn.pgconn.encrypt_password(
                password.encode(), role.encode(), b"scram-sha-256"
            ).decode()
            tables = sorted({*read, *write})
            sequences = self._check_tables(conn, tables, scope.name, inserted=write)
            statements = _grant_statements(role, read, write, sequences)
            create = sql.SQL(
                "CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT "
                "NOREPLICATION NOBYPASSRLS CONNECTION LIMIT {limit} VALID UNTIL {until} "
                "PASSWORD {password}"
            ).format(
                role=sql.Identifier(role),
                limit=sql.Literal(self.connection_limit),
                until=sql.Literal(expires_at.isoformat()),
                password=sql.Literal(verifier),
            )
            comment = sql.SQL("COMMENT ON ROLE {} IS {}").format(
                sql.Identifier(role), sql.Literal(marker.to_json())
            )
            batch = sql.SQL("; ").join([create, comment, *statements])
            try:
                # one round trip and one commit; a failing grant leaves no role behind
                with conn.transaction():
                    conn.execute(batch)
            except psycopg.Error as err:
                raise CredentialError(
                    f"cannot issue a role for scope {scope.name!r}: {_first_line(err)}"
                ) from None
        url = self._target.set(username=role, password=password).render_as_string(
            hide_password=False
        )
        return ScopedCredential(
            url=url, role=role, expires_at=expires_at, scope=scope.name, identity=identity
        )

    def _ensure_owner(self, conn: psycopg.Connection[Any]) -> None:
        psycopg = _psycopg()
        from psycopg import sql

        if self._owner_checked:
            return
        row = conn.execute(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (self.owner_role,)
        ).fetchone()
        if row is None:
            try:
                conn.execute(
                    sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(self.owner_role))
                )
            except (psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
                pass  # another broker made it at the same moment
            except psycopg.Error as err:
                raise CredentialError(
                    f"cannot create the owner role {self.owner_role!r}: {_first_line(err)}"
                ) from None
        elif row[0]:
            raise CredentialError(
                f"the owner role {self.owner_role!r} can log in; it must be NOLOGIN"
            )
        self._owner_checked = True

    def _check_tables(
        self,
        conn: psycopg.Connection[Any],
        tables: Sequence[tuple[str, str]],
        scope: str,
        *,
        inserted: dict[tuple[str, str], frozenset[str]],
    ) -> list[tuple[str, str]]:
        """Refuse tables that do not exist; return the sequences behind inserted tables."""
        from psycopg import sql

        if not tables:
            return []
        quoted = [sql.Identifier(s, t).as_string(conn) for s, t in tables]
        rows = conn.execute(
            """
            SELECT q.n, c.oid IS NOT NULL,
                   ARRAY(SELECT ARRAY[sn.nspname::text, s.relname::text]
                         FROM pg_depend d
                         JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
                         JOIN pg_namespace sn ON sn.oid = s.relnamespace
                         WHERE d.classid = 'pg_class'::regclass
                           AND d.refclassid = 'pg_class'::regclass
                           AND d.refobjid = c.oid AND d.deptype IN ('a', 'i'))
            FROM unnest(%s::text[]) WITH ORDINALITY AS q(name, n)
            LEFT JOIN pg_class c ON c.oid = to_regclass(q.name)
            ORDER BY q.n
            """,
            (quoted,),
        ).fetchall()
        sequences: list[tuple[str, str]] = []
        for n, exists, seqs in rows:
            schema, table = tables[n - 1]
            if not exists:
                raise CredentialError(
                    f"cannot issue a role for scope {scope!r}: table {schema}.{table} "
                    "does not exist"
                )
            if (schema, table) in inserted:
                sequences.extend((s[0], s[1]) for s in seqs)
        return sequences

    # -- revoking -----------------------------------------------------------------------

    def revoke(self, credential: ScopedCredential) -> None:
        """Terminate the role's sessions, drop what it owns or was granted, drop the role."""
        if credential.role is None:
            raise CredentialError("this credential has no role to revoke (static broker?)")
        self.revoke_role(credential.role)

    def revoke_role(self, role: str) -> bool:
        """Revoke a task role by name; ``False`` when it no longer exists.

        Only roles that carry this broker's prefix and lgpd-tasks' marker can be revoked,
        so the command cannot be used to drop an arbitrary role.
        """
        if not role.startswith(self.role_prefix):
            raise CredentialError(
                f"role {role!r} does not start with the task-role prefix {self.role_prefix!r}"
            )
        with self._admin() as conn:
            found = self._find(conn, role)
            if found is None:
                return False
            if found.marker is None:
                raise CredentialError(f"role {role!r} was not made by lgpd-tasks; not dropping it")
            self._drop(conn, [found])
            return True

    def _find(self, conn: psycopg.Connection[Any], role: str) -> TaskRole | None:
        row = conn.execute(
            """
            SELECT r.rolname, shobj_description(r.oid, 'pg_authid'), r.rolcanlogin,
                   (SELECT count(*) FROM pg_stat_activity a WHERE a.usesysid = r.oid)
            FROM pg_roles r WHERE r.rolname = %s
            """,
            (role,),
        ).fetchone()
        if row is None:
            return None
        return TaskRole(row[0], RoleMarker.parse(row[1]), bool(row[2]), int(row[3]))

    def _drop(self, conn: psycopg.Connection[Any], roles: Sequence[TaskRole]) -> int:
        """Drop ``roles``; returns the number of sessions terminated.

        ``NOLOGIN`` (and ``VALID UNTIL`` now) is committed on its own first, so a drop that
        fails (the role still owns something in another database) leaves roles that can no
        longer log in, which ``sweep`` retries as "revoke interrupted".
        """
        psycopg = _psycopg()
        from psycopg import sql

        wanted = [r.name for r in roles]
        foreign = {r.marker.database for r in roles if r.marker} - {self.database}
        oids: list[int] = []
        try:
            with conn.transaction():
                found = conn.execute(
                    "SELECT rolname, oid FROM pg_roles WHERE rolname = ANY(%s)", (wanted,)
                ).fetchall()
                if not found:
                    return 0
                names = [row[0] for row in found]
                oids = [row[1] for row in found]
                # refuse new logins first, committed whatever happens to the drop below
                until = sql.Literal(datetime.now(UTC).isoformat())
                conn.execute(
                    sql.SQL("; ").join(
                        sql.SQL("ALTER ROLE {} NOLOGIN VALID UNTIL {}").format(
                            sql.Identifier(n), until
                        )
                        for n in names
                    )
                )
            # then end the sessions already open
            terminated = _terminate(conn, oids, wait_ms=_TERMINATE_WAIT_MS)
            idents = sql.SQL(", ").join(sql.Identifier(n) for n in names)
            with conn.transaction():
                # a large object keeps its own grants (GRANT SELECT ... TO PUBLIC) through
                # REASSIGN OWNED, so a later task of any scope could read it: unlink them
                conn.execute(
                    "SELECT count(lo_unlink(oid)) FROM pg_largeobject_metadata"
                    " WHERE lomowner = ANY(%s)",
                    (oids,),
                )
                conn.execute(
                    sql.SQL(
                        "REASSIGN OWNED BY {roles} TO {owner}; DROP OWNED BY {roles}; "
                        "DROP ROLE {roles}"
                    ).format(roles=idents, owner=sql.Identifier(self.owner_role))
                )
        except psycopg.errors.UndefinedObject:
            if len(wanted) == 1:
                return 0  # revoked concurrently
            raise CredentialError(f"a task role of {wanted} was dropped concurrently") from None
        except psycopg.Error as err:
            if foreign:
                hint = f" (issued in database {sorted(foreign)[0]!r}; revoke it there)"
            else:
                hint = self._dependents(conn, oids)
            raise CredentialError(
                f"cannot drop task role {wanted[0] if len(wanted) == 1 else wanted}: "
                f"{_first_line(err)}{hint}"
            ) from None
        # a login that raced the NOLOGIN commit got in with the old catalogue; end it too
        return terminated + _terminate(conn, oids, wait_ms=0)

    def _dependents(self, conn: psycopg.Connection[Any], oids: Sequence[int]) -> str:
        """What still depends on the roles in other databases, for a failed drop's message."""
        psycopg = _psycopg()
        if not oids:
            return ""
        try:
            rows = conn.execute(
                """
                SELECT coalesce(d.datname, '(cluster-wide)'), s.classid::regclass::text,
                       s.deptype, count(*)
                FROM pg_shdepend s LEFT JOIN pg_database d ON d.oid = s.dbid
                WHERE s.refclassid = 'pg_authid'::regclass AND s.refobjid = ANY(%s)
                  -- this database's are what REASSIGN and DROP OWNED take care of
                  AND s.dbid IS DISTINCT FROM
                      (SELECT oid FROM pg_database WHERE datname = current_database())
                GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
                """,
                (list(oids),),
            ).fetchall()
            (canlogin,) = conn.execute(
                "SELECT bool_or(rolcanlogin) FROM pg_roles WHERE oid = ANY(%s)", (list(oids),)
            ).fetchone() or (None,)
        except psycopg.Error:
            return ""
        parts = [
            f"{count} {_CATALOG_NAMES.get(catalog, catalog)}"
            f"{' grant' if deptype == 'a' else ''}{'s' if count != 1 else ''} "
            f"in database {database!r}"
            for database, catalog, deptype, count in rows
        ]
        where = sorted({row[0] for row in rows} - {"(cluster-wide)"})
        text = f"; it still owns or holds: {', '.join(parts)}" if parts else ""
        if where:
            text += (
                f" — connect to {', '.join(repr(w) for w in where)} as the administrator and "
                "drop or unlink them (revoke CONNECT on other databases from PUBLIC to "
                "prevent this)"
            )
        if canlogin is False:
            text += "; the role can no longer log in, and roles sweep retries the drop"
        return text

    # -- sweeping -----------------------------------------------------------------------

    def list_roles(self) -> list[TaskRole]:
        """Every role on the server that starts with this broker's prefix."""
        with self._admin() as conn:
            rows = conn.execute(
                """
                SELECT r.rolname, shobj_description(r.oid, 'pg_authid'), r.rolcanlogin,
                       (SELECT count(*) FROM pg_stat_activity a WHERE a.usesysid = r.oid)
                FROM pg_roles r WHERE starts_with(r.rolname, %s) ORDER BY r.rolname
                """,
                (self.role_prefix,),
            ).fetchall()
        return [TaskRole(r[0], RoleMarker.parse(r[1]), bool(r[2]), int(r[3])) for r in rows]

    def sweep(self, *, now: datetime | None = None) -> SweepReport:
        """Drop expired task roles and those a crashed revoke left behind (NOLOGIN).

        Roles with the prefix but without lgpd-tasks' marker, and roles issued in another
        database, are reported as skipped and left alone.
        """
        now = now or datetime.now(UTC)
        report = SweepReport()
        due: list[tuple[TaskRole, str]] = []
        for role in self.list_roles():
            if role.marker is None:
                report.skipped.append((role.name, "not made by lgpd-tasks (no marker)"))
            elif role.marker.database != self.database:
                report.skipped.append(
                    (role.name, f"issued in database {role.marker.database!r}; sweep there")
                )
            elif role.marker.expires_at <= now:
                due.append((role, "expired"))
            elif not role.can_login:
                due.append((role, "revoke interrupted"))
            else:
                report.kept.append(role.name)
        with self._admin() as conn:
            for start in range(0, len(due), _SWEEP_BATCH):
                batch = due[start : start + _SWEEP_BATCH]
                try:
                    self._drop(conn, [r for r, _ in batch])
                    report.dropped.extend(_swept(r, why) for r, why in batch)
                except CredentialError:
                    # one bad role must not keep the others: retry the batch one by one
                    for role, why in batch:
                        try:
                            self._drop(conn, [role])
                            report.dropped.append(_swept(role, why))
                        except CredentialError as err:
                            report.failed.append((role.name, str(err)))
        return report


def _swept(role: TaskRole, reason: str) -> SweptRole:
    return SweptRole(
        name=role.name,
        reason=reason,
        expires_at=role.marker.expires_at if role.marker else None,
        sessions_terminated=role.sessions,
    )


def _terminate(conn: psycopg.Connection[Any], oids: Sequence[int], *, wait_ms: int) -> int:
    if not oids:
        return 0
    row = conn.execute(
        """
        SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, %s))
        FROM pg_stat_activity WHERE usesysid = ANY(%s) AND pid <> pg_backend_pid()
        """,
        (wait_ms, list(oids)),
    ).fetchone()
    return int(row[0]) if row else 0


def _split_grants(grants: Any, scope: str, side: str) -> dict[tuple[str, str], frozenset[str]]:
    result: dict[tuple[str, str], frozenset[str]] = {}
    for name, cols in grants.items():
        schema, dot, table = name.partition(".")
        if not dot or not schema or not table:
            raise CredentialError(
                f"scope {scope!r} {side} grant {name!r} names no schema; expected schema.table"
            )
        result[(schema, table)] = frozenset(cols)
    return result


def _grant_statements(
    role: str,
    read: dict[tuple[str, str], frozenset[str]],
    write: dict[tuple[str, str], frozenset[str]],
    sequences: Iterable[tuple[str, str]],
) -> list[Any]:
    """``GRANT`` statements for exactly what the scope grants, and nothing else."""
    from psycopg import sql

    who = sql.Identifier(role)
    statements: list[Any] = [
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema), who)
        for schema in sorted({s for s, _ in (*read, *write)})
    ]

    def columns(cols: frozenset[str]) -> sql.Composable:
        return sql.SQL(", ").join(sql.Identifier(c) for c in sorted(cols))

    for (schema, table), cols in sorted(read.items()):
        target = sql.Identifier(schema, table)
        if ALL in cols:
            statements.append(sql.SQL("GRANT SELECT ON TABLE {} TO {}").format(target, who))
        elif cols:
            statements.append(
                sql.SQL("GRANT SELECT ({}) ON TABLE {} TO {}").format(columns(cols), target, who)
            )
    for (schema, table), cols in sorted(write.items()):
        target = sql.Identifier(schema, table)
        if ALL in cols:
            statements.append(
                sql.SQL("GRANT INSERT, UPDATE, DELETE ON TABLE {} TO {}").format(target, who)
            )
        elif cols:
            statements.append(
                sql.SQL("GRANT INSERT ({c}), UPDATE ({c}) ON TABLE {t} TO {r}").format(
                    c=columns(cols), t=target, r=who
                )
            )
    # a serial column's default calls nextval(), which needs USAGE on its sequence
    statements.extend(
        sql.SQL("GRANT USAGE ON SEQUENCE {} TO {}").format(sql.Identifier(s, n), who)
        for s, n in sorted(set(sequences))
    )
    return statements


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
