"""Detection of personal data: by column name (PT and EN) and by content on a sample."""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pandas as pd

from lgpd_tasks.errors import MaskingError
from lgpd_tasks.masking.validators import (
    is_valid_card,
    is_valid_cnpj,
    is_valid_cpf,
    is_valid_ip,
    is_valid_phone,
)


class PiiType(StrEnum):
    """The kinds of personal data the engine knows."""

    CPF = "cpf"
    CNPJ = "cnpj"
    EMAIL = "email"
    PHONE = "phone"
    CEP = "cep"
    CARD = "card"
    IP = "ip"
    BIRTH_DATE = "birth_date"
    NAME = "name"
    ADDRESS = "address"
    RG = "rg"
    DOCUMENT = "document"
    TEXT = "text"
    """Free text with personal data inside it; masked span by span."""
    OTHER = "other"
    """A column the policy names whose content is of no known type."""


# Column names are compared in a compact form: lower case, no accents, only letters and digits.
_EXACT_NAMES: dict[PiiType, tuple[str, ...]] = {
    PiiType.CPF: ("cpf", "nrcpf", "numcpf", "numerocpf", "cpfcnpj", "documentocpf"),
    PiiType.CNPJ: ("cnpj", "nrcnpj", "numcnpj", "numerocnpj"),
    PiiType.EMAIL: ("email", "emails", "correioeletronico", "mail", "emailaddress"),
    PiiType.PHONE: (
        "telefone",
        "telefones",
        "tel",
        "celular",
        "fone",
        "phone",
        "phonenumber",
        "mobile",
        "whatsapp",
        "contatotelefonico",
    ),
    PiiType.NAME: (
        "nome",
        "nomecompleto",
        "name",
        "fullname",
        "firstname",
        "lastname",
        "sobrenome",
        "primeironome",
        "nomesocial",
        "nomemae",
        "nomedamae",
        "nomepai",
        "nomedopai",
        "nomecliente",
        "nomedocliente",
        "nomepessoa",
        "nomeresponsavel",
        "nomecontato",
        "nomefuncionario",
        "nometitular",
        "customername",
        "contactname",
        "titular",
        "responsavel",
    ),
    PiiType.ADDRESS: (
        "endereco",
        "enderecocompleto",
        "logradouro",
        "address",
        "streetaddress",
        "street",
        "rua",
        "complemento",
        "bairro",
        "numeroendereco",
        "addressline1",
        "addressline2",
    ),
    PiiType.CEP: ("cep", "zip", "zipcode", "postalcode", "codigopostal"),
    PiiType.BIRTH_DATE: (
        "datanascimento",
        "datadenascimento",
        "nascimento",
        "dtnascimento",
        "dtnasc",
        "datanasc",
        "nasc",
        "birthdate",
        "dateofbirth",
        "dob",
        "birthday",
    ),
    PiiType.RG: ("rg", "numerorg", "identidade", "carteiraidentidade", "registrogeral"),
    PiiType.CARD: (
        "cartao",
        "numerocartao",
        "cartaocredito",
        "cartaodecredito",
        "card",
        "cardnumber",
        "creditcard",
    ),
    PiiType.IP: ("ip", "ipaddress", "enderecoip", "ipv4", "ipv6", "ipcliente", "clientip"),
    PiiType.DOCUMENT: (
        "cnh",
        "passaporte",
        "passport",
        "pis",
        "pispasep",
        "nis",
        "cns",
        "cartaosus",
        "tituloeleitor",
        "titulodeeleitor",
        "ctps",
        "documento",
        "ssn",
    ),
}

# Words that make a column personal wherever they appear among its name's words
# (``cpf_cliente``, ``email_contato``); weaker words such as ``nome`` or ``ip`` only count
# as whole names, because ``nome_produto`` or ``tipo`` are not personal.
_STRONG_WORDS: dict[str, PiiType] = {
    "cpf": PiiType.CPF,
    "cnpj": PiiType.CNPJ,
    "email": PiiType.EMAIL,
    "telefone": PiiType.PHONE,
    "celular": PiiType.PHONE,
    "phone": PiiType.PHONE,
    "whatsapp": PiiType.PHONE,
    "cep": PiiType.CEP,
    "nascimento": PiiType.BIRTH_DATE,
    "logradouro": PiiType.ADDRESS,
    "endereco": PiiType.ADDRESS,
    "cartao": PiiType.CARD,
    "passaporte": PiiType.DOCUMENT,
    "cnh": PiiType.DOCUMENT,
}

_NAME_INDEX: dict[str, PiiType] = {
    name: pii for pii, names in _EXACT_NAMES.items() for name in names
}
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_WORD_SPLIT = re.compile(r"[^a-z0-9]+")


def compact_name(name: str) -> str:
    """A column name folded for comparison: no case, accents, spaces or punctuation.

    >>> compact_name("Data de Nascimento"), compact_name("E_mail"), compact_name("endereço")
    ('datadenascimento', 'email', 'endereco')
    """
    return "".join(_words(name))


def _words(name: str) -> list[str]:
    split = _CAMEL.sub(" ", name)
    folded = unicodedata.normalize("NFKD", split).encode("ascii", "ignore").decode().lower()
    return [w for w in _WORD_SPLIT.split(folded) if w]


