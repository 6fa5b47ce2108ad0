"""Reading a policy file: YAML with duplicate keys refused, every problem named by file and path."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlglot
import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from lgpd_tasks.errors import MaskingError, PolicyError, PolicyProblem
from lgpd_tasks.policy.model import PolicySpec
from lgpd_tasks.policy.names import normalize_table_name
from lgpd_tasks.policy.policy import Policy

if TYPE_CHECKING:
    from lgpd_tasks.masking.detect import PiiType

POLICY_ENV = "LGPD_POLICY_FILE"

#: The policy last loaded from each file, with the bytes it was parsed from: a task or step
#: run that loads the same file again (an orchestrator makes its resources anew for every
#: run) gets the same frozen Policy without parsing and validating it again.
_LOADED: dict[tuple[str, str], tuple[bytes, Policy]] = {}
_LOADED_MAX = 64


class _DuplicateKey(Exception):
    def __init__(self, path: str, key: str, line: int) -> None:
        self.path, self.key, self.line = path, key, line


class _StrictLoader(yaml.SafeLoader):
    """A safe loader that refuses a mapping key written twice (YAML would keep the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise _DuplicateKey("", str(key), key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_policy(path: str | os.PathLike[str] | None = None) -> Policy:
    """Load and validate a policy file (``path`` or ``$LGPD_POLICY_FILE``).

    Every problem is reported at once, each naming the file, the path inside the
    document (``scopes.customer_report.extract.read``) and what was expected.
    """
    if path is None:
        env = os.environ.get(POLICY_ENV)
        if not env:
            raise PolicyError(f"no policy file given and ${POLICY_ENV} is not set")
        path = env
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise PolicyError(
            [PolicyProblem(source, "", f"cannot read the policy file: {err.strerror or err}")]
        ) from None
    key = (source, os.path.abspath(source))  # the policy names its file as it was given
    loaded = _LOADED.get(key)
    if loaded is not None and loaded[0] == raw:
        return loaded[1]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise PolicyError(
            [
                PolicyProblem(
                    source,
                    f"line {line}",
                    f"not UTF-8 text (byte 0x{raw[err.start]:02x}): save the policy file as UTF-8",
                )
            ]
        ) from None
    policy = parse_policy(text, source)
    if len(_LOADED) >= _LOADED_MAX:
        _LOADED.clear()
    _LOADED[key] = (raw, policy)
    return policy


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Validate policy YAML given as text."""
    try:
        document = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as dup:
        raise PolicyError(
            [PolicyProblem(source, f"line {dup.line}", f"key {dup.key!r} is written twice")]
        ) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise PolicyError([PolicyProblem(source, where, f"not valid YAML: {problem}")]) from None
    if not isinstance(document, Mapping):
        raise PolicyError([PolicyProblem(source, "", "expected a mapping at the top level")])
    return policy_from_document(document, source)


def policy_from_document(document: Mapping[str, Any], source: str = "<policy>") -> Policy:
    """Validate an already-parsed policy document."""
    try:
        spec = PolicySpec.model_validate(dict(document))
    except ValidationError as err:
        problems = [_problem(source, e) for e in err.errors()]
        raise PolicyError(problems + _masking_problems(document, source)) from None
    problems = _masking_problems(document, source) + _check_references(spec, source)
    if problems:
        raise PolicyError(problems)
    return Policy.build(spec, source)


def _masking_problems(document: Mapping[str, Any], source: str) -> list[PolicyProblem]:
    """Strategies and type names in ``masking.columns`` and ``masking.types``.

    Checked by the masking engine's own rules (:func:`strategy_from_spec`, each strategy's
    ``check``), so that a policy ``check`` accepts is one ``exec`` and ``mask`` can use.
    Entries of the wrong shape are left to the schema, which names them already.
    """
    section = document.get("masking")
    if not isinstance(section, Mapping):
        return []
    entries = [
        (key, name, spec)
        for key in ("columns", "types")
        if isinstance(section.get(key), Mapping)
        for name, spec in section[key].items()
        if isinstance(name, str) and _strategy_shaped(spec)
    ]
    if not entries:
        return []  # the masking package loads pandas: only when there is something to check
    from lgpd_tasks.masking.detect import pii_type_named, type_from_name

    problems: list[PolicyProblem] = []
    for key, name, spec in entries:
        path = f"masking.{key}.{name}"
        if key == "columns":
            pii = type_from_name(name)  # as the engine does: a name like `cpf` fixes the type
        else:
            try:
                pii = pii_type_named(name)
            except MaskingError as err:
                pii = None
                problems.append(PolicyProblem(source, path, str(err)))
        message = _strategy_problem(spec, path, pii)
        if message is not None:
            problems.append(PolicyProblem(source, path, message))
    return problems


def _strategy_shaped(spec: object) -> bool:
    return isinstance(spec, str) or (
        isinstance(spec, Mapping) and all(isinstance(k, str) for k in spec)
    )


def _strategy_problem(spec: str | Mapping[str, Any], path: str, pii: PiiType | None) -> str | None:
    """Why the masking engine would refuse ``spec`` for type ``pii``, or ``None``.

    With no known type (a column whose name says nothing), the strategy must be able to
    mask at least one type: ``hmac`` with ``length: 1000`` masks none.
    """
    from lgpd_tasks.masking.detect import PiiType
    from lgpd_tasks.masking.strategies import strategy_from_spec

    try:
        strategy = strategy_from_spec(spec, path)
    except MaskingError as err:
        return str(err).removeprefix(f"{path}: ")
    refusals: list[str] = []
    for candidate in [pii] if pii is not None else list(PiiType):
        try:
            strategy.check(candidate)
        except MaskingError as err:
            refusals.append(str(err))
        else:
            return None
    return refusals[0]


def _check_references(spec: PolicySpec, source: str) -> list[PolicyProblem]:
    problems: list[PolicyProblem] = []
    try:
        sqlglot.Dialect.get_or_raise(spec.dialect)
    except ValueError:
        problems.append(
            PolicyProblem(
                source, "dialect", f"unknown SQL dialect {spec.dialect!r} (sqlglot names)"
            )
        )
        return problems
    for name, scope in spec.scopes.items():
        if scope.purpose not in spec.purposes:
            known = ", ".join(sorted(spec.purposes)) or "none defined"
            problems.append(
                PolicyProblem(
                    source,
                    f"scopes.{name}.purpose",
                    f"unknown purpose {scope.purpose!r} (expected one of: {known})",
                )
            )
        for side, grants in (("read", scope.read), ("write", scope.write)):
            seen: dict[str, str] = {}
            for table in grants:
                try:
                    resolved = normalize_table_name(table, spec.dialect)
                except ValueError:
                    problems.append(
                        PolicyProblem(
                            source, f"scopes.{name}.{side}.{table}", "expected a table name"
                        )
                    )
                    continue
                if resolved in seen:
                    problems.append(
                        PolicyProblem(
                            source,
                            f"scopes.{name}.{side}.{table}",
                            f"names the same table as {seen[resolved]!r} ({resolved})",
                        )
                    )
                seen[resolved] = table
    return problems


def _problem(source: str, error: ErrorDetails) -> PolicyProblem:
    loc = [str(part) for part in error["loc"] if not _is_union_tag(part)]
    kind = error["type"]
    if kind == "extra_forbidden":
        key = loc[-1] if loc else "?"
        return PolicyProblem(source, ".".join(loc[:-1]), f"unknown key {key!r}")
    if kind == "missing":
        return PolicyProblem(source, ".".join(loc), "required key is missing")
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if kind == "literal_error":
        expected = (error.get("ctx") or {}).get("expected", "")
        message = f"expected one of {expected}, got {error['input']!r}"
    return PolicyProblem(source, ".".join(loc), message)


def _is_union_tag(part: object) -> bool:
    # pydantic adds the union member's name ("list[str]", "literal['*']") to the location
    return isinstance(part, str) and ("[" in part or part in {"str", "int", "bool"})
