"""Short-lived signed task tokens (PyJWT): who a task attempt is, for which scope and purpose.

Asymmetric keys by default (EdDSA, ES256, RS256); HS256 only when asked for explicitly.
Every way a token can fail has its own error, so callers and tests can tell them apart.

>>> key = TokenKey.generate("k1")
>>> issuer = TaskTokenIssuer(key, issuer="lgpd-tasks", audience="warehouse")
>>> verifier = TaskTokenVerifier([key.public()], issuer="lgpd-tasks", audience="warehouse")
>>> ident = TaskIdentity("airflow", "contractor", "extract", run_id="manual__1")
>>> token = issuer.issue(ident, scope="report.extract", purpose="report")
>>> claims = verifier.verify(token)
>>> claims.identity == ident, claims.scope
(True, 'report.extract')

>>> verifier.verify(token)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
lgpd_tasks.errors.TokenReplayed: token jti ... was already used
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from lgpd_tasks.errors import (
    ReplayCacheUnavailable,
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

ASYMMETRIC_ALGORITHMS = ("EdDSA", "ES256", "RS256")
SYMMETRIC_ALGORITHMS = ("HS256",)
#: The ``typ`` header of task tokens, so that no other JWT (an OIDC ID token...) passes as one.
TASK_TOKEN_TYPE = "lgpd-task+jwt"  # noqa: S105 - a header value, not a secret
_MIN_HMAC_BYTES = 32
_MIN_RSA_BITS = 2048
_REQUIRED = ["iss", "aud", "sub", "iat", "nbf", "exp", "jti"]


@dataclass(frozen=True)
class TokenKey:
    """One key with its ``kid`` and algorithm; ``signing`` is absent on a verify-only key."""

    kid: str
    algorithm: str
    verifying: Any = field(repr=False)
    signing: Any = field(default=None, repr=False)

    @property
    def symmetric(self) -> bool:
        return self.algorithm in SYMMETRIC_ALGORITHMS

    def public(self) -> TokenKey:
        """The verify-only half (for a symmetric key, the same secret)."""
        return TokenKey(self.kid, self.algorithm, self.verifying)

    @classmethod
    def generate(cls, kid: str, algorithm: str = "EdDSA") -> TokenKey:
        """A fresh key pair (for development and tests; production loads keys from files)."""
        private: Any
        if algorithm == "EdDSA":
            private = ed25519.Ed25519PrivateKey.generate()
        elif algorithm == "ES256":
            private = ec.generate_private_key(ec.SECP256R1())
        elif algorithm == "RS256":
            private = rsa.generate_private_key(public_exponent=65537, key_size=_MIN_RSA_BITS)
        else:
            raise TokenError(f"cannot generate a key for algorithm {algorithm!r}")
        return cls(kid, algorithm, private.public_key(), private)

    @classmethod
    def from_pem(cls, pem: bytes | str, *, kid: str, password: bytes | None = None) -> TokenKey:
        """A key from PEM text: a private key (signs and verifies) or a public key."""
        data = pem.encode() if isinstance(pem, str) else pem
        key: Any
        try:
            if b"PRIVATE KEY" in data:
                key = serialization.load_pem_private_key(data, password=password)
                return cls(kid, _algorithm_of(key.public_key()), key.public_key(), key)
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError) as err:
            raise TokenError(f"key {kid!r} is not a usable PEM key: {err}") from None
        return cls(kid, _algorithm_of(key), key)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, kid: str | None = None) -> TokenKey:
        """A PEM key from a file; ``kid`` defaults to the file name without extension."""
        file = Path(path)
        try:
            data = file.read_bytes()
        except OSError as err:
            raise TokenError(f"cannot read key file {file}: {err.strerror or err}") from None
        return cls.from_pem(data, kid=kid or file.stem)

    @classmethod
    def from_env(cls, variable: str, *, kid: str, algorithm: str | None = None) -> TokenKey:
        """A key from an environment variable: PEM text, or an HS256 secret if asked for."""
        value = os.environ.get(variable)
        if not value:
            raise TokenError(f"${variable} holds no key")
        if algorithm == "HS256":
            return cls.hmac(value.encode(), kid=kid)
        key = cls.from_pem(value, kid=kid)
        if algorithm is not None and algorithm != key.algorithm:
            raise TokenError(f"${variable} holds an {key.algorithm} key, not {algorithm}")
        return key

    @classmethod
    def hmac(cls, secret: bytes, *, kid: str) -> TokenKey:
        """A shared HS256 secret; verifiers accept it only with ``allow_symmetric=True``."""
        if len(secret) < _MIN_HMAC_BYTES:
            raise TokenError(f"an HS256 secret needs at least {_MIN_HMAC_BYTES} bytes")
        return cls(kid, "HS256", secret, secret)

    def public_jwk(self) -> dict[str, Any]:
        """The public key as a JWK (for a JWKS document); refused for a symmetric key."""
        if self.symmetric:
            raise TokenError(f"key {self.kid!r} is symmetric and has no public JWK")
        algorithm = jwt.get_algorithm_by_name(self.algorithm)
        jwk: dict[str, Any] = algorithm.to_jwk(self.verifying, as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.algorithm, "use": "sig"}


def _algorithm_of(key: Any) -> str:
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "EdDSA"
    if isinstance(key, ec.EllipticCurvePublicKey):
        if isinstance(key.curve, ec.SECP256R1):
            return "ES256"
        raise TokenError(f"EC keys must be on P-256 for ES256, not {key.curve.name}")
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < _MIN_RSA_BITS:
            raise TokenError(f"RSA keys need at least {_MIN_RSA_BITS} bits, not {key.key_size}")
        return "RS256"
    raise TokenError(f"unsupported key type {type(key).__name__}")


@dataclass(frozen=True)
class TaskClaims:
    """A verified task token."""

    identity: TaskIdentity
    scope: str
    purpose: str
    run: str
    jti: str
    issuer: str
    audience: str
    issued_at: datetime
    expires_at: datetime
    kid: str


class ReplayCache(Protocol):
    """Remembers each token id until the token expires."""

    def remember(self, jti: str, expires_at: datetime) -> bool:
        """``True`` the first time ``jti`` is seen, ``False`` on every later time."""
        ...

    def forget(self, jti: str) -> None:
        """Let ``jti`` be used again (what it was remembered for did not happen)."""
        ...


class InMemoryReplayCache:
    """A replay cache for one process; forgets ids once their token has expired anyway."""

    def __init__(self) -> None:
        self._seen: dict[str, datetime] = {}
        self._lock = threading.Lock()
        self._purge_at = 1024

    def remember(self, jti: str, expires_at: datetime) -> bool:
        now = datetime.now(UTC)
        with self._lock:
            if len(self._seen) >= self._purge_at:
                self._seen = {k: v for k, v in self._seen.items() if v > now}
                self._purge_at = max(1024, 2 * len(self._seen))
            if jti in self._seen:
                return False
            self._seen[jti] = expires_at
            return True

    def forget(self, jti: str) -> None:
        with self._lock:
            self._seen.pop(jti, None)

    def __len__(self) -> int:
        return len(self._seen)


class SqlReplayCache:
    """A replay cache in a database table, shared by every worker that uses the same URL.

    The table is created on first use; the primary key on ``jti`` makes the check and the
    insert one atomic step, so two workers racing with the same token cannot both pass.
    """

    def __init__(self, url: str, *, table: str = "lgpd_token_jti", schema: str | None = None):
        from sqlalchemy import Column, DateTime, MetaData, String, Table

        self._url = url
        metadata = MetaData(schema=schema)
        self._table = Table(
            table,
            metadata,
            Column("jti", String(128), primary_key=True),
            Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
        )
        self._metadata = metadata
        self._engine: Any = None
        self._lock = threading.Lock()
        self._inserts = 0

    def _get_engine(self) -> Any:
        from sqlalchemy import create_engine

        from lgpd_tasks.audit.engine import parse_db_url

        with self._lock:
            if self._engine is None:
                # the URLs the audit store takes: postgresql:// means psycopg 3 here too
                self._engine = create_engine(parse_db_url(self._url))
                self._metadata.create_all(self._engine)
            return self._engine

    def remember(self, jti: str, expires_at: datetime) -> bool:
        from sqlalchemy import delete
        from sqlalchemy.exc import IntegrityError, SQLAlchemyError

        try:
            engine = self._get_engine()
            with engine.begin() as conn:
                conn.execute(self._table.insert().values(jti=jti, expires_at=expires_at))
        except IntegrityError:
            return False
        except SQLAlchemyError as err:
            raise ReplayCacheUnavailable(
                f"the replay cache cannot record token ids: {type(err).__name__}"
            ) from None
        self._inserts += 1
        if self._inserts % 1000 == 0:
            with engine.begin() as conn:
                conn.execute(
                    delete(self._table).where(self._table.c.expires_at < datetime.now(UTC))
                )
        return True

    def forget(self, jti: str) -> None:
        from sqlalchemy import delete
        from sqlalchemy.exc import SQLAlchemyError

        try:
            with self._get_engine().begin() as conn:
                conn.execute(delete(self._table).where(self._table.c.jti == jti))
        except SQLAlchemyError as err:
            raise ReplayCacheUnavailable(
                f"the replay cache cannot forget a token id: {type(err).__name__}"
            ) from None

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


class TaskTokenIssuer:
    """Signs task tokens with one key (its ``kid`` goes in the header for rotation)."""

    def __init__(
        self,
        key: TokenKey,
        *,
        issuer: str,
        audience: str,
        ttl: timedelta = timedelta(minutes=15),
        allow_symmetric: bool = False,
    ) -> None:
        if key.signing is None:
            raise TokenError(f"key {key.kid!r} is verify-only and cannot sign")
        if key.symmetric and not allow_symmetric:
            raise TokenAlgorithmRejected(
                f"key {key.kid!r} is HS256; symmetric keys need allow_symmetric=True"
            )
        if ttl <= timedelta(0):
            raise TokenError(f"the token TTL must be positive, got {ttl}")
        self.key = key
        self.issuer = issuer
        self.audience = audience
        self.ttl = ttl

    def issue(
        self,
        identity: TaskIdentity,
        *,
        scope: str,
        purpose: str,
        ttl: timedelta | None = None,
        now: datetime | None = None,
        not_before: datetime | None = None,
    ) -> str:
        now = now or datetime.now(UTC)
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": identity.principal,
            "iat": now,
            "nbf": not_before or now,
            "exp": now + (ttl or self.ttl),
            "jti": uuid.uuid4().hex,
            "scope": scope,
            "purpose": purpose,
            "run": identity.run_id,
            "task": {
                "orchestrator": identity.orchestrator,
                "pipeline": identity.pipeline,
                "task": identity.task,
                "run_id": identity.run_id,
                "attempt": identity.attempt,
                "map_index": identity.map_index,
                "partition": identity.partition,
                "user": identity.user,
            },
        }
        return jwt.encode(
            claims,
            self.key.signing,
            algorithm=self.key.algorithm,
            headers={"kid": self.key.kid, "typ": TASK_TOKEN_TYPE},
        )


class TaskTokenVerifier:
    """Verifies task tokens against a set of keys chosen by ``kid`` (old and new during rotation).

    ``replay_cache=None`` turns replay detection off; by default each verifier keeps the
    ids it has seen in memory. Pass a :class:`SqlReplayCache` to share them between workers.
    """

    def __init__(
        self,
        keys: Iterable[TokenKey],
        *,
        issuer: str,
        audience: str,
        replay_cache: ReplayCache | type[InMemoryReplayCache] | None = InMemoryReplayCache,
        leeway: timedelta = timedelta(0),
        allow_symmetric: bool = False,
    ) -> None:
        self._keys: dict[str, TokenKey] = {}
        for key in keys:
            if key.symmetric and not allow_symmetric:
                raise TokenAlgorithmRejected(
                    f"key {key.kid!r} is HS256; symmetric keys need allow_symmetric=True"
                )
            if key.kid in self._keys:
                raise TokenError(f"two keys share kid {key.kid!r}")
            self._keys[key.kid] = key
        if not self._keys:
            raise TokenError("a token verifier needs at least one key")
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.replay_cache: ReplayCache | None = (
            replay_cache() if isinstance(replay_cache, type) else replay_cache
        )

    @property
    def algorithms(self) -> frozenset[str]:
        return frozenset(k.algorithm for k in self._keys.values())

    def verify(self, token: str) -> TaskClaims:
        header = _header(token)
        key = self._key_for(header)
        if header.get("typ") != TASK_TOKEN_TYPE:
            raise TokenError(f"not a task token (typ {header.get('typ')!r})")
        payload = _decode(
            token,
            key,
            audience=self.audience,
            issuer=self.issuer,
            leeway=self.leeway,
            require=_REQUIRED,
        )
        expires_at = claim_time(payload, "exp")
        if self.replay_cache is not None and not self.replay_cache.remember(
            str(payload["jti"]), expires_at
        ):
            raise TokenReplayed(f"token jti {payload['jti']} was already used")
        return _claims(payload, kid=key.kid, expires_at=expires_at)

    def _key_for(self, header: dict[str, Any]) -> TokenKey:
        alg = header.get("alg")
        if not isinstance(alg, str) or alg.lower() == "none":
            raise TokenAlgorithmRejected("unsigned tokens (alg none) are refused")
        kid = header.get("kid")
        if kid is None and len(self._keys) == 1:
            key = next(iter(self._keys.values()))
        elif not isinstance(kid, str) or kid not in self._keys:
            raise TokenKeyUnknown(f"no configured key has kid {kid!r}")
        else:
            key = self._keys[kid]
        if key.algorithm != alg:
            # an HS256 header on an asymmetric key's kid is the algorithm-confusion attack
            raise TokenAlgorithmRejected(
                f"key {key.kid!r} is {key.algorithm}, the token says {alg}"
            )
        return key


def _header(token: str) -> dict[str, Any]:
    try:
        return dict(jwt.get_unverified_header(token))
    except jwt.PyJWTError:
        raise TokenError("not a well-formed JWT") from None


def _decode(
    token: str,
    key: TokenKey,
    *,
    audience: str | Sequence[str],
    issuer: str,
    leeway: timedelta,
    require: list[str],
) -> dict[str, Any]:
    try:
        payload: dict[str, Any] = jwt.decode(
            token,
            key.verifying,
            algorithms=[key.algorithm],
            audience=audience,
            issuer=issuer,
            leeway=leeway,
            options={"require": require, "strict_aud": False},
        )
    except jwt.ExpiredSignatureError:
        raise TokenExpired("token has expired") from None
    except jwt.ImmatureSignatureError:
        raise TokenNotYetValid("token is not valid yet (nbf or iat in the future)") from None
    except jwt.InvalidAudienceError:
        raise TokenAudienceInvalid(f"token is not for audience {audience!r}") from None
    except jwt.InvalidIssuerError:
        raise TokenIssuerInvalid(f"token was not issued by {issuer!r}") from None
    except jwt.InvalidAlgorithmError:
        raise TokenAlgorithmRejected(f"algorithm not allowed for key {key.kid!r}") from None
    except jwt.InvalidSignatureError:
        raise TokenSignatureInvalid("token signature does not verify") from None
    except jwt.MissingRequiredClaimError as err:
        raise TokenError(f"token lacks the {err.claim!r} claim") from None
    except jwt.InvalidKeyError:
        raise TokenAlgorithmRejected(f"key {key.kid!r} cannot verify this token") from None
    except jwt.PyJWTError as err:
        raise TokenError(f"token is malformed: {type(err).__name__}") from None
    return payload


def claim_time(payload: dict[str, Any], claim: str) -> datetime:
    """A NumericDate claim (``exp``, ``iat``) as a UTC time, or a :class:`TokenError`.

    A validly signed token may still carry a time no calendar holds (year 31 million).

    >>> claim_time({"exp": 10**15}, "exp")
    Traceback (most recent call last):
    ...
    lgpd_tasks.errors.TokenError: token claim 'exp' is not a representable time
    """
    try:
        return datetime.fromtimestamp(payload[claim], UTC)
    except (KeyError, TypeError, ValueError, OverflowError, OSError):
        raise TokenError(f"token claim {claim!r} is not a representable time") from None


def _claims(payload: dict[str, Any], *, kid: str, expires_at: datetime) -> TaskClaims:
    task = payload.get("task")
    try:
        if not isinstance(task, dict):
            raise TypeError("task")
        identity = TaskIdentity(
            orchestrator=str(task["orchestrator"]),
            pipeline=str(task["pipeline"]),
            task=str(task["task"]),
            run_id=str(task["run_id"]),
            attempt=int(task["attempt"]),
            map_index=None if task.get("map_index") is None else int(task["map_index"]),
            partition=task.get("partition"),
            user=task.get("user"),
        )
        scope, purpose = str(payload["scope"]), str(payload["purpose"])
    except (KeyError, TypeError, ValueError):
        raise TokenError("token lacks the task identity, scope or purpose claims") from None
    if identity.principal != payload["sub"]:
        raise TokenError("token subject does not match its task identity")
    return TaskClaims(
        identity=identity,
        scope=scope,
        purpose=purpose,
        run=str(payload.get("run", "")),
        jti=str(payload["jti"]),
        issuer=str(payload["iss"]),
        audience=str(payload["aud"]),
        issued_at=claim_time(payload, "iat"),
        expires_at=expires_at,
        kid=kid,
    )
