"""Helpers shared by the subcommands: reading SQL, printing tables and JSON."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from typing import Any


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
