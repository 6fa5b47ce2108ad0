"""Helpers shared by the subcommands: reading SQL, printing tables and JSON."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

#: The largest count an option takes (SQLite and PostgreSQL integers are 64-bit).
MAX_COUNT = 2**31 - 1


def count_argument(minimum: int = 1) -> Callable[[str], int]:
    """An argparse type: a whole number from ``minimum`` up to :data:`MAX_COUNT`.

    >>> count_argument()("20")
    20
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not minimum <= value <= MAX_COUNT:
            raise argparse.ArgumentTypeError(
                f"expected a number from {minimum} to {MAX_COUNT}, got {text}"
            )
        return value

    return parse


def duration_argument(text: str) -> timedelta:
    """An argparse type: a duration such as ``15m`` or ``5y`` (at most 1000 years)."""
    from lgpd_tasks.policy.model import parse_duration

    try:
        return parse_duration(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def parse_when(text: str) -> datetime:
    """A date or ISO time from the command line, in UTC when no zone is given.

    >>> parse_when("2025-01-31").isoformat()
    '2025-01-31T00:00:00+00:00'
    """
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a date such as 2025-01-31 or an ISO time, got {text!r}"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def add_sql_argument(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--sql", help="the SQL text")
    group.add_argument(
        "stdin", nargs="?", choices=["-"], help="read the SQL from standard input", default=None
    )


def read_sql(args: argparse.Namespace) -> str:
    if args.sql is not None:
        return str(args.sql)
    return sys.stdin.read()


def split_statements(sql: str, dialect: str) -> list[str]:
    """Split a script at top-level semicolons, keeping each statement's own text.

    >>> split_statements("select ';' from t; delete from t where id = 1;", "postgres")
    ["select ';' from t", 'delete from t where id = 1']

    Text the tokenizer cannot read comes back whole, for the guard to refuse.
    """
    import sqlglot
    from sqlglot.errors import SqlglotError
    from sqlglot.tokenizer_core import TokenType

    try:
        tokens = sqlglot.Dialect.get_or_raise(dialect).tokenize(sql)
    except (SqlglotError, ValueError):
        return [sql]
    parts: list[str] = []
    start = 0
    for token in tokens:
        if token.token_type == TokenType.SEMICOLON:
            parts.append(sql[start : token.start])
            start = token.end + 1
    parts.append(sql[start:])
    return [p.strip() for p in parts if p.strip()]


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")


def print_table(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    title: str | None = None,
    wrap: Sequence[str] = (),
) -> None:
    """A table for people; only the columns named in ``wrap`` may fold onto several lines."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(str(column), overflow="fold", no_wrap=column not in wrap)
    for row in rows:
        table.add_row(*["" if v is None else str(v) for v in row])
    Console(width=max(160, Console().width)).print(table)


def print_csv(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    writer = csv.writer(sys.stdout)
    writer.writerow(columns)
    writer.writerows(rows)


def print_rows(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str, *, title: str | None = None
) -> None:
    if fmt == "json":
        print_json([dict(zip(columns, row, strict=True)) for row in rows])
    elif fmt == "csv":
        print_csv(columns, rows)
    else:
        print_table(columns, rows, title=title, wrap=columns)
