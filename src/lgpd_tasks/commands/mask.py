"""``lgpd-tasks mask``: mask a CSV or Parquet file in chunks, writing the output atomically."""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from lgpd_tasks.errors import LabelsWouldMerge, MaskingError
from lgpd_tasks.masking import ColumnPlan, Masker, MaskingReport
from lgpd_tasks.masking.engine import IndexLevels, columns_to_index, index_to_columns, level_sources

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "mask",
        help="mask personal data in a CSV or Parquet file",
        description=(
            "Mask personal data in INPUT and write OUTPUT (CSV or Parquet, by extension). "
            "Without --policy every personal column found by name or content is masked "
            "with the default strategies. The file is streamed in chunks and OUTPUT is "
            "written to a temporary file first, so it is never left half-written."
        ),
    )
    parser.add_argument("input", type=Path, metavar="INPUT")
    parser.add_argument("output", type=Path, metavar="OUTPUT")
    parser.add_argument("--policy", type=Path, help="policy file whose masking section applies")
    parser.add_argument("--report", type=Path, help="write the masking report (JSON) here")
    parser.add_argument(
        "--chunk-rows", type=int, default=None, help="rows per chunk (default: the policy's)"
    )
    parser.set_defaults(func=run)


def _format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(FORMATS))
        raise MaskingError(f"{path}: unknown file type {path.suffix!r} (known: {known})")
    return fmt


