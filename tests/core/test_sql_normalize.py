"""Normalised text hides every literal; the fingerprint depends on the shape, not the values."""

from __future__ import annotations

import json

import pytest

from lgpd_tasks.policy import Policy
from lgpd_tasks.sql import analyze, check, normalize_sql

SECRETS = ["123.456.789-09", "maria@example.com", "98765", "Maria Silva", "s3cr3t", "4111"]

STATEMENTS = [
    "SELECT id FROM crm.customers WHERE cpf = '123.456.789-09'",
    "SELECT id FROM crm.customers WHERE email = E'maria@example.com' AND id = 98765",
    "UPDATE crm.customers SET nome = 'Maria Silva' WHERE id = 98765",
    "INSERT INTO crm.customers (nome, cpf) VALUES ($$Maria Silva$$, $x$123.456.789-09$x$)",
    "SELECT 'Maria Silva' /* s3cr3t */ -- 4111\n",
    "DO $$ BEGIN PERFORM 's3cr3t'; END $$",
    "SET ROLE 's3cr3t'",
    "EXPLAIN ANALYZE DELETE FROM crm.customers WHERE cpf = '123.456.789-09'",
    "COPY crm.customers TO PROGRAM 's3cr3t 4111'",
    "SELECT 'unterminated s3cr3t",
    "SELEC nome FROM crm.customers WHERE cpf = '123.456.789-09'",
    "SELECT id FROM crm.customers WHERE cpf = '123.456.789-09'; DROP TABLE x",
    "SELECT x'4111', b'1010', N'Maria Silva', 98765.5e3, TRUE",
]


@pytest.mark.parametrize("sql", STATEMENTS)
def test_no_literal_survives_in_the_decision(sql: str) -> None:
    policy = Policy.from_dict(
        {
            "version": 1,
            "purposes": {"p": {"legal_basis": "consent", "retention": "1d"}},
            "scopes": {"s": {"purpose": "p", "read": {"crm.customers": ["id"]}}},
        }
    )
    decision = check(sql, policy.scope("s"))
    text = json.dumps(decision.to_dict()) + decision.summary()
    text += json.dumps([s.to_dict() for s in decision.statements])
    for secret in SECRETS:
        assert secret not in text, (secret, text)


def test_fingerprint_is_stable_across_values_spacing_case_and_comments() -> None:
    a = normalize_sql("SELECT id FROM crm.customers WHERE cpf = '1' AND id > 10", "postgres")
    b = normalize_sql(
        "select id\n  from CRM.customers -- who\n where cpf = '2' and id > 99", "postgres"
    )
    assert a == b
    assert a[0] == "SELECT id FROM crm.customers WHERE cpf = ? AND id > ?"


def test_fingerprint_differs_for_another_shape() -> None:
    a = normalize_sql("SELECT id FROM crm.customers WHERE cpf = '1'", "postgres")
    b = normalize_sql("SELECT id FROM crm.customers WHERE email = '1'", "postgres")
    assert a[1] != b[1]


def test_query_parameters_stay_distinct_from_hidden_literals() -> None:
    normalized, _ = normalize_sql("SELECT id FROM t WHERE a = %s AND b = 'x'", "postgres")
    assert normalized == "SELECT id FROM t WHERE a = %s AND b = ?"


def test_decision_fingerprint_covers_every_statement() -> None:
    [first] = analyze("SELECT 1", "postgres")
    both = analyze("SELECT 1; SELECT 2", "postgres")
    assert len(both) == 2
    assert both[0].fingerprint == both[1].fingerprint == first.fingerprint


def test_same_text_is_analysed_once() -> None:
    sql = "SELECT id FROM crm.customers WHERE id = 424242"
    assert analyze(sql, "postgres") is analyze(sql, "postgres")
