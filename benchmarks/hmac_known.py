"""Masking ``hmac`` columns with the digests a helper computed beforehand, against hashing them.

    python benchmarks/hmac_known.py                   # 2,000,000 rows, best of 3
    python benchmarks/hmac_known.py --rows 100000 --runs 5

The frame has a CPF and a phone column (distinct digits, ``str``), both under ``hmac``. The
digests a fetch's helper would return are made beforehand by the helper's own code
(:class:`~lgpd_tasks.masking.hmac_worker.DigitsHasher`, in this process), so only the
masker's work is timed: ``mask_dataframe`` alone (hashing every value) and with those
digests (looking every value up). Results above ``chunk_rows`` (250,000) are masked chunk
by chunk, each chunk looked up among all the digests.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import pyarrow as pa

from lgpd_tasks.masking import Masker, MaskingRules
from lgpd_tasks.masking.hmac_worker import DIGEST_BYTES, DigitsHasher
from lgpd_tasks.masking.strategies import KnownDigests

KEY = b"benchmark-key-0123456789"


def make_frame(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    cpf = rng.choice(10**11, size=rows, replace=False)
    phone = 11_900_000_000 + rng.choice(10**8, size=rows, replace=False)
    return pd.DataFrame(
        {"cpf": [f"{v:011d}" for v in cpf], "telefone": [str(v) for v in phone]}, dtype="str"
    )


def known_digests(masker: Masker, df: pd.DataFrame) -> KnownDigests:
    """What a fetch's helper answers for ``df``, computed by the helper's code."""
    key = masker._ctx.hmac_key
    assert key is not None
    hasher = DigitsHasher(key.block)
    for column, tag in (("cpf", b"cpf:"), ("telefone", b"phone:")):
        values = df[column].tolist()
        for start in range(0, len(values), 5_000):
            hasher.add(tag, "\n".join(values[start : start + 5_000]).encode())
    messages, digests = hasher.take()
    listed = pa.array(messages.decode("ascii").split("\n"), pa.large_string())
    matrix = np.frombuffer(digests, dtype=np.uint8).reshape(len(listed), DIGEST_BYTES)
    return KnownDigests(key, listed, matrix)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    masker = Masker(MaskingRules(columns={"cpf": "hmac", "telefone": "hmac"}), key=KEY)
    df = make_frame(args.rows)
    known = known_digests(masker, df)
    best = {"hashing": float("inf"), "known digests": float("inf")}
    for _ in range(args.runs):  # interleaved, so a busy moment of the machine hits both
        for name, source in (("hashing", None), ("known digests", lambda: known)):
            start = time.perf_counter()
            masked, _ = masker.mask_dataframe(df, known=source)
            best[name] = min(best[name], time.perf_counter() - start)
            del masked
    print(f"{args.rows:,} rows, 2 hmac columns, best of {args.runs}:")
    for name, seconds in best.items():
        print(f"  {name:14s} {seconds:7.2f} s")


if __name__ == "__main__":
    main()