def _csv_chunks(path: Path, rows: int) -> Iterator[pd.DataFrame]:
    # Every cell is read as the exact text of the file (no type guessing, no "NA" turned
    # into null), so the columns that are not masked are written back unchanged.
    try:
        header = _header(path)
        reader = pd.read_csv(
            path, chunksize=rows, dtype=str, keep_default_na=False, na_filter=False
        )
        with reader:
            for chunk in reader:
                if chunk.shape[1] == len(header):
                    # pandas names a blank header cell "Unnamed: 1": write back the file's own
                    chunk.columns = pd.Index(header, dtype=object)
                yield chunk
    except OSError as err:
        raise MaskingError(f"{path}: cannot read: {err.strerror or err}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise MaskingError(f"{path}: not a readable CSV file: {_first_line(err)}") from None


def _header(path: Path) -> list[str]:
    """The CSV file's header; refused when it names two columns alike.

    pandas would rename the second ``nome`` to ``nome.1``, which no rule recognises: the
    column would go out unmasked. Positions are named, never the labels (they may be data).
    Blank names may repeat: no rule names them, so their columns are masked by content.
    """
    with path.open(encoding="utf-8-sig", newline="") as f:
        header = next(csv.reader(f), [])
    first: dict[str, int] = {}
    for position, label in enumerate(header, start=1):
        if not label.strip():
            continue
        if label in first:
            raise MaskingError(
                f"{path}: the header names columns {first[label]} and {position} alike; "
                "give every column its own name (a repeated name would not be masked as one)"
            )
        first[label] = position
    return header


def _parquet_chunks(path: Path, rows: int) -> Iterator[pd.DataFrame]:
    try:
        source = pq.ParquetFile(path)
        for batch in source.iter_batches(batch_size=rows):
            yield batch.to_pandas()
    except OSError as err:
        if isinstance(err, FileNotFoundError | PermissionError | IsADirectoryError):
            raise MaskingError(f"{path}: cannot read: {err.strerror or err}") from None
        raise MaskingError(f"{path}: not a readable Parquet file: {_first_line(err)}") from None
    except (pa.ArrowException, ValueError) as err:
        raise MaskingError(f"{path}: not a readable Parquet file: {_first_line(err)}") from None


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _total_rows(path: Path, fmt: str) -> int | None:
    if fmt != "parquet":
        return None
    with contextlib.suppress(OSError, pa.ArrowException, ValueError):
        return int(pq.ParquetFile(path).metadata.num_rows)
    return None


class _Writer:
    """Appends masked chunks to a temporary file next to the output."""

    def __init__(self, tmp: Path, fmt: str) -> None:
        self.tmp, self.fmt = tmp, fmt
        self._parquet: pq.ParquetWriter | None = None
        self._schema: pa.Schema | None = None
        self._first = True

    def write(self, df: pd.DataFrame, *, index: bool, source: Path, row: int) -> None:
        """Append ``df``, with its index as Parquet index columns when ``index`` is set.

        Every Parquet chunk must fit the schema of the first one; a chunk that cannot (a
        column first found to hold personal data after earlier rows were written with
        another type) is refused with a :class:`MaskingError`, never written half-way.
        """
        if self.fmt == "csv":
            df.to_csv(self.tmp, mode="w" if self._first else "a", header=self._first, index=False)
        else:
            try:
                table = pa.Table.from_pandas(df, preserve_index=index)
            except (pa.ArrowException, ValueError) as err:
                # Arrow's message quotes the cell it could not convert: only its kind is shown
                raise MaskingError(
                    f"{source}: rows from {row} on cannot be written as Parquet "
                    f"({type(err).__name__}: a column mixes values of several types)"
                ) from None
            if self._schema is None:
                self._schema = table.schema
                self._parquet = pq.ParquetWriter(self.tmp, table.schema)
            elif not table.schema.equals(self._schema):
                table = self._conform(table, source, row)
            assert self._parquet is not None
            self._parquet.write_table(table)
        self._first = False

    def _conform(self, table: pa.Table, source: Path, row: int) -> pa.Table:
        schema = self._schema
        assert schema is not None
        if table.schema.names != schema.names:
            raise MaskingError(f"{source}: rows from {row} on have other columns than the first")
        for name, want, got in zip(schema.names, schema.types, table.schema.types, strict=True):
            if want == got:
                continue
            try:
                table = table.set_column(
                    schema.get_field_index(name), schema.field(name), table[name].cast(want)
                )
            except (pa.ArrowException, ValueError):
                raise MaskingError(
                    f"{source}: column {name!r} is written as {want} but rows from {row} on "
                    f"come out as {got} (personal data found there, after earlier rows were "
                    "written); run again with a larger --chunk-rows or name the column in "
                    "the policy's masking.columns"
                ) from None
        return table.replace_schema_metadata(schema.metadata)

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        elif self._first and self.fmt == "csv":
            self.tmp.write_text("")


def mask_file(
    masker: Masker,
    source: Path,
    target: Path,
    *,
    chunk_rows: int,
    require_columns: bool,
    progress: bool = False,
) -> MaskingReport:
    """Mask ``source`` into ``target`` chunk by chunk; ``target`` appears only when complete.

    A Parquet file's index columns (pandas stores ``set_index`` columns as such) are masked
    like any column and written back as index columns, or as leading columns in a CSV. Column
    labels holding personal data (a header row of CPFs) are masked too.
    """
    in_fmt, out_fmt = _format(source), _format(target)
    if not source.is_file():
        raise MaskingError(f"{source}: cannot read: no such file")
    chunks = (
        _csv_chunks(source, chunk_rows) if in_fmt == "csv" else _parquet_chunks(source, chunk_rows)
    )
    if target.is_dir():
        raise MaskingError(f"{target}: cannot write: it is a folder")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as err:
        raise MaskingError(f"{target}: cannot write: {err.strerror or err}") from None
    os.close(fd)
    tmp = Path(tmp_name)
    report = MaskingReport()
    plans: dict[int, ColumnPlan] | None = None
    row = 0
    try:
        writer = _Writer(tmp, out_fmt)
        with _progress(progress, _total_rows(source, in_fmt), source.name) as advance:
            for chunk in chunks:
                flat, levels = index_to_columns(chunk)
                if plans is None:
                    missing = masker.missing_columns(list(flat.columns))
                    if require_columns and missing:
                        raise MaskingError(
                            f"{source}: column {missing[0]!r} named in the policy's "
                            "masking.columns is not in the file"
                        )
                    plans = {}
                plans = _replan(masker, flat, levels, plans)
                masked, chunk_report = masker.apply(flat, sorted_plans(plans))
                # index levels the policy did not drop go back to the index in Parquet
                indexed = (
                    out_fmt == "parquet"
                    and levels is not None
                    and any(c in masked for c in levels.columns)
                )
                if indexed:
                    masked = columns_to_index(masked, levels)
                writer.write(
                    _masked_labels(masker, masked, source), index=indexed, source=source, row=row
                )
                report = report.merge(chunk_report)
                row += len(chunk)
                advance(len(chunk))
        writer.close()
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return report


def _replan(
    masker: Masker, flat: pd.DataFrame, levels: IndexLevels | None, plans: dict[int, ColumnPlan]
) -> dict[int, ColumnPlan]:
    """The plans for this chunk: every column is planned on every chunk, since personal
    data can first show up in any of them. A column keeps the plan it got first; only a
    column so far merely scanned for spans (see :meth:`Masker.plan`) can get a typed plan."""
    settled = {j for j, p in plans.items() if not p.scan}
    merged = dict(plans)
    for plan in masker.plan(flat, skip=settled, sources=level_sources(flat, levels)):
        if plan.position not in merged or not plan.scan:
            merged[plan.position] = plan
    return merged


def sorted_plans(plans: dict[int, ColumnPlan]) -> list[ColumnPlan]:
    return [plans[j] for j in sorted(plans)]


def _masked_labels(masker: Masker, frame: pd.DataFrame, source: Path) -> pd.DataFrame:
    """``frame`` with its labels masked: the same for every chunk, as they depend on the
    labels alone; refused when two would become one (a column would be lost)."""
    try:
        return masker.mask_frame_labels(frame)
    except LabelsWouldMerge:
        raise MaskingError(
            f"{source}: the column labels hold personal data and masking them would give two "
            "columns the same label; rename the columns"
        ) from None


@contextlib.contextmanager
def _progress(enabled: bool, total: int | None, label: str) -> Iterator[Any]:
    if not enabled:
        yield lambda _rows: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = [SpinnerColumn(), TextColumn("masking {task.description}"), BarColumn()]
    with Progress(
        *columns, MofNCompleteColumn(), TimeElapsedColumn(), transient=True, console=None
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda rows: bar.advance(task, rows)


def run(args: argparse.Namespace) -> int:
    if args.policy is not None:
        from lgpd_tasks.policy import load_policy

        masker = Masker.from_policy(load_policy(args.policy))
    else:
        masker = Masker()
    chunk_rows = masker.rules.chunk_rows if args.chunk_rows is None else args.chunk_rows
    if chunk_rows < 1:
        raise MaskingError(f"--chunk-rows must be positive, got {chunk_rows}")
    if args.report is not None and (args.report.is_dir() or not args.report.parent.is_dir()):
        # checked first: the masked output would otherwise be written, then the report fail
        raise MaskingError(f"--report {args.report}: cannot write: not a file in a folder")
    report = mask_file(
        masker,
        args.input,
        args.output,
        chunk_rows=chunk_rows,
        require_columns=args.policy is not None,
        progress=sys.stderr.isatty(),
    )
    document = {"input": str(args.input), "output": str(args.output), **report.to_dict()}
    if args.report is not None:
        try:
            args.report.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        except OSError as err:
            raise MaskingError(
                f"--report {args.report}: cannot write: {err.strerror or err} "
                f"(the masked output {args.output} was written)"
            ) from None
    masked = ", ".join(
        f"{c.column} ({c.detected_type}: {c.strategy}, {c.cells_masked})" for c in report.columns
    )
    print(
        f"masked {report.cells_masked} cells in {len(report.columns)} columns of "
        f"{report.rows} rows -> {args.output}" + (f": {masked}" if masked else "")
    )
    return 0
