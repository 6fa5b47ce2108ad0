"""Keyed subject digests, computed in a helper process for large statements.

HMAC-SHA256 costs about 0.65 µs per value in CPython, under the GIL: a 1,000,000-row extract
with a primary key and a subject key needs two million of them. A thread cannot overlap
that with the fetch (measured: the GIL handoff made the extract three times slower), a
second process can. :class:`Digester` hashes the first values itself and, once a statement
has produced :data:`HELPER_AFTER` of them, starts ``python -I -S`` on a tiny script that
reads the key and batches of values from a pipe and returns packed digests. The key and
the identifiers travel only through that pipe: no file, no argument, no environment.
"""

from __future__ import annotations

import hashlib
import struct
import subprocess
import sys
from collections.abc import Callable, Sequence

from lgpd_tasks.errors import AuditUnavailable

DIGEST_BYTES = 16

#: Values a statement hashes in-process before it starts the helper (about 3 ms of work;
#: starting the helper costs about 8 ms, so small statements never start one).
HELPER_AFTER = 5_000

_SEPARATOR = "\n"

# The helper: H <prefix length> <payload length> <prefix> <payload> hashes each value of
# the newline-separated payload; F sends back every digest so far, in order; EOF ends it.
_HELPER = r"""
import hashlib, struct, sys
stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
def read(n):
    data = stdin.read(n)
    if len(data) != n:
        raise SystemExit(0)
    return data
key = read(64)
inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
opad = bytes(b ^ 0x5C for b in key)
sha256 = hashlib.sha256
done = []
append = done.append
while True:
    op = read(1)
    if op == b"H":
        size, length = struct.unpack("<II", read(8))
        start = inner.copy()
        start.update(read(size))
        fresh = start.copy
        for message in read(length).split(b"\n"):
            h = fresh()
            h.update(message)
            append(sha256(opad + h.digest()).digest()[:16])
    elif op == b"F":
        data = b"".join(done)
        done.clear()
        stdout.write(struct.pack("<Q", len(data)) + data)
        stdout.flush()
    else:
        raise SystemExit(0)
"""


#: Pipe capacity asked for (Linux), so a batch is handed over without waiting for the helper.
_PIPE_BYTES = 1 << 20


def _widen(process: subprocess.Popen[bytes]) -> None:
    """Ask for wider pipes where the platform allows; the default 64 KiB also works."""
    try:
        import fcntl

        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
    except (ImportError, AttributeError, OSError):
        pass


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
    """Queues hashing jobs; :meth:`collect` returns each job's packed digests, in order.

    >>> digester = Digester(Hasher(b"k"), helper_after=2)
    >>> digester.submit(b"s:", ["1"]); digester.submit(b"s:", ["2", "3"])
    >>> [len(blob) // 16 for blob in digester.collect()]
    [1, 2]
    >>> digester.helper_started, digester.collect()
    (True, [])
    >>> digester.close()
    """

    def __init__(
        self,
        hasher: Hasher,
        *,
        helper_after: int = HELPER_AFTER,
        unavailable: Callable[[str], AuditUnavailable] = AuditUnavailable,
    ) -> None:
        self._hasher = hasher
        self._helper_after = helper_after
        self._unavailable = unavailable
        self._hashed = 0
        self._process: subprocess.Popen[bytes] | None = None
        # per job: its digests (hashed here) or how many the helper owes
        self._jobs: list[bytes | int] = []

    @property
    def helper_started(self) -> bool:
        return self._process is not None

    def submit(self, prefix: bytes, texts: Sequence[str]) -> None:
        if not texts:
            self._jobs.append(b"")
            return
        self._hashed += len(texts)
        if self._process is None and self._hashed > self._helper_after:
            self._process = self._start()
        payload = _SEPARATOR.join(texts)
        if self._process is None or payload.count(_SEPARATOR) != len(texts) - 1:
            self._jobs.append(self._hasher.many(prefix, texts))
            return
        data = payload.encode()
        try:
            stdin = self._process.stdin
            assert stdin is not None
            stdin.write(b"H" + struct.pack("<II", len(prefix), len(data)) + prefix)
            stdin.write(data)
        except OSError as err:
            raise self._failed(f"cannot be fed ({err.strerror or err})") from None
        self._jobs.append(len(texts))

    def collect(self) -> list[bytes]:
        """The packed digests of every job submitted since the last collect."""
        jobs, self._jobs = self._jobs, []
        owed = sum(j for j in jobs if isinstance(j, int))
        computed = b""
        if owed:
            computed = self._fetch(owed * DIGEST_BYTES)
        out: list[bytes] = []
        at = 0
        for job in jobs:
            if isinstance(job, int):
                out.append(computed[at : at + job * DIGEST_BYTES])
                at += job * DIGEST_BYTES
            else:
                out.append(job)
        return out

    def close(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        try:
            if process.stdin is not None:
                process.stdin.close()
            process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()
        finally:
            if process.stdout is not None:
                process.stdout.close()

    def _start(self) -> subprocess.Popen[bytes] | None:
        try:
            # a fixed script run by this very interpreter: no outside input reaches argv
            process = subprocess.Popen(  # noqa: S603
                [sys.executable, "-I", "-S", "-c", _HELPER],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env={},
            )
            assert process.stdin is not None
            _widen(process)
            process.stdin.write(self._hasher.block)
        except OSError:
            return None  # no helper: the values are hashed here, only slower
        return process

    def _fetch(self, size: int) -> bytes:
        process = self._process
        assert process is not None
        assert process.stdin is not None
        assert process.stdout is not None
        try:
            process.stdin.write(b"F")
            process.stdin.flush()
            head = process.stdout.read(8)
            got = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
            data = process.stdout.read(got) if got == size else b""
        except (OSError, struct.error) as err:
            raise self._failed(f"failed ({err})") from None
        if len(data) != size:
            raise self._failed(f"returned {max(got, 0)} bytes of digests instead of {size}")
        return data

    def _failed(self, what: str) -> AuditUnavailable:
        self.close()
        return self._unavailable(f"the subject trail's digest helper {what}")