def pii_type_named(name: str) -> PiiType:
    """The type a policy's ``masking.types`` key names; a MaskingError listing the known ones.

    >>> pii_type_named("cpf")
    <PiiType.CPF: 'cpf'>
    """
    try:
        return PiiType(name)
    except ValueError:
        known = ", ".join(p.value for p in PiiType)
        raise MaskingError(f"unknown type {name!r} (known: {known})") from None


def type_from_name(name: object) -> PiiType | None:
    """The kind of personal data a column name announces, if any.

    >>> type_from_name("CPF_Cliente"), type_from_name("e-mail"), type_from_name("dataNascimento")
    (<PiiType.CPF: 'cpf'>, <PiiType.EMAIL: 'email'>, <PiiType.BIRTH_DATE: 'birth_date'>)
    >>> type_from_name("nome_produto") is None, type_from_name("tipo") is None
    (True, True)
    """
    if not isinstance(name, str):
        return None
    words = _words(name)
    exact = _NAME_INDEX.get("".join(words))
    if exact is not None:
        return exact
    for word in words:
        strong = _STRONG_WORDS.get(word)
        if strong is not None:
            return strong
    return None


#: Letters and marks beyond ASCII that internationalised e-mail addresses use (RFC 6531, IDN
#: domains): every code point from U+00C0 on but the signs × and ÷, the punctuation and
#: symbol blocks (U+2000-U+2BFF, U+2E00-U+2E7F, U+3000-U+303F), private use, the full-width
#: forms (read as ASCII, see ``HALF_WIDTH``) and emoji. Written as literal characters, not
#: ``\u`` escapes, so that RE2 (Arrow) and Python's ``re`` read the class alike.
INTL_LETTERS = (
    "\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u1fff\u2c00-\u2dff\u2e80-\u2fff\u3040-\ud7ff"
    "\uf900-\ufdcf\ufdf0-\ufe1f\ufe70-\ufefe\U00010000-\U0001efff\U00020000-\U0003ffff"
)
#: An e-mail address, ASCII or internationalised, in the RE2 subset Arrow and pandas run.
EMAIL = (
    f"[A-Za-z0-9._%+'{INTL_LETTERS}-]+@[A-Za-z0-9{INTL_LETTERS}-]+"
    f"(?:[.][A-Za-z0-9{INTL_LETTERS}-]+)*[.][A-Za-z{INTL_LETTERS}]{{2,}}"
)
#: A CPF in any spelling: bare, dotted, spaced (a no-break space too) or hyphenated
#: (``529-982-247-25``), and with ``-``, ``.``, ``/``, a space or a typographic dash (en
#: dash, non-breaking hyphen) before the check digits. Literal characters, so RE2 and
#: Python read the classes alike.
CPF = (
    "[0-9]{3}[. \u00a0-]?[0-9]{3}[. \u00a0-]?[0-9]{3}[-./ \u00a0\u2010\u2011\u2012\u2013]?[0-9]{2}"
)
#: A CNPJ, numeric or alphanumeric, formatted or not.
CNPJ = r"[0-9A-Z]{2}\.?[0-9A-Z]{3}\.?[0-9A-Z]{3}/?[0-9A-Z]{4}-?[0-9]{2}"

#: The full-width forms (U+FF01-U+FF5E: ``２５３``, ``＠``) as the ASCII characters they stand
#: for, one character for one, so that a span found in the narrowed text sits at the same
#: place in the original.
HALF_WIDTH: dict[int, int] = {0xFF01 + i: 0x21 + i for i in range(94)}
#: A character class of the full-width forms, literal, for RE2 and Python alike.
FULL_WIDTH = "[\uff01-\uff5e]"


_FULL_WIDTH = re.compile(FULL_WIDTH)


def narrow(text: str) -> str:
    """``text`` with full-width forms as ASCII (checked first: translating is the slow part).

    >>> narrow("２５３.６６０.０８２-３９")
    '253.660.082-39'
    """
    if text.isascii() or not _FULL_WIDTH.search(text):
        return text
    return text.translate(HALF_WIDTH)


# Whole-cell shapes, checked on a sample before the validators run.
_SHAPES: dict[PiiType, re.Pattern[str]] = {
    PiiType.CPF: re.compile(CPF),
    PiiType.CNPJ: re.compile(CNPJ),
    PiiType.EMAIL: re.compile(EMAIL),
    # Content alone says "phone" only when the number is written like one (punctuation, +55 or
    # a mobile 9), so that bare 10-digit codes are not taken for landlines.
    PiiType.PHONE: re.compile(
        r"(\+?55 ?)?(\(0?[1-9]{2}\) ?|0?[1-9]{2}[ .-])(9[ .-]?)?[0-9]{4}[ .-]?[0-9]{4}"
        r"|\+?55[1-9]{2}9?[0-9]{8}|[1-9]{2}9[0-9]{8}"
    ),
    # Only the hyphenated spelling: eight bare digits are as likely an order number.
    PiiType.CEP: re.compile(r"[0-9]{5}-[0-9]{3}"),
    PiiType.CARD: re.compile(r"[0-9]{4}([ -]?[0-9]{4}){2}[ -]?[0-9]{1,7}"),
    PiiType.IP: re.compile(r"[0-9]{1,3}(\.[0-9]{1,3}){3}|[0-9A-Fa-f:]*:[0-9A-Fa-f:.]+"),
}

