"""The ``lgpd-tasks`` command: one subcommand module per verb under ``lgpd_tasks.commands``.

Exit codes are part of the contract: 0 allow / success, 3 needs approval, 4 blocked,
2 usage or policy-file error (an audit store URL that names no usable store included),
1 the database (or another dependency) failed.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from lgpd_tasks.errors import (
    ApprovalRequired,
    AuditStoreUnusable,
    LgpdError,
    MaskingError,
    PolicyError,
    StatementBlocked,
    UsageError,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_APPROVE = 3
EXIT_BLOCK = 4

#: Modules under ``lgpd_tasks.commands``; each has ``register(subparsers)`` which adds its
#: parser and sets ``func`` (``(args) -> int``) as the parser's default.
COMMAND_MODULES: tuple[str, ...] = (
    "check",
    "exec",
    "db",
    "audit",
    "approvals",
    "roles",
    "mask",
    "report",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lgpd-tasks",
        description="Scoped, guarded, masked and audited data-pipeline tasks (LGPD).",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"lgpd_tasks.commands.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except (PolicyError, MaskingError, AuditStoreUnusable, UsageError) as err:
        print(f"lgpd-tasks: {err}", file=sys.stderr)
        return EXIT_USAGE
    except ApprovalRequired as err:
        print(f"lgpd-tasks: {err}", file=sys.stderr)
        return EXIT_APPROVE
    except StatementBlocked as err:
        print(f"lgpd-tasks: {err}", file=sys.stderr)
        return EXIT_BLOCK
    except LgpdError as err:
        print(f"lgpd-tasks: {err}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (`lgpd-tasks audit tail | head`): stop quietly, as cat does;
        # stdout is pointed at devnull so the interpreter's final flush cannot fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return code


if __name__ == "__main__":
    sys.exit(main())
