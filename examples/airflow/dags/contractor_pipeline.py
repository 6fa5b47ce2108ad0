"""The contractor pipeline: extract customers with PII, enrich masked data, load, report, purge.

A contractor builds a monthly per-city customer report. Each task is its own scoped,
guarded and audited actor:

- ``extract_customers`` reads customers (nome, CPF, e-mail, telefone) under
  ``contractor.extract``; its rows are masked before they reach XCom;
- ``enrich`` is plain Python and only ever receives masked rows;
- ``load_summary`` writes the per-city summary under ``contractor.load`` (write only);
- ``write_report`` puts the masked report in the reporting bucket (a local folder, or S3
  when ``LGPD_REPORT_BUCKET=s3://bucket/prefix``), recording the lineage edge;
- ``purge_staging`` deletes staged rows past retention: a DELETE the policy puts behind a
  person's approval, so ``gated_sql`` waits for it in ``purge_staging_approval``.

Configuration (see the README's Airflow section): ``[lgpd] policy_file`` (this folder's
``../policy.yaml``), the ``lgpd_audit`` connection or ``LGPD_AUDIT_URL``, the
``contractor_source`` connection, ``LGPD_MASKING_KEY``, and
``[core] xcom_backend = lgpd_tasks_airflow.xcom.LgpdMaskingXComBackend``.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, get_current_context, task
from lgpd_tasks_airflow import LgpdSqlOperator, gated_sql

SOURCE = "contractor_source"
# reschedule pokes: several seconds under a real scheduler; the demo shortens it
GATE_POKE_SECONDS = float(os.environ.get("CONTRACTOR_GATE_POKE_SECONDS", "30"))

EXTRACT_SQL = """
SELECT c.id, c.nome, c.cpf, c.email, c.telefone, c.cidade,
       COUNT(o.id) AS pedidos, COALESCE(SUM(o.valor), 0) AS receita
FROM customers AS c
LEFT JOIN orders AS o ON o.customer_id = c.id
WHERE c.created_at <= '{{ ds }}'
GROUP BY c.id, c.nome, c.cpf, c.email, c.telefone, c.cidade
ORDER BY c.id
"""

LOAD_SQL = """
INSERT INTO customer_summary (run_id, cidade, clientes, receita, ticket_medio) VALUES
{%- for row in ti.xcom_pull(task_ids='enrich')['summary'] %}
('{{ run_id }}', '{{ row.cidade | replace("'", "''") }}', {{ row.clientes }},
 {{ row.receita }}, {{ row.ticket_medio }}){{ "," if not loop.last }}
{%- endfor %}
"""

PURGE_SQL = "DELETE FROM staging_orders WHERE created_at < '{{ macros.ds_add(ds, -90) }}'"


def as_records(results: list[Any], descriptions: list[Sequence[Sequence[Any]] | None]) -> list[Any]:
    """Each statement's rows as dicts keyed by column name (rows are masked already)."""
    return [
        [dict(zip([str(d[0]) for d in description or ()], row, strict=True)) for row in rows]
        for rows, description in zip(results, descriptions, strict=True)
    ]


with DAG(
    dag_id="contractor_pipeline",
    description="Customer report for a contractor, under LGPD scopes, masking and approvals",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    default_args={"retries": 1, "retry_delay": timedelta(seconds=5)},
    tags=["lgpd", "example"],
) as dag:
    extract = LgpdSqlOperator(
        task_id="extract_customers",
        conn_id=SOURCE,
        scope="contractor.extract",
        sql=EXTRACT_SQL,
        output_processor=as_records,
    )

    @task(multiple_outputs=False)
    def enrich(customers: list[dict[str, Any]]) -> dict[str, Any]:
        """Per-city figures and e-mail domains, from masked rows only."""
        per_city: dict[str, dict[str, float]] = defaultdict(
            lambda: {"clientes": 0, "pedidos": 0, "receita": 0.0}
        )
        domains: dict[str, int] = defaultdict(int)
        for row in customers:
            city = per_city[str(row["cidade"])]
            city["clientes"] += 1
            city["pedidos"] += int(row["pedidos"])
            city["receita"] += float(row["receita"])
            email = str(row["email"] or "")
            domains[email.rpartition("@")[2] or "?"] += 1
        summary = [
            {
                "cidade": cidade,
                "clientes": int(v["clientes"]),
                "receita": round(v["receita"], 2),
                "ticket_medio": round(v["receita"] / v["pedidos"], 2) if v["pedidos"] else 0.0,
            }
            for cidade, v in sorted(per_city.items())
        ]
        top = sorted(customers, key=lambda r: -float(r["receita"]))[:10]
        return {"summary": summary, "top_customers": top, "email_domains": dict(domains)}

    load = LgpdSqlOperator(
        task_id="load_summary",
        conn_id=SOURCE,
        scope="contractor.load",
        sql=LOAD_SQL,
        do_xcom_push=False,
    )

    @task
    def write_report(enriched: dict[str, Any]) -> str:
        """The masked report as CSV in the reporting bucket, with its lineage recorded."""
        import io

        import pandas as pd
        from lgpd_tasks_airflow.runtime import audit_store, load_task_policy

        from lgpd_tasks.evidence.objects import open_target
        from lgpd_tasks.identity import TaskIdentity
        from lgpd_tasks.masking import Masker

        context = get_current_context()
        ti = context["ti"]
        home = os.environ.get("AIRFLOW_HOME", ".")
        bucket = os.environ.get("LGPD_REPORT_BUCKET") or os.path.join(home, "reports")
        summary = pd.DataFrame(enriched["summary"])
        top = pd.DataFrame(enriched["top_customers"])
        # the rows came masked through XCom; masking again costs little and fails closed
        masked_top, report = Masker.from_policy(load_task_policy()).mask_dataframe(top)
        body = io.StringIO()
        body.write("# resumo por cidade\n")
        summary.to_csv(body, index=False)
        body.write("\n# maiores clientes (dados pessoais mascarados)\n")
        masked_top.to_csv(body, index=False)
        key = f"contractor_pipeline/{ti.run_id.replace(':', '_')}/customer_report.csv"
        stored = open_target(bucket).put(key, body.getvalue().encode(), content_type="text/csv")
        identity = TaskIdentity(
            "airflow", ti.dag_id, ti.task_id, run_id=ti.run_id, attempt=ti.try_number
        )
        audit_store().record_masking(
            identity,
            report.to_dict(),
            source=f"xcom:{ti.dag_id}.enrich.return_value",
            destination=stored.url,
            scope="contractor.extract",
            purpose="customer_report",
            legal_basis="legitimate_interest",
        )
        return stored.url

    purge = gated_sql(
        "purge_staging",
        PURGE_SQL,
        "contractor.purge",
        conn_id=SOURCE,
        poke_interval=GATE_POKE_SECONDS,
        timeout=timedelta(hours=2),
        do_xcom_push=False,
    )

    enriched = enrich(extract.output)
    enriched >> load >> purge
    write_report(enriched)