_VALIDATORS: dict[PiiType, Callable[[str], bool]] = {
    PiiType.CPF: is_valid_cpf,
    PiiType.CNPJ: is_valid_cnpj,
    PiiType.CARD: is_valid_card,
    PiiType.PHONE: is_valid_phone,
    PiiType.IP: is_valid_ip,
}

#: Order of preference when a value fits several shapes (an 11-digit CPF can look like a phone).
CONTENT_TYPES: tuple[PiiType, ...] = (
    PiiType.CPF,
    PiiType.CNPJ,
    PiiType.CARD,
    PiiType.EMAIL,
    PiiType.PHONE,
    PiiType.CEP,
    PiiType.IP,
)


def value_types(value: str) -> list[PiiType]:
    """Every kind of personal data a whole cell validates as, in order of preference."""
    return _types(narrow(value.strip()))


def _types(text: str) -> list[PiiType]:
    found = []
    for pii in CONTENT_TYPES:
        if _SHAPES[pii].fullmatch(text):
            check = _VALIDATORS.get(pii)
            if check is None or check(text):
                found.append(pii)
    return found


def value_type(value: str) -> PiiType | None:
    """The kind of personal data a whole cell holds, validated (check digits, Luhn, DDD).

    >>> value_type("529.982.247-25"), value_type("ana@pf.gov.br"), value_type("01310-100")
    (<PiiType.CPF: 'cpf'>, <PiiType.EMAIL: 'email'>, <PiiType.CEP: 'cep'>)
    >>> value_type("529.982.247-26") is None
    True
    """
    text = narrow(value.strip())
    for pii in CONTENT_TYPES:
        if _SHAPES[pii].fullmatch(text):
            check = _VALIDATORS.get(pii)
            if check is None or check(text):
                return pii
    return None


@dataclass(frozen=True)
class ContentGuess:
    """What a sample of a column looks like: its best type and the share of values that fit."""

    pii_type: PiiType | None
    confidence: float
    has_text: bool
    """Some values hold personal data inside longer text."""


def guess_content(
    values: Sequence[str], threshold: float, span_finder: Callable[[str], bool]
) -> ContentGuess:
    """Classify a sample of non-empty strings.

    A type wins when at least ``threshold`` of the sample validates as it. Otherwise the
    column is free text with personal data when any value holds a span ``span_finder``
    accepts, whatever the rest looks like (codes among which some cells are CPFs).
    """
    if not values:
        return ContentGuess(None, 0.0, False)
    if _FULL_WIDTH.search("".join(values)):  # one scan, rather than one per value
        values = [narrow(v) for v in values]
    # Each type is counted on its own: a mobile number written with +55 can also pass Luhn,
    # and the column is what most of its values are.
    counts = dict.fromkeys(CONTENT_TYPES, 0)
    for value in values:
        for kind in _types(value.strip()):
            counts[kind] += 1
    size = len(values)
    best = max(CONTENT_TYPES, key=lambda p: counts[p])
    confidence = counts[best] / size
    if confidence >= threshold:
        return ContentGuess(best, round(confidence, 4), False)
    hits = sum(1 for v in values if span_finder(v))
    if hits:
        return ContentGuess(PiiType.TEXT, round(hits / size, 4), True)
    return ContentGuess(None, 0.0, False)


def whole_numbers(values: Iterable[object]) -> list[int] | None:
    """The sample's non-null values as integers, or ``None`` unless every one is a whole number.

    Integers and integral floats count (a CPF stored as ``25366008239.0``); a boolean, a
    fraction, an infinity or any other value means the column holds no identifiers.

    >>> whole_numbers([25366008239, None, 6924533393.0, float("nan")])
    [25366008239, 6924533393]
    >>> whole_numbers([1, 2.5]) is None, whole_numbers([True]) is None
    (True, True)
    """
    values = list(values)
    if all(value.__class__ is int for value in values):
        return values  # type: ignore[return-value]  # each one checked just above
    numbers: list[int] = []
    for value in values:
        if (
            value is None
            or value is pd.NA
            or (isinstance(value, float | np.floating) and value != value)
        ):
            continue
        if isinstance(value, bool | np.bool_):
            return None
        if isinstance(value, int | np.integer):
            numbers.append(int(value))
            continue
        if isinstance(value, float | np.floating) and math.isfinite(value) and value.is_integer():
            numbers.append(int(value))
            continue
        return None
    return numbers


def sample_positions(length: int, size: int) -> Iterable[int]:
    """Row positions of a sample: the first rows and an even spread over the rest."""
    if length <= size:
        return range(length)
    head = size // 4
    step = (length - head) / (size - head)
    spread = head + (np.arange(size - head, dtype=np.float64) * step).astype(np.int64)
    return [*range(head), *spread.tolist()]
