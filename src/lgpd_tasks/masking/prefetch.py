"""Hash a result's ``hmac`` columns in a helper process while the result is being fetched.

Fetching 100,000 rows and hashing their 100,000 CPFs cost about the same in CPython, and
both hold the GIL; a second process can hash one batch while this one converts the next.
:class:`HmacPrefetch` feeds the values of the columns a policy masks with ``hmac`` (CPF,
phone, card and CEP: digits only) to :mod:`~lgpd_tasks.masking.hmac_worker` batch by batch;
:meth:`HmacPrefetch.known` collects the digests for :func:`~lgpd_tasks.masking.strategies.known_digests`.

Nothing depends on the helper: the masker looks its messages up by exact bytes and hashes
whatever is missing, so a helper that cannot start, dies or answers short only costs time.
Small results never start one (:data:`START_AFTER`).
"""

from __future__ import annotations

import logging
import os
import struct
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lgpd_tasks.helper_process import (
    HelperFailed,
    ask_helper,
    feed_helper,
    start_helper,
    stop_helper,
)
from lgpd_tasks.masking import hmac_worker
from lgpd_tasks.masking.columnar import STRING
from lgpd_tasks.masking.strategies import HmacKey, KnownDigests

log = logging.getLogger(__name__)

#: Rows a result must have (when the driver tells) or reach before a helper is started:
#: hashing 10,000 values here takes about as long as starting one.
START_AFTER = 10_000

#: Cores that must be free (usable cores minus the load average) for a helper to start.
SPARE = 0.5

#: Rows fetched per batch while a helper hashes.
BATCH_ROWS = 5_000

_SEPARATOR = "\n"


class HmacPrefetch:
    """The ``hmac`` digests of some columns of a result, computed while it is fetched.

    ``columns`` pairs each column's position in a row with its tag (``b"cpf:"``).
    """

    def __init__(
        self,
        key: HmacKey,
        columns: Sequence[tuple[int, bytes]],
        *,
        expected_rows: int = -1,
        start_after: int = START_AFTER,
    ) -> None:
        self._key = key
        self._columns = list(columns)
        self._start_after = start_after
        self._rows = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._failed = False
        self._known: KnownDigests | None = None
        if expected_rows >= start_after:
            self._process = self._start()

    @staticmethod
    def spare_core() -> bool:
        """Whether a core is free for the helper: on a busy machine (load average at the
        number of usable cores) a helper would take time from the task instead of saving it."""
        try:
            cores = len(os.sched_getaffinity(0))
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            return False
        return cores - load >= SPARE

    @property
    def started(self) -> bool:
        return self._process is not None

    def feed(self, rows: Sequence[Sequence[Any]]) -> None:
        """A batch of fetched rows; their values are hashed meanwhile when a helper runs.

        Values of rows fed before the helper starts are left to the masker."""
        self._rows += len(rows)
        if self._process is None:
            if self._failed or self._rows < self._start_after:
                return
            self._process = self._start()
            if self._process is None:
                return
        for position, tag in self._columns:
            values = [v for v in (row[position] for row in rows) if v.__class__ is str]
            if values:
                payload = _SEPARATOR.join(values).encode("utf-8", "surrogatepass")
                self._send(b"V" + struct.pack("<II", len(tag), len(payload)) + tag, payload)

    def known(self) -> KnownDigests | None:
        """What the helper computed, and the end of it; ``None`` when it computed nothing.

        Asked again, it answers the same."""
        if self._known is not None or self._process is None:
            return self._known
        self._known = self._collect(self._process)
        return self._known

    def _collect(self, process: subprocess.Popen[bytes]) -> KnownDigests | None:
        try:
            messages, digests = ask_helper(process)
        except HelperFailed as err:
            log.debug("the hmac helper %s; the masker hashes the values itself", err)
            return None
        finally:
            self.close()
        size = hmac_worker.DIGEST_BYTES
        if not messages or len(digests) % size:
            return None
        texts = pc.split_pattern(pa.array([messages.decode("ascii")], STRING), "\n")
        listed = texts.flatten()
        if len(listed) * size != len(digests):
            return None
        matrix = np.frombuffer(digests, dtype=np.uint8).reshape(len(listed), size)
        return KnownDigests(self._key, listed, matrix)

    def close(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_helper(process)

    def __enter__(self) -> HmacPrefetch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, *parts: bytes) -> None:
        assert self._process is not None
        try:
            feed_helper(self._process, *parts)
        except HelperFailed as err:
            log.debug("the hmac helper %s; the masker hashes the values itself", err)
            self._failed = True
            self.close()

    def _start(self) -> subprocess.Popen[bytes] | None:
        if not self.spare_core():
            log.debug("no core to spare for an hmac helper; the masker hashes the values itself")
            self._failed = True
            return None
        process = start_helper(Path(hmac_worker.__file__), self._key.block)
        if process is None:
            log.debug("no hmac helper; the masker hashes the values itself")
            self._failed = True
        return process
