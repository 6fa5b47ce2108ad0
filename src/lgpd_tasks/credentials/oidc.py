"""Approvers' identities: OIDC ID or access tokens verified against the provider's JWKS."""

from __future__ import annotations

import ipaddress
import json
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jwt

from lgpd_tasks.credentials.tokens import (
    ASYMMETRIC_ALGORITHMS,
    TokenKey,
    _decode,
    _header,
    claim_time,
)
from lgpd_tasks.errors import (
    TokenAlgorithmRejected,
    TokenError,
    TokenKeyUnknown,
)

_LOOPBACK_NAMES = {"localhost"}


@dataclass(frozen=True)
class VerifiedApprover:
    """Who signed in at the identity provider, as its verified token says.

    >>> who = VerifiedApprover("maria@example.com.br", frozenset({"dpo"}), "https://idp")
    >>> who.may_approve(["group:dpo"]), who.may_approve(["group:ops"])
    (True, False)
    """

    subject: str
    groups: frozenset[str]
    issuer: str
    #: when the token stops being valid; who the approver is does not depend on it
    expires_at: datetime | None = field(default=None, compare=False)

    @property
    def principal(self) -> str:
        """The name approvals and audit records give this approver."""
        return f"oidc:{self.subject}"

    def may_approve(self, approvers: Collection[str]) -> bool:
        """Whether a policy's ``approvals.approvers`` list admits this approver.

        Entries are ``group:NAME`` (a member of that group) or a subject, as the approvals
        store reads them. An empty list admits every verified approver.
        """
        if not approvers:
            return True
        return self.subject in approvers or any(f"group:{g}" in approvers for g in self.groups)

    def to_dict(self) -> dict[str, Any]:
        return {"subject": self.subject, "groups": sorted(self.groups), "issuer": self.issuer}


class ApproverVerifier:
    """Verifies approvers' OIDC tokens against a JWKS from a URL or a local file.

    ``jwks`` is an ``https://`` URL (``http://`` only on a loopback address), a
    ``file://`` URL or a path. ``groups_claim`` may be a dotted path into the token
    (``realm_access.roles``); its value may be a list or a space-separated string. The
    constructor does no I/O: the JWKS is fetched (and cached) on the first verification.
    """

    def __init__(
        self,
        *,
        jwks: str,
        issuer: str,
        audience: str | Sequence[str],
        groups_claim: str = "groups",
        algorithms: Sequence[str] = ASYMMETRIC_ALGORITHMS,
        leeway: timedelta = timedelta(seconds=30),
        cache_lifespan: timedelta = timedelta(minutes=5),
        timeout: float = 5.0,
    ) -> None:
        refused = [a for a in algorithms if a not in ASYMMETRIC_ALGORITHMS]
        if refused:
            raise TokenAlgorithmRejected(
                f"approver tokens must be signed with {', '.join(ASYMMETRIC_ALGORITHMS)}; "
                f"not {', '.join(refused)}"
            )
        self.issuer = issuer
        self.audience = audience
        self.groups_claim = groups_claim
        self.algorithms = tuple(algorithms)
        self.leeway = leeway
        self._client: jwt.PyJWKClient | None = None
        self._file: Path | None = None
        self._file_keys: dict[str, jwt.PyJWK] | None = None
        self._lock = threading.Lock()
        parsed = urlparse(jwks)
        if parsed.scheme in {"https", "http"}:
            if parsed.scheme == "http" and not _is_loopback(parsed.hostname or ""):
                raise TokenError(
                    "a JWKS URL must use https (plain http is accepted only on loopback)"
                )
            self._client = jwt.PyJWKClient(
                jwks, cache_jwk_set=True, lifespan=cache_lifespan.total_seconds(), timeout=timeout
            )
        elif parsed.scheme == "file":
            self._file = Path(parsed.path)
        elif parsed.scheme == "":
            self._file = Path(jwks)
        else:
            raise TokenError(f"a JWKS source must be an https URL or a file, not {parsed.scheme}:")

    def verify(self, token: str) -> VerifiedApprover:
        header = _header(token)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg.lower() == "none":
            raise TokenAlgorithmRejected("unsigned tokens (alg none) are refused")
        if alg not in self.algorithms:
            raise TokenAlgorithmRejected(
                f"algorithm {alg} is not accepted for approver tokens "
                f"(accepted: {', '.join(self.algorithms)})"
            )
        jwk = self._signing_key(header.get("kid"))
        if jwk.algorithm_name != alg:
            raise TokenAlgorithmRejected(
                f"key {jwk.key_id!r} is {jwk.algorithm_name}, the token says {alg}"
            )
        key = TokenKey(str(jwk.key_id), alg, jwk.key)
        payload = _decode(
            token,
            key,
            audience=self.audience,
            issuer=self.issuer,
            leeway=self.leeway,
            require=["iss", "sub", "aud", "exp", "iat"],
        )
        subject = payload.get("sub")
        if not isinstance(subject, str) or not subject:
            raise TokenError("approver token has no subject")
        return VerifiedApprover(
            subject=subject,
            groups=self._groups(payload),
            issuer=str(payload["iss"]),
            expires_at=claim_time(payload, "exp"),
        )

    def _groups(self, payload: dict[str, Any]) -> frozenset[str]:
        value: Any = payload
        for part in self.groups_claim.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is None:
            return frozenset()
        if isinstance(value, str):
            return frozenset(value.split())
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return frozenset(value)
        raise TokenError(f"claim {self.groups_claim!r} is neither a list nor a string")

    def _signing_key(self, kid: object) -> jwt.PyJWK:
        if self._client is not None:
            try:
                if kid is None:
                    listed = self._client.get_signing_keys()
                    if len(listed) != 1:
                        raise TokenKeyUnknown("token has no kid and the JWKS has several keys")
                    return listed[0]
                return self._client.get_signing_key(str(kid))
            except jwt.PyJWKClientConnectionError:
                raise TokenError("cannot fetch the JWKS from the identity provider") from None
            except (jwt.PyJWKClientError, jwt.PyJWKSetError):
                raise TokenKeyUnknown(f"the JWKS has no signing key with kid {kid!r}") from None
        keys = self._load_file()
        if kid is None:
            if len(keys) != 1:
                raise TokenKeyUnknown("token has no kid and the JWKS has several keys")
            return next(iter(keys.values()))
        try:
            return keys[str(kid)]
        except KeyError:
            raise TokenKeyUnknown(f"the JWKS has no signing key with kid {kid!r}") from None

    def _load_file(self) -> dict[str, jwt.PyJWK]:
        assert self._file is not None
        with self._lock:
            if self._file_keys is None:
                try:
                    data = json.loads(self._file.read_text(encoding="utf-8"))
                    jwk_set = jwt.PyJWKSet.from_dict(data)
                except OSError as err:
                    raise TokenError(
                        f"cannot read the JWKS file {self._file}: {err.strerror or err}"
                    ) from None
                except (ValueError, jwt.PyJWTError):
                    raise TokenError(f"{self._file} is not a JWKS document") from None
                self._file_keys = {
                    str(k.key_id): k
                    for k in jwk_set.keys
                    if k.key_id and k.public_key_use in ("sig", None)
                }
            return self._file_keys


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
