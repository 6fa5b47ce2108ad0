"""Masking strategies: one frozen dataclass per strategy with typed parameters, and their registry.

Each strategy turns a Series of non-empty strings of one personal-data type into masked
strings, column-wise. ``Null`` and ``Drop`` act on the whole column and are applied by the
engine. Every output is recognisable as masked, so masking twice changes nothing.
"""

from __future__ import annotations

import functools
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import TypeAdapter, ValidationError

from lgpd_tasks.errors import MaskingError
from lgpd_tasks.masking import fast_hmac
from lgpd_tasks.masking.columnar import STRING, Bytes, arrow_strings, constant, to_series
from lgpd_tasks.masking.detect import HALF_WIDTH, PiiType

Strings = "pd.Series[str]"

#: The exact shapes of what the strategies output, each for a whole cell: a ``*`` somewhere
#: else (``316.053.050-73 *``) is no sign that a value was masked.
MASKED_SHAPES: tuple[str, ...] = (
    r"\[[A-Z_]+\]",  # redact, and the tokens of free text
    r"hmac:[a-z_]+:[0-9a-f]+",
    r"\*\*\*\.\*\*\*\.\*\*\*-[0-9]{0,4}",  # partial CPF
    r"\*\*\.\*\*\*\.\*\*\*/\*\*\*\*-[0-9A-Z]{0,4}",  # partial CNPJ
    r"\(\*\*\) \*\*\*\*\*-[0-9]{0,4}",  # partial phone
    r"\*\*\*\* \*\*\*\* \*\*\*\* [0-9]{0,4}",  # partial card
    r"\*\*\*@(?:\*\*\*|[^@ *]*)",  # partial e-mail
    r"[0-9]{5}-\*\*\*",  # CEP
    r"[0-9]+\.[0-9]+\.(?:\*|[0-9]+)\.\*",  # IPv4, partial and generalize
    r"[0-9A-Fa-f]*(?::[0-9A-Fa-f]*){1,2}:\*",  # IPv6
    r"[^ *]\*\*\*(?: +[^ *]\*\*\*)*",  # partial name: initials
    r"\*\*/\*\*/(?:[0-9]{4}|\*\*\*\*)",  # partial date of birth
    r"\*\*\*[^*]{0,4}",  # partial of other types: the last characters kept
)
#: Matches any value a strategy produced, as a whole; such values are left alone when
#: masking again. RE2-safe so pandas keeps it on the Arrow fast path.
ALREADY_MASKED = "^(?:" + "|".join(MASKED_SHAPES) + ")$"


