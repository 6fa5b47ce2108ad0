"""Statement text with every literal replaced by a placeholder, and its sha256 fingerprint."""

from __future__ import annotations

import hashlib

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers
from sqlglot.tokenizer_core import Token, TokenType

PLACEHOLDER = "?"

_LITERAL_NODES: tuple[type[exp.Expr], ...] = (
    exp.Literal,
    exp.Boolean,
    exp.BitString,
    exp.HexString,
    exp.ByteString,
    exp.National,
    exp.UnicodeString,
    exp.RawString,
)

_LITERAL_TOKENS = frozenset(
    {
        TokenType.STRING,
        TokenType.NUMBER,
        TokenType.NATIONAL_STRING,
        TokenType.BIT_STRING,
        TokenType.HEX_STRING,
        TokenType.BYTE_STRING,
        TokenType.RAW_STRING,
        TokenType.HEREDOC_STRING,
        TokenType.UNICODE_STRING,
        TokenType.TRUE,
        TokenType.FALSE,
    }
)


def is_literal_token(token: Token) -> bool:
    """Whether a sqlglot token is a literal value (string, number, boolean...)."""
    return token.token_type in _LITERAL_TOKENS


def fingerprint(normalized: str) -> str:
    """sha256 hex of the normalised text."""
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()


def _hide_literal(node: exp.Expr) -> exp.Expr:
    if isinstance(node, _LITERAL_NODES):
        return exp.var(PLACEHOLDER)
    # COPY ... TO PROGRAM 'cmd' keeps the command as a bare Var inside a parameter
    if (
        isinstance(node, exp.Var)
        and isinstance(node.parent, exp.CopyParameter)
        and node.parent.args.get("expression") is None
    ):
        return exp.var(PLACEHOLDER)
    return node


def normalize_tree(tree: exp.Expr, dialect: str) -> str:
    """SQL for a parsed statement with literals and comments removed."""
    hidden = normalize_identifiers(tree.transform(_hide_literal, copy=True), dialect=dialect)
    return str(hidden.sql(dialect=dialect, comments=False))


def normalize_text(text: str, dialect: str) -> str:
    """Token-level normalisation for text sqlglot keeps opaque (commands, unparsable input).

    Literals become placeholders and comments disappear; if even tokenising fails the
    text is replaced by a fixed marker, so no value can leak. Bare words become
    placeholders too: in text the parser could not read, a word may be a value the
    tokenizer did not see quoted (``$$Joana Pereira$$`` in SQLite), so only keywords,
    operators and quoted names are kept.

    >>> normalize_text("SELECT nome FROM t WHERE nome = $$Joana Pereira$$", "sqlite")
    'SELECT ? FROM ? WHERE ? = ? ?'
    """
    try:
        tokens = Dialect.get_or_raise(dialect).tokenize(text)
    except SqlglotError:
        return "<untokenizable statement>"
    parts: list[str] = []
    for token in tokens:
        if is_literal_token(token):
            parts.append(PLACEHOLDER)
        elif token.token_type == TokenType.IDENTIFIER:
            parts.append('"' + token.text.replace('"', '""') + '"')
        elif token.token_type in (TokenType.VAR, TokenType.NUMBER, TokenType.PARAMETER):
            parts.append(PLACEHOLDER)
        else:
            parts.append(token.text.upper())
    return " ".join(parts)
