"""``hmac`` tokens of large batches come from polars-hash: the same tokens as hashlib's.

Tokens join masked data across runs and tasks, so the fast path must never change one: it
is checked here against hashlib over generated messages and keys, in a fresh interpreter
for when polars is imported, and against a fast path that goes wrong.
"""

from __future__ import annotations

import hmac
import logging
import subprocess
import sys
import textwrap
import threading
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lgpd_tasks.masking import Masker, MaskingRules, fast_hmac
from lgpd_tasks.masking.strategies import HmacKey

pytest.importorskip("polars_hash", reason="the fast extra is not installed")


@pytest.fixture
def fast_now(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path on from the first value, as in a process that has hashed a lot."""
    monkeypatch.setattr(fast_hmac, "IMPORT_AFTER", 0)
    monkeypatch.setattr(fast_hmac._State, "off", False)
    monkeypatch.setattr(fast_hmac._State, "hashed", 0)


def _hashlib_tokens(key: bytes, messages: list[str], prefix: str, length: int) -> list[str]:
    return [prefix + hmac.new(key, m.encode(), "sha256").hexdigest()[:length] for m in messages]


KEYS = st.one_of(
    st.text(min_size=1, max_size=100).map(str.encode),  # unicode, NUL, longer than a block
    st.sampled_from([b"k", b"benchmark-key-0123456789abcdef", b"x" * 64, b"y" * 65]),
)


@pytest.mark.usefixtures("fast_now")
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(key=KEYS, messages=st.lists(st.text(max_size=80), max_size=40), length=st.integers(8, 64))
def test_fast_tokens_are_hashlibs(key: bytes, messages: list[str], length: int) -> None:
    hmac_key = HmacKey(key)
    tokens = hmac_key.tokens(pa.array(messages, pa.large_string()), "hmac:cpf:", length)
    assert tokens.type == pa.large_string()
    assert tokens.to_pylist() == _hashlib_tokens(key, messages, "hmac:cpf:", length)
    assert not fast_hmac._State.off, "the fast path was turned off: it disagreed or failed"


@pytest.mark.usefixtures("fast_now")
def test_masker_tokens_equal_with_and_without_the_fast_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from faker import Faker

    fake = Faker("pt_BR")
    Faker.seed(7)
    frame = pd.DataFrame({"cpf": [fake.cpf() for _ in range(3_000)] + [None, ""]})
    masker = Masker(MaskingRules(columns={"cpf": "hmac"}), key=b"k" * 40)
    fast, fast_report = masker.mask_dataframe(frame)
    assert fast_hmac._State.modules is not None  # it did run
    monkeypatch.setattr(fast_hmac._State, "off", True)
    slow, slow_report = masker.mask_dataframe(frame)
    pd.testing.assert_frame_equal(fast, slow)
    assert fast_report == slow_report
    assert (
        fast["cpf"].iloc[0]
        == _hashlib_tokens(
            b"k" * 40,
            ["cpf:" + frame["cpf"].iloc[0].replace(".", "").replace("-", "")],
            "hmac:cpf:",
            24,
        )[0]
    )


@pytest.mark.usefixtures("fast_now")
@pytest.mark.parametrize("cpus", [2, 3])
def test_a_large_batch_is_hashed_in_parts_side_by_side(
    monkeypatch: pytest.MonkeyPatch, cpus: int
) -> None:
    """A batch of at least two parts is cut into one part per CPU, hashed on threads: the
    tokens, in their rows, are hashlib's."""
    monkeypatch.setattr(fast_hmac, "PART_MIN", 10)
    monkeypatch.setattr(fast_hmac, "_cpus", lambda: cpus)
    messages = [f"cpf:{i:011d}" for i in range(10 * cpus + 7)]
    parts = fast_hmac._parts(len(messages))
    assert len(parts) == cpus
    assert [start for start, _ in parts] == [sum(n for _, n in parts[:i]) for i in range(cpus)]
    assert sum(n for _, n in parts) == len(messages)
    tokens = HmacKey(b"k" * 40).tokens(pa.array(messages, pa.large_string()), "hmac:cpf:", 24)
    assert isinstance(tokens, pa.ChunkedArray)
    assert tokens.num_chunks == cpus
    assert tokens.to_pylist() == _hashlib_tokens(b"k" * 40, messages, "hmac:cpf:", 24)
    assert not fast_hmac._State.off


def test_small_batches_and_one_cpu_are_hashed_in_one_part(monkeypatch: pytest.MonkeyPatch) -> None:
    assert fast_hmac._parts(fast_hmac.PART_MIN * 2 - 1) == [(0, fast_hmac.PART_MIN * 2 - 1)]
    assert fast_hmac._parts(0) == [(0, 0)]
    monkeypatch.setattr(fast_hmac, "_cpus", lambda: 1)
    assert fast_hmac._parts(fast_hmac.PART_MIN * 8) == [(0, fast_hmac.PART_MIN * 8)]


@pytest.mark.usefixtures("fast_now")
def test_a_part_failing_on_its_thread_falls_back_to_hashlib(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(fast_hmac, "PART_MIN", 10)
    monkeypatch.setattr(fast_hmac, "_cpus", lambda: 2)
    right = fast_hmac._hash
    main = threading.get_ident()

    def failing_off_the_main_thread(*args: Any) -> pa.Array:
        if threading.get_ident() != main:
            raise RuntimeError("a failure on the worker thread")
        return right(*args)

    monkeypatch.setattr(fast_hmac, "_hash", failing_off_the_main_thread)
    messages = [f"cpf:{i:011d}" for i in range(40)]
    with caplog.at_level(logging.WARNING, logger="lgpd_tasks.masking.fast_hmac"):
        tokens = HmacKey(b"k").tokens(pa.array(messages), "hmac:cpf:", 24)
    assert tokens.to_pylist() == _hashlib_tokens(b"k", messages, "hmac:cpf:", 24)
    assert fast_hmac._State.off
    assert "polars-hash failed (RuntimeError)" in caplog.text


DIGITISH = st.text(alphabet=st.sampled_from("0123456789.-- ٣２\n(a\u00b2"), min_size=1, max_size=20)


@pytest.mark.usefixtures("fast_now")
@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    values=st.lists(DIGITISH, min_size=1, max_size=30),
    column=st.sampled_from(["cpf", "telefone", "cep"]),
)
def test_digits_normalised_by_the_fast_path_give_the_tokens_of_the_slow_one(
    values: list[str], column: str
) -> None:
    """CPFs, phones and CEPs lose their dots and dashes on the hashing threads: every value,
    whether digits, dots and dashes alone or anything else (full-width or Arabic-Indic
    digits, superscripts, spaces, a newline), gets the token hashlib gives it."""
    frame = pd.DataFrame({column: values})
    masker = Masker(MaskingRules(columns={column: "hmac"}, detect=False), key=b"k" * 40)
    fast, _ = masker.mask_dataframe(frame)
    assert not fast_hmac._State.off, "the fast path was turned off: it disagreed or failed"
    fast_hmac._State.off = True
    try:
        slow, _ = masker.mask_dataframe(frame)
    finally:
        fast_hmac._State.off = False
    pd.testing.assert_frame_equal(fast, slow)


@pytest.mark.usefixtures("fast_now")
def test_digit_tokens_of_formatted_cpfs_are_hashlibs_of_their_digits() -> None:
    key = HmacKey(b"chave-de-teste-0123456789")
    cpfs = ["529.982.247-25", "52998224725", "111.444.777-35"]
    tokens = key.digit_tokens(pa.array(cpfs, pa.large_string()), "cpf:", "hmac:cpf:", 24)
    assert tokens is not None
    digits = [c.replace(".", "").replace("-", "") for c in cpfs]
    assert tokens.to_pylist() == _hashlib_tokens(
        b"chave-de-teste-0123456789", [f"cpf:{d}" for d in digits], "hmac:cpf:", 24
    )
    # anything but digits, dots and dashes: the caller normalises it (no token, no turning off)
    assert key.digit_tokens(pa.array(["(11) 98765-4321"]), "telefone:", "hmac:", 24) is None
    assert key.digit_tokens(pa.array(["１２３"]), "cpf:", "hmac:cpf:", 24) is None
    assert key.digit_tokens(pa.array(["123", None]), "cpf:", "hmac:cpf:", 24) is None
    assert not fast_hmac._State.off


@pytest.mark.usefixtures("fast_now")
def test_a_key_that_is_not_utf8_is_hashed_with_hashlib() -> None:
    key = b"\xff\xfe-not-utf-8"
    tokens = HmacKey(key).tokens(pa.array(["cpf:1", "cpf:2"]), "hmac:cpf:", 24)
    assert tokens.to_pylist() == _hashlib_tokens(key, ["cpf:1", "cpf:2"], "hmac:cpf:", 24)


@pytest.mark.usefixtures("fast_now")
def test_wrong_fast_tokens_are_caught_and_the_fast_path_turned_off(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    right = fast_hmac.tokens

    def swapped(key: str, messages: pa.Array, prefix: str, length: int) -> pa.Array | None:
        out = right(key, messages, prefix, length)
        assert out is not None
        return pa.concat_arrays([out[1:], out[:1]])  # every token in the wrong row

    monkeypatch.setattr(fast_hmac, "tokens", swapped)
    messages = ["cpf:1", "cpf:2", "cpf:3"]
    with caplog.at_level(logging.WARNING, logger="lgpd_tasks.masking.fast_hmac"):
        tokens = HmacKey(b"k").tokens(pa.array(messages), "hmac:cpf:", 24)
    assert tokens.to_pylist() == _hashlib_tokens(b"k", messages, "hmac:cpf:", 24)
    assert fast_hmac._State.off
    assert "unlike hashlib" in caplog.text
    assert "cpf:" not in caplog.text  # no value in the log


@pytest.mark.usefixtures("fast_now")
def test_a_failing_fast_path_falls_back_without_quoting_the_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="lgpd_tasks.masking.fast_hmac"):
        # polars-hash refuses integers: a real failure inside the plugin
        assert fast_hmac.tokens("SEGREDO-DA-CHAVE", pa.array([1, 2]), "hmac:cpf:", 24) is None
    assert fast_hmac._State.off
    assert "polars-hash failed (ComputeError)" in caplog.text
    assert "SEGREDO" not in caplog.text
    assert "SEGREDO" not in repr(HmacKey(b"SEGREDO-DA-CHAVE"))


def test_polars_is_imported_only_once_a_process_has_hashed_enough() -> None:
    """A short task never pays for importing polars; a process that hashes a lot does, and
    its tokens stay hashlib's."""
    script = textwrap.dedent(
        """
        import hmac, sys
        import pandas as pd
        from lgpd_tasks.masking import Masker, MaskingRules, fast_hmac
        masker = Masker(MaskingRules(columns={"doc": "hmac"}), key=b"chave-de-teste-0123456789")
        small = pd.DataFrame({"doc": [f"doc {i}" for i in range(1_000)]})
        masker.mask_dataframe(small)
        print("polars" in sys.modules)
        big = pd.DataFrame({"doc": [f"doc {i}" for i in range(fast_hmac.IMPORT_AFTER)]})
        masked, _ = masker.mask_dataframe(big)
        print("polars" in sys.modules, fast_hmac._State.off)
        last = big["doc"].iloc[-1]
        want = hmac.new(b"chave-de-teste-0123456789", f"other:{last}".encode(), "sha256").hexdigest()[:24]
        print(masked["doc"].iloc[-1] == f"hmac:other:{want}")
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["False", "True", "False", "True"]


def test_a_child_forked_after_polars_started_hashes_with_hashlib() -> None:
    """polars may deadlock in a child forked after its threads started: such a child must
    not use it (and still give the same tokens)."""
    script = textwrap.dedent(
        """
        import os, sys
        import pandas as pd
        from lgpd_tasks.masking import Masker, MaskingRules, fast_hmac
        fast_hmac.IMPORT_AFTER = 0
        masker = Masker(MaskingRules(columns={"doc": "hmac"}), key=b"chave-de-teste-0123456789")
        frame = pd.DataFrame({"doc": [f"doc {i}" for i in range(50_000)]})
        parent, _ = masker.mask_dataframe(frame)
        assert fast_hmac._State.modules is not None
        pid = os.fork()
        if pid == 0:
            child, _ = masker.mask_dataframe(frame)
            same = child.equals(parent) and fast_hmac._State.off
            os._exit(0 if same else 3)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), fast_hmac._State.off)
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["0", "False"]


