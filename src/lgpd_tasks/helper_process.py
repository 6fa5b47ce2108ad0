"""Helper processes that hash beside the task: started from a fixed script, fed by a pipe.

The subject trail (:mod:`lgpd_tasks.evidence.digests`) hands large batches of identifiers
to a second process, so that hashing overlaps the fetch instead of adding to it. The script
runs as ``python -I -S script.py`` (no site-packages, no environment, no argument but the
script's path), the key block written first on its standard input.
"""

from __future__ import annotations

import contextlib
import struct
import subprocess
import sys
from pathlib import Path

#: Pipe capacity asked for (Linux), so a batch is handed over without waiting for the helper.
PIPE_BYTES = 1 << 20


def start_helper(script: Path, block: bytes) -> subprocess.Popen[bytes] | None:
    """Start ``script`` under this interpreter and send it ``block``; ``None`` when it
    cannot be started (the caller then does the work itself)."""
    if not script.is_file():
        return None
    try:
        # a fixed script run by this very interpreter: no outside input reaches argv
        process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-I", "-S", str(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={},
        )
        assert process.stdin is not None
        _widen(process)
        process.stdin.write(block)
    except OSError:
        return None
    return process


class HelperFailed(Exception):
    """The helper could not be fed or did not answer; the message says which."""


def feed_helper(process: subprocess.Popen[bytes], *parts: bytes) -> None:
    """Write ``parts`` to the helper's input."""
    assert process.stdin is not None
    try:
        for part in parts:
            process.stdin.write(part)
    except OSError as err:
        raise HelperFailed(f"cannot be fed ({err.strerror or err})") from None


def ask_helper(process: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    """Send ``F`` and read the helper's answer: two parts, each <u64 length> <bytes>."""
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        process.stdin.write(b"F")
        process.stdin.flush()
        parts = []
        for _ in range(2):
            head = process.stdout.read(8)
            if len(head) != 8:
                raise HelperFailed("ended without answering")
            size = struct.unpack("<Q", head)[0]
            data = process.stdout.read(size)
            if len(data) != size:
                raise HelperFailed(f"returned {len(data)} of {size} bytes")
            parts.append(data)
    except OSError as err:
        raise HelperFailed(f"failed ({err.strerror or err})") from None
    return parts[0], parts[1]


def stop_helper(process: subprocess.Popen[bytes]) -> None:
    """Close the helper's pipes and wait for it to end; kill it if it lingers.

    The end of its input ends a helper; closing its output first also ends one that is
    still writing an answer nobody will read (the task failed or was interrupted while it
    read), which would otherwise wait on a full pipe. Whatever happens meanwhile (an
    interrupt), the helper does not outlive the call.
    """
    try:
        for pipe in (process.stdout, process.stdin):
            if pipe is not None:
                # (an error closing the input: data the helper, already ended, did not read)
                with contextlib.suppress(OSError):
                    pipe.close()
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _widen(process: subprocess.Popen[bytes]) -> None:
    """Ask for wider pipes where the platform allows; the default 64 KiB also works."""
    try:
        import fcntl

        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (ImportError, AttributeError, OSError):
        pass
