"""Masking throughput: our mask_dataframe vs Microsoft Presidio vs the floor, on 1,000,000 rows.

    make bench-masking                       # installs the bench extra, then runs this
    python benchmarks/masking.py --rows 200000 --presidio-rows 2000

The frame has 12 columns: id, nome, cpf, cnpj, email, telefone, cep, data_nascimento,
observacao (free text with a CPF, e-mail or phone inside), cidade, valor, codigo_pedido.
- ours: ``mask_dataframe`` with default rules (detection on, no key needed), and again with
  CPF and e-mail under ``hmac``.
- presidio: presidio-analyzer + presidio-structured with a blank spaCy pipeline (no model to
  download) and CPF/CNPJ pattern recognizers, since it ships none for Brazil; it analyses
  every cell of a sample and anonymises it, and its time is extrapolated to the full frame.
- floor: a deep copy plus one ``str.contains`` per string column.
Times are taken in this process; each peak memory in a forked child (its RSS growth).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import psutil

from lgpd_tasks.masking import Masker, MaskingRules

FIRST = np.array(
    ["Ana", "Bruno", "Carla", "Davi", "Elisa", "Fábio", "Giovana", "Heitor", "Íris", "João"]
)
LAST = np.array(["Silva", "Souza", "Oliveira", "Santos", "Lima", "Gonçalves", "Araújo", "Peixoto"])
CITIES = np.array(["Recife", "Natal", "Belém", "São Paulo", "Curitiba", "Manaus", "Goiânia"])
DOMAINS = np.array(["gmail.com", "uol.com.br", "pf.gov.br", "empresa.com.br", "bol.com.br"])
DDDS = np.array(["11", "21", "31", "41", "51", "61", "71", "81", "85", "92"])


def _check_digits(body: np.ndarray, weights_1: list[int], weights_2: list[int]) -> np.ndarray:
    d1 = (body * np.array(weights_1)).sum(axis=1) % 11
    d1 = np.where(d1 < 2, 0, 11 - d1)
    full = np.column_stack([body, d1])
    d2 = (full * np.array(weights_2)).sum(axis=1) % 11
    d2 = np.where(d2 < 2, 0, 11 - d2)
    return np.column_stack([full, d2])


def _join_digits(digits: np.ndarray) -> pd.Series:
    return pd.Series(["".join(map(str, row)) for row in digits.tolist()])


def make_frame(rows: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cpf = _check_digits(
        rng.integers(0, 10, (rows, 9)), list(range(10, 1, -1)), list(range(11, 1, -1))
    )
    cpf_s = _join_digits(cpf)
    cpf_s = cpf_s.str[:3] + "." + cpf_s.str[3:6] + "." + cpf_s.str[6:9] + "-" + cpf_s.str[9:]
    cnpj_body = np.column_stack([rng.integers(0, 10, (rows, 8)), np.tile([0, 0, 0, 1], (rows, 1))])
    cnpj = _check_digits(
        cnpj_body, [5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2], [6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2]
    )
    cnpj_s = _join_digits(cnpj)
    cnpj_s = (
        cnpj_s.str[:2]
        + "."
        + cnpj_s.str[2:5]
        + "."
        + cnpj_s.str[5:8]
        + "/"
        + cnpj_s.str[8:12]
        + "-"
        + cnpj_s.str[12:]
    )
    first = pd.Series(FIRST[rng.integers(0, len(FIRST), rows)])
    last = pd.Series(LAST[rng.integers(0, len(LAST), rows)])
    number = pd.Series(rng.integers(10_000_000, 99_999_999, rows)).astype(str)
    phone = (
        "("
        + pd.Series(DDDS[rng.integers(0, len(DDDS), rows)])
        + ") 9"
        + number.str[:4]
        + "-"
        + number.str[4:]
    )
    email = (
        first.str.lower()
        + "."
        + last.str.lower()
        + pd.Series(np.arange(rows)).astype(str)
        + "@"
        + pd.Series(DOMAINS[rng.integers(0, len(DOMAINS), rows)])
    )
    cep = (
        pd.Series(rng.integers(1000, 99999, rows)).astype(str).str.zfill(5)
        + "-"
        + pd.Series(rng.integers(0, 999, rows)).astype(str).str.zfill(3)
    )
    pick = rng.integers(0, 4, rows)
    inside = np.select([pick == 0, pick == 1, pick == 2], [cpf_s, email, phone], "sem dados")
    observacao = "Cliente pediu retorno, contato " + pd.Series(inside) + " até sexta."
    order = pd.Series(rng.integers(10**10, 10**11 - 1, rows)).astype(str)
    birth = pd.to_datetime("1950-01-01") + pd.to_timedelta(rng.integers(0, 20_000, rows), unit="D")
    return pd.DataFrame(
        {
            "id": np.arange(rows),
            "nome": first + " " + last,
            "cpf": cpf_s,
            "cnpj": cnpj_s,
            "email": email,
            "telefone": phone,
            "cep": cep,
            "data_nascimento": birth,
            "observacao": observacao,
            "cidade": pd.Series(CITIES[rng.integers(0, len(CITIES), rows)]),
            "valor": rng.uniform(1, 5000, rows).round(2),
            "codigo_pedido": "PED-" + order,
        }
    ).astype(
        {
            c: "str"
            for c in (
                "nome",
                "cpf",
                "cnpj",
                "email",
                "telefone",
                "cep",
                "observacao",
                "cidade",
                "codigo_pedido",
            )
        }
    )


def floor(df: pd.DataFrame) -> Any:
    out = df.copy(deep=True)
    for name in out.columns:
        if out[name].dtype == "str":
            out[name].str.contains("[0-9]{3}[.][0-9]{3}|@")
    return out


def ours(df: pd.DataFrame) -> Any:
    return Masker().mask_dataframe(df)


def ours_hmac(df: pd.DataFrame) -> Any:
    masker = Masker(
        MaskingRules(types={"cpf": "hmac", "email": "hmac"}), key=b"benchmark-key-0123456789"
    )
    return masker.mask_dataframe(df)


def presidio(df: pd.DataFrame) -> Any:
    import spacy
    from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry
    from presidio_analyzer.nlp_engine import SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IpRecognizer,
        PhoneRecognizer,
    )
    from presidio_structured import PandasAnalysisBuilder, PandasDataProcessor, StructuredEngine

    class BlankPortuguese(SpacyNlpEngine):
        """A spaCy engine on ``spacy.blank("pt")``: tokenisation only, nothing to download."""

        def load(self) -> None:
            self.nlp = {"pt": spacy.blank("pt")}

    engine = BlankPortuguese(models=[{"lang_code": "pt", "model_name": "blank"}])
    engine.load()
    registry = RecognizerRegistry(supported_languages=["pt"])
    for recognizer in (
        EmailRecognizer(supported_language="pt"),
        PhoneRecognizer(supported_language="pt", supported_regions=("BR",)),
        CreditCardRecognizer(supported_language="pt"),
        IpRecognizer(supported_language="pt"),
        PatternRecognizer(
            supported_entity="BR_CPF",
            supported_language="pt",
            patterns=[Pattern("cpf", r"\b\d{3}[. ]?\d{3}[. ]?\d{3}[-. ]?\d{2}\b", 0.6)],
        ),
        PatternRecognizer(
            supported_entity="BR_CNPJ",
            supported_language="pt",
            patterns=[Pattern("cnpj", r"\b\d{2}\.?\d{3}\.?\d{3}/?\d{4}-?\d{2}\b", 0.6)],
        ),
    ):
        registry.add_recognizer(recognizer)
    analyzer = AnalyzerEngine(nlp_engine=engine, registry=registry, supported_languages=["pt"])
    analysis = PandasAnalysisBuilder(analyzer=analyzer).generate_analysis(df, language="pt")
    return StructuredEngine(PandasDataProcessor()).anonymize(df, analysis)


def _child(fn: Callable[[pd.DataFrame], Any], df: pd.DataFrame, conn: Any) -> None:
    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.005)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    start = time.perf_counter()
    result = fn(df)
    seconds = time.perf_counter() - start
    done.set()
    watcher.join()
    peak_rss = max(peak[0], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    del result
    conn.send((seconds, max(peak_rss - base, 0)))
    conn.close()


def measure(fn: Callable[[pd.DataFrame], Any], df: pd.DataFrame) -> tuple[float, int]:
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(fn, df, child))
    proc.start()
    child.close()  # the child holds the only writing end: its death ends recv() with EOFError
    try:
        seconds, peak = parent.recv()
    except EOFError:
        proc.join()
        raise SystemExit(
            f"{getattr(fn, '__name__', fn)} failed in its child process (exit code "
            f"{proc.exitcode}); its traceback is above. Presidio needs the bench extra: "
            "run `make bench-masking`."
        ) from None
    proc.join()
    return seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--presidio-rows", type=int, default=10_000)
    args = parser.parse_args()
    print(f"building {args.rows:,} rows x 12 columns ...", flush=True)
    df = make_frame(args.rows)
    # Presidio analyses primitive values only: it gets the dates as text.
    sample = df.head(args.presidio_rows).astype({"data_nascimento": "str"})
    size = int(df.memory_usage(deep=True).sum())
    print(f"input frame: {size / 2**20:,.0f} MiB in memory; {os.cpu_count()} CPUs\n")

    masked, report = Masker().mask_dataframe(df.head(1000))
    print(
        "detected: "
        + ", ".join(f"{c.column}={c.detected_type}/{c.strategy}" for c in report.columns)
    )
    print("sample row:", masked.iloc[0].to_dict(), "\n")

    results: dict[str, tuple[float, int, str]] = {}
    for name, fn in (("floor", floor), ("ours", ours), ("ours+hmac", ours_hmac)):
        # Memory in a forked child first (this process keeps Arrow's freed pages, which a
        # later child would reuse unseen); time here, as a child pays copy-on-write faults.
        _, peak = measure(fn, df)
        start = time.perf_counter()
        fn(df)
        seconds = time.perf_counter() - start
        results[name] = (seconds, peak, "measured")
        print(f"  {name:10s} {seconds:8.2f} s", flush=True)
    seconds, peak = measure(presidio, sample)
    scale = args.rows / args.presidio_rows
    results["presidio"] = (seconds * scale, peak, f"{args.presidio_rows:,} rows x {scale:g}")
    print(f"  {'presidio':10s} {seconds:8.2f} s on {args.presidio_rows:,} rows", flush=True)

    floor_s = results["floor"][0]
    ours_s = results["ours"][0]
    print(f"\n{'':12s}{'seconds':>10s}{'rows/s':>14s}{'peak MiB':>10s}{'x input':>9s}  note")
    for name, (seconds, peak, note) in results.items():
        print(
            f"{name:12s}{seconds:10.2f}{args.rows / seconds:14,.0f}{peak / 2**20:10.0f}"
            f"{peak / size:9.2f}  {note}"
        )
    print(
        f"\nours vs presidio: {results['presidio'][0] / ours_s:,.0f}x faster (target >= 100x)"
        f"\nours vs floor:    {ours_s / floor_s:.2f}x the floor's time (target <= 3x)"
        f"\nours peak memory: {results['ours'][1] / size:.2f}x the input frame (target < 3x)"
    )


if __name__ == "__main__":
    main()
