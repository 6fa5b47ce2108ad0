"""Resolve a parsed statement's tables and columns, what it writes, and its column lineage.

The walk follows SQL's own scoping: CTEs (data-modifying ones included), derived tables,
``LATERAL``, correlated subqueries in any clause, set operations and ``RETURNING``. A
column whose table cannot be known is attributed to every table it could come from, so
an uncertain read is checked against each of them (fail closed).

Each node's arguments the walker understands are walked with their own scoping rules;
every other argument (``LIMIT``, ``TABLESAMPLE``, a dialect's extra clause...) is walked
as a plain expression, so a subquery or a call hidden there is never missed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect

from lgpd_tasks.policy import ALL, Scope
from lgpd_tasks.policy.names import qualified_name
from lgpd_tasks.sql.conditions import always_true
from lgpd_tasks.sql.model import Catalog, LineageEdge

Output = tuple[str, frozenset[str]]
"""An output column of a query: its name and the ``schema.table.column`` it comes from."""

Clause = tuple[str, exp.Expr]
"""A clause of a parenthesised query (``(SELECT ...) LIMIT n``): its key and its node."""

#: Arguments each node's own walk handles; any other argument is walked as an expression.
_SELECT_ARGS = frozenset({"with_", "from_", "joins", "expressions", "locks", "into"})
_SET_OPERATION_ARGS = frozenset({"with_", "this", "expression"})
_SUBQUERY_ARGS = frozenset({"this", "alias", "with_"})
_TABLE_ARGS = frozenset({"this", "db", "catalog", "alias", "joins", "rows_from"})
_JOIN_ARGS = frozenset({"this", "on", "using"})
_LATERAL_ARGS = frozenset({"this", "alias"})
_VALUES_ARGS = frozenset({"expressions", "alias"})
_INSERT_ARGS = frozenset({"with_", "this", "expression", "conflict", "returning"})
_CONFLICT_ARGS = frozenset({"expressions", "where"})
_UPDATE_ARGS = frozenset({"with_", "this", "expressions", "from_", "joins", "where", "returning"})
_DELETE_ARGS = frozenset({"with_", "this", "using", "where", "returning"})
_MERGE_ARGS = frozenset({"with_", "this", "using", "on", "whens", "returning"})
#: Clauses where a bare output-column name may stand for that output column.
_SORT_KEYS = frozenset({"order", "group"})
#: Dialects where an output alias may appear anywhere in GROUP BY, HAVING, ORDER BY and
#: WINDOW (and that have no whole-row references). Elsewhere, as in PostgreSQL, only a
#: whole ORDER BY or GROUP BY item may be an output alias: inside an expression the name
#: is an input column or a whole row.
_ALIASES_ANYWHERE = frozenset({"sqlite"})
_ALIAS_CLAUSES = frozenset({"group", "having", "order", "windows"})


@dataclass
class Relation:
    """Something a FROM clause makes visible: a real table or a derived result."""

    table: str | None = None
    #: Output columns for derived results; catalogue columns (no sources) for tables.
    outputs: list[Output] | None = None
    #: A table's visible column names (after an alias column list), when the catalogue knows.
    columns: frozenset[str] | None = None
    #: ``FROM t AS x(a, b)``: each visible name and the table column it renames, by
    #: position (``*`` when the catalogue does not know the table's column order).
    renames: tuple[tuple[str, str], ...] = ()
    #: A function in FROM (``json_each(c.nome)``, ``unnest(...)``): the columns its
    #: arguments read, which every column it returns may carry.
    carries: frozenset[str] = frozenset()

    def definitely_has(self, name: str, granted: frozenset[str] | None) -> bool:
        if self.table is not None:
            if self.columns is not None:
                return name in self.columns
            if self.renames:
                # a granted name may be the column the list renamed away
                return any(v == name for v, _ in self.renames)
            # an explicit column grant asserts the column exists in that table
            return granted is not None and ALL not in granted and name in granted
        return self.outputs is not None and any(n == name for n, _ in self.outputs)

    def may_have(self, name: str) -> bool:
        if self.table is not None:
            return self.columns is None or name in self.columns
        if self.outputs is None:
            return True
        return any(n in (name, ALL) for n, _ in self.outputs)

    def table_columns(self, name: str) -> list[str]:
        """The table's columns a visible name stands for (itself unless renamed)."""
        return [real for visible, real in self.renames if visible == name] or [name]


@dataclass
class Env:
    """CTEs in reach and the FROM sources of enclosing queries (innermost first)."""

    ctes: dict[str, Relation] = field(default_factory=dict)
    outer: tuple[dict[str, Relation], ...] = ()

    def inner(self, sources: dict[str, Relation]) -> Env:
        return Env(dict(self.ctes), (sources, *self.outer))


