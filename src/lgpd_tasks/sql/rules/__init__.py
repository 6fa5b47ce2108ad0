"""The guard's rules, one per module, composed in :data:`DEFAULT_RULES` (order is reporting order).

A rule is a function ``(statements, scope, context) -> Iterable[Reason]``; adding a rule
is adding a module here and its function to the tuple.
"""

from __future__ import annotations

from lgpd_tasks.sql.model import Rule
from lgpd_tasks.sql.rules.admin import admin
from lgpd_tasks.sql.rules.approval_triggers import approval_triggers
from lgpd_tasks.sql.rules.copy_file import copy_file
from lgpd_tasks.sql.rules.dcl import dcl
from lgpd_tasks.sql.rules.ddl import ddl
from lgpd_tasks.sql.rules.max_rows import max_rows
from lgpd_tasks.sql.rules.multiple_statements import multiple_statements
from lgpd_tasks.sql.rules.procedural import procedural
from lgpd_tasks.sql.rules.read_scope import read_scope
from lgpd_tasks.sql.rules.session import session
from lgpd_tasks.sql.rules.side_effect_functions import side_effect_function
from lgpd_tasks.sql.rules.unbounded_write import unbounded_write
from lgpd_tasks.sql.rules.unknown_function import unknown_function
from lgpd_tasks.sql.rules.unparsable import unparsable
from lgpd_tasks.sql.rules.write_scope import write_scope

DEFAULT_RULES: tuple[Rule, ...] = (
    unparsable,
    multiple_statements,
    ddl,
    dcl,
    session,
    procedural,
    admin,
    copy_file,
    side_effect_function,
    unknown_function,
    read_scope,
    write_scope,
    unbounded_write,
    max_rows,
    approval_triggers,
)

__all__ = ["DEFAULT_RULES"]
