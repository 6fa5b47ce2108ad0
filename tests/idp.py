"""A test identity provider: OIDC ID tokens signed with a key whose JWKS a policy trusts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from lgpd_tasks.credentials.tokens import TokenKey

IDP = "https://idp.example.com.br/realms/lgpd"


def id_token(
    key: TokenKey, sub: str = "joao", groups: tuple[str, ...] = ("dpo",), **extra: Any
) -> str:
    """A token for ``sub`` valid for five minutes; ``extra`` claims override the defaults."""
    now = datetime.now(UTC)
    claims = {
        "iss": IDP,
        "aud": "lgpd-tasks",
        "sub": sub,
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "groups": list(groups),
        **extra,
    }
    return jwt.encode(claims, key.signing, algorithm="ES256", headers={"kid": key.kid})