class Walker:
    """Collects reads, writes, functions and lineage of one statement."""

    def __init__(self, dialect: str, catalog: Catalog | None, scope: Scope | None) -> None:
        self.dialect = dialect
        self._dialect = Dialect.get_or_raise(dialect)
        self.catalog = catalog
        self.scope = scope
        self.aliases_anywhere = dialect in _ALIASES_ANYWHERE
        self.tables_read: set[str] = set()
        self.tables_written: set[str] = set()
        self.reads: dict[str, set[str]] = {}
        self.writes: dict[str, set[str]] = {}
        self.functions: set[str] = set()
        self.unknown_functions: set[str] = set()
        self.unresolved: set[str] = set()
        self.lineage: list[LineageEdge] = []
        #: Kinds of writes anywhere in the statement (data-modifying CTEs included).
        self.write_kinds: set[str] = set()
        #: Tables deleted from or updated with no WHERE or an always-true one.
        self.unbounded: set[str] = set()

    # -- names -------------------------------------------------------------------------
    def ident(self, node: exp.Expr | str | None) -> str:
        if node is None:
            return ""
        if isinstance(node, str):
            node = exp.to_identifier(node)
        if not isinstance(node, exp.Identifier):
            return node.name
        return str(self._dialect.normalize_identifier(node.copy()).name)

    def table_name(self, table: exp.Table) -> str:
        schema = self.ident(table.args.get("db")) or None
        return qualified_name(self.ident(table.this), schema, self.dialect)

    def catalog_columns(self, table: str) -> list[str] | None:
        if self.catalog is None:
            return None
        cols = self.catalog.columns(table)
        return list(cols) if cols is not None else None

    # -- recording ---------------------------------------------------------------------
    def read(self, table: str, column: str) -> None:
        self.tables_read.add(table)
        self.reads.setdefault(table, set()).add(column)

    def write(self, table: str, columns: Iterable[str]) -> None:
        self.tables_written.add(table)
        self.writes.setdefault(table, set()).update(columns)

    def edge(self, target: str, sources: Iterable[str]) -> None:
        self.lineage.append(LineageEdge(target, tuple(sorted(set(sources)))))

    def real(self, table: str, alias: exp.Expr | None = None) -> Relation:
        """A table in FROM; an alias column list renames its columns by position."""
        cols = self.catalog_columns(table)
        names = [self.ident(c) for c in alias.args.get("columns") or []] if alias else []
        if not names:
            return Relation(table=table, columns=frozenset(cols) if cols is not None else None)
        if cols is None:
            # without the column order a renamed column may be any of the table's columns
            return Relation(table=table, renames=tuple((n, ALL) for n in names))
        visible = [*names, *cols[len(names) :]]
        return Relation(
            table=table, columns=frozenset(visible), renames=tuple(zip(visible, cols, strict=False))
        )

    # -- queries -----------------------------------------------------------------------
    def query(
        self, node: exp.Expr | None, env: Env, clauses: Sequence[Clause] = ()
    ) -> list[Output]:
        """Walk a query or a data-modifying statement; return its output columns.

        ``clauses`` are the ``ORDER BY``/``LIMIT``... written after the parentheses of a
        parenthesised query: they belong to the query inside, as PostgreSQL reads them.
        """
        if node is None:
            return []
        if isinstance(node, exp.Subquery):
            env = self.ctes(node, env)
            own = [(k, v) for k, v in node.args.items() if k not in _SUBQUERY_ARGS]
            return self.query(node.this, env, [*_clauses(own), *clauses])
        if isinstance(node, exp.Select):
            return self.select(node, env, clauses)
        if isinstance(node, exp.SetOperation):
            env = self.ctes(node, env)
            left = self.query(node.left, env)
            right = self.query(node.right, env)
            if len(left) != len(right) or any(n == ALL for n, _ in (*left, *right)):
                merged = frozenset().union(*(s for _, s in (*left, *right)))
                outputs = [(ALL, merged)] if merged or left or right else []
            else:
                outputs = [(ln, ls | rs) for (ln, ls), (_, rs) in zip(left, right, strict=True)]
            # ORDER BY, LIMIT... of a set operation see only its output columns
            self.rest(node, _SET_OPERATION_ARGS, {}, env, _names_of(outputs), clauses)
            return outputs
        if isinstance(node, exp.Values):
            outputs = self.values(node, env)
            self.rest(node, _VALUES_ARGS, {}, env, _names_of(outputs), clauses)
            return outputs
        for _, clause in clauses:
            self.expr(clause, {}, env)
        if isinstance(node, exp.Insert):
            return self.insert(node, env)
        if isinstance(node, exp.Update):
            return self.update(node, env)
        if isinstance(node, exp.Delete):
            return self.delete(node, env)
        if isinstance(node, exp.Merge):
            return self.merge(node, env)
        for child in node.iter_expressions():
            self.expr(child, {}, env)
        return []

    def rest(
        self,
        node: exp.Expr,
        handled: frozenset[str],
        sources: dict[str, Relation],
        env: Env,
        aliases: frozenset[str] = frozenset(),
        clauses: Sequence[Clause] = (),
    ) -> None:
        """Walk every argument of ``node`` not in ``handled``, and ``clauses`` after them.

        What the walker has no special rule for is still walked as an expression, so a
        subquery or call in any clause is recorded (fail closed).
        """
        own = [(k, v) for k, v in node.args.items() if k not in handled]
        for key, value in (*_clauses(own), *clauses):
            if self.aliases_anywhere and key in _ALIAS_CLAUSES:
                self.expr(value, sources, env, aliases)
            elif key in _SORT_KEYS and isinstance(value, (exp.Order, exp.Group)):
                self.sort_keys(key, value, sources, env, aliases)
            else:
                self.expr(value, sources, env)

    def sort_keys(
        self,
        key: str,
        node: exp.Order | exp.Group,
        sources: dict[str, Relation],
        env: Env,
        aliases: frozenset[str],
    ) -> None:
        """``ORDER BY``/``GROUP BY``: an output-column name counts only as a whole item.

        Inside an expression, PostgreSQL reads the name as an input column or a whole row
        (``ORDER BY (c).cpf`` with an output ``c`` still reads table ``c``).
        """
        for item in node.expressions:
            name = self.bare_name(item.this if isinstance(item, exp.Ordered) else item)
            if name is not None and key == "order" and name in aliases:
                continue  # ORDER BY prefers the output column, already walked
            self.expr(item, sources, env, aliases if name is not None else frozenset())
        self.rest(node, frozenset({"expressions"}), sources, env)

    def bare_name(self, node: exp.Expr) -> str | None:
        """The name of an unqualified column reference, ``None`` for anything else."""
        if (
            isinstance(node, exp.Column)
            and isinstance(node.this, exp.Identifier)
            and node.args.get("table") is None
        ):
            return self.ident(node.this)
        return None

    def ctes(self, node: exp.Expr, env: Env) -> Env:
        with_ = node.args.get("with_")
        if not isinstance(with_, exp.With):
            return env
        env = Env(dict(env.ctes), env.outer)
        for cte in with_.expressions:
            name = self.ident(cte.args["alias"].this)
            recursive = bool(with_.args.get("recursive"))
            if recursive:
                env.ctes[name] = Relation()  # the self-reference: outputs unknown
            outputs = self.renamed(self.query(cte.this, env), cte.args.get("alias"))
            if recursive:
                # each iteration may move a value to another column (SELECT b, a FROM r):
                # every column may carry what any of them does
                merged = frozenset().union(*(s for _, s in outputs))
                outputs = [(n, merged) for n, _ in outputs]
            env.ctes[name] = Relation(outputs=outputs)
        return env

    def renamed(self, outputs: list[Output], alias: exp.Expr | None) -> list[Output]:
        names = [self.ident(c) for c in alias.args.get("columns") or []] if alias else []
        if not names:
            return outputs
        if any(n == ALL for n, _ in outputs) or len(outputs) < len(names):
            merged = frozenset().union(*(s for _, s in outputs))
            return [(n, merged) for n in names]
        return [(n, outputs[i][1]) for i, n in enumerate(names)] + outputs[len(names) :]

    def values(self, node: exp.Values, env: Env) -> list[Output]:
        """``VALUES`` rows: each column carries what its items read (``VALUES ((SELECT nome
        ...))``, ``LATERAL (VALUES (c.nome))``)."""
        columns: list[set[str]] = []
        for row in node.expressions:
            items = row.expressions if isinstance(row, exp.Tuple) else [row]
            while len(columns) < len(items):
                columns.append(set())
            for i, item in enumerate(items):
                columns[i] |= self.expr(item, {}, env)
        return self.renamed(
            [(f"column{i + 1}", frozenset(c)) for i, c in enumerate(columns)],
            node.args.get("alias"),
        )

    def select(self, node: exp.Select, env: Env, clauses: Sequence[Clause] = ()) -> list[Output]:
        env = self.ctes(node, env)
        sources: dict[str, Relation] = {}
        from_ = node.args.get("from_")
        if isinstance(from_, exp.From):
            self.add_source(from_.this, sources, env)
        joins = node.args.get("joins") or []
        for join in joins:
            left = list(sources.values())
            self.add_source(join.this, sources, env)
            if str(join.args.get("method") or "").upper() == "NATURAL":
                self.natural(left, [r for r in sources.values() if all(r is not x for x in left)])
        outputs: list[Output] = []
        for projection in node.expressions:
            star = self.star_qualifier(projection)
            if star is not None:
                outputs.extend(self.star(star, sources))
            else:
                outputs.append((self.output_name(projection), self.expr(projection, sources, env)))
        for join in joins:
            self.join_condition(join, sources, env)
        # WHERE, GROUP BY, HAVING, ORDER BY, LIMIT, TABLESAMPLE... and any other clause
        self.rest(node, _SELECT_ARGS, sources, env, _names_of(outputs), clauses)
        for lock in node.args.get("locks") or []:
            # FOR UPDATE/SHARE locks rows for writing: PostgreSQL asks for UPDATE privilege
            named = {self.ident(t.this) for t in lock.expressions}
            for name, rel in sources.items():
                if rel.table is not None and (not named or name in named):
                    self.tables_written.add(rel.table)
        into = node.args.get("into")
        if isinstance(into, exp.Into) and isinstance(into.this, exp.Table):
            self.write(self.table_name(into.this), [ALL])
        return outputs

    def output_name(self, projection: exp.Expr) -> str:
        if isinstance(projection, exp.Alias):
            return self.ident(projection.args.get("alias"))
        if isinstance(projection, exp.Column):
            return self.ident(projection.this)
        if isinstance(projection, exp.Anonymous):
            return projection.name.lower()
        if isinstance(projection, exp.Func):
            return projection.sql_name().lower()
        # PostgreSQL's name for any other expression; never a literal's text
        return "?column?"

    def add_source(self, node: exp.Expr, sources: dict[str, Relation], env: Env) -> None:
        alias_node = node.args.get("alias")
        alias = self.ident(alias_node.this) if isinstance(alias_node, exp.TableAlias) else ""
        if isinstance(node, exp.Table):
            if not isinstance(node.this, exp.Identifier):
                carried = self.function_source(node, sources, env)
                fallback = node.this.name.lower() if node.this is not None else ""
                _put(sources, alias or fallback, self.function_relation(alias_node, carried))
            else:
                name = self.ident(node.this)
                if not node.args.get("db") and name in env.ctes:
                    rel = env.ctes[name]
                    renamed = self.renamed(rel.outputs, alias_node) if rel.outputs else rel.outputs
                    _put(sources, alias or name, Relation(outputs=renamed))
                else:
                    table = self.table_name(node)
                    self.tables_read.add(table)
                    _put(sources, alias or name, self.real(table, alias_node))
            for join in node.args.get("joins") or []:
                self.join(join, sources, env)
            self.rest(node, _TABLE_ARGS, sources, env)
            return
        if isinstance(node, exp.Subquery):
            if _join_tree(node.this):
                self.join_tree(node, alias, sources, env)
                return
            outputs = self.query(node, env.inner(sources))
            _put(sources, alias, Relation(outputs=self.renamed(outputs, alias_node)))
            return
        if isinstance(node, exp.Lateral):
            inner = node.this
            if isinstance(inner, exp.Subquery):
                outputs = self.query(inner, env.inner(sources))
                _put(sources, alias, Relation(outputs=self.renamed(outputs, alias_node)))
            else:
                _put(sources, alias, Relation(carries=self.expr(inner, sources, env)))
            self.rest(node, _LATERAL_ARGS, sources, env)
            return
        if isinstance(node, exp.Values):
            _put(sources, alias, Relation(outputs=self.query(node, env)))
            return
        # UNNEST, table functions, anything else: walk it; its columns, unknown, carry what
        # its arguments read (``unnest(ARRAY[c.nome]) AS u(x)``: x is a name)
        carried = self.expr(node, sources, env)
        _put(
            sources,
            alias or node.alias_or_name.lower(),
            self.function_relation(alias_node, carried),
        )

    def function_relation(self, alias_node: exp.Expr | None, carried: frozenset[str]) -> Relation:
        """What a function in FROM returns: the columns its alias names (``AS u(x)``), each
        carrying what its arguments read, or columns unknown when the alias names none."""
        columns = alias_node.args.get("columns") if isinstance(alias_node, exp.TableAlias) else None
        outputs = [(self.ident(c), carried) for c in columns or []]
        return Relation(outputs=outputs or None, carries=carried)

    def function_source(
        self, node: exp.Table, sources: dict[str, Relation], env: Env
    ) -> frozenset[str]:
        """A function in FROM, or each of ``ROWS FROM (f(...), g(...))``: walk the calls;
        the columns their arguments read."""
        found: set[str] = set()
        for call in node.args.get("rows_from") or [node]:
            if not isinstance(call, exp.Table):
                found |= self.expr(call, sources, env)
                continue
            if isinstance(call.this, exp.Func) and call.args.get("db") is not None:
                self.function(call.this, call.args["db"])
            found |= self.expr(call.this, sources, env)
            if call is not node:
                self.rest(call, _TABLE_ARGS, sources, env)
        return frozenset(found)

    def join(self, join: exp.Join, sources: dict[str, Relation], env: Env) -> None:
        """A join inside a FROM item (``FROM (a JOIN b ON ...)``): its table and condition."""
        left = list(sources.values())
        self.add_source(join.this, sources, env)
        if str(join.args.get("method") or "").upper() == "NATURAL":
            self.natural(left, [r for r in sources.values() if all(r is not x for x in left)])
        self.join_condition(join, sources, env)

    def join_condition(self, join: exp.Join, sources: dict[str, Relation], env: Env) -> None:
        self.expr(join.args.get("on"), sources, env)
        for using in join.args.get("using") or []:
            name = self.ident(using)
            for rel in sources.values():
                self.from_relation(rel, name)
        self.rest(join, _JOIN_ARGS, sources, env)

    def join_tree(
        self, node: exp.Subquery, alias: str, sources: dict[str, Relation], env: Env
    ) -> None:
        """``FROM (a JOIN b ON ...) [AS j]``: the tables join the FROM clause as they are.

        An alias hides the inner names: ``j`` then stands for every column of the join.
        """
        inner: dict[str, Relation] = {} if alias else sources
        self.add_source(node.this, inner, env)
        self.rest(node, _SUBQUERY_ARGS, inner, env)
        if alias:
            outputs = self.star(ALL, inner)
            _put(sources, alias, Relation(outputs=self.renamed(outputs, node.args.get("alias"))))

    def natural(self, left: list[Relation], right: list[Relation]) -> None:
        """``NATURAL JOIN`` compares every column the two sides share: each is read."""
        left_names, right_names = _names(left), _names(right)
        common = None if left_names is None or right_names is None else left_names & right_names
        for side, other in ((left, right_names), (right, left_names)):
            for rel in side:
                own = _names([rel])
                if common is not None:
                    candidates = common
                elif own is None:
                    candidates = {ALL}
                else:  # the other side's columns are unknown: any of ours may be shared
                    candidates = own if other is None else own & other
                for name in sorted(candidates):
                    self.from_relation(rel, name)

    def star(self, qualifier: str, sources: Mapping[str, Relation]) -> list[Output]:
        chosen = (
            list(sources.values())
            if qualifier == ALL
            else [sources[qualifier]]
            if qualifier in sources
            else []
        )
        if qualifier != ALL and not chosen:
            self.unresolved.add(f"{qualifier}.*")
        outputs: list[Output] = []
        for rel in chosen:
            outputs.extend(self.every_column(rel))
        return outputs

    def every_column(self, rel: Relation) -> list[Output]:
        """``rel.*`` or a whole-row reference to ``rel``: each of its columns is read."""
        if rel.table is None:
            if rel.outputs is None:
                # a function's columns, unknown: one entry standing for them all
                return [(ALL, rel.carries)]
            return list(rel.outputs)
        cols = self.catalog_columns(rel.table)
        if cols is None:
            self.read(rel.table, ALL)
            return [(ALL, frozenset({f"{rel.table}.{ALL}"}))]
        outputs: list[Output] = []
        for visible, col in rel.renames or tuple(zip(cols, cols, strict=True)):
            self.read(rel.table, col)
            outputs.append((visible, frozenset({f"{rel.table}.{col}"})))
        return outputs

    # -- expressions -------------------------------------------------------------------
    def expr(
        self,
        node: exp.Expr | None,
        sources: dict[str, Relation],
        env: Env,
        aliases: frozenset[str] = frozenset(),
    ) -> frozenset[str]:
        """Walk an expression; record column reads and calls; return its source columns."""
        if node is None:
            return frozenset()
        found: set[str] = set()
        stack: list[exp.Expr] = [node]
        while stack:
            current = stack.pop()
            if isinstance(current, exp.Column):
                star = self.star_qualifier(current)
                if star is not None:
                    for _, srcs in self.star(star, sources):
                        found |= srcs
                else:
                    found |= self.column(current, sources, env, aliases)
                continue
            if isinstance(current, (exp.Query, exp.DML)):
                for _, srcs in self.query(current, env.inner(sources)):
                    found |= srcs
                continue
            if isinstance(current, exp.Subquery):
                for _, srcs in self.query(current, env.inner(sources)):
                    found |= srcs
                continue
            if isinstance(current, exp.Table):
                # a table or table function inside an expression (``IN (TABLE t)``...)
                self.add_source(current, dict(sources), env)
                continue
            field = _field_of_row(current)
            if field is not None:
                # ``(c).f``: column c's field f, or column f of the table whose alias is c
                found |= self.column(field[0], sources, env, field=self.ident(field[1]))
                continue
            if isinstance(current, exp.Dot) and isinstance(current.expression, exp.Func):
                # ``schema.f(...)``: the name alone would pass for the built-in ``f``
                self.function(current.expression, current.this)
                stack.extend(current.expression.iter_expressions())
                continue
            if isinstance(current, exp.Func):
                self.function(current)
            stack.extend(current.iter_expressions())
        return frozenset(found)

    def function(self, node: exp.Func, schema: exp.Expr | None = None) -> None:
        name = node.name.lower() if isinstance(node, exp.Anonymous) else node.sql_name().lower()
        parts = schema.parts if isinstance(schema, exp.Dot) else [schema] if schema else []
        qualifier = ".".join(self.ident(p) for p in parts)
        if qualifier and not (self.dialect == "postgres" and qualifier == "pg_catalog"):
            # a function of another schema may be user-defined whatever its name
            name = f"{qualifier}.{name}"
            self.unknown_functions.add(name)
        elif isinstance(node, exp.Anonymous):
            self.unknown_functions.add(name)
        self.functions.add(name)

    def column(
        self,
        node: exp.Column,
        sources: Mapping[str, Relation],
        env: Env,
        aliases: frozenset[str] = frozenset(),
        field: str | None = None,
    ) -> frozenset[str]:
        """Resolve a column reference in the FROM items in reach, innermost first.

        A bare name no FROM item has as a column is an output alias where ``aliases`` allows
        it, else a whole-row reference to the FROM item of that name (its ``field`` only,
        for ``(name).field``), as PostgreSQL resolves it; else it is unresolved.
        """
        name = self.ident(node.this)
        qualifier = self.ident(node.args.get("table")) if node.args.get("table") else ""
        levels = (sources, *env.outer)
        if qualifier:
            for level in levels:
                if qualifier in level:
                    rel = level[qualifier]
                    if not rel.may_have(name):
                        # a column its FROM item does not have may still name another one
                        # (PostgreSQL cuts names at 63 bytes): unresolved, so blocked
                        break
                    return self.from_relation(rel, name)
            self.unresolved.add(f"{qualifier}.{name}")
            return frozenset()
        chosen: list[Relation] = []
        for level in levels:
            candidates = [rel for rel in level.values() if rel.may_have(name)]
            definite = [rel for rel in candidates if rel.definitely_has(name, self.granted(rel))]
            if definite:
                chosen.extend(definite)
                break
            chosen.extend(candidates)
        if not chosen:
            if name in aliases:
                return frozenset()
            for level in levels:
                if name in level:
                    return self.whole_row(level[name], field)
            self.unresolved.add(name)
            return frozenset()
        found: set[str] = set()
        for rel in chosen:
            found |= self.from_relation(rel, name)
        return frozenset(found)

    def granted(self, rel: Relation) -> frozenset[str] | None:
        if self.scope is None or rel.table is None:
            return None
        return self.scope.readable_columns(rel.table)

    def whole_row(self, rel: Relation, field: str | None) -> frozenset[str]:
        """A FROM item named as a value (``to_jsonb(c)``, ``c::text``): all its columns."""
        if field is not None:
            return self.from_relation(rel, field)
        return frozenset().union(*(srcs for _, srcs in self.every_column(rel)))

    def from_relation(self, rel: Relation, name: str) -> frozenset[str]:
        if rel.table is not None:
            if not rel.renames:
                self.read(rel.table, name)
                return frozenset({f"{rel.table}.{name}"})
            for column in rel.table_columns(name):
                self.read(rel.table, column)
            return frozenset(f"{rel.table}.{c}" for c in rel.table_columns(name))
        if rel.outputs is None:
            return rel.carries
        same = [srcs for out_name, srcs in rel.outputs if out_name == name]
        if same:
            # a derived table may repeat a name (SELECT * over two subqueries): any of them
            return frozenset().union(*same)
        found: set[str] = set()
        for out_name, srcs in rel.outputs:
            if out_name == ALL:
                found |= {s[: -len(ALL)] + name if s.endswith("." + ALL) else s for s in srcs}
        return frozenset(found)

    # -- data-modifying statements -----------------------------------------------------
    def target(self, node: exp.Expr) -> tuple[str, str, list[str] | None]:
        """Table name, alias in scope and listed columns of an INSERT/UPDATE/DELETE target."""
        columns: list[str] | None = None
        if isinstance(node, exp.Schema):
            columns = [self.ident(c) for c in node.expressions]
            node = node.this
        if (
            not isinstance(node, exp.Table)
            or not isinstance(node.this, exp.Identifier)
            or node.args.get("joins")
        ):
            # a join as the target (MySQL's multi-table UPDATE/DELETE) writes several tables
            self.unresolved.add("<target>")
            return "?", "?", columns
        table = self.table_name(node)
        return table, self.ident(node.args["alias"].this) if node.alias else node.name, columns

    def returning(self, node: exp.Expr, sources: dict[str, Relation], env: Env) -> list[Output]:
        returning = node.args.get("returning")
        if not isinstance(returning, exp.Returning):
            return []
        outputs: list[Output] = []
        for projection in returning.expressions:
            star = self.star_qualifier(projection)
            if star is not None:
                outputs.extend(self.star(star, sources))
            else:
                outputs.append((self.output_name(projection), self.expr(projection, sources, env)))
        return outputs

    def insert(self, node: exp.Insert, env: Env) -> list[Output]:
        env = self.ctes(node, env)
        table, alias, columns = self.target(node.this)
        if columns is None:
            columns = self.catalog_columns(table)
        self.write_kinds.add("insert")
        outputs = self.query(node.expression, env) if node.expression is not None else []
        self.write(table, columns if columns is not None else [ALL])
        if str(node.args.get("alternative") or "").upper() == "REPLACE":
            # SQLite's INSERT OR REPLACE deletes the conflicting row whole, as DELETE does
            self.write_kinds.add("delete")
            self.write(table, [ALL])
        known = columns is not None and all(n != ALL for n, _ in outputs)
        if columns is not None and known:
            for position, column in enumerate(columns):
                if position < len(outputs) and outputs[position][1]:
                    self.edge(f"{table}.{column}", outputs[position][1])
        else:
            merged = frozenset().union(*(s for _, s in outputs))
            if merged:
                for column in columns or [ALL]:
                    self.edge(f"{table}.{column}", merged)
        sources = {alias: self.real(table)}
        conflict = node.args.get("conflict")
        if isinstance(conflict, exp.OnConflict):
            proposed = (
                [(c, outputs[i][1]) for i, c in enumerate(columns) if i < len(outputs)]
                if columns is not None and known
                else None
            )
            conflict_sources = {**sources, "excluded": Relation(outputs=proposed)}
            if conflict.args.get("expressions"):
                self.write_kinds.add("update")
            for assignment in conflict.args.get("expressions") or []:
                self.assignment(table, alias, assignment, conflict_sources, env)
            self.expr(conflict.args.get("where"), conflict_sources, env)
            self.rest(conflict, _CONFLICT_ARGS, conflict_sources, env)
            for ref in conflict.find_all(exp.Column):
                # EXCLUDED.c is the target's column c: PostgreSQL asks SELECT on it
                if self.ident(ref.args.get("table")) == "excluded":
                    self.read(table, self.ident(ref.this))
        self.rest(node, _INSERT_ARGS, sources, env)
        return self.returning(node, sources, env)

    def assignment(
        self, table: str, alias: str, node: exp.Expr, sources: dict[str, Relation], env: Env
    ) -> None:
        if not isinstance(node, exp.EQ):
            self.expr(node, sources, env)
            return
        targets = node.this.expressions if isinstance(node.this, exp.Tuple) else [node.this]
        srcs = self.expr(node.expression, sources, env)
        for target in targets:
            column = self.set_column(target, table, alias, sources, env)
            self.write(table, [column])
            if srcs:
                self.edge(f"{table}.{column}", srcs)

    def set_column(
        self, target: exp.Expr, table: str, alias: str, sources: dict[str, Relation], env: Env
    ) -> str:
        """The column a ``SET`` (or ``MERGE ... INSERT``) target writes.

        PostgreSQL reads ``a.b`` there as column ``a``, field ``b`` of its composite type
        (``a[1]`` as an element of ``a``), never as a table-qualified column; other
        dialects qualify with the target table, and another qualifier is not understood.
        """
        while isinstance(target, exp.Bracket):
            for subscript in target.expressions:
                self.expr(subscript, sources, env)
            target = target.this
        if not isinstance(target, exp.Column):
            return target.name
        parts = [self.ident(p) for p in target.parts]
        if len(parts) == 1:
            return parts[0]
        if self.dialect == "postgres":
            return parts[0]
        if len(parts) == 2 and parts[0] in (alias, table.rsplit(".", 1)[-1]):
            return parts[1]
        self.unresolved.add(".".join(parts))
        return parts[-1]

    def update(self, node: exp.Update, env: Env) -> list[Output]:
        env = self.ctes(node, env)
        table, alias, _ = self.target(node.this)
        self.tables_written.add(table)
        sources: dict[str, Relation] = {alias: self.real(table)}
        from_ = node.args.get("from_")
        if isinstance(from_, exp.From):
            self.add_source(from_.this, sources, env)
        for join in node.args.get("joins") or []:
            self.join(join, sources, env)
        for assignment in node.expressions:
            self.assignment(table, alias, assignment, sources, env)
        self.expr(node.args.get("where"), sources, env)
        self.rest(node, _UPDATE_ARGS, sources, env)
        self.bounded(node, table)
        return self.returning(node, sources, env)

    def bounded(self, node: exp.Update | exp.Delete, table: str) -> None:
        self.write_kinds.add("update" if isinstance(node, exp.Update) else "delete")
        where = node.args.get("where")
        if not isinstance(where, exp.Where) or always_true(where.this):
            self.unbounded.add(table)

    def delete(self, node: exp.Delete, env: Env) -> list[Output]:
        env = self.ctes(node, env)
        table, alias, _ = self.target(node.this)
        if node.args.get("tables"):
            self.unresolved.add("<target>")  # DELETE t1, t2 FROM ...: several tables
        self.write(table, [ALL])
        sources: dict[str, Relation] = {alias: self.real(table)}
        for using in node.args.get("using") or []:
            self.add_source(using, sources, env)
        self.expr(node.args.get("where"), sources, env)
        self.rest(node, _DELETE_ARGS, sources, env)
        self.bounded(node, table)
        return self.returning(node, sources, env)

    def merge(self, node: exp.Merge, env: Env) -> list[Output]:
        env = self.ctes(node, env)
        table, alias, _ = self.target(node.this)
        self.write(table, [ALL])
        sources: dict[str, Relation] = {alias: self.real(table)}
        using = node.args.get("using")
        if using is not None:
            self.add_source(using, sources, env)
        self.expr(node.args.get("on"), sources, env)
        whens = node.args.get("whens")
        for when in whens.expressions if isinstance(whens, exp.Whens) else []:
            self.expr(when.args.get("condition"), sources, env)
            then = when.args.get("then")
            if isinstance(then, exp.Update):
                self.write_kinds.add("update")
                for assignment in then.expressions:
                    self.assignment(table, alias, assignment, sources, env)
            elif isinstance(then, exp.Insert):
                self.write_kinds.add("insert")
                cols = then.this.expressions if isinstance(then.this, exp.Tuple) else []
                vals = then.expression.expressions if isinstance(then.expression, exp.Tuple) else []
                for position, col in enumerate(cols):
                    column = self.set_column(col, table, alias, sources, env)
                    srcs = (
                        self.expr(vals[position], sources, env)
                        if position < len(vals)
                        else frozenset()
                    )
                    if srcs:
                        self.edge(f"{table}.{column}", srcs)
                for extra in vals[len(cols) :]:
                    self.expr(extra, sources, env)
            elif isinstance(then, exp.Var) and then.name.upper() == "DELETE":
                self.write_kinds.add("delete")
            elif then is not None:
                self.expr(then, sources, env)
        self.rest(node, _MERGE_ARGS, sources, env)
        return self.returning(node, sources, env)

    def copy_target(self, node: exp.Expr, into: bool) -> None:
        """``COPY table [(columns)]``: reads (``TO``) or writes (``FROM``) those columns."""
        columns: Sequence[str] | None = None
        if isinstance(node, exp.Schema):
            columns = [self.ident(c) for c in node.expressions]
            node = node.this
        if not isinstance(node, exp.Table):
            self.query(node, Env())
            return
        table = self.table_name(node)
        if columns is None:
            columns = self.catalog_columns(table) or [ALL]
        if into:
            self.write_kinds.add("insert")
            self.write(table, columns)
        else:
            for column in columns:
                self.read(table, column)

    def star_qualifier(self, node: exp.Expr) -> str | None:
        """``*`` for a bare star, the table alias for ``t.*``, ``None`` when not a star."""
        if isinstance(node, exp.Star):
            return ALL
        if isinstance(node, exp.Column) and isinstance(node.this, exp.Star):
            table = node.args.get("table")
            return self.ident(table) if table is not None else ALL
        return None