class HmacKey:
    """HMAC-SHA256 with the inner and outer states computed once (twice as fast per value).

    Large batches go to polars-hash when it is installed (:mod:`~lgpd_tasks.masking.fast_hmac`),
    which needs the key as text: a key that is not UTF-8 is always hashed with hashlib.
    """

    def __init__(self, key: bytes) -> None:
        try:
            self._text: str | None = key.decode("utf-8")
        except UnicodeDecodeError:
            self._text = None
        block = hashlib.sha256().block_size
        if len(key) > block:
            key = hashlib.sha256(key).digest()
        key = key.ljust(block, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def __repr__(self) -> str:
        return "HmacKey(<hidden>)"

    def hexdigest(self, message: bytes) -> str:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()

    def digests(self, messages: Iterable[bytes]) -> Bytes:
        """The digests of many messages as a (count, 32) byte matrix.

        >>> key = HmacKey(b"0123456789abcdef")
        >>> bytes(key.digests([b"cpf:1"])[0]).hex() == key.hexdigest(b"cpf:1")
        True
        """
        new_inner, new_outer = self._inner.copy, self._outer.copy
        out: list[bytes] = []
        append = out.append
        for message in messages:
            inner = new_inner()
            inner.update(message)
            outer = new_outer()
            outer.update(inner.digest())
            append(outer.digest())
        size = hashlib.sha256().digest_size
        matrix: Bytes = np.frombuffer(b"".join(out), dtype=np.uint8).reshape(len(out), size)
        return matrix

    def tokens(self, messages: pa.Array, prefix: str, length: int) -> pa.Array | pa.ChunkedArray:
        """``prefix`` and the first ``length`` hex digits of each message's HMAC, as Arrow
        strings.

        >>> key = HmacKey(b"0123456789abcdef")
        >>> token = key.tokens(pa.array(["cpf:1"]), "hmac:cpf:", 8)[0].as_py()
        >>> token == "hmac:cpf:" + key.hexdigest(b"cpf:1")[:8]
        True
        """
        if self._text is not None:
            fast = fast_hmac.tokens(self._text, messages, prefix, length)
            if fast is not None and self._agrees(fast, messages, prefix, length):
                return fast
        # each distinct message is hashed once; tokens are built in numpy and Arrow, with no
        # Python string per value
        encoded = pc.dictionary_encode(messages)
        distinct = pc.cast(encoded.dictionary, pa.large_binary()).to_pylist()
        return _tokens(self.digests(distinct), prefix, length).take(encoded.indices)

    def digit_tokens(
        self, values: pa.Array, tag: str, prefix: str, length: int
    ) -> pa.Array | pa.ChunkedArray | None:
        """The tokens of ``tag`` and each value's digits (``529.982.247-25`` is hashed as
        ``cpf:52998224725``), or None when the fast path cannot give them: it is off, or a
        value is not digits, dots and dashes alone (the caller then normalises the values
        itself and calls :meth:`tokens`). The fast path normalises and hashes in one pass.
        """
        if self._text is None or values.null_count:
            return None
        fast = fast_hmac.tokens(self._text, values, prefix, length, digits_after=tag)
        if fast is None or not self._agrees(fast, values, prefix, length, tag=tag):
            return None
        return fast

    def _agrees(
        self,
        tokens: pa.Array | pa.ChunkedArray,
        messages: pa.Array,
        prefix: str,
        length: int,
        *,
        tag: str | None = None,
    ) -> bool:
        """Whether 32 of ``tokens``, spread from the first to the last, are hashlib's (else
        the fast path is turned off); with ``tag``, of ``tag`` and each value's digits."""
        count = len(messages)
        if len(tokens) == count:
            for i in sorted({(count - 1) * k // 31 for k in range(32)}) if count else ():
                message = messages[i].as_py()
                if tag is not None:
                    digits = message.replace(".", "").replace("-", "")
                    if not (digits.isascii() and digits.isdigit()):
                        break
                    message = tag + digits
                expected = prefix + self.hexdigest(message.encode())[:length]
                if tokens[i].as_py() != expected:
                    break
            else:
                return True
        fast_hmac.turn_off("polars-hash gave tokens unlike hashlib's")
        return False


@dataclass(frozen=True)
class MaskContext:
    """What strategies need besides the values: the HMAC key, when one was configured."""

    hmac_key: HmacKey | None = None


@dataclass(frozen=True)
class Strategy(ABC):
    """Base of every strategy; ``name`` is how a policy file refers to it."""

    name: ClassVar[str] = ""

    @abstractmethod
    def mask(self, values: pd.Series[str], pii: PiiType, ctx: MaskContext) -> pd.Series[str]:
        """Masked values for non-empty, not-yet-masked strings of type ``pii``."""

    def check(self, pii: PiiType) -> None:  # noqa: B027 - most strategies mask every type
        """Raise :class:`MaskingError` when this strategy cannot mask type ``pii``."""

    def describe(self) -> str:
        params = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))
        return f"{self.name}({params})" if params else self.name


def _const(values: pd.Series[str], text: str) -> pd.Series[str]:
    return constant(len(values), text, values.index)


def _replace(values: pd.Series[str], pattern: str, replacement: str) -> pd.Series[str]:
    """``str.replace`` with an RE2-safe regex, straight in Arrow when the values are there."""
    arrow = arrow_strings(values)
    if arrow is None:
        return values.str.replace(pattern, replacement, regex=True)
    return to_series(pc.replace_substring_regex(arrow, pattern, replacement), values.index)


def _digits(values: pd.Series[str]) -> pd.Series[str]:
    """Only the digits of each value.

    >>> _digits(pd.Series(["529.982.247-25", "(11) 98765-4321", ""], dtype="str")).tolist()
    ['52998224725', '11987654321', '']
    """
    arrow = arrow_strings(values)
    if arrow is not None:
        # The usual spellings (CPF, CEP) only hold dots and dashes: two literal replaces are
        # several times cheaper than the regex, which is kept for everything else.
        plain = pc.replace_substring(pc.replace_substring(arrow, ".", ""), "-", "")
        if pc.all(pc.ascii_is_decimal(plain)).as_py():
            return to_series(plain, values.index)
    return _replace(_half_width(values), "[^0-9]", "")


def _half_width(values: pd.Series[str]) -> pd.Series[str]:
    """Full-width digits and letters (``２５３``) as ASCII; only non-ASCII values are read.

    >>> _half_width(pd.Series(["２５３-３９", "253"], dtype="str")).tolist()
    ['253-39', '253']
    """
    arrow = arrow_strings(values)
    if arrow is None:
        return values.str.translate(HALF_WIDTH)
    wide = pc.invert(pc.fill_null(pc.string_is_ascii(arrow), True))
    if not pc.any(wide).as_py():
        return values
    out = values.copy()
    mask = wide.to_numpy(zero_copy_only=False)
    out[mask] = values[mask].str.translate(HALF_WIDTH)
    return out


def _first_digits(values: pd.Series[str], count: int) -> pd.Series[str]:
    """The first ``count`` digits; slicing is enough when they lead the value (a CEP)."""
    head = values.str.slice(0, count)
    arrow = arrow_strings(head)
    if arrow is not None and pc.all(pc.ascii_is_decimal(arrow)).as_py():
        return head
    return _digits(values).str.slice(0, count)


def _alnum(values: pd.Series[str]) -> pd.Series[str]:
    return _half_width(values).str.replace("[^0-9A-Za-z]", "", regex=True).str.upper()


def _last(values: pd.Series[str], count: int) -> pd.Series[str]:
    return values.str.slice(-count) if count > 0 else _const(values, "")


def _last_digits(values: pd.Series[str], count: int, keep: str = "[^0-9]") -> pd.Series[str]:
    """The last ``count`` digits; slicing is enough for the usual spellings, which end in
    digits, and only the other values pay for a regex replace."""
    if count <= 0:
        return _const(values, "")
    tail = values.str.slice(-count)
    arrow = arrow_strings(tail)
    if arrow is not None:
        # ASCII only: other Unicode digits are no digits to the regex below.
        check = pc.ascii_is_alnum if keep != "[^0-9]" else pc.ascii_is_decimal
        flags = pc.fill_null(check(arrow), False).to_numpy(zero_copy_only=False)
        plain = pd.Series(flags, index=tail.index)
    else:
        plain = tail.str.isalnum() if keep != "[^0-9]" else tail.str.isdigit()
    plain = plain.fillna(False).astype(bool)
    if bool(plain.all()):
        return tail
    odd = ~plain
    fixed = _half_width(values[odd]).str.replace(keep, "", regex=True).str.slice(-count)
    tail = tail.copy()
    tail[odd] = fixed.str.upper() if keep != "[^0-9]" else fixed
    return tail


#: The most trailing characters ``partial`` may keep, per type: enough to tell values apart
#: on a screen, never enough to read one (a phone's or a card's last four; a CPF's or a
#: CNPJ's check digits and two more). Types whose partial form ignores ``keep_last``
#: (e-mail, CEP, IP, name, date) are not listed.
KEEP_LAST_MAX: dict[PiiType, int] = {
    PiiType.CPF: 4,
    PiiType.CNPJ: 4,
    PiiType.PHONE: 4,
    PiiType.CARD: 4,
    PiiType.RG: 2,
    PiiType.DOCUMENT: 4,
    PiiType.ADDRESS: 4,
    PiiType.OTHER: 4,
    PiiType.TEXT: 4,
}


@dataclass(frozen=True)
class Redact(Strategy):
    """Replace the value with a token naming its type: ``[CPF]``, ``[EMAIL]``."""

    name: ClassVar[str] = "redact"
    token: str | None = None

    def mask(self, values: pd.Series[str], pii: PiiType, ctx: MaskContext) -> pd.Series[str]:
        return _const(values, self.token or f"[{pii.value.upper()}]")


@dataclass(frozen=True)
class Partial(Strategy):
    """Keep only what is safe and useful: the e-mail domain, the last digits, a CEP's region.

    ``keep_last`` overrides the number of trailing characters kept (CPF and CNPJ 2, phone
    and card 4, other types 0).
    """

    name: ClassVar[str] = "partial"
    keep_last: int | None = None
    keep_domain: bool = True

    def check(self, pii: PiiType) -> None:
        keep = self.keep_last
        if keep is None:
            return
        if keep < 0:
            raise MaskingError(f"strategy 'partial': keep_last must be 0 or more, got {keep}")
        most = KEEP_LAST_MAX.get(pii)
        if most is not None and keep > most:
            raise MaskingError(
                f"strategy 'partial': keep_last for {pii.value} must be at most {most}, got "
                f"{keep} (more would show the value itself)"
            )

    def mask(self, values: pd.Series[str], pii: PiiType, ctx: MaskContext) -> pd.Series[str]:
        keep = self.keep_last
        if pii is PiiType.EMAIL:
            if self.keep_domain:
                return _replace(values.str.strip(), "^[^@＠]*[@＠]", "***@")
            return _const(values, "***@***")
        if pii is PiiType.CPF:
            return "***.***.***-" + _last_digits(values, 2 if keep is None else keep)
        if pii is PiiType.CNPJ:
            return "**.***.***/****-" + _last_digits(
                values, 2 if keep is None else keep, "[^0-9A-Za-z]"
            )
        if pii is PiiType.PHONE:
            return "(**) *****-" + _last_digits(values, 4 if keep is None else keep)
        if pii is PiiType.CARD:
            return "**** **** **** " + _last_digits(values, 4 if keep is None else keep)
        if pii is PiiType.CEP:
            return _first_digits(values, 5) + "-***"
        if pii is PiiType.IP:
            v4 = values.str.replace(r"^([0-9]+[.][0-9]+)[.].*$", r"\1.*.*", regex=True)
            return v4.str.replace(r"^([0-9A-Fa-f]*:[0-9A-Fa-f]*):[^*]*$", r"\1:*", regex=True)
        if pii is PiiType.NAME:
            # Initials: "Maria da Silva" -> "M*** d*** S***".
            return values.str.strip().str.replace(r"([^ ])[^ ]*", r"\1***", regex=True)
        if pii is PiiType.BIRTH_DATE:
            years = values.str.extract("([0-9]{4})", expand=False)
            return ("**/**/" + years).fillna("**/**/****")
        return "***" + _last(values, keep or 0)


@dataclass(frozen=True)
class Hmac(Strategy):
    """HMAC-SHA256 of the normalised value, with a typed prefix: ``hmac:cpf:1f0c...``.

    Stable across runs and tasks for one key, so masked keys still join; the key comes
    from the environment variable the policy's ``key_env`` names.
    """

    name: ClassVar[str] = "hmac"
    length: int = 24

    def check(self, pii: PiiType) -> None:
        if not 8 <= self.length <= 64:
            raise MaskingError(f"strategy 'hmac': length must be 8 to 64, got {self.length}")

    def mask(self, values: pd.Series[str], pii: PiiType, ctx: MaskContext) -> pd.Series[str]:
        if ctx.hmac_key is None:
            raise MaskingError("strategy 'hmac' has no key; refusing to hash without one")
        tag = f"{pii.value}:"
        raw = arrow_strings(values) if pii in _DIGIT_TYPES else None
        if raw is not None:
            # the fast path takes off dots and dashes itself, on the hashing threads
            fast = ctx.hmac_key.digit_tokens(raw.combine_chunks(), tag, f"hmac:{tag}", self.length)
            if fast is not None:
                return to_series(fast, values.index)
        normalised = normalise_for_join(values, pii)
        arrow = arrow_strings(normalised)
        if arrow is None:
            arrow = pa.chunked_array(
                [pa.array(normalised.to_numpy(dtype=object), type=STRING, from_pandas=True)]
            )
        if arrow.null_count:
            raise MaskingError("strategy 'hmac' was given a null value")  # the engine filters them
        messages = pc.binary_join_element_wise(
            pa.scalar(tag, STRING), arrow.cast(STRING), pa.scalar("", STRING)
        )
        tokens = ctx.hmac_key.tokens(messages.combine_chunks(), f"hmac:{tag}", self.length)
        return to_series(tokens, values.index)


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _tokens(digests: Bytes, prefix: str, length: int) -> pa.Array:
    """``prefix`` and the first ``length`` hex digits of each digest, as Arrow strings."""
    count = len(digests)
    head = prefix.encode()
    width = len(head) + length
    rows = np.empty((count, width), dtype=np.uint8)
    rows[:, : len(head)] = np.frombuffer(head, dtype=np.uint8)
    used = digests[:, : (length + 1) // 2]
    hexed = np.empty((count, used.shape[1] * 2), dtype=np.uint8)
    hexed[:, 0::2] = _HEX[used >> 4]
    hexed[:, 1::2] = _HEX[used & 0x0F]
    rows[:, len(head) :] = hexed[:, :length]
    offsets = np.arange(count + 1, dtype=np.int64) * width
    return pa.LargeStringArray.from_buffers(
        count, pa.py_buffer(offsets), pa.py_buffer(rows.tobytes())
    )


#: Types whose values are normalised to their digits before hashing.
_DIGIT_TYPES = frozenset({PiiType.CPF, PiiType.PHONE, PiiType.CARD, PiiType.CEP})


def normalise_for_join(values: pd.Series[str], pii: PiiType) -> pd.Series[str]:
    """One spelling per value, so ``529.982.247-25`` and ``52998224725`` hash alike."""
    if pii in _DIGIT_TYPES:
        return _digits(values)
    if pii is PiiType.CNPJ:
        return _alnum(values)
    if pii is PiiType.EMAIL:
        return values.str.strip().str.lower()
    return values.str.strip()


@dataclass(frozen=True)
class Generalize(Strategy):
    """Coarsen the value: a date to its year, a CEP to its 5-digit region, an IPv4 to its /24."""

    name: ClassVar[str] = "generalize"

    def check(self, pii: PiiType) -> None:
        if pii not in (PiiType.BIRTH_DATE, PiiType.CEP, PiiType.IP):
            raise MaskingError(
                f"strategy 'generalize' applies to dates, CEPs and IP addresses, not {pii.value}"
            )

    def mask(self, values: pd.Series[str], pii: PiiType, ctx: MaskContext) -> pd.Series[str]:
        self.check(pii)
        if pii is PiiType.CEP:
            return _first_digits(values, 5) + "-***"
        if pii is PiiType.IP:
            return values.str.replace(
                r"^([0-9]+[.][0-9]+[.][0-9]+)[.][0-9]+$", r"\1.*", regex=True
            ).str.replace(r"^([0-9A-Fa-f]*:[0-9A-Fa-f]*:[0-9A-Fa-f]*):.*$", r"\1:*", regex=True)
        years = values.str.extract("([0-9]{4})", expand=False)
        return years.fillna("[BIRTH_DATE]")


@dataclass(frozen=True)
class Null(Strategy):
    """Replace every value with null."""

    name: ClassVar[str] = "null"

    def mask(self, values: pd.Series[str], pii: PiiType, ctx: MaskContext) -> pd.Series[str]:
        return _nulls(values)


@dataclass(frozen=True)
class Drop(Strategy):
    """Remove the column (in DB-API rows, where the shape is fixed, its values become null)."""

    name: ClassVar[str] = "drop"

    def mask(self, values: pd.Series[str], pii: PiiType, ctx: MaskContext) -> pd.Series[str]:
        # the engine removes a dropped column whole; value by value, as in rows, it is null
        return _nulls(values)


def _nulls(values: pd.Series[str]) -> pd.Series[str]:
    """``values`` with every cell null, same index and dtype."""
    return values.where(np.zeros(len(values), dtype=bool))


#: Strategies by the name a policy file uses.
STRATEGIES: Mapping[str, type[Strategy]] = {
    cls.name: cls for cls in (Redact, Partial, Hmac, Generalize, Null, Drop)
}


@functools.cache
def _adapter(cls: type[Strategy]) -> TypeAdapter[Strategy]:
    """The validator of a strategy's parameters, built once per class (it takes milliseconds)."""
    return TypeAdapter(cls)


def strategy_from_spec(spec: str | Mapping[str, Any] | Strategy, where: str) -> Strategy:
    """Build a strategy from a policy value: ``"hmac"`` or ``{strategy: partial, keep_last: 4}``.

    >>> strategy_from_spec({"strategy": "partial", "keep_last": 4}, "masking.columns.cpf")
    Partial(keep_last=4, keep_domain=True)
    >>> strategy_from_spec("shred", "masking.columns.cpf")
    Traceback (most recent call last):
    ...
    lgpd_tasks.errors.MaskingError: masking.columns.cpf: unknown strategy 'shred' (known: drop, generalize, hmac, null, partial, redact)
    """
    if isinstance(spec, Strategy):
        return spec
    if isinstance(spec, str):
        name, params = spec, {}
    else:
        params = dict(spec)
        name = params.pop("strategy", None)
        if not isinstance(name, str):
            raise MaskingError(f"{where}: expected a 'strategy' key naming the strategy")
    cls = STRATEGIES.get(name)
    if cls is None:
        known = ", ".join(sorted(STRATEGIES))
        raise MaskingError(f"{where}: unknown strategy {name!r} (known: {known})")
    allowed = {f.name for f in fields(cls)}
    unknown = sorted(set(params) - allowed)
    if unknown:
        hint = ", ".join(sorted(allowed)) or "none"
        raise MaskingError(
            f"{where}: strategy {name!r} has no parameter {unknown[0]!r} (parameters: {hint})"
        )
    try:
        strategy: Strategy = _adapter(cls).validate_python(params)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise MaskingError(f"{where}: strategy {name!r}, {field}: {first['msg']}") from None
    return strategy
