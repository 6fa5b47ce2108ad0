"""The subject trail's hashing and de-duplication, run in-process or as a helper process.

This file imports only the standard library, so ``python -I -S trail_worker.py`` runs it
without the package: :class:`lgpd_tasks.evidence.digests.Digester` starts it that way for
large statements, feeding it the key and batches of identifiers through a pipe, and uses a
:class:`TrailWorker` in-process otherwise. Both paths run the same code.

Protocol (little-endian): the 64-byte key block, then operations: ``A`` <u32 prefix length>
<u32 payload length> <prefix> <payload> adds newline-separated identifiers to the trail;
``L`` <u32 prefix length> <u32 keys length> <u32 subjects length> <prefix> <keys>
<subjects> links each primary key to the subject on the same line; ``F`` answers <u64
trail length> <trail> <u64 links length> <links>; end of input ends the process.
"""

from __future__ import annotations

import hashlib
import os
import signal
import struct
import sys
from itertools import chain
from typing import BinaryIO

DIGEST_BYTES = 16
SUBJECT = b"s\0"
#: Identifiers remembered per namespace to skip repeats; past this the memory starts over,
#: which only costs duplicate digests, never lost ones.
DEDUP_LIMIT = 2_000_000


class TrailWorker:
    """Keyed digests (HMAC-SHA256, first 16 bytes) of new identifiers, and links.

    >>> worker = TrailWorker(b"k".ljust(64, b"\\0"))
    >>> worker.add(SUBJECT, [b"1", b"2", b"1"]); worker.add(SUBJECT, [b"2"])
    >>> trail, links = worker.take()
    >>> len(trail) // 16, links
    (2, b'')
    """

    def __init__(self, block: bytes) -> None:
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        # a fresh outer hash over opad + inner digest costs less than copying a state
        self._opad = bytes(b ^ 0x5C for b in block)
        self._seen: dict[bytes, set[bytes]] = {}
        self._linked: dict[bytes, dict[bytes, bytes]] = {}
        self._trail: list[bytes] = []
        self._links: list[bytes] = []

    def digests(self, prefix: bytes, messages: list[bytes]) -> list[bytes]:
        start = self._inner.copy()
        start.update(prefix)
        fresh, opad, sha256 = start.copy, self._opad, hashlib.sha256
        out: list[bytes] = []
        append = out.append
        for message in messages:
            inner = fresh()
            inner.update(message)
            append(sha256(opad + inner.digest()).digest()[:DIGEST_BYTES])
        return out

    def add(self, prefix: bytes, messages: list[bytes]) -> None:
        """Put the identifiers this statement has not yet recorded into its trail."""
        seen = self._seen.setdefault(prefix, set())
        new = set(messages).difference(seen)
        if not new:
            return
        if len(seen) > DEDUP_LIMIT:
            seen.clear()
        seen |= new
        self._trail.extend(self.digests(prefix, list(new)))

    def link(self, prefix: bytes, keys: list[bytes], subjects: list[bytes]) -> None:
        """Link each primary key to the subject of its row; the subjects join the trail."""
        linked = self._linked.setdefault(prefix, {})
        by_key = dict(zip(keys, subjects, strict=True))
        if len(by_key) == len(keys):
            # each key once in this batch (an extract): set operations, no tuple per row
            # set.difference walks the batch, not the statement's links (a dict view's
            # difference would walk all of them, at every batch)
            fresh = set(by_key).difference(linked)
            if len(fresh) < len(by_key):
                fresh.update(k for k in set(by_key).difference(fresh) if linked[k] != by_key[k])
            pair_keys = list(fresh)
            pair_subjects = list(map(by_key.__getitem__, pair_keys))
        else:  # a key repeated (a join): its distinct pairs
            pairs = [p for p in set(zip(keys, subjects, strict=True)) if linked.get(p[0]) != p[1]]
            pair_keys = [k for k, _ in pairs]
            pair_subjects = [s for _, s in pairs]
        if not pair_keys:
            return
        if len(linked) > DEDUP_LIMIT:
            linked.clear()
        linked.update(zip(pair_keys, pair_subjects, strict=True))
        subject_digests = self.digests(SUBJECT, pair_subjects)
        key_digests = self.digests(prefix, pair_keys)
        self._links.extend(chain.from_iterable(zip(key_digests, subject_digests, strict=True)))
        # the subjects of linked rows join the trail without being hashed twice
        seen = self._seen.setdefault(SUBJECT, set())
        new = set(pair_subjects).difference(seen)
        if len(seen) > DEDUP_LIMIT:
            seen.clear()
        seen |= new
        if len(new) == len(pair_subjects):  # each new and once: all of them, in order
            self._trail.extend(subject_digests)
        else:
            by_subject = dict(zip(pair_subjects, subject_digests, strict=True))
            self._trail.extend(map(by_subject.__getitem__, new))

    def take(self) -> tuple[bytes, bytes]:
        """The trail digests and the 32-byte links (key digest, subject digest) so far."""
        trail, links = b"".join(self._trail), b"".join(self._links)
        self._trail.clear()
        self._links.clear()
        return trail, links


def _read(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise SystemExit(0)
    return data


def serve(stdin: BinaryIO, stdout: BinaryIO) -> None:
    """Run the protocol until the input ends."""
    worker = TrailWorker(_read(stdin, 64))
    while True:
        op = stdin.read(1)
        if op == b"A":
            size, length = struct.unpack("<II", _read(stdin, 8))
            prefix = _read(stdin, size)
            worker.add(prefix, _read(stdin, length).split(b"\n"))
        elif op == b"L":
            size, keys, subjects = struct.unpack("<III", _read(stdin, 12))
            prefix = _read(stdin, size)
            worker.link(
                prefix, _read(stdin, keys).split(b"\n"), _read(stdin, subjects).split(b"\n")
            )
        elif op == b"F":
            trail, links = worker.take()
            stdout.write(struct.pack("<Q", len(trail)) + trail)
            stdout.write(struct.pack("<Q", len(links)) + links)
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