def _put(sources: dict[str, Relation], key: str, relation: Relation) -> None:
    """Make a FROM item visible under ``key``. Items that share a key (two subqueries or
    functions without an alias: ``FROM (SELECT nome ...), (SELECT 1)``) each keep an entry
    of their own, so neither's lineage is lost; only the first answers to the name."""
    if key in sources:
        n = 2
        while f"{key}\0{n}" in sources:
            n += 1
        key = f"{key}\0{n}"
    sources[key] = relation


def _names(relations: Iterable[Relation]) -> set[str] | None:
    """The column names of ``relations`` together, ``None`` when any is unknown."""
    names: set[str] = set()
    for rel in relations:
        if rel.table is not None:
            if rel.columns is None:
                return None
            names |= rel.columns
        elif rel.outputs is None or any(n == ALL for n, _ in rel.outputs):
            return None
        else:
            names |= {n for n, _ in rel.outputs}
    return names


def _clauses(args: Iterable[tuple[str, object]]) -> list[Clause]:
    """The expression arguments among ``args``, a list argument as one clause per item."""
    found: list[Clause] = []
    for key, value in args:
        if isinstance(value, exp.Expr):
            found.append((key, value))
        elif isinstance(value, list):
            found.extend((key, item) for item in value if isinstance(item, exp.Expr))
    return found


def _names_of(outputs: Iterable[Output]) -> frozenset[str]:
    return frozenset(name for name, _ in outputs)


def _join_tree(node: exp.Expr | None) -> bool:
    """Whether a parenthesised FROM item is a join of tables (``(a JOIN b ON ...)``)."""
    while isinstance(node, exp.Subquery):
        node = node.this
    return isinstance(node, exp.Table)


def _field_of_row(node: exp.Expr) -> tuple[exp.Column, exp.Identifier] | None:
    """``(name).field``: the parenthesised column reference and the field, else ``None``."""
    if not isinstance(node, exp.Dot) or not isinstance(node.expression, exp.Identifier):
        return None
    inner = node.this
    if not isinstance(inner, exp.Paren) or not isinstance(inner.this, exp.Column):
        return None
    if not isinstance(inner.this.this, exp.Identifier):
        return None  # ``(t.*).f`` and the like: walked as they are
    return inner.this, node.expression
