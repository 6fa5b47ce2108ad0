"""The package surface: lazy names, the missing-extra error, settings and XCom masking rules."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from lgpd_tasks.errors import MaskingError
from lgpd_tasks.masking import Masker


def test_public_names_are_the_four_documented():
    import lgpd_tasks_airflow

    assert lgpd_tasks_airflow.__all__ == [
        "LgpdApprovalSensor",
        "LgpdMaskingXComBackend",
        "LgpdSqlOperator",
        "gated_sql",
    ]
    from airflow.sdk import BaseSensorOperator, BaseXCom

    assert issubclass(lgpd_tasks_airflow.LgpdMaskingXComBackend, BaseXCom)
    assert issubclass(lgpd_tasks_airflow.LgpdApprovalSensor, BaseSensorOperator)


def test_without_airflow_the_error_names_the_extra():
    code = (
        "import sys; sys.modules['airflow'] = None\n"
        "import lgpd_tasks_airflow\n"
        "try:\n"
        "    lgpd_tasks_airflow.LgpdSqlOperator\n"
        "except ImportError as err:\n"
        "    print(err)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    assert "pip install 'lgpd-tasks[airflow]'" in out


def test_operator_init_does_no_io_and_declares_template_fields():
    from lgpd_tasks_airflow import LgpdSqlOperator

    op = LgpdSqlOperator(
        task_id="t",
        conn_id="nowhere",
        scope="{{ params.scope }}",
        sql="x.sql",
        policy="/does/not/exist.yaml",
    )
    assert {"sql", "parameters", "conn_id", "hook_params", "scope"} <= set(op.template_fields)
    assert ".sql" in op.template_ext


@pytest.mark.parametrize(
    ("extra", "conn_type", "host", "expected"),
    [
        pytest.param({}, "sqlite", "/data/audit.db", "sqlite:////data/audit.db", id="sqlite"),
        pytest.param(
            {"url": "postgresql://a@h/db"}, "generic", None, "postgresql://a@h/db", id="extra-url"
        ),
    ],
)
def test_audit_url_from_connection(extra, conn_type, host, expected):
    import json

    from airflow.sdk import Connection
    from lgpd_tasks_airflow.runtime import url_from_connection

    conn = Connection(conn_id="lgpd_audit", conn_type=conn_type, host=host, extra=json.dumps(extra))
    assert url_from_connection(conn) == expected


def test_audit_url_from_a_postgres_connection():
    from airflow.sdk import Connection
    from lgpd_tasks_airflow.runtime import url_from_connection

    conn = Connection(
        conn_id="lgpd_audit",
        conn_type="postgres",
        host="db",
        port=5432,
        login="lgpd",
        schema="audit",
    )
    assert url_from_connection(conn) == "postgresql://lgpd@db:5432/audit"


@pytest.fixture
def masker(monkeypatch):
    monkeypatch.setenv("LGPD_MASKING_KEY", "test-key-not-secret")
    return Masker()


def test_xcom_masks_records_rows_frames_and_text(masker):
    from lgpd_tasks_airflow.xcom import mask_value

    records, reports = mask_value(
        [
            {"cpf": "529.982.247-25", "cidade": "Recife"},
            {"cpf": "111.444.777-35", "cidade": "Natal"},
        ],
        masker,
    )
    assert [r["cidade"] for r in records] == ["Recife", "Natal"]
    assert "529.982.247-25" not in str(records)
    assert reports[0].masked_columns == ("cpf",)

    rows, _ = mask_value([("ana@example.com.br", 3), ("joao@uol.com.br", 4)], masker)
    assert "ana@example.com.br" not in str(rows)
    assert [r[1] for r in rows] == [3, 4]
    assert all(isinstance(r, tuple) for r in rows)

    frame, _ = mask_value(pd.DataFrame({"email": ["ana@example.com.br"], "n": [1]}), masker)
    assert "ana@example.com.br" not in frame.to_csv()

    text, reports = mask_value("CPF 529.982.247-25 pediu", masker)
    assert ("529.982.247-25" not in text, reports) == (True, [])
    assert mask_value(42, masker) == (42, [])


def test_xcom_refuses_objects_it_cannot_see_into(masker):
    from lgpd_tasks_airflow.xcom import mask_value

    class Opaque:
        cpf = "529.982.247-25"

    with pytest.raises(MaskingError, match="cannot mask"):
        mask_value(Opaque(), masker)


def test_an_unusable_url_is_a_configuration_error_not_a_retried_outage():
    from airflow.sdk.exceptions import AirflowFailException
    from lgpd_tasks_airflow.runtime import LgpdConfigurationError, translate_errors

    from lgpd_tasks.audit import AuditStore

    with (
        pytest.raises(LgpdConfigurationError, match="the port must be a number") as info,
        translate_errors(),
    ):
        AuditStore.from_url("postgresql://u:s3cret@db:notaport/audit")
    assert isinstance(info.value, AirflowFailException)  # Airflow does not retry it
    assert "s3cret" not in str(info.value)


def test_the_gate_says_an_approval_expired_unused(tmp_path):
    from datetime import timedelta

    from lgpd_tasks_airflow.triggers import verdict
    from sqlalchemy import update

    from lgpd_tasks.approvals import ApprovalStore, Approver, NewRequest
    from lgpd_tasks.audit.schema import approval_requests
    from lgpd_tasks.identity import TaskIdentity

    store = ApprovalStore.from_url(f"sqlite:///{tmp_path}/audit.db")
    who = TaskIdentity("airflow", "purge_dag", "purge", run_id="manual__1")
    new = NewRequest("f" * 64, "s", "p", "contract", "delete", "DELETE FROM t", [], timedelta(1))
    request = store.request(who, new)
    store.approve(request.id, Approver("joao"))
    with store.engine.begin() as conn:
        conn.execute(
            update(approval_requests)
            .where(approval_requests.c.id == request.id)
            .values(expires_at="2020-01-02T00:00:00.000000+00:00")
        )
    outcome = verdict([store.get(request.id)])
    assert outcome is not None
    assert outcome["status"] == "expired"
    assert "before a run used its approval" in outcome["message"]
