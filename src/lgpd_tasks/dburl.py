"""Database URLs in messages: one redaction for every place that shows a URL.

A password can sit in two places of a SQLAlchemy/libpq URL: the userinfo
(``postgresql://app:s3cret@db/test``) and the query string
(``postgresql://db/test?user=app&password=s3cret``), which libpq reads as well.
:func:`redact_url` hides both, and the other secrets a query string can carry.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

#: Query keys whose value is a secret or points at one (libpq's, and the usual spellings).
_SECRET_KEY = re.compile(r"pass|secret|token|credential|api_?key", re.IGNORECASE)

#: libpq query keys that decide who logs in, or with what (a URL handed to a task drops them).
LOGIN_QUERY_KEYS = frozenset(
    {
        "user",
        "password",
        "passfile",
        "service",
        "servicefile",
        "sslpassword",
        "sslkey",
        "sslcert",
        "sslcertmode",
        "require_auth",
        "krbsrvname",
        "gsslib",
        "gssdelegation",
    }
)

#: ``scheme://user:PASSWORD@``, up to the last ``@`` (hiding too much rather than too little).
_USERINFO_PASSWORD = re.compile(r"^([\w+.-]+://[^:/@?#]*:).*@")
#: ``?...password=VALUE`` in a URL that does not parse.
_QUERY_PAIR = re.compile(r"([?&;])([^=&#;]*)=([^&#;]*)")

_HIDDEN = "***"


def is_secret_key(key: str) -> bool:
    """Whether a URL query key carries a secret (its value is hidden in messages).

    >>> [is_secret_key(k) for k in ("password", "passfile", "sslpassword", "sslmode", "user")]
    [True, True, True, False, False]
    """
    return bool(_SECRET_KEY.search(key))


def redact_url(url: str | URL) -> str:
    """The URL with every password hidden, fit for messages, logs and audit records.

    The userinfo's password and the value of every secret query key (``password=``,
    ``passfile=``, ``sslpassword=``...) become ``***``. A URL only its port spoils still
    names where it points; text that is not a URL at all is not shown.

    >>> redact_url("postgresql://app:s3cret@db:5432/test")
    'postgresql://app:***@db:5432/test'
    >>> redact_url("postgresql://db:5432/test?user=app&password=s3cret&sslmode=require")
    'postgresql://db:5432/test?password=***&sslmode=require&user=app'
    >>> redact_url("postgresql://app:s3cret@db:notaport/test?password=s3cret")
    'postgresql://app:***@db:notaport/test?password=***'
    >>> redact_url("host=db password=s3cret")
    '<unparsable URL>'
    """
    if isinstance(url, URL):
        return _render(url)
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "<unparsable URL>"
    except ValueError:  # a port that is not a number: show the rest, secrets hidden
        text = _USERINFO_PASSWORD.sub(rf"\1{_HIDDEN}@", str(url))
        return _QUERY_PAIR.sub(
            lambda m: f"{m[1]}{m[2]}={_HIDDEN}" if is_secret_key(m[2]) else m[0], text
        )
    return _render(parsed)


def parse_url(
    url: str,
    error: Callable[[str], Exception],
    *,
    what: str = "the database URL",
    example: str = "postgresql://user@host:5432/db",
) -> URL:
    """``url`` parsed by SQLAlchemy, or ``error(message)`` raised from nowhere: the message
    names ``what`` could not be parsed and why, showing the URL without its secrets (not at
    all when it is no URL).

    >>> parse_url("postgresql://app:s3cret@db:notaport/test", ValueError)
    Traceback (most recent call last):
    ...
    ValueError: the database URL postgresql://app:***@db:notaport/test cannot be parsed: \
the port must be a number
    >>> parse_url("host=db password=s3cret", ValueError, what="the audit store URL")
    Traceback (most recent call last):
    ...
    ValueError: the audit store URL is not a URL such as postgresql://user@host:5432/db
    """
    try:
        return make_url(url)
    except ArgumentError:
        raise error(f"{what} is not a URL such as {example}") from None
    except ValueError:  # the only value SQLAlchemy converts while parsing is the port
        raise error(
            f"{what} {redact_url(url)} cannot be parsed: the port must be a number"
        ) from None


def _render(url: URL) -> str:
    secret = [key for key in url.query if is_secret_key(key)]
    if not secret:
        return url.render_as_string(hide_password=True)
    marker = "lgpdhiddenvalue"
    shown = url.update_query_dict({key: marker for key in secret})
    return shown.render_as_string(hide_password=True).replace(marker, _HIDDEN)


def without_login_query(url: URL) -> URL:
    """``url`` without the query keys that choose the login (user, password, service...).

    The credentials broker builds each task's URL from the administrator's; libpq lets a
    ``?user=`` or ``?service=`` in the query string override the URL's user, so those keys
    must not travel to the task.

    >>> without_login_query(make_url("postgresql://db/test?user=a&password=b&sslmode=require"))
    postgresql://db/test?sslmode=require
    """
    dropped = [key for key in url.query if key.lower() in LOGIN_QUERY_KEYS or is_secret_key(key)]
    return url.difference_update_query(dropped) if dropped else url
