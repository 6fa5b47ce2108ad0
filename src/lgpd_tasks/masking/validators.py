"""Check-digit and shape validators for Brazilian identifiers, cards and network addresses."""

from __future__ import annotations

import ipaddress
import re

_NOT_DIGIT = re.compile(r"[^0-9]")
_NOT_ALNUM = re.compile(r"[^0-9A-Za-z]")

#: The area codes (DDD) in use in Brazil; a phone number with another one is not Brazilian.
DDDS: frozenset[str] = frozenset(
    str(ddd)
    for ddd in (
        *range(11, 20),
        21,
        22,
        24,
        27,
        28,
        31,
        32,
        33,
        34,
        35,
        37,
        38,
        *range(41, 50),
        51,
        53,
        54,
        55,
        *range(61, 70),
        71,
        73,
        74,
        75,
        77,
        79,
        *range(81, 90),
        *range(91, 100),
    )
)


def only_digits(value: str) -> str:
    """``"123.456.789-09"`` -> ``"12345678909"``."""
    return _NOT_DIGIT.sub("", value)


def cpf_check_digits(first_nine: str) -> str:
    """The two check digits of a CPF's first nine digits.

    >>> cpf_check_digits("529982247")
    '25'
    """
    # Written out by hand: this runs once per CPF-shaped span in free text.
    d = [ord(c) - 48 for c in first_nine]
    s1 = 10 * d[0] + 9 * d[1] + 8 * d[2] + 7 * d[3] + 6 * d[4] + 5 * d[5] + 4 * d[6] + 3 * d[7]
    s1 += 2 * d[8]
    v1 = s1 * 10 % 11 % 10
    s2 = 11 * d[0] + 10 * d[1] + 9 * d[2] + 8 * d[3] + 7 * d[4] + 6 * d[5] + 5 * d[6]
    s2 += 4 * d[7] + 3 * d[8] + 2 * v1
    return f"{v1}{s2 * 10 % 11 % 10}"


def is_valid_cpf(value: str) -> bool:
    """Whether ``value`` (formatted or not) is a CPF with correct check digits.

    Repeated digits (``111.111.111-11``) pass the arithmetic but are not issued.

    >>> is_valid_cpf("529.982.247-25"), is_valid_cpf("529 982 247 25"), is_valid_cpf("52998224726")
    (True, True, False)
    >>> is_valid_cpf("000.000.000-00")
    False
    """
    digits = only_digits(value)
    if len(digits) != 11 or digits == digits[0] * 11:
        return False
    return cpf_check_digits(digits[:9]) == digits[9:]


def _cnpj_value(char: str) -> int:
    # The 2026 alphanumeric CNPJ gives each character its ASCII code minus 48, so digits keep
    # their value and "A" is 17; the check digits themselves stay numeric.
    return ord(char) - 48


def cnpj_check_digits(first_twelve: str) -> str:
    """The two check digits of a CNPJ's first twelve characters (digits or A-Z).

    >>> cnpj_check_digits("112223330001")
    '81'
    >>> cnpj_check_digits("12ABC34501DE")
    '35'
    """
    values = [_cnpj_value(c) for c in first_twelve.upper()]
    for size in (12, 13):
        weights = [(i % 8) + 2 for i in range(size)][::-1]
        total = sum(v * w for v, w in zip(values, weights, strict=True))
        remainder = total % 11
        values.append(0 if remainder < 2 else 11 - remainder)
    return f"{values[12]}{values[13]}"


_CNPJ_BODY = re.compile(r"[0-9A-Z]{12}[0-9]{2}")


def is_valid_cnpj(value: str) -> bool:
    """Whether ``value`` is a CNPJ, numeric or alphanumeric (from July 2026), with check digits.

    >>> is_valid_cnpj("11.222.333/0001-81"), is_valid_cnpj("12.ABC.345/01DE-35")
    (True, True)
    >>> is_valid_cnpj("11.222.333/0001-82"), is_valid_cnpj("00.000.000/0000-00")
    (False, False)
    """
    chars = _NOT_ALNUM.sub("", value).upper()
    if len(chars) != 14 or not _CNPJ_BODY.fullmatch(chars) or chars == chars[0] * 14:
        return False
    return cnpj_check_digits(chars[:12]) == chars[12:]


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum of a digit string.

    >>> luhn_ok("4111111111111111"), luhn_ok("4111111111111112")
    (True, False)
    """
    total = 0
    for i, char in enumerate(reversed(digits)):
        d = ord(char) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def is_valid_card(value: str) -> bool:
    """A payment card number: 13 to 19 digits, an issuer prefix 1-6, Luhn checksum.

    >>> is_valid_card("4111 1111 1111 1111"), is_valid_card("1234 5678 9012 3456")
    (True, False)
    """
    digits = only_digits(value)
    return 13 <= len(digits) <= 19 and digits[0] in "123456" and luhn_ok(digits)


def is_valid_phone(value: str) -> bool:
    """A Brazilian phone number: optional +55, a DDD in use, 8 digits or 9 starting with 9.

    Eight-digit numbers may start with 2 to 9: landlines, and mobiles written before the
    ninth digit was added.

    >>> is_valid_phone("+55 (11) 98765-4321"), is_valid_phone("(21) 3456-7890")
    (True, True)
    >>> is_valid_phone("(10) 98765-4321"), is_valid_phone("12345")
    (False, False)
    """
    digits = only_digits(value)
    if len(digits) in (12, 13) and digits.startswith("55"):
        digits = digits[2:]
    elif len(digits) in (11, 12) and digits.startswith("0"):
        digits = digits[1:]
    if len(digits) == 11:
        return digits[:2] in DDDS and digits[2] == "9"
    if len(digits) == 10:
        # Landlines start with 2-5; older 8-digit mobile numbers (6-9) are still written.
        return digits[:2] in DDDS and digits[2] != "0" and digits[2] != "1"
    return False


def is_valid_ip(value: str) -> bool:
    """An IPv4 or IPv6 address.

    >>> is_valid_ip("192.168.0.10"), is_valid_ip("2001:db8::1"), is_valid_ip("300.1.1.1")
    (True, True, False)
    """
    try:
        ipaddress.ip_address(value.strip())
    except ValueError:
        return False
    return True
