"""Column-wise masking on Arrow-backed strings (pandas 3's ``str``), with no Python object per cell.

Everything here works on whole ``pyarrow`` arrays: RE2 regexes in ``pyarrow.compute``,
check digits in numpy over the digits' bytes, results put back with ``replace_with_mask``.
Rows that need Python's ``re`` (lookarounds, several numbers in one sentence) are the only
ones converted to ``str`` objects, and they get exactly the treatment of
:class:`~lgpd_tasks.masking.text.TextScrubber`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from lgpd_tasks.masking.detect import FULL_WIDTH, ContentGuess, PiiType
from lgpd_tasks.masking.text import (
    DIGITS_PREFILTER,
    EMAIL_RE2,
    PHONE_RE2,
    ROW_PREFILTER,
    SPAN_GATE,
    TextScrubber,
)

Bools = np.ndarray[Any, np.dtype[np.bool_]]
Bytes = np.ndarray[Any, np.dtype[np.uint8]]

STRING = pa.large_string()

#: A sentence whose only digits form one identifier of a common spelling, with nothing
#: around it that Python's lookarounds could read differently: no digit anywhere else, no
#: letter or ``.``/``/``/``-`` touching it (an alphanumeric CNPJ could start there) but a
#: ``-`` after a letter (``PED-52998224725``: an alphanumeric CNPJ holds a ``-`` only right
#: before its last two digits, so it cannot reach past that ``-`` into eleven or more
#: digits), and no letter right after it. For such rows the identifier's span and type
#: follow from its digit count alone (11 CPF, 14 CNPJ or card, 16 card); every other row
#: goes through Python.
SINGLE_NUMBER_RE2 = (
    r"^(?P<pre>|[^0-9]*[^0-9A-Za-z./-]|[^0-9]*[A-Za-z]-)"
    r"(?P<span>[0-9]{3}[.][0-9]{3}[.][0-9]{3}-[0-9]{2}|[0-9]{11}"
    r"|[0-9]{2}[.][0-9]{3}[.][0-9]{3}/[0-9]{4}-[0-9]{2}|[0-9]{14}"
    r"|[0-9]{4}(?:[ -]?[0-9]{4}){3})"
    r"(?P<post>|[^0-9A-Za-z][^0-9]*)$"
)


def arrow_strings(values: pd.Series[Any]) -> pa.ChunkedArray | None:
    """The Arrow array behind a pandas string Series, or ``None`` for other storage."""
    array = values.array
    if isinstance(array, pd.arrays.ArrowStringArray):
        return array.__arrow_array__()
    return None


def to_series(array: pa.Array | pa.ChunkedArray, index: pd.Index[Any] | None) -> pd.Series[str]:
    """A pandas ``str`` Series over ``array`` (no copy)."""
    return pd.Series(pd.array(array, dtype="str"), index=index)


def constant(size: int, text: str, index: pd.Index[Any] | None) -> pd.Series[str]:
    """``size`` copies of ``text`` as a ``str`` Series, built in Arrow."""
    return to_series(pa.repeat(pa.scalar(text, STRING), size), index)


def pending(array: pa.ChunkedArray, already_masked: str) -> Bools:
    """Non-null, non-empty values that no strategy produced, as a numpy mask.

    Only values with a ``*`` or starting like a token or a hash can be an output: the exact
    shapes (``already_masked``, anchored) are matched on those alone.
    """
    maybe = pc.or_(
        pc.match_substring(array, "*"),
        pc.or_(pc.starts_with(array, "["), pc.starts_with(array, "hmac:")),
    )
    done = maybe
    if pc.any(maybe).as_py():
        done = pc.and_(maybe, pc.match_substring_regex(array, already_masked))
    todo = pc.and_(pc.greater(pc.binary_length(array), 0), pc.invert(done))
    mask: Bools = pc.fill_null(todo, False).to_numpy(zero_copy_only=False)
    return mask


def fixed_width_bytes(array: pa.Array, width: int) -> Bytes:
    """The bytes of ``array``'s values, all ``width`` bytes long, as a (rows, width) matrix."""
    array = pc.cast(array, pa.large_binary())
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)[
        array.offset : array.offset + len(array) + 1
    ]
    if len(array) == 0:
        return np.zeros((0, width), dtype=np.uint8)
    data = np.frombuffer(array.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    return data.reshape(-1, width)


def valid_cpfs(codes: Bytes) -> Bools:
    """Check digits of many CPFs at once (rows of 11 ASCII digits); repeated digits fail."""
    d = codes.astype(np.int64) - 48
    first = (d[:, :9] * np.arange(10, 1, -1)).sum(axis=1) * 10 % 11 % 10
    second = ((d[:, :9] * np.arange(11, 2, -1)).sum(axis=1) + 2 * first) * 10 % 11 % 10
    repeated = (d == d[:, :1]).all(axis=1)
    ok: Bools = (first == d[:, 9]) & (second == d[:, 10]) & ~repeated
    return ok


def valid_cnpjs(codes: Bytes) -> Bools:
    """Check digits of many numeric CNPJs at once (rows of 14 ASCII digits)."""
    d = codes.astype(np.int64) - 48
    weights = np.array([6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2])
    first = (d[:, :12] * weights[1:]).sum(axis=1) % 11
    first = np.where(first < 2, 0, 11 - first)
    second = ((d[:, :12] * weights[:12]).sum(axis=1) + weights[12] * first) % 11
    second = np.where(second < 2, 0, 11 - second)
    repeated = (d == d[:, :1]).all(axis=1)
    ok: Bools = (first == d[:, 12]) & (second == d[:, 13]) & ~repeated
    return ok


def valid_cards(codes: Bytes) -> Bools:
    """Issuer prefix 1-6 and Luhn checksum of many card numbers of one length at once."""
    d = codes.astype(np.int64) - 48
    doubled = d[:, ::-1].copy()
    odd = doubled[:, 1::2] * 2
    doubled[:, 1::2] = np.where(odd > 9, odd - 9, odd)
    ok: Bools = (doubled.sum(axis=1) % 10 == 0) & (d[:, 0] >= 1) & (d[:, 0] <= 6)
    return ok


def padded_digits(numbers: np.ndarray[Any, np.dtype[np.int64]], width: int) -> Bytes:
    """Non-negative integers below ``10**width`` as rows of ``width`` ASCII digits, zero-padded."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    codes: Bytes = ((numbers[:, None] // powers) % 10 + 48).astype(np.uint8)
    return codes


#: The fewest whole numbers content detection reads as identifiers (see guess_numbers).
MIN_NUMBER_SAMPLE = 10


def guess_numbers(numbers: Sequence[int], threshold: float) -> ContentGuess:
    """Classify a sample of whole numbers as CPFs or CNPJs stored in a numeric column.

    A number has lost its leading zeros, so it is read zero-padded to 11 digits (CPF) and
    to 14 (CNPJ). Only the check digits decide: row ids, amounts or codes validate about
    once in a hundred, far below any threshold, so they are never taken for identifiers.
    Fewer than :data:`MIN_NUMBER_SAMPLE` numbers say nothing (a count or a sum alone
    validates one time in a hundred), so small numeric results are left as they are.

    >>> guess_numbers([191], 0.8).pii_type is None  # count(*) = 191 passes the CPF check
    True
    """
    if len(numbers) < MIN_NUMBER_SAMPLE:
        return ContentGuess(None, 0.0, False)
    values = np.array([n if 0 < n < 10**14 else 0 for n in numbers], dtype=np.int64)
    cpf = (values > 0) & (values < 10**11)
    cpf[cpf] = valid_cpfs(padded_digits(values[cpf], 11))
    cnpj = values > 0
    cnpj[cnpj] = valid_cnpjs(padded_digits(values[cnpj], 14))
    for pii, hits in ((PiiType.CPF, cpf), (PiiType.CNPJ, cnpj)):
        share = float(hits.mean())
        if share >= threshold:
            return ContentGuess(pii, round(share, 4), False)
    return ContentGuess(None, 0.0, False)


def _single_numbers(rows: pa.Array, mask_all_cpf_shaped: bool) -> tuple[Bools, pa.Array]:
    """Which ``rows`` hold one number of a common spelling, and those rows scrubbed.

    The number's bytes are found in numpy (they are the row's only digits) and replaced in
    place by the type token, which is never longer than the number; no regex captures.
    """
    simple: Bools = pc.fill_null(pc.match_substring_regex(rows, SINGLE_NUMBER_RE2), False).to_numpy(
        zero_copy_only=False
    )
    if not simple.any():
        return simple, pa.array([], STRING)
    chosen = pc.cast(rows.filter(pa.array(simple)), pa.large_binary())
    offsets = np.frombuffer(chosen.buffers()[1], dtype=np.int64)[
        chosen.offset : chosen.offset + len(chosen) + 1
    ]
    data = np.frombuffer(chosen.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]].copy()
    offsets = offsets - offsets[0]
    starts = offsets[:-1]
    is_digit = (data >= 48) & (data <= 57)
    where = np.arange(len(data), dtype=np.int64)
    first = np.minimum.reduceat(np.where(is_digit, where, len(data)), starts)
    last = np.maximum.reduceat(np.where(is_digit, where, -1), starts)
    counts = np.add.reduceat(is_digit.astype(np.int64), starts)
    digits = data[is_digit]
    digit_starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    tokens = np.zeros(len(chosen), dtype=np.int8)  # 0: not an identifier
    for width in (11, 14, 16):
        at = np.flatnonzero(counts == width)
        if not len(at):
            continue
        codes = digits[digit_starts[at, None] + np.arange(width)]
        if width == 11:
            cpf = np.ones(len(at), dtype=bool) if mask_all_cpf_shaped else valid_cpfs(codes)
            tokens[at[cpf]] = 1
        elif width == 14:
            cnpj = valid_cnpjs(codes)
            tokens[at[cnpj]] = 2
            tokens[at[~cnpj & valid_cards(codes)]] = 3
        else:
            tokens[at[valid_cards(codes)]] = 3
    removed = np.zeros(len(chosen), dtype=np.int64)
    drop = np.zeros(len(data) + 1, dtype=np.int32)
    for code, token in ((1, b"[CPF]"), (2, b"[CNPJ]"), (3, b"[CARD]")):
        at = np.flatnonzero(tokens == code)
        if not len(at):
            continue
        size = len(token)
        data[first[at, None] + np.arange(size)] = np.frombuffer(token, dtype=np.uint8)
        end = last[at] + 1
        removed[at] = end - first[at] - size
        drop[first[at] + size] += 1
        drop[end] -= 1
    keep = np.cumsum(drop[:-1]) == 0
    new_offsets = offsets - np.concatenate(([0], np.cumsum(removed)))
    scrubbed = pa.LargeStringArray.from_buffers(
        len(chosen), pa.py_buffer(new_offsets), pa.py_buffer(data[keep])
    )
    return simple, scrubbed


def full_width_rows(array: pa.Array) -> pa.BooleanArray | None:
    """Which values hold full-width forms (``２５３``), or ``None`` when none can.

    Every full-width form is encoded from the byte 0xEF; a scan of the bytes for it costs a
    fraction of a regex pass, which only runs when the byte is there at all.
    """
    data = array.buffers()[2]
    if data is None or not len(array):
        return None
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)
    start, end = offsets[array.offset], offsets[array.offset + len(array)]
    if not (np.frombuffer(data, dtype=np.uint8)[start:end] == 0xEF).any():
        return None
    wide: pa.BooleanArray = pc.fill_null(pc.match_substring_regex(array, FULL_WIDTH), False)
    return wide


#: How many values :func:`candidate_rows` reads as one text.
GATE_BLOCK_ROWS = 32


def candidate_rows(array: pa.LargeStringArray) -> Bools | None:
    """A superset of the values holding a match of :data:`~lgpd_tasks.masking.text.SPAN_GATE`
    (the only ones the scrubber can change), as a numpy mask; ``None`` when there are none.

    The values' bytes are read in blocks of :data:`GATE_BLOCK_ROWS` values joined end to
    end, as they lie in the buffer (no copy): the gate has no anchor or lookaround, so a
    block without a match holds no value with one, and one regex call per block costs a
    fraction of one per value. Every value of a block with a match is a candidate (a match
    across two values only costs their block a closer look). A look at the bytes first
    skips the regex for text without an ASCII digit, ``@`` or full-width form.
    """
    size = len(array)
    data = array.buffers()[2]
    if data is None or not size:
        return None
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)[
        array.offset : array.offset + size + 1
    ]
    text = np.frombuffer(data, dtype=np.uint8)[offsets[0] : offsets[-1]]
    # every match holds an ASCII digit, "@" or a full-width form (whose first byte is 0xEF)
    if not ((text - np.uint8(48) < 10) | (text == 64) | (text == 0xEF)).any():
        return None  # names, cities, descriptions without numbers
    edges = np.append(offsets[:-1:GATE_BLOCK_ROWS], offsets[-1])
    blocks = pa.LargeStringArray.from_buffers(len(edges) - 1, pa.py_buffer(edges), data)
    hit = pc.match_substring_regex(blocks, SPAN_GATE).to_numpy(zero_copy_only=False)
    if not hit.any():
        return None
    rows: Bools = np.repeat(hit, GATE_BLOCK_ROWS)[:size]
    return rows


def scrub_strings(
    array: pa.ChunkedArray, scrubber: TextScrubber, *, mask_all_cpf_shaped: bool = False
) -> tuple[pa.Array, int]:
    """Free text with e-mail, phone, CPF, CNPJ and card spans replaced by type tokens.

    Returns the scrubbed array and how many values changed. Only :func:`candidate_rows` are
    read, and of those the rows :data:`~lgpd_tasks.masking.text.ROW_PREFILTER` selects (each
    of which the gate selects too). E-mails and phones are replaced in RE2; a sentence
    holding one number of a common spelling is validated in numpy; the remaining sentences
    with digits go through ``scrubber.digits_only``.
    """
    whole = array.combine_chunks().cast(STRING)
    candidates = candidate_rows(whole)
    if candidates is None:
        return whole, 0
    # Only candidates are read below; the others hold no match of ROW_PREFILTER either.
    everything = bool(candidates.all())
    rows = whole if everything else whole.filter(pa.array(candidates))
    wide = full_width_rows(rows)
    hits = pc.fill_null(pc.match_substring_regex(rows, ROW_PREFILTER), False)
    if wide is not None:
        hits = pc.or_(hits, wide)
    count = pc.sum(hits).as_py() or 0
    if count == 0:
        return whole, 0
    before = rows.filter(hits)
    work = before
    at = pc.match_substring(work, "@")
    if pc.any(at).as_py():
        emails = pc.replace_substring_regex(work.filter(at), EMAIL_RE2, "[EMAIL]")
        work = pc.replace_with_mask(work, at, emails)
    # Replacing with groups needs RE2's slower engines: run it only where a phone is.
    phones = pc.match_substring_regex(work, PHONE_RE2)
    if pc.any(phones).as_py():
        replaced = pc.replace_substring_regex(work.filter(phones), PHONE_RE2, r"\1[PHONE]\2")
        work = pc.replace_with_mask(work, phones, replaced)
    digits = pc.match_substring_regex(work, DIGITS_PREFILTER)
    if pc.any(digits).as_py():
        numbers = work.filter(digits)
        simple, scrubbed = _single_numbers(numbers, mask_all_cpf_shaped)
        if len(scrubbed):
            numbers = pc.replace_with_mask(numbers, pa.array(simple), scrubbed)
        rest = np.flatnonzero(~simple)
        if len(rest):
            python = [scrubber.digits_only(v) for v in numbers.take(pa.array(rest)).to_pylist()]
            numbers = pc.replace_with_mask(numbers, pa.array(~simple), pa.array(python, STRING))
        work = pc.replace_with_mask(work, digits, numbers)
    if wide is not None:
        # full-width spellings: the whole sentence is read in Python, as half-width
        wide = wide.filter(hits)
        python = [scrubber(v) for v in before.filter(wide).to_pylist()]
        work = pc.replace_with_mask(work, wide, pa.array(python, STRING))
    changed = pc.sum(pc.not_equal(work, before)).as_py() or 0
    if changed == 0:
        return whole, 0
    if not everything:
        at_rows = np.zeros(len(whole), dtype=bool)
        at_rows[np.flatnonzero(candidates)[hits.to_numpy(zero_copy_only=False)]] = True
        hits = pa.array(at_rows)
    return pc.replace_with_mask(whole, hits, work), changed
