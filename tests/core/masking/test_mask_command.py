"""``lgpd-tasks mask`` on real CSV and Parquet files, in process and as a console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from faker import Faker

from lgpd_tasks.cli import main

POLICY = """\
version: 1
masking:
  columns: {cpf: hmac, email: partial}
  key_env: TEST_MASK_KEY
"""


def write_customers(path: Path, rows: int = 10) -> pd.DataFrame:
    df = pd.DataFrame(
        {
            "id": [str(i) for i in range(rows)],
            "cpf": ["529.982.247-25"] * rows,
            "email": [f"user{i}@example.com.br" for i in range(rows)],
            "codigo": [f"00{i:09d}" for i in range(rows)],
            "obs": ["NA", ""] * (rows // 2),
        }
    )
    if path.suffix == ".csv":
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path, index=False)
    return df


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_MASK_KEY", "z" * 24)


def test_csv_is_masked_and_other_columns_are_byte_identical(tmp_path: Path) -> None:
    source, target, report = tmp_path / "in.csv", tmp_path / "out.csv", tmp_path / "r.json"
    write_customers(source)
    assert main(["mask", str(source), str(target), "--report", str(report)]) == 0
    out = pd.read_csv(target, dtype=str, keep_default_na=False)
    original = pd.read_csv(source, dtype=str, keep_default_na=False)
    for column in ("id", "codigo", "obs"):
        assert out[column].tolist() == original[column].tolist()
    assert set(out["cpf"]) == {"***.***.***-25"}
    document = json.loads(report.read_text())
    assert document["rows"] == 10
    assert {c["column"] for c in document["columns"]} == {"cpf", "email"}
    assert "529.982.247-25" not in report.read_text()


def test_parquet_is_streamed_in_chunks_with_a_policy(
    tmp_path: Path, key: None, capsys: pytest.CaptureFixture[str]
) -> None:
    source, target, policy = tmp_path / "in.parquet", tmp_path / "out.parquet", tmp_path / "p.yaml"
    write_customers(source, rows=1000)
    policy.write_text(POLICY)
    argv = ["mask", str(source), str(target), "--policy", str(policy), "--chunk-rows", "64"]
    assert main(argv) == 0
    out = pd.read_parquet(target)
    assert len(out) == 1000
    assert out["cpf"].nunique() == 1
    assert out["cpf"].iloc[0].startswith("hmac:cpf:")
    assert "1000 rows" in capsys.readouterr().out


def test_csv_to_parquet(tmp_path: Path) -> None:
    source, target = tmp_path / "in.csv", tmp_path / "out.parquet"
    write_customers(source)
    assert main(["mask", str(source), str(target)]) == 0
    assert pd.read_parquet(target)["email"].iloc[0] == "***@example.com.br"


def test_missing_key_fails_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TEST_MASK_KEY", raising=False)
    source, target, policy = tmp_path / "in.csv", tmp_path / "out.csv", tmp_path / "p.yaml"
    write_customers(source)
    policy.write_text(POLICY)
    assert main(["mask", str(source), str(target), "--policy", str(policy)]) == 2
    assert "TEST_MASK_KEY" in capsys.readouterr().err
    assert not target.exists()


def test_unknown_strategy_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source, policy = tmp_path / "in.csv", tmp_path / "p.yaml"
    write_customers(source)
    policy.write_text("version: 1\nmasking:\n  columns: {cpf: scramble}\n")
    assert main(["mask", str(source), str(tmp_path / "o.csv"), "--policy", str(policy)]) == 2
    assert "unknown strategy 'scramble'" in capsys.readouterr().err


def test_policy_column_missing_from_the_file(
    tmp_path: Path, key: None, capsys: pytest.CaptureFixture[str]
) -> None:
    source, target, policy = tmp_path / "in.csv", tmp_path / "out.csv", tmp_path / "p.yaml"
    write_customers(source)
    policy.write_text(POLICY.replace("email: partial", "telefone: partial"))
    assert main(["mask", str(source), str(target), "--policy", str(policy)]) == 2
    assert "'telefone'" in capsys.readouterr().err
    assert not target.exists()
    assert list(tmp_path.glob(".out.csv*")) == []


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        pytest.param("bad.parquet", b"not parquet at all", "not a readable Parquet", id="parquet"),
        pytest.param("bad.csv", b'a,b\n1,"2\n3,4,5,6\n', "not a readable CSV", id="csv"),
        pytest.param("empty.csv", b"", "not a readable CSV", id="empty-csv"),
        pytest.param("data.xlsx", b"x", "unknown file type", id="extension"),
    ],
)
def test_malformed_files_get_a_clear_error(
    tmp_path: Path, name: str, content: bytes, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / name
    source.write_bytes(content)
    target = tmp_path / "out.csv"
    assert main(["mask", str(source), str(target)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert not target.exists()


def test_unreadable_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mask", str(tmp_path / "none.csv"), str(tmp_path / "o.csv")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_existing_output_survives_a_failed_run(tmp_path: Path) -> None:
    source, target = tmp_path / "bad.csv", tmp_path / "out.csv"
    source.write_bytes(b'a,b\n1,"2\n3,4,5,6\n')
    target.write_text("previous\n")
    assert main(["mask", str(source), str(target)]) == 2
    assert target.read_text() == "previous\n"


def test_console_script_in_a_subprocess(tmp_path: Path) -> None:
    source, target = tmp_path / "in.csv", tmp_path / "out.csv"
    write_customers(source)
    script = Path(sys.executable).parent / "lgpd-tasks"
    env = {k: v for k, v in os.environ.items() if k != "TEST_MASK_KEY"}
    result = subprocess.run(
        [str(script), "mask", str(source), str(target)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "masked 20 cells" in result.stdout
    assert result.stderr == ""
    assert "529.982.247-25" not in target.read_text()


@pytest.fixture(scope="module")
def people() -> tuple[list[str], list[str]]:
    """Synthetic CPFs and e-mails (Faker pt_BR)."""
    fake = Faker("pt_BR")
    fake.seed_instance(3)
    return [fake.cpf() for _ in range(30)], [fake.email() for _ in range(30)]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_column_labels_holding_personal_data_are_masked_in_every_chunk(
    tmp_path: Path,
    suffix: str,
    people: tuple[list[str], list[str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    (cpf, *_), (email, *_) = people
    source, target = tmp_path / f"in{suffix}", tmp_path / f"out{suffix}"
    report = tmp_path / "r.json"
    df = pd.DataFrame({cpf: ["1", "2", "3"], email: ["ana@pf.gov.br"] * 3, "x": ["5", "6", "7"]})
    df.to_csv(source, index=False) if suffix == ".csv" else df.to_parquet(source, index=False)
    argv = ["mask", str(source), str(target), "--chunk-rows", "1", "--report", str(report)]
    assert main(argv) == 0
    out = pd.read_csv(target, dtype=str) if suffix == ".csv" else pd.read_parquet(target)
    assert list(out.columns) == ["[CPF]", "[EMAIL]", "x"]
    assert out["[CPF]"].tolist() == ["1", "2", "3"]
    assert out["[EMAIL]"].tolist() == ["***@pf.gov.br"] * 3
    assert out["x"].tolist() == ["5", "6", "7"]
    printed = capsys.readouterr().out
    for text in (target.read_bytes().decode("latin-1"), report.read_text(), printed):
        assert cpf not in text
        assert email not in text
    assert "[EMAIL] (email: partial, 3)" in printed


def test_labels_that_masking_would_merge_are_refused(
    tmp_path: Path, people: tuple[list[str], list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    cpfs, _ = people
    source, target = tmp_path / "in.csv", tmp_path / "out.csv"
    pd.DataFrame({cpfs[0]: ["1"], cpfs[1]: ["2"]}).to_csv(source, index=False)
    assert main(["mask", str(source), str(target)]) == 2
    err = capsys.readouterr().err
    assert "column labels hold personal data" in err
    assert "same label" in err
    assert cpfs[0] not in err
    assert "Traceback" not in err
    assert not target.exists()
    assert list(tmp_path.glob(".out.csv*")) == []


def parquet_with_index(path: Path, cpfs: list[str]) -> pd.DataFrame:
    rows = len(cpfs)
    df = pd.DataFrame(
        {
            "v": range(rows),
            "cidade": [f"Cidade {i % 7}" for i in range(rows)],
            "cpf_cliente": cpfs,
            "pedido": [i * 10 for i in range(rows)],
        }
    ).set_index(["cidade", "cpf_cliente", "pedido"])
    df.to_parquet(path)
    return df


@pytest.mark.parametrize("chunk_rows", ["4", "1000"])
def test_parquet_index_columns_are_kept_and_masked_like_columns(
    tmp_path: Path, people: tuple[list[str], list[str]], chunk_rows: str
) -> None:
    cpfs, _ = people
    source, target = tmp_path / "in.parquet", tmp_path / "out.parquet"
    parquet_with_index(source, cpfs)
    assert main(["mask", str(source), str(target), "--chunk-rows", chunk_rows]) == 0
    before, after = pq.read_table(source), pq.read_table(target)
    assert after.schema.names == before.schema.names == ["v", "cidade", "cpf_cliente", "pedido"]
    for name in ("v", "cidade", "pedido"):
        assert after.column(name).equals(before.column(name)), name
        assert after.schema.field(name).type == before.schema.field(name).type
    assert after.column("cpf_cliente").to_pylist() == [f"***.***.***-{c[-2:]}" for c in cpfs]
    out = pd.read_parquet(target)
    assert list(out.index.names) == ["cidade", "cpf_cliente", "pedido"]
    assert out["v"].tolist() == list(range(len(cpfs)))


def test_an_unnamed_parquet_index_survives(tmp_path: Path) -> None:
    source, target = tmp_path / "in.parquet", tmp_path / "out.parquet"
    pd.DataFrame({"v": [1, 2, 3]}, index=pd.Index([10, 20, 30])).to_parquet(source)
    assert pq.read_schema(source).names == ["v", "__index_level_0__"]
    assert main(["mask", str(source), str(target), "--chunk-rows", "2"]) == 0
    assert pq.read_table(target).equals(pq.read_table(source))
    assert pd.read_parquet(target).index.tolist() == [10, 20, 30]


def test_parquet_index_columns_become_leading_csv_columns(
    tmp_path: Path, people: tuple[list[str], list[str]]
) -> None:
    cpfs, _ = people
    source, target = tmp_path / "in.parquet", tmp_path / "out.csv"
    parquet_with_index(source, cpfs)
    assert main(["mask", str(source), str(target)]) == 0
    out = pd.read_csv(target, dtype=str)
    assert list(out.columns) == ["cidade", "cpf_cliente", "pedido", "v"]
    assert out["cidade"].tolist() == [f"Cidade {i % 7}" for i in range(len(cpfs))]
    assert out["cpf_cliente"].tolist() == [f"***.***.***-{c[-2:]}" for c in cpfs]
    assert out["pedido"].tolist() == [str(i * 10) for i in range(len(cpfs))]


def test_an_index_level_the_policy_drops_leaves_the_others(
    tmp_path: Path, people: tuple[list[str], list[str]]
) -> None:
    cpfs, _ = people
    source, target, policy = tmp_path / "in.parquet", tmp_path / "out.parquet", tmp_path / "p.yaml"
    parquet_with_index(source, cpfs)
    policy.write_text("version: 1\nmasking:\n  columns: {cpf_cliente: drop}\n")
    assert main(["mask", str(source), str(target), "--policy", str(policy)]) == 0
    assert pq.read_schema(target).names == ["v", "cidade", "pedido"]
    assert list(pd.read_parquet(target).index.names) == ["cidade", "pedido"]


def test_numeric_cpf_columns_of_a_parquet_file_are_masked(
    tmp_path: Path, people: tuple[list[str], list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    cpfs, _ = people
    numbers = ["".join(filter(str.isdigit, c)) for c in cpfs]
    source, target = tmp_path / "in.parquet", tmp_path / "out.parquet"
    pd.DataFrame(
        {
            "id": range(len(cpfs)),
            "documento_num": [int(n) for n in numbers],
            "floatcpf": [float(n) for n in numbers],
        }
    ).to_parquet(source, index=False)
    assert main(["mask", str(source), str(target), "--chunk-rows", "12"]) == 0
    out = pd.read_parquet(target)
    expected = [f"***.***.***-{c[-2:]}" for c in cpfs]
    assert out["documento_num"].tolist() == expected
    assert out["floatcpf"].tolist() == expected
    assert out["id"].tolist() == list(range(len(cpfs)))
    assert "floatcpf (cpf: partial, 30)" in capsys.readouterr().out


def test_personal_data_first_found_after_the_first_chunk_is_masked(
    tmp_path: Path, people: tuple[list[str], list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    cpfs, emails = people
    source, target = tmp_path / "in.csv", tmp_path / "out.csv"
    pd.DataFrame(
        {
            "id": [str(i) for i in range(20)],
            "contato": [""] * 10 + cpfs[:10],
            "obs": ["ok"] * 10 + [f"ligar {e}" for e in emails[:10]],
        }
    ).to_csv(source, index=False)
    assert main(["mask", str(source), str(target), "--chunk-rows", "10"]) == 0
    text = target.read_text()
    assert not [v for v in cpfs[:10] + emails[:10] if v in text]
    out = pd.read_csv(target, dtype=str, keep_default_na=False)
    assert out["contato"].tolist()[10:] == [f"***.***.***-{c[-2:]}" for c in cpfs[:10]]
    assert out["obs"].tolist() == ["ok"] * 10 + ["ligar [EMAIL]"] * 10
    assert "masked 20 cells" in capsys.readouterr().out


@pytest.mark.parametrize("nulls_first", [True, False], ids=["nulls-first", "nulls-last"])
def test_an_all_null_chunk_keeps_the_parquet_schema(
    tmp_path: Path, people: tuple[list[str], list[str]], nulls_first: bool
) -> None:
    numbers = [int("".join(filter(str.isdigit, c))) for c in people[0][:10]]
    values = [None] * 10 + numbers if nulls_first else numbers + [None] * 10
    source, target = tmp_path / "in.parquet", tmp_path / "out.parquet"
    frame = pd.DataFrame({"id": range(20), "cpf": pd.array(values, dtype="Int64")})
    frame.to_parquet(source, row_group_size=10)
    assert main(["mask", str(source), str(target), "--chunk-rows", "10"]) == 0
    masked = [f"***.***.***-{str(n).zfill(11)[-2:]}" for n in numbers]
    out = pd.read_parquet(target)["cpf"].tolist()
    got = out[10:] if nulls_first else out[:10]
    assert got == masked
    assert pd.isna(out[:10] if nulls_first else out[10:]).all()


def test_a_column_that_cannot_keep_its_parquet_type_is_refused_clearly(
    tmp_path: Path, people: tuple[list[str], list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    # codes first, CPFs stored as numbers after: the first chunk was written as int64
    numbers = [int("".join(filter(str.isdigit, c))) for c in people[0][:10]]
    source, target = tmp_path / "in.parquet", tmp_path / "out.parquet"
    pd.DataFrame({"ref": list(range(1, 11)) + numbers}).to_parquet(source, row_group_size=10)
    assert main(["mask", str(source), str(target), "--chunk-rows", "10"]) == 2
    err = capsys.readouterr().err
    assert "column 'ref' is written as int64 but rows from 10 on" in err
    assert "Traceback" not in err
    assert not target.exists()
    assert not list(tmp_path.glob(".out.parquet.*"))


def test_a_categorical_parquet_column_of_cpfs_is_masked(
    tmp_path: Path, people: tuple[list[str], list[str]]
) -> None:
    cpfs = people[0][:20]
    source, target = tmp_path / "in.parquet", tmp_path / "out.parquet"
    pd.DataFrame({"doc": pd.Categorical(cpfs)}).to_parquet(source)
    assert main(["mask", str(source), str(target), "--chunk-rows", "7"]) == 0
    assert pd.read_parquet(target)["doc"].tolist() == [f"***.***.***-{c[-2:]}" for c in cpfs]


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--chunk-rows", "0"], "--chunk-rows must be positive"),
        (["--report", "{tmp}"], "--report"),
        (["--report", "{tmp}/no/such/folder/r.json"], "--report"),
    ],
)
def test_bad_output_arguments_exit_2_before_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], says: str
) -> None:
    source, target = tmp_path / "in.csv", tmp_path / "out.csv"
    write_customers(source)
    args = [a.format(tmp=tmp_path) for a in extra]
    assert main(["mask", str(source), str(target), *args]) == 2
    assert says in capsys.readouterr().err
    assert not target.exists()


def test_an_output_path_that_cannot_be_written_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.csv"
    write_customers(source)
    (tmp_path / "taken.csv").mkdir()
    assert main(["mask", str(source), str(tmp_path / "taken.csv")]) == 2
    assert "it is a folder" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main(["mask", str(source), str(tmp_path / "file" / "out.csv")]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_a_csv_header_naming_two_columns_alike_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # pandas would read the second "nome" as "nome.1", which no rule names: it went out raw
    source, target = tmp_path / "in.csv", tmp_path / "out.csv"
    source.write_text("nome,cidade,nome\nJoana Pereira,Recife,Joana Pereira\n", encoding="utf-8")
    assert main(["mask", str(source), str(target)]) == 2
    err = capsys.readouterr().err
    assert "columns 1 and 3 alike" in err
    assert "Joana" not in err
    assert not target.exists()


def test_a_csv_header_with_blank_names_is_written_back_as_it_was(tmp_path: Path) -> None:
    """pandas names a blank header cell ``Unnamed: 1``; the output's header is the input's."""
    fake = Faker("pt_BR")
    Faker.seed(3)
    source, target = tmp_path / "in.csv", tmp_path / "out.csv"
    cpfs = [fake.cpf() for _ in range(3)]
    source.write_text(
        'id,,cpf,""\n' + "".join(f"{i},x{i},{cpf},\n" for i, cpf in enumerate(cpfs)),
        encoding="utf-8",
    )
    assert main(["mask", str(source), str(target)]) == 0
    lines = target.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "id,,cpf,"
    assert lines[1].startswith("0,x0,")
    assert not any(cpf in target.read_text(encoding="utf-8") for cpf in cpfs)
