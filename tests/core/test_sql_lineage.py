"""Column lineage: SELECT, INSERT ... SELECT by position, UPDATE SET, CTEs, subqueries, unions."""

from __future__ import annotations

from lgpd_tasks.sql import StaticCatalog, analyze

CATALOG = StaticCatalog(
    {
        "crm.customers": ("id", "nome", "cpf", "cidade"),
        "crm.orders": ("id", "customer_id", "total"),
        "reporting.summary": ("cidade", "clientes", "receita"),
    }
)


def _lineage(sql: str) -> dict[str, tuple[str, ...]]:
    [statement] = analyze(sql, "postgres", catalog=CATALOG)
    return {edge.target: edge.sources for edge in statement.lineage}


def test_select_lineage_follows_expressions_and_aliases() -> None:
    assert _lineage(
        "SELECT c.nome AS cliente, o.total * 2 AS dobro, upper(c.cidade) "
        "FROM crm.customers c JOIN crm.orders o ON o.customer_id = c.id"
    ) == {
        "cliente": ("crm.customers.nome",),
        "dobro": ("crm.orders.total",),
        "upper": ("crm.customers.cidade",),
    }


def test_insert_select_maps_target_columns_by_position() -> None:
    assert _lineage(
        "INSERT INTO reporting.summary (cidade, clientes, receita) "
        "SELECT c.cidade, count(DISTINCT c.id), sum(o.total) "
        "FROM crm.customers c JOIN crm.orders o ON o.customer_id = c.id GROUP BY c.cidade"
    ) == {
        "reporting.summary.cidade": ("crm.customers.cidade",),
        "reporting.summary.clientes": ("crm.customers.id",),
        "reporting.summary.receita": ("crm.orders.total",),
    }


def test_insert_without_column_list_uses_the_catalogue_order() -> None:
    assert _lineage("INSERT INTO reporting.summary SELECT cidade, id, 0 FROM crm.customers") == {
        "reporting.summary.cidade": ("crm.customers.cidade",),
        "reporting.summary.clientes": ("crm.customers.id",),
    }


def test_update_set_lineage_includes_from_sources() -> None:
    assert _lineage(
        "UPDATE crm.customers c SET cidade = o.total::text || c.nome "
        "FROM crm.orders o WHERE o.customer_id = c.id"
    ) == {"crm.customers.cidade": ("crm.customers.nome", "crm.orders.total")}


def test_lineage_flows_through_ctes_and_derived_tables() -> None:
    assert _lineage(
        "WITH base AS (SELECT id AS k, cpf AS doc FROM crm.customers) "
        "SELECT t.doc FROM (SELECT doc FROM base) t"
    ) == {"doc": ("crm.customers.cpf",)}


def test_lineage_of_a_cte_with_column_names() -> None:
    assert _lineage(
        "WITH x (a, b) AS (SELECT nome, cidade FROM crm.customers) SELECT b FROM x"
    ) == {"b": ("crm.customers.cidade",)}


def test_set_operation_lineage_merges_branches_by_position() -> None:
    assert _lineage(
        "SELECT nome AS v FROM crm.customers UNION ALL SELECT total::text FROM crm.orders"
    ) == {"v": ("crm.customers.nome", "crm.orders.total")}


def test_scalar_subquery_contributes_its_sources() -> None:
    assert _lineage(
        "SELECT c.id, (SELECT max(o.total) FROM crm.orders o WHERE o.customer_id = c.id) AS m "
        "FROM crm.customers c"
    ) == {"id": ("crm.customers.id",), "m": ("crm.orders.total",)}


def test_star_expanded_from_the_catalogue_gives_one_edge_per_column() -> None:
    assert _lineage("SELECT * FROM crm.orders") == {
        "id": ("crm.orders.id",),
        "customer_id": ("crm.orders.customer_id",),
        "total": ("crm.orders.total",),
    }


def test_data_modifying_cte_lineage_reaches_the_insert_target() -> None:
    lineage = _lineage(
        "WITH moved AS (DELETE FROM crm.orders WHERE total = 0 RETURNING id, total) "
        "INSERT INTO reporting.summary (clientes, receita) SELECT id, total FROM moved"
    )
    assert lineage == {
        "reporting.summary.clientes": ("crm.orders.id",),
        "reporting.summary.receita": ("crm.orders.total",),
    }


def test_output_columns_name_the_result() -> None:
    [statement] = analyze("SELECT id, nome AS n FROM crm.customers", "postgres")
    assert statement.output_columns == ("id", "n")


def test_composite_field_assignment_is_lineage_of_the_composite_column() -> None:
    # PostgreSQL reads SET a.b as field b of column a, in MERGE as in UPDATE
    assert _lineage(
        "MERGE INTO crm.customers c USING crm.orders o ON o.customer_id = c.id "
        "WHEN MATCHED THEN UPDATE SET endereco.cidade = o.total::text "
        "WHEN NOT MATCHED THEN INSERT (id, endereco.cidade) VALUES (o.customer_id, o.id::text)"
    ) == {
        "crm.customers.endereco": ("crm.orders.id",),
        "crm.customers.id": ("crm.orders.customer_id",),
    }
    [update] = analyze("UPDATE crm.customers SET endereco.cidade = 'x' WHERE id = 1", "postgres")
    assert dict(update.columns_written) == {"crm.customers": {"endereco"}}


def test_renamed_table_columns_carry_their_real_sources() -> None:
    assert _lineage("SELECT x.a, x.c FROM crm.customers AS x(a, b, c)") == {
        "a": ("crm.customers.id",),
        "c": ("crm.customers.cpf",),
    }
    assert _lineage("SELECT * FROM crm.customers AS x(a)") == {
        "a": ("crm.customers.id",),
        "nome": ("crm.customers.nome",),
        "cpf": ("crm.customers.cpf",),
        "cidade": ("crm.customers.cidade",),
    }


def _carried(sql: str) -> tuple[frozenset[str], ...]:
    [statement] = analyze(sql, "postgres", catalog=CATALOG)
    return statement.output_sources


def test_counts_and_bits_carry_no_value_into_the_result() -> None:
    nome, cpf = "crm.customers.nome", "crm.customers.cpf"
    assert (
        _carried(
            "SELECT sum(CASE WHEN cpf LIKE '5%' THEN 1 ELSE 0 END), count(*) FILTER (WHERE cpf > ''),"
            " CASE cpf WHEN '1' THEN 'a' END, length(nome), cpf IS NULL FROM crm.customers"
        )
        == (frozenset(),) * 5
    )
    # values can be rebuilt from bits and lengths put together: masked as their columns
    assert _carried(
        "SELECT CASE WHEN cpf IS NULL THEN '' ELSE nome END,"
        " CASE substr(cpf, 1, 1) WHEN '0' THEN 0 WHEN '1' THEN 1 END,"
        " chr(length(repeat('x', ascii(substr(nome, 1, 1))))),"
        " length(repeat('x', ascii(nome))), sum(CASE WHEN cpf > '' THEN 1 END) * 2 + 1,"
        " row_number() OVER (PARTITION BY cpf), any(cpf) FROM crm.customers"
    ) == (
        frozenset({cpf, nome}),
        frozenset({cpf}),
        frozenset({nome}),
        frozenset({nome}),
        frozenset({cpf}),
        frozenset({cpf}),
        frozenset({cpf}),
    )
