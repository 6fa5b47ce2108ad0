"""The masking XCom backend on values that are not plain tables: keys, indexes, odd types."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest
from airflow.sdk import DAG, task
from faker import Faker

pytestmark = pytest.mark.slow

START = datetime(2024, 1, 1)


def stored_text(env) -> str:
    """Every XCom value of the test's DAG as stored, decoded (DataFrames are hex Parquet)."""
    import json

    from airflow.sdk.serde import deserialize

    parts = []
    for _, _, value in env.xcom_rows():
        parts.append(value)
        decoded = deserialize(json.loads(value))
        if isinstance(decoded, pd.DataFrame):
            decoded = decoded.reset_index().to_csv() + " ".join(map(str, decoded.columns))
        parts.append(str(decoded))
    return "\n".join(parts)


def _people(n: int = 4) -> list[tuple[str, str, str]]:
    fake = Faker("pt_BR")
    Faker.seed(20240601)
    return [(fake.cpf(), fake.email(), fake.name()) for _ in range(n)]


def test_xcom_masks_personal_values_used_as_dict_keys(env, capfd):
    people = _people()

    with DAG(env.dag_id, schedule=None, start_date=START) as dag:

        @task(show_return_value_in_logs=False, multiple_outputs=False)
        def total_for_one_cpf() -> dict[str, float]:
            return {people[0][0]: 100.0}

        @task(show_return_value_in_logs=False)
        def contacts() -> list[dict[str, int]]:
            return [{email: i} for i, (_, email, _) in enumerate(people)]

        @task(show_return_value_in_logs=False, multiple_outputs=False)
        def totals_by_cpf() -> dict[str, float]:
            # masking would merge these keys into one: refused, never stored raw or lossy
            return {cpf: 100.0 + i for i, (cpf, _, _) in enumerate(people)}

        total_for_one_cpf()
        contacts()
        totals_by_cpf()
    run = env.run(dag)
    states = env.states(run)
    assert states["total_for_one_cpf"][0] == "success"
    assert states["contacts"][0] == "success"
    assert states["totals_by_cpf"][0] == "failed"
    stored = stored_text(env)
    keys = " ".join(k for _, k, _ in env.xcom_rows())
    assert "[EMAIL]" in stored
    assert "totals_by_cpf" not in {t for t, _, _ in env.xcom_rows()}
    out = capfd.readouterr()
    logs = out.out + out.err
    assert "without merging them" in logs
    for cpf, email, _ in people:
        assert cpf not in stored
        assert email not in stored
        assert cpf not in logs
        assert cpf not in keys


def test_xcom_refuses_personal_data_in_the_xcom_key(env, capfd):
    """``multiple_outputs`` pushes each dict key as an XCom key, a column stored unmasked."""
    people = _people(2)

    with DAG(env.dag_id, schedule=None, start_date=START) as dag:

        @task(show_return_value_in_logs=False)
        def by_cpf() -> dict[str, float]:  # the annotation makes multiple_outputs=True
            return {cpf: 1.0 for cpf, _, _ in people}

        by_cpf()
    run = env.run(dag)
    assert env.states(run)["by_cpf"][0] == "failed"
    rows = env.xcom_rows()
    out = capfd.readouterr()
    logs = out.out + out.err
    assert "XCom key holds personal data" in logs
    for cpf, _, _ in people:
        assert all(cpf not in k for _, k, _ in rows)
        assert cpf not in stored_text(env)
        assert cpf not in logs


def test_xcom_masks_a_dataframe_index_and_column_labels(env):
    people = _people()

    with DAG(env.dag_id, schedule=None, start_date=START) as dag:

        @task(show_return_value_in_logs=False)
        def indexed() -> pd.DataFrame:
            frame = pd.DataFrame(
                {"cpf": [p[0] for p in people], "cidade": ["Recife"] * len(people)}
            )
            return frame.set_index("cpf")

        @task(show_return_value_in_logs=False)
        def pivoted() -> pd.DataFrame:
            return pd.DataFrame({people[0][1]: [1], "cidade": ["Recife"]})

        @task
        def read(frame: pd.DataFrame, wide: pd.DataFrame) -> dict[str, object]:
            return {"index": frame.index.name, "rows": len(frame), "cols": list(wide.columns)}

        read(indexed(), pivoted())
    run = env.run(dag)
    assert {s for s, _ in env.states(run).values()} == {"success"}
    stored = env.xcom_rows()
    text = stored_text(env)
    assert "Recife" in text
    for cpf, email, _ in people:
        assert cpf not in text
        assert email not in text
    seen = {k: v for t, k, v in stored if t == "read"}
    assert seen["index"] == '"cpf"' or seen["index"] == "cpf"
    assert seen["rows"] == "4"


def test_xcom_refuses_a_numpy_array_rather_than_store_it_raw(env, capfd):
    import numpy as np

    people = _people(2)

    with DAG(env.dag_id, schedule=None, start_date=START) as dag:

        @task(show_return_value_in_logs=False)
        def array() -> object:
            return np.array([p[0] for p in people])

        array()
    run = env.run(dag)
    assert env.states(run)["array"][0] == "failed"
    stored = "\n".join(v for _, _, v in env.xcom_rows())
    for cpf, _, _ in people:
        assert cpf not in stored
    out = capfd.readouterr()
    logs = out.out + out.err
    assert "cannot mask a numpy.ndarray" in logs
    for cpf, _, _ in people:
        assert cpf not in logs