def test_a_thread_masking_while_the_interpreter_exits_hashes_its_parts_itself() -> None:
    """Once the main thread has returned, the worker pool takes no more work: a thread still
    masking hashes every part on its own thread, keeps the fast path and hashlib's tokens."""
    script = textwrap.dedent(
        """
        import hmac, threading
        import pyarrow as pa
        from lgpd_tasks.masking import fast_hmac
        from lgpd_tasks.masking.strategies import HmacKey
        fast_hmac.IMPORT_AFTER = 0
        fast_hmac.PART_MIN = 100
        fast_hmac._cpus = lambda: 3
        values = [f"{j:011d}" for j in range(1_000)]
        want = ["h:" + hmac.new(b"k" * 40, f"cpf:{v}".encode(), "sha256").hexdigest()[:24]
                for v in values]
        key = HmacKey(b"k" * 40)
        key.digit_tokens(pa.array(values, pa.large_string()), "cpf:", "h:", 24)  # pool made
        def late():
            ok = True
            for _ in range(200):
                tokens = key.digit_tokens(pa.array(values, pa.large_string()), "cpf:", "h:", 24)
                ok = ok and tokens is not None and tokens.to_pylist() == want
            print(ok, fast_hmac._State.off, flush=True)
        threading.Thread(target=late).start()
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["True", "False"]
    assert "polars-hash failed" not in run.stderr
