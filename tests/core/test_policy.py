"""The policy file: loading, validation errors that name file and path, scopes and narrowing."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from lgpd_tasks.errors import PolicyError, ScopeWidening, UnknownScope
from lgpd_tasks.policy import ALL, load_policy, parse_policy

FIXTURE = Path(__file__).parent.parent / "fixtures" / "policy.yaml"

BASE = """\
version: 1
dialect: postgres
purposes:
  report:
    legal_basis: legitimate_interest
    retention: 30d
scopes:
  report.extract:
    purpose: report
    read:
      crm.customers: [id, cidade]
"""


def test_fixture_policy_loads_with_names_resolved() -> None:
    policy = load_policy(FIXTURE)
    scope = policy.scope("customer_report.extract")
    assert scope.purpose.legal_basis == "legitimate_interest"
    assert scope.purpose.retention == timedelta(days=180)
    assert scope.read["crm.customers"] == frozenset(
        {"id", "nome", "cpf", "email", "cidade", "created_at"}
    )
    assert scope.read["crm.orders"] == frozenset({ALL})
    assert scope.max_rows == 100000
    assert scope.can_write_all("staging.orders_raw") is False
    assert policy.scope("customer_report.purge").can_write_all("staging.orders_raw")


def test_unqualified_and_mixed_case_names_resolve_to_default_schema() -> None:
    policy = parse_policy(BASE.replace("crm.customers: [id, cidade]", "Customers: [ID, Cidade]"))
    assert policy.scope("report.extract").read == {"public.customers": frozenset({"id", "cidade"})}


def test_sqlite_dialect_resolves_to_main() -> None:
    policy = parse_policy(BASE.replace("postgres", "sqlite").replace("crm.customers", "customers"))
    assert "main.customers" in policy.scope("report.extract").read


def _problems(text: str) -> list[str]:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "policy.yaml")
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        pytest.param(
            ("    retention: 30d", "    retention: 30days"),
            "policy.yaml: purposes.report.retention: expected a duration",
            id="bad-duration",
        ),
        pytest.param(
            ("legitimate_interest", "because_we_can"),
            "policy.yaml: purposes.report.legal_basis: expected one of 'consent'",
            id="unknown-legal-basis",
        ),
        pytest.param(
            ("    purpose: report", "    purpose: marketing"),
            "policy.yaml: scopes.report.extract.purpose: unknown purpose 'marketing'",
            id="unknown-purpose",
        ),
        pytest.param(
            ("[id, cidade]", "id"),
            "policy.yaml: scopes.report.extract.read.crm.customers: expected a list of column",
            id="column-list-not-a-list",
        ),
        pytest.param(
            ("    purpose: report", "    purpose: report\n    reed: {}"),
            "policy.yaml: scopes.report.extract: unknown key 'reed'",
            id="unknown-key",
        ),
        pytest.param(
            ("version: 1", "version: 2"),
            "policy.yaml: version: expected one of 1, got 2",
            id="unknown-version",
        ),
        pytest.param(
            ("dialect: postgres", "dialect: postgresqlx"),
            "policy.yaml: dialect: unknown SQL dialect 'postgresqlx'",
            id="unknown-dialect",
        ),
        pytest.param(
            ("    legal_basis: legitimate_interest\n", ""),
            "policy.yaml: purposes.report.legal_basis: required key is missing",
            id="missing-key",
        ),
    ],
)
def test_policy_errors_name_file_path_and_expectation(edit: tuple[str, str], expected: str) -> None:
    text = BASE.replace(*edit)
    assert text != BASE
    problems = _problems(text)
    assert any(p.startswith(expected) for p in problems), problems


def test_duplicate_scope_is_an_error_with_its_line() -> None:
    text = BASE + "  report.extract:\n    purpose: report\n"
    assert _problems(text) == ["policy.yaml: line 12: key 'report.extract' is written twice"]


def test_all_problems_are_reported_at_once() -> None:
    text = BASE.replace("30d", "soon").replace("[id, cidade]", "cidade")
    assert len(_problems(text)) == 2


def test_broken_yaml_names_the_line() -> None:
    (problem,) = _problems("version: 1\nscopes: [unclosed\n")
    assert problem.startswith("policy.yaml: line 3")


def test_missing_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read the policy file"):
        load_policy(tmp_path / "nope.yaml")


def test_a_file_loaded_again_unchanged_is_not_parsed_again_and_an_edit_is_seen(
    tmp_path: Path,
) -> None:
    """Orchestrators make their resources anew for every run: the same bytes give the same
    Policy; an edit, even one that breaks the file, is read at the next load."""
    path = tmp_path / "policy.yaml"
    path.write_text(BASE)
    first = load_policy(path)
    assert load_policy(path) is first
    assert load_policy(str(path)) is first
    path.write_text(BASE.replace("[id, cidade]", "[id]"))
    edited = load_policy(path)
    assert edited is not first
    assert edited.scope("report.extract").readable_columns("crm.customers") == {"id"}
    path.write_text(BASE + "  broken: [\n")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(path)
    path.unlink()
    with pytest.raises(PolicyError, match="cannot read the policy file"):
        load_policy(path)


@pytest.mark.parametrize(
    ("raw", "where", "byte"),
    [
        pytest.param(b"\xff\xfeversion: 1\n", "line 1", "0xff", id="utf-16-bom"),
        pytest.param(BASE.encode() + b"# cidade: S\xe3o Paulo\n", "line 12", "0xe3", id="latin-1"),
    ],
)
def test_a_file_that_is_not_utf8_is_a_policy_error_naming_it(
    tmp_path: Path, raw: bytes, where: str, byte: str
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_bytes(raw)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert [str(p) for p in info.value.problems] == [
        f"{path}: {where}: not UTF-8 text (byte {byte}): save the policy file as UTF-8"
    ]


KNOWN_STRATEGIES = "(known: drop, generalize, hmac, null, partial, redact)"


def test_masking_section_problems_are_all_reported_with_their_paths() -> None:
    text = BASE + (
        "masking:\n"
        "  columns:\n"
        "    cpf: hmacc\n"
        "    telefone: {strategy: partial, keep_last: many}\n"
        "    email: {strategy: hmac, lenght: 8}\n"
        "    documento: {strategy: hmac, length: 1000}\n"
        "    nome: {keep_last: 2}\n"
        "    data_nascimento: generalize\n"
        "  types: {phone: bogus, cpff: hmac, cep: generalize, ip: {strategy: redact}}\n"
    )
    assert _problems(text) == [
        f"policy.yaml: masking.columns.cpf: unknown strategy 'hmacc' {KNOWN_STRATEGIES}",
        "policy.yaml: masking.columns.telefone: strategy 'partial', keep_last: Input should be "
        "a valid integer, unable to parse string as an integer",
        "policy.yaml: masking.columns.email: strategy 'hmac' has no parameter 'lenght' "
        "(parameters: length)",
        "policy.yaml: masking.columns.documento: strategy 'hmac': length must be 8 to 64, got 1000",
        "policy.yaml: masking.columns.nome: expected a 'strategy' key naming the strategy",
        f"policy.yaml: masking.types.phone: unknown strategy 'bogus' {KNOWN_STRATEGIES}",
        "policy.yaml: masking.types.cpff: unknown type 'cpff' (known: cpf, cnpj, email, phone, "
        "cep, card, ip, birth_date, name, address, rg, document, text, other)",
    ]


def test_a_strategy_that_cannot_mask_the_named_type_is_refused() -> None:
    text = BASE + "masking:\n  columns: {cpf: generalize}\n  types: {email: generalize}\n"
    message = "strategy 'generalize' applies to dates, CEPs and IP addresses"
    assert _problems(text) == [
        f"policy.yaml: masking.columns.cpf: {message}, not cpf",
        f"policy.yaml: masking.types.email: {message}, not email",
    ]


def test_masking_problems_come_with_the_schema_problems_at_once() -> None:
    text = BASE + (
        "masking:\n  columns: {cpf: hmacc, email: [hmac]}\n  threshold: high\n  unknownkey: 1\n"
    )
    assert _problems(text) == [
        # a value of the wrong shape is named by the schema alone
        "policy.yaml: masking.columns.email: Input should be a valid string",
        "policy.yaml: masking.columns.email: Input should be a valid dictionary",
        "policy.yaml: masking.threshold: Input should be a valid number, unable to parse "
        "string as a number",
        "policy.yaml: masking: unknown key 'unknownkey'",
        f"policy.yaml: masking.columns.cpf: unknown strategy 'hmacc' {KNOWN_STRATEGIES}",
    ]


def test_a_valid_masking_section_loads() -> None:
    text = BASE + (
        "masking:\n"
        "  columns: {cpf: hmac, email: {strategy: partial, keep_domain: false}, obs: redact,\n"
        "            telefone: {strategy: partial, keep_last: 2}, cep: generalize}\n"
        "  types: {phone: redact, birth_date: generalize, other: {strategy: hmac, length: 16}}\n"
    )
    policy = parse_policy(text, "policy.yaml")
    assert policy.masking.columns["telefone"] == {"strategy": "partial", "keep_last": 2}


def test_importing_the_policy_package_does_not_load_pandas() -> None:
    # the masking checks import the masking engine only while a policy with entries loads
    code = (
        "import sys, lgpd_tasks.policy as p\n"
        "p.parse_policy('version: 1\\nmasking: {detect: false}\\n')\n"
        "assert 'pandas' not in sys.modules, 'pandas imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_unknown_scope_is_an_error_never_allow_everything() -> None:
    policy = parse_policy(BASE, "policy.yaml")
    with pytest.raises(UnknownScope, match=r"scopes\.report\.load: unknown scope 'report\.load'"):
        policy.scope("report.load")


def test_scope_can_be_narrowed() -> None:
    scope = parse_policy(BASE).scope("report.extract")
    narrow = scope.narrow(read={"crm.customers": ["cidade"]})
    assert narrow.can_read("crm.customers", "cidade")
    assert not narrow.can_read("crm.customers", "id")
    assert narrow.narrowed


@pytest.mark.parametrize(
    "read",
    [
        pytest.param({"crm.customers": ["cpf"]}, id="extra-column"),
        pytest.param({"crm.orders": ["id"]}, id="extra-table"),
        pytest.param({"crm.customers": "*"}, id="every-column"),
    ],
)
def test_scope_cannot_be_widened(read: dict[str, list[str] | str]) -> None:
    scope = parse_policy(BASE).scope("report.extract")
    with pytest.raises(ScopeWidening):
        scope.narrow(read=read)
