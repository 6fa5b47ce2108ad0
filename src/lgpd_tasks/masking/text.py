"""Personal data inside free text: find CPF, CNPJ, e-mail, phone and card spans and replace them."""

from __future__ import annotations

import re
from collections.abc import Callable

from lgpd_tasks.masking.detect import CNPJ, CPF, EMAIL, FULL_WIDTH, PiiType, narrow
from lgpd_tasks.masking.validators import (
    is_valid_card,
    is_valid_cnpj,
    is_valid_cpf,
    is_valid_phone,
)

#: What every span of ``_SPANS`` below holds, so that a text without a match is one the
#: scrubber returns unchanged: the ``@`` of an e-mail; eight digits with at most one of
#: `` .-`` after the fourth (how every phone ends and every card starts; a bare CPF or
#: CNPJ holds them too); a CPF or a CNPJ, numeric or alphanumeric, in every spelling the
#: scrubber reads (dots, spaces, no-break spaces, slashes, hyphens, typographic dashes);
#: or a full-width form (the scrubber reads ``２５３.６６０…`` and ``＠`` as ASCII). In the
#: RE2 subset (no ``\d``, ``\b``, ``\s``), so that Arrow and Python's ``re`` read it alike,
#: and with no anchor or lookaround: a match in a value is a match in any text holding the
#: value, so values joined end to end are tested a block at a time
#: (``columnar.candidate_rows``). Every match of :data:`ROW_PREFILTER` holds one as well.
SPAN_GATE = f"@|[0-9]{{4}}[ .-]?[0-9]{{4}}|{CPF}|{CNPJ}|{FULL_WIDTH}"

# Spans that need no arithmetic to validate are replaced column-wise by pandas in the RE2
# subset (boundaries written as groups that the replacement puts back).
_DDD = "(?:1[1-9]|2[12478]|3[1-578]|4[1-9]|5[1345]|6[1-9]|7[13-579]|8[1-9]|9[1-9])"
EMAIL_RE2 = EMAIL
#: Groups 1 and 3 are the characters around the number, which the replacement keeps. A
#: phone never follows a letter straight away: in hex (``7c83-6563-9909`` in a UUID) that
#: is a run of digits that only looks like one.
PHONE_RE2 = (
    r"(^|[^0-9A-Za-z+])(?:"
    rf"(?:[+]?55 ?)?(?:[(]0?{_DDD}[)] ?|0?{_DDD}[ .-])(?:9[ .-]?[0-9]{{4}}|[2-9][0-9]{{3}})"
    r"[ .-]?[0-9]{4}"
    rf"|[+]55 ?{_DDD}(?:9[0-9]{{8}}|[2-9][0-9]{{7}})"
    r")([^0-9]|$)"
)
#: Rows that may still hold a CPF, CNPJ or card once e-mails and phones are replaced: the
#: spans of ``_DIGIT_SPANS`` with their lookarounds written as groups, so that dates,
#: amounts, ids and 44-digit keys (no span boundary around 11, 14 or 16 digits) never reach
#: Python. A superset of the rows Python's pattern finds a span in.
DIGITS_PREFILTER = (
    rf"(?:^|[^0-9A-Za-z]){CNPJ}(?:[^0-9A-Za-z]|$)"
    rf"|(?:^|[^0-9]){CPF}(?:[^0-9]|$)"
    r"|(?:^|[^0-9])[0-9]{4}(?:[ -]?[0-9]{4}){2}[ -]?[0-9]{1,7}(?:[^0-9]|$)"
)
#: Rows the column-wise scrub (``columnar.scrub_strings``) reads at all: an ``@``, a phone
#: of :data:`PHONE_RE2` or a number of :data:`DIGITS_PREFILTER`. Exact rather than cheap, so
#: that the rows :data:`SPAN_GATE` lets through cost one regex pass and no more when they
#: are ids or amounts.
ROW_PREFILTER = f"@|{PHONE_RE2}|{DIGITS_PREFILTER}"

