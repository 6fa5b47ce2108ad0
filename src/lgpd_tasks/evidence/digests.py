"""Keyed subject digests, computed in a helper process for large statements.

HMAC-SHA256 costs about 0.65 µs per value in CPython, under the GIL: a 1,000,000-row extract
with a primary key and a subject key needs two million of them, plus the de-duplication.
A thread cannot overlap that with the fetch (measured: the GIL handoff made the extract
three times slower); a second process can. :class:`Digester` hands each batch of
identifiers to a :class:`~lgpd_tasks.evidence.trail_worker.TrailWorker`: in-process for the
first :data:`HELPER_AFTER` values of a statement, then in ``python -I -S trail_worker.py``
fed through a pipe. The key and the identifiers travel only through that pipe: no file, no
argument, no environment.
"""

from __future__ import annotations

import hashlib
import struct
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from lgpd_tasks.errors import AuditUnavailable
from lgpd_tasks.evidence import trail_worker
from lgpd_tasks.evidence.trail_worker import DIGEST_BYTES, TrailWorker
from lgpd_tasks.helper_process import (
    HelperFailed,
    ask_helper,
    feed_helper,
    start_helper,
    stop_helper,
)

#: Values a statement hashes in-process before it starts the helper (about 3 ms of work;
#: starting the helper costs about 8 ms, so small statements never start one).
HELPER_AFTER = 5_000

_SEPARATOR = "\n"


def key_block(key: bytes) -> bytes:
    """The HMAC-SHA256 key as one 64-byte block (RFC 2104: hashed if longer, zero-padded)."""
    block = hashlib.sha256().block_size
    if len(key) > block:
        key = hashlib.sha256(key).digest()
    return key.ljust(block, b"\0")


class Hasher:
    """HMAC-SHA256 truncated to 16 bytes, with the key's inner state computed once.

    >>> hasher = Hasher(b"k")
    >>> import hmac
    >>> hasher.digest(b"s:1") == hmac.digest(b"k", b"s:1", "sha256")[:16]
    True
    >>> hasher.many(b"s:", ["1", "2"]) == hasher.digest(b"s:1") + hasher.digest(b"s:2")
    True
    """

    def __init__(self, key: bytes) -> None:
        block = key_block(key)
        self.block = block
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        # a fresh outer hash over opad + inner digest costs less than copying a state
        self._opad = bytes(b ^ 0x5C for b in block)

    def digest(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        return hashlib.sha256(self._opad + inner.digest()).digest()[:DIGEST_BYTES]

    def many(self, prefix: bytes, texts: Sequence[str]) -> bytes:
        """The digests of ``prefix + text`` (UTF-8) for each text, concatenated in order."""
        start = self._inner.copy()
        start.update(prefix)
        fresh, opad, sha256 = start.copy, self._opad, hashlib.sha256
        out: list[bytes] = []
        append = out.append
        for message in map(str.encode, texts):
            inner = fresh()
            inner.update(message)
            append(sha256(opad + inner.digest()).digest()[:DIGEST_BYTES])
        return b"".join(out)


class Digester:
    """The trail work of one statement: identifiers in, digests and links out.

    >>> from lgpd_tasks.evidence.trail_worker import SUBJECT
    >>> digester = Digester(b"k", helper_after=0)
    >>> digester.add(SUBJECT, ["1"]); digester.add(SUBJECT, ["2", "3", "1"])
    >>> digester.link(b"p:t:", ["7", "8"], ["1", "4"])
    >>> trail, links = digester.take()
    >>> digester.helper_started, len(trail) // 16, len(links) // 32
    (True, 4, 2)
    >>> digester.close()
    """

    def __init__(
        self,
        key: bytes,
        *,
        helper_after: int = HELPER_AFTER,
        unavailable: Callable[[str], AuditUnavailable] = AuditUnavailable,
    ) -> None:
        self._block = key_block(key)
        self._local = TrailWorker(self._block)
        self._helper_after = helper_after
        self._unavailable = unavailable
        self._values = 0
        self._process: subprocess.Popen[bytes] | None = None
        self.pending = 0
        """Values handed over since the last :meth:`take`."""

    @property
    def helper_started(self) -> bool:
        return self._process is not None

    def add(self, prefix: bytes, texts: Sequence[str]) -> None:
        """Identifiers (normalised, non-empty) whose digests belong in the trail."""
        if not texts:
            return
        payload = self._payload(texts)
        if payload is None:
            self._local.add(prefix, [t.encode() for t in texts])
        else:
            self._send(b"A" + struct.pack("<II", len(prefix), len(payload)) + prefix, payload)

    def link(self, prefix: bytes, keys: Sequence[str], subjects: Sequence[str]) -> None:
        """Primary keys (in ``prefix``'s namespace) and the subject of the same row."""
        if not keys:
            return
        key_payload = self._payload(keys)
        subject_payload = self._payload(subjects) if key_payload is not None else None
        if key_payload is None or subject_payload is None:
            self._local.link(prefix, [k.encode() for k in keys], [s.encode() for s in subjects])
            return
        head = b"L" + struct.pack("<III", len(prefix), len(key_payload), len(subject_payload))
        self._send(head + prefix, key_payload, subject_payload)

    def take(self) -> tuple[bytes, bytes]:
        """The trail digests (16 bytes each) and links (32 bytes each) since the last take."""
        self.pending = 0
        trail, links = self._local.take()
        if self._process is None:
            return trail, links
        more_trail, more_links = self._fetch()
        return trail + more_trail, links + more_links

    def _payload(self, texts: Sequence[str]) -> bytes | None:
        """The texts for the pipe, or ``None`` to hash them here."""
        self._values += len(texts)
        self.pending += len(texts)
        if self._process is None and self._values > self._helper_after:
            self._process = self._start()
        if self._process is None:
            return None
        joined = _SEPARATOR.join(texts)
        if joined.count(_SEPARATOR) != len(texts) - 1:
            return None  # a separator inside a value: this batch is hashed here
        return joined.encode()

    def _send(self, *parts: bytes) -> None:
        assert self._process is not None
        try:
            feed_helper(self._process, *parts)
        except HelperFailed as err:
            raise self._failed(str(err)) from None

    def close(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_helper(process)

    def _start(self) -> subprocess.Popen[bytes] | None:
        # no helper: the values are hashed here, only slower
        return start_helper(Path(trail_worker.__file__), self._block)

    def _fetch(self) -> tuple[bytes, bytes]:
        assert self._process is not None
        try:
            return ask_helper(self._process)
        except HelperFailed as err:
            raise self._failed(str(err)) from None

    def _failed(self, what: str) -> AuditUnavailable:
        self.close()
        return self._unavailable(f"the subject trail's digest helper {what}")
