"""``hmac`` tokens of digit-only values, hashed in a helper process while a result is fetched.

HMAC-SHA256 costs one to two microseconds per value in CPython, under the GIL: hashing the
100,000 CPFs of a result takes about as long as fetching it. A
:class:`~lgpd_tasks.masking.prefetch.HmacPrefetch` hands each fetched batch of a column the
policy masks with ``hmac`` to this script, run as ``python -I -S hmac_worker.py``, so the
digests are ready by the time the masker needs them. It imports only the standard library.

The masker looks each of its messages up among the answers by exact bytes and hashes the
ones it does not find itself, so a value this worker normalises differently (a full-width
digit) costs time, never a wrong token.

Protocol (little-endian): the 64-byte key block, then operations: ``V`` <u32 tag length>
<u32 payload length> <tag> <payload> adds newline-separated values: each keeps only its
ASCII digits (how CPFs, phones, cards and CEPs are normalised before hashing), empty ones
and repeats are skipped, and ``tag + digits`` is hashed; ``F`` answers <u64 length>
<messages, newline-separated> <u64 length> <their 32-byte digests, in the same order>;
end of input ends the process. The key and the values travel only through the pipe.
"""

from __future__ import annotations

import hashlib
import os
import signal
import struct
import sys
from typing import BinaryIO

#: Every byte but the ASCII digits and the separator: what normalisation removes.
NOT_DIGITS = bytes(b for b in range(256) if not 0x30 <= b <= 0x39 and b != 0x0A)
DIGEST_BYTES = 32


class DigitsHasher:
    """HMAC-SHA256 of ``tag + digits`` for each new value, with the key's states made once.

    >>> import hmac
    >>> hasher = DigitsHasher(b"k".ljust(64, b"\\0"))
    >>> hasher.add(b"cpf:", b"529.982.247-25\\n52998224725\\n\\nabc")
    >>> messages, digests = hasher.take()
    >>> messages, digests == hmac.digest(b"k", b"cpf:52998224725", "sha256")
    (b'cpf:52998224725', True)
    """

    def __init__(self, block: bytes) -> None:
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        # a fresh outer hash over opad + inner digest costs less than copying a state
        self._opad = bytes(b ^ 0x5C for b in block)
        self._seen: set[bytes] = set()
        self._messages: list[bytes] = []
        self._digests: list[bytes] = []

    def add(self, tag: bytes, payload: bytes) -> None:
        values = set(payload.translate(None, NOT_DIGITS).split(b"\n"))
        values.discard(b"")
        fresh = [tag + v for v in values]
        new = list(set(fresh).difference(self._seen))
        if not new:
            return
        self._seen.update(new)
        start, opad, sha256 = self._inner.copy, self._opad, hashlib.sha256
        append = self._digests.append
        for message in new:
            inner = start()
            inner.update(message)
            append(sha256(opad + inner.digest()).digest())
        self._messages.extend(new)

    def take(self) -> tuple[bytes, bytes]:
        """The messages (newline-separated) and their digests since the last take."""
        messages, digests = b"\n".join(self._messages), b"".join(self._digests)
        self._messages.clear()
        self._digests.clear()
        return messages, digests


def _read(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise SystemExit(0)
    return data


def serve(stdin: BinaryIO, stdout: BinaryIO) -> None:
    """Run the protocol until the input ends."""
    hasher = DigitsHasher(_read(stdin, 64))
    while True:
        op = stdin.read(1)
        if op == b"V":
            size, length = struct.unpack("<II", _read(stdin, 8))
            tag = _read(stdin, size)
            hasher.add(tag, _read(stdin, length))
        elif op == b"F":
            messages, digests = hasher.take()
            stdout.write(struct.pack("<Q", len(messages)) + messages)
            stdout.write(struct.pack("<Q", len(digests)) + digests)
            stdout.flush()
        else:
            return


def main() -> None:
    """Serve the task on standard input and output, as its helper.

    Ctrl-C, which reaches the whole process group, is left to the task: it ends the helper
    by closing its input. A task that stops reading an answer (an error or an interrupt
    while it read) closes the helper's output too, and the helper then ends quietly.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        serve(sys.stdin.buffer, sys.stdout.buffer)
    except BrokenPipeError:
        # the rest of the answer has no reader: it goes nowhere, without a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


if __name__ == "__main__":
    main()