_DIGIT_SPANS_RE = (
    rf"(?<![0-9A-Za-z])(?P<cnpj>{CNPJ})(?![0-9A-Za-z])"
    rf"|(?<![0-9])(?P<cpf>{CPF})(?![0-9])"
    r"|(?<![0-9])(?P<card>[0-9]{4}(?:[ -]?[0-9]{4}){2}[ -]?[0-9]{1,7})(?![0-9])"
)
_SPANS = re.compile(
    rf"(?P<email>{EMAIL})|{_DIGIT_SPANS_RE}"
    r"|(?<![0-9A-Za-z+])(?P<phone>(?:\+?55 ?)?(?:\(0?[1-9]{2}\) ?|0?[1-9]{2}[ .-])"
    r"(?:9[ .-]?)?[0-9]{4}[ .-]?[0-9]{4}"
    r"|\+55 ?[1-9]{2}9?[0-9]{8})(?![0-9])"
)
_DIGIT_SPANS = re.compile(_DIGIT_SPANS_RE)
#: :data:`SPAN_GATE` for Python strings: a value it finds nothing in is left as it is.
SPAN_GATE_RE = re.compile(SPAN_GATE)

# A matched shape may still be another type: 14 digits that are no CNPJ can be a card.
_CANDIDATES: dict[str, tuple[tuple[PiiType, Callable[[str], bool]], ...]] = {
    "email": ((PiiType.EMAIL, lambda _: True),),
    "cnpj": ((PiiType.CNPJ, is_valid_cnpj), (PiiType.CARD, is_valid_card)),
    "cpf": ((PiiType.CPF, is_valid_cpf),),
    "card": ((PiiType.CARD, is_valid_card),),
    "phone": ((PiiType.PHONE, is_valid_phone),),
}

Replacer = Callable[[PiiType, str], str]


def redact_token(pii: PiiType, _value: str) -> str:
    """The default replacement for a span: its type in brackets (``[CPF]``)."""
    return f"[{pii.value.upper()}]"


class TextScrubber:
    """Replaces validated personal-data spans in strings.

    >>> scrub = TextScrubber()
    >>> scrub("cliente 529.982.247-25 (ana@pf.gov.br) pedido 123.456.789-00")
    'cliente [CPF] ([EMAIL]) pedido 123.456.789-00'
    >>> TextScrubber(mask_all_cpf_shaped=True)("pedido 123.456.789-00")
    'pedido [CPF]'
    """

    def __init__(self, replacer: Replacer = redact_token, *, mask_all_cpf_shaped: bool = False):
        self._replacer = replacer
        self._all_cpf_shaped = mask_all_cpf_shaped

    def kind(self, group: str, span: str) -> PiiType | None:
        """The validated type of a matched span, or ``None`` when it is only look-alike."""
        if group == "cpf" and self._all_cpf_shaped:
            return PiiType.CPF
        for pii, check in _CANDIDATES[group]:
            if check(span):
                return pii
        return None

    def _replace(self, match: re.Match[str]) -> str:
        group = match.lastgroup
        span = match.group()
        if group is None:
            return span
        pii = self.kind(group, span)
        return span if pii is None else self._replacer(pii, span)

    def __call__(self, text: str) -> str:
        return self._sub(_SPANS, text)

    def digits_only(self, text: str) -> str:
        """Like calling the scrubber, for text whose e-mails and phones are already replaced."""
        return self._sub(_DIGIT_SPANS, text)

    def _sub(self, spans: re.Pattern[str], text: str) -> str:
        narrowed = narrow(text)
        if narrowed is text:
            return spans.sub(self._replace, text)
        # Spans are found in the ASCII reading of full-width forms and replaced in the
        # original, where they sit at the same positions.
        parts: list[str] = []
        done = 0
        for match in spans.finditer(narrowed):
            replaced = self._replace(match)
            if replaced != match.group():
                parts += [text[done : match.start()], replaced]
                done = match.end()
        return "".join([*parts, text[done:]])

    def has_span(self, text: str) -> bool:
        """Whether ``text`` holds at least one validated span."""
        if not SPAN_GATE_RE.search(text):
            return False
        for match in _SPANS.finditer(narrow(text)):
            if match.lastgroup is not None and self.kind(match.lastgroup, match.group()):
                return True
        return False
