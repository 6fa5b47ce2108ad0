"""The masking engine: plans per column (policy, name, content) and applies strategies column-wise."""

from __future__ import annotations

import functools
import gc
import os
import re
import weakref
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from operator import itemgetter
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandas.api.types import (
    infer_dtype,
    is_datetime64_any_dtype,
    is_float_dtype,
    is_integer_dtype,
    is_object_dtype,
    is_string_dtype,
)

from lgpd_tasks.errors import LabelsWouldMerge, MaskingError
from lgpd_tasks.masking.columnar import (
    Bools,
    arrow_strings,
    candidate_rows,
    guess_numbers,
    pending,
    scrub_strings,
    to_series,
)
from lgpd_tasks.masking.detect import (
    EMAIL,
    ContentGuess,
    PiiType,
    compact_name,
    guess_content,
    narrow,
    pii_type_named,
    sample_positions,
    type_from_name,
    whole_numbers,
)
from lgpd_tasks.masking.report import ColumnReport, MaskingReport
from lgpd_tasks.masking.strategies import (
    ALREADY_MASKED,
    Drop,
    Generalize,
    Hmac,
    HmacKey,
    MaskContext,
    Null,
    Partial,
    Redact,
    Strategy,
    strategy_from_spec,
)
from lgpd_tasks.masking.text import SPAN_GATE, SPAN_GATE_RE, TextScrubber

if TYPE_CHECKING:
    from lgpd_tasks.policy.policy import Policy

StrategyLike = Strategy | str | Mapping[str, Any]

#: What each detected type gets when the policy does not say; none of these needs a key.
DEFAULT_STRATEGIES: Mapping[PiiType, Strategy] = MappingProxyType(
    {
        PiiType.CPF: Partial(),
        PiiType.CNPJ: Partial(),
        PiiType.EMAIL: Partial(),
        PiiType.PHONE: Partial(),
        PiiType.CARD: Partial(),
        PiiType.IP: Partial(),
        PiiType.CEP: Generalize(),
        PiiType.BIRTH_DATE: Generalize(),
        PiiType.NAME: Redact(),
        PiiType.ADDRESS: Redact(),
        PiiType.RG: Redact(),
        PiiType.DOCUMENT: Redact(),
        PiiType.OTHER: Redact(token="[REDACTED]"),  # noqa: S106
        PiiType.TEXT: Redact(),
    }
)

MIN_KEY_BYTES = 16
ROWS_SAMPLE = 64
"""Rows sampled per column of a DB-API result; kept small because every query pays for it."""


@dataclass(frozen=True)
class MaskingRules:
    """What to mask and how, without a policy file.

    ``columns`` maps a column name (compared without case, accents, spaces or underscores)
    to a strategy, ``types`` overrides the default strategy of a detected type. With
    ``detect`` off only the listed columns are masked; with it on, columns are also
    recognised by name and by the content of a sample of ``sample_size`` values, where a
    type needs ``threshold`` of the sample to validate.
    """

    columns: Mapping[str, StrategyLike] = field(default_factory=dict)
    types: Mapping[str, StrategyLike] = field(default_factory=dict)
    detect: bool = True
    key_env: str = "LGPD_MASKING_KEY"
    mask_all_cpf_shaped: bool = False
    sample_size: int = 1000
    threshold: float = 0.8
    chunk_rows: int = 250_000


@dataclass(frozen=True)
class ColumnPlan:
    """How one column will be masked, decided once per frame (or once per file)."""

    position: int
    column: str
    pii_type: PiiType
    strategy: Strategy
    confidence: float
    detected_by: str

    @property
    def scan(self) -> bool:
        """A column of no type whose cells are only scanned for personal-data spans."""
        return self.detected_by == "scan"

    def report(self, cells: int) -> ColumnReport:
        return ColumnReport(
            column=self.column,
            detected_type=self.pii_type.value,
            strategy=self.strategy.name,
            cells_masked=cells,
            confidence=self.confidence,
            detected_by=self.detected_by,
        )


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _refusing_lone_surrogates(
    method: Callable[Concatenate[Masker, _P], _R],
) -> Callable[Concatenate[Masker, _P], _R]:
    """Turn the UnicodeEncodeError of a lone surrogate into a MaskingError naming the cell.

    Python's error holds the whole value (a CPF with a stray byte): it is dropped, and the
    new error is raised outside the handler so that it carries no context holding it.
    """

    @functools.wraps(method)
    def refusing(self: Masker, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(self, *args, **kwargs)
        except UnicodeEncodeError:
            where = self._surrogate_cell(args)
        raise _invalid_unicode(where)

    return refusing


class Masker:
    """Masks DataFrames, DB-API rows and free text under one set of rules.

    >>> masker = Masker()
    >>> df = pd.DataFrame({"cpf": ["529.982.247-25", None], "cidade": ["Recife", "Natal"]})
    >>> masked, report = masker.mask_dataframe(df)
    >>> masked["cpf"].tolist(), masked["cidade"].tolist(), report.masked_columns
    (['***.***.***-25', nan], ['Recife', 'Natal'], ('cpf',))
    >>> masker.mask_text("falha para ana@pf.gov.br, CPF 529.982.247-25")
    'falha para [EMAIL], CPF [CPF]'
    """

    def __init__(self, rules: MaskingRules | None = None, *, key: bytes | None = None) -> None:
        self.rules = rules = rules or MaskingRules()
        if not 0 < rules.threshold <= 1:
            raise MaskingError(f"masking threshold must be in (0, 1], got {rules.threshold}")
        if rules.sample_size < 1 or rules.chunk_rows < 1:
            raise MaskingError("masking sample_size and chunk_rows must be positive")
        self._columns: dict[str, tuple[str, Strategy]] = {}
        for name, spec in rules.columns.items():
            where = f"masking.columns.{name}"
            strategy = strategy_from_spec(spec, where)
            pii = type_from_name(name)
            if pii is not None:
                _check(strategy, pii, where)
            self._columns[compact_name(name)] = (name, strategy)
        types = dict(DEFAULT_STRATEGIES)
        for type_name, spec in rules.types.items():
            where = f"masking.types.{type_name}"
            try:
                pii = pii_type_named(type_name)
            except MaskingError as err:
                raise MaskingError(f"{where}: {err}") from None
            strategy = strategy_from_spec(spec, where)
            _check(strategy, pii, where)
            types[pii] = strategy
        self._types: Mapping[PiiType, Strategy] = MappingProxyType(types)
        self._ctx = MaskContext(hmac_key=self._resolve_key(key))
        # Two maskers with equal rules and the same key mask alike (integrations build one
        # per resource copy); the key is compared through a digest, never kept raw.
        hmac_key = self._ctx.hmac_key
        self._signature = (
            rules,
            None if hmac_key is None else hmac_key.hexdigest(b"\0lgpd-tasks masker signature"),
        )
        self._scrubber = TextScrubber(mask_all_cpf_shaped=rules.mask_all_cpf_shaped)
        self._name_plans: dict[tuple[object, ...], tuple[ColumnPlan | None, ...]] = {}

    @classmethod
    def from_policy(cls, policy: Policy, *, key: bytes | None = None) -> Masker:
        """A masker for a policy's ``masking`` section; the HMAC key is checked now."""
        spec = policy.masking
        return cls(
            MaskingRules(
                columns=dict(spec.columns),
                types=dict(spec.types),
                detect=spec.detect,
                key_env=spec.key_env,
                mask_all_cpf_shaped=spec.mask_all_cpf_shaped,
                sample_size=spec.sample_size,
                threshold=spec.threshold,
                chunk_rows=spec.chunk_rows,
            ),
            key=key,
        )

    def _resolve_key(self, key: bytes | None) -> HmacKey | None:
        users = [f"masking.columns.{n}" for n, s in self._columns.values() if isinstance(s, Hmac)]
        users += [f"masking.types.{p.value}" for p, s in self._types.items() if isinstance(s, Hmac)]
        if key is None:
            if not users:
                return None
            env = self.rules.key_env
            raw = os.environ.get(env, "")
            if not raw:
                raise MaskingError(
                    f"{users[0]}: strategy 'hmac' needs a key in the environment variable "
                    f"{env}, which is not set; refusing to hash without a key"
                )
            key = raw.encode()
            source = f"the environment variable {env}"
        else:
            source = "the key given"
        if len(key) < MIN_KEY_BYTES:
            raise MaskingError(
                f"the HMAC key in {source} is too short: at least {MIN_KEY_BYTES} bytes"
            )
        return HmacKey(key)

    # -- planning ---------------------------------------------------------------------------

    def strategy_for(self, pii: PiiType) -> Strategy:
        return self._types[pii]

    def missing_columns(self, names: Sequence[object]) -> list[str]:
        """Policy columns that are not among ``names`` (the CLI refuses such a file)."""
        present = {compact_name(n) for n in names if isinstance(n, str)}
        return [orig for key, (orig, _) in self._columns.items() if key not in present]

    def _label(self, name: object) -> str:
        """A column's name as reports and errors show it: personal data in it is masked."""
        return self.mask_text(str(name))

    def _name_rule(self, name: object) -> tuple[PiiType, Strategy, str] | None:
        """The type, strategy and ground (``policy`` or ``name``) a column name calls for."""
        if isinstance(name, tuple):
            # a MultiIndex column (``("contato", "cpf")``, ``("cpf", "first")``): the rule
            # of its innermost part that names one
            for part in reversed(name):
                rule = self._name_rule(part)
                if rule is not None:
                    return rule
            return None
        explicit = self._columns.get(compact_name(name)) if isinstance(name, str) else None
        pii = type_from_name(name)
        if explicit is not None:
            return pii or PiiType.OTHER, explicit[1], "policy"
        if pii is not None and self.rules.detect:
            return pii, self._types[pii], "name"
        return None

    def _plan_by_name(
        self, position: int, name: object, sources: Collection[str] = ()
    ) -> ColumnPlan | None:
        """The plan a column's name calls for, and the names of the ``sources`` its values
        come from (a query's renamed column): the policy's rules come before names merely
        recognised; rules that differ give the most protective (``drop``, ``null``, else
        ``redact``)."""
        found = [r for r in map(self._name_rule, (name, *sources)) if r is not None]
        chosen = [r for r in found if r[2] == "policy"] or found
        if not chosen:
            return None
        pii, strategy, by = chosen[0]
        if any(r[:2] != (pii, strategy) for r in chosen[1:]):
            strategies = [r[1] for r in chosen]
            mixed = any(r[0] is not pii for r in chosen)
            strategy = next(
                (s for kind in (Drop, Null) for s in strategies if isinstance(s, kind)),
                Redact(token="[REDACTED]" if mixed else None),
            )
            pii = PiiType.OTHER if mixed else pii
        return ColumnPlan(position, self._label(name), pii, strategy, 1.0, by)

    def _guess(self, sample: list[Any]) -> ContentGuess:
        """What a column's sample (see :func:`_sample_of`) holds: text is read as text, and
        whole numbers as CPFs or CNPJs that lost their leading zeros."""
        if sample and isinstance(sample[0], str):
            return guess_content(sample, self.rules.threshold, self._scrubber.has_span)
        numbers = whole_numbers(sample)
        if numbers:
            return guess_numbers(numbers, self.rules.threshold)
        return ContentGuess(None, 0.0, False)

    def _plan_by_content(self, position: int, name: object, sample: list[Any]) -> ColumnPlan | None:
        guess = self._guess(sample)
        if guess.pii_type is None or (guess.pii_type is PiiType.TEXT and _codes(sample)):
            return None
        pii = guess.pii_type
        label = self._label(name)
        return ColumnPlan(position, label, pii, self._types[pii], guess.confidence, "content")

    def _scan_plan(self, position: int, name: object) -> ColumnPlan:
        """A text column the sample found no type in: its cells are still scrubbed of spans
        (a sample cannot see a CPF in three rows of a hundred thousand); the report lists
        it only when a cell changed."""
        return ColumnPlan(position, self._label(name), PiiType.TEXT, Redact(), 0.0, "scan")

    def _refine_explicit(self, plan: ColumnPlan, sample: list[Any]) -> ColumnPlan:
        # A policy column with a name we do not know still gets a type from its content,
        # so that "partial" keeps an e-mail's domain; free text is masked as a whole cell.
        guess = self._guess(sample)
        if guess.pii_type is None or guess.pii_type is PiiType.TEXT:
            return plan
        return ColumnPlan(
            plan.position, plan.column, guess.pii_type, plan.strategy, 1.0, plan.detected_by
        )

    def _sample(self, col: pd.Series[Any], positions: list[int]) -> list[Any]:
        """A text or numeric column's sample at ``positions``, or of its first non-null
        values when those are mostly empty; nothing for other columns (dates, booleans)."""
        if isinstance(col.dtype, pd.CategoricalDtype):
            # a categorical column is read through its categories: each value once
            categories = pd.Series(col.cat.categories)
            size = self.rules.sample_size
            return self._sample(categories, list(sample_positions(len(categories), size)))
        text = is_string_dtype(col.dtype) or is_object_dtype(col.dtype)
        if not (text or is_integer_dtype(col.dtype) or is_float_dtype(col.dtype)):
            return []
        enough = min(20, len(positions))
        if text:
            sample = _sample_of(col.iloc[positions].tolist())
            if sample and isinstance(sample[0], str) and len(sample) >= enough:
                return sample
        else:
            picked = col.iloc[positions]
            if int(picked.notna().sum()) >= enough:
                return picked.tolist()
        return _sample_of(_first_values(col, self.rules.sample_size))

    @_refusing_lone_surrogates
    def plan(
        self,
        df: pd.DataFrame,
        skip: Collection[int] = (),
        *,
        sources: Sequence[Collection[str]] | None = None,
    ) -> list[ColumnPlan]:
        """Decide, for every column of ``df`` but those at ``skip``, whether and how it is masked.

        ``sources`` gives, per column, the names of the columns its values come from (see
        :meth:`mask_dataframe`); their name rules apply besides the column's own.
        """
        plans: list[ColumnPlan] = []
        positions = list(sample_positions(len(df), self.rules.sample_size))
        origins = _sources_for(sources, df.shape[1])
        for j, name in enumerate(df.columns):
            if j in skip:
                continue
            plan = self._plan_by_name(j, name, origins[j])
            needs_content = (plan is None and self.rules.detect) or (
                plan is not None and plan.pii_type is PiiType.OTHER
            )
            sample: list[Any] = []
            if needs_content:
                sample = self._sample(df.iloc[:, j], positions)
                if sample:
                    if plan is None:
                        plan = self._plan_by_content(j, name, sample)
                    else:
                        plan = self._refine_explicit(plan, sample)
            if (
                plan is None
                and self.rules.detect
                and _may_hold_text(df.dtypes.iloc[j], sample)
                and not _codes(sample)
            ):
                plan = self._scan_plan(j, name)
            if (
                plan is not None
                and plan.pii_type is PiiType.OTHER
                and is_datetime64_any_dtype(df.dtypes.iloc[j])
            ):
                plan = replace(plan, pii_type=PiiType.BIRTH_DATE)
            if plan is not None:
                if plan.pii_type is not PiiType.TEXT:
                    _check(plan.strategy, plan.pii_type, f"column {plan.column!r}")
                plans.append(plan)
        return plans

    # -- applying ---------------------------------------------------------------------------

    def mask_labels(self, labels: Sequence[Any]) -> list[Any]:
        """Dict keys or column labels with personal data replaced; refused when that merges two.

        A key can itself be a personal value (totals keyed by CPF, a pivot by e-mail). Masked
        keys that collide would silently lose entries, so such labels are refused instead.
        """
        original = list(labels)
        masked = [self._mask_label(k) for k in original]
        if masked != original and len(set(map(repr, masked))) != len(masked):
            raise LabelsWouldMerge(
                "cannot mask these keys or column labels without merging them: they hold "
                "personal data; keep the personal value in a column (records or a DataFrame)"
            )
        return masked

    def _mask_label(self, label: object) -> object:
        """One key or label with personal data masked; each part of a tuple (MultiIndex) label."""
        if isinstance(label, str):
            return self.mask_text(label)
        if isinstance(label, tuple):
            return tuple(self._mask_label(part) for part in label)
        return label

    @_refusing_lone_surrogates
    def mask_frame(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, MaskingReport]:
        """A DataFrame masked in its columns, its index and its column labels.

        A stored frame keeps its index (``set_index("cpf")``) and labels (a pivot by e-mail):
        the index is masked as columns under its level names, so name rules apply to it too.
        """
        flat, levels = index_to_columns(frame)
        masked, report = self._mask_dataframe(flat, level_sources(flat, levels))
        return self.mask_frame_labels(columns_to_index(masked, levels)), report

    @_refusing_lone_surrogates
    def mask_frame_labels(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` with personal data masked in its column labels and index names.

        Raises :class:`LabelsWouldMerge` when two labels would become one.
        """
        out = frame.copy(deep=False)
        labels = self.mask_labels(list(out.columns))
        names = self.mask_labels(list(out.columns.names))
        if isinstance(out.columns, pd.MultiIndex):
            out.columns = pd.MultiIndex.from_tuples(labels, names=names)
        else:
            out.columns = pd.Index(labels, name=names[0], tupleize_cols=False)
        out.index = out.index.set_names(self.mask_labels(list(out.index.names)))
        return out

    def mask_dataframe(
        self, df: pd.DataFrame, *, sources: Sequence[Collection[str]] | None = None
    ) -> tuple[pd.DataFrame, MaskingReport]:
        """Mask ``df`` into a new frame; ``df`` itself is never modified.

        ``sources``, one entry per column, names the columns each column's values come from
        when its label is not their name (``SELECT nome AS quem``): the policy's rule for
        ``nome`` then masks ``quem``. Rules that differ between a column and its sources
        give the most protective (``drop``, ``null``, else ``redact``).

        A frame this masker returned is not masked again column by column: its Arrow string
        columns that still hold the very arrays the masker produced (Arrow arrays cannot be
        changed in place) are known to need nothing more, and are reported with no cells
        masked. Every other column, and every other frame, is planned and masked as usual.

        Cells holding dicts, lists, tuples, sets or arrays are masked leaf by leaf (see
        :meth:`_mask_nested`). ``df.attrs`` is not carried over: free text in it could hold
        a name that no rule finds.
        """
        if not isinstance(df, pd.DataFrame):
            raise MaskingError(
                f"mask_dataframe expects a pandas DataFrame, got {type(df).__name__}"
            )
        return self._mask_dataframe(df, sources)

    @_refusing_lone_surrogates
    def _mask_dataframe(
        self, df: pd.DataFrame, sources: Sequence[Collection[str]] | None
    ) -> tuple[pd.DataFrame, MaskingReport]:
        trusted = self._trusted_columns(df)
        nested = self._nested_columns(df, skip=trusted)
        done = [(p.position, p.report(0)) for p in trusted.values() if p is not None and not p.scan]
        if nested:
            df = df.copy(deep=False)
            origins = _sources_for(sources, df.shape[1])
            for j in nested:
                column, reports = self._mask_nested(df.iloc[:, j], df.columns[j], origins[j])
                df.isetitem(j, column)  # type: ignore[arg-type]  # stubs omit Series
                done += [(j, r) for r in reports]
        plans = self.plan(df, skip={*trusted, *nested}, sources=sources)
        out, report = self.apply(df, plans)
        if done:
            # a report names its column by the plan's label, unique to a position (a column
            # merely scanned is reported only when a cell changed)
            where = {p.column: p.position for p in plans}
            ordered = sorted(
                [(where[r.column], r) for r in report.columns] + done,
                key=itemgetter(0),
            )
            report = MaskingReport(rows=report.rows, columns=tuple(r for _, r in ordered))
        if out.attrs:
            # free text there (a source row, a note) could hold a name no rule finds
            out.attrs = {}
        if out.shape[1] == df.shape[1]:
            by_position = {p.position: p for p in plans} | {
                j: p for j, p in trusted.items() if p is not None
            }
            _MASKED.add(out, self, tuple(by_position.get(j) for j in range(out.shape[1])))
        return out, report

    def mask_records(
        self, records: Sequence[Mapping[Any, Any]]
    ) -> tuple[list[dict[Any, Any]], MaskingReport]:
        """Mask a list of dicts as the rows of a frame: each key is a column, planned by
        name (policy, then the name itself) and then by content, as in :meth:`mask_dataframe`;
        nested dicts and lists are masked as in a frame's cells. Keys holding personal data
        are masked (:meth:`mask_labels`); a key whose rule is ``drop`` is left out.
        """
        if not records:
            return [], MaskingReport(rows=0)
        for i, record in enumerate(records):
            if not isinstance(record, Mapping):
                raise MaskingError(
                    f"mask_records expects mappings; item {i} is a {type(record).__name__}"
                )
        keys = list(dict.fromkeys(k for record in records for k in record))
        labels = self.mask_labels(keys)
        frame = pd.DataFrame(
            {j: pd.Series([r.get(k) for r in records], dtype=object) for j, k in enumerate(keys)}
        )
        frame.columns = pd.Index(keys, dtype=object, tupleize_cols=False)
        masked, report = self.mask_dataframe(frame)
        # the masked frame keeps the columns that were not dropped, in their order
        kept: dict[int, list[Any]] = {}
        remaining = list(masked.columns)
        p = 0
        for j, key in enumerate(keys):
            if p < len(remaining) and (remaining[p] is key or remaining[p] == key):
                kept[j] = masked.iloc[:, p].astype(object).tolist()
                p += 1
        position = {k: j for j, k in enumerate(keys)}
        out = [
            {labels[position[k]]: kept[position[k]][i] for k in record if position[k] in kept}
            for i, record in enumerate(records)
        ]
        return out, report

    # -- cells holding dicts and lists ---------------------------------------------------------

    def _nested_columns(self, df: pd.DataFrame, skip: Collection[int]) -> list[int]:
        """Object columns with dicts, lists, tuples, sets or arrays in their cells (but those a
        ``drop`` or ``null`` rule empties as a whole)."""
        found: list[int] = []
        for j in range(df.shape[1]):
            if j in skip or not is_object_dtype(df.dtypes.iloc[j]):
                continue
            col = df.iloc[:, j]
            if infer_dtype(col, skipna=True) not in _MIXED:
                continue
            if not any(isinstance(v, _NESTED) for v in col.tolist()):
                continue
            plan = self._plan_by_name(j, df.columns[j])
            if plan is not None and isinstance(plan.strategy, (Drop, Null)):
                continue
            found.append(j)
        return found

    def _mask_nested(
        self, col: pd.Series[Any], name: object, sources: Collection[str] = ()
    ) -> tuple[pd.Series[Any], list[ColumnReport]]:
        """A column whose cells hold dicts and lists, masked leaf by leaf.

        The values found at one path (``contato.cpf``, ``contatos[]``) across the column are
        masked together as a column: under the rule of the innermost key that names one (or
        the column's own name), else by their content. Dict keys holding personal data are
        masked; keys of one dict that would merge are refused.

        A query's column built from columns with a rule (``array_agg(nome)``,
        ``json_build_object('k', nome)``, ``jsonb_object_agg(nome, id)``: ``sources``) is
        masked under their rules whole: every leaf, and every key that is not one of their
        names, since keys and values can hold any of them.
        """
        values = col.tolist()
        forced = (
            self._plan_by_name(0, name, sources)
            if any(self._name_rule(s) is not None for s in sources)
            else None
        )
        if forced is not None and isinstance(forced.strategy, Drop):
            forced = replace(forced, strategy=Null())  # a leaf keeps its place, as a null
        known = frozenset(str(s) for s in sources)
        labels: dict[tuple[type, object], _Part] = {}
        groups: dict[tuple[Any, ...], list[Any]] = {}
        for value in values:
            self._collect(value, (), groups, labels, forced, known)
        reports: list[ColumnReport] = []
        masked: dict[tuple[Any, ...], Iterator[Any]] = {}
        column_label = self._label(name)
        for path, leaves in groups.items():
            plan = (
                self._plan_leaves(name, path, leaves, column_label)
                if forced is None
                else replace(forced, column=column_label + _path_label(path))
            )
            if plan is None:
                masked[path] = iter(leaves)
                continue
            if isinstance(plan.strategy, Drop):  # a leaf keeps its place, as a null
                plan = replace(plan, strategy=Null())
            series = pd.Series(leaves, dtype=object)
            out, cells = self._apply_chunked(series, plan)
            masked[path] = iter(leaves if out is None or out is series else out.tolist())
            reports.append(plan.report(cells))
        rebuilt = [self._rebuild(value, (), masked, labels) for value in values]
        return pd.Series(rebuilt, index=col.index, dtype=object, name=col.name), reports

    def _part(
        self,
        key: object,
        labels: dict[tuple[type, object], _Part],
        forced: ColumnPlan | None = None,
        known: frozenset[str] = frozenset(),
    ) -> _Part:
        part = labels.get((type(key), key))
        if part is None:
            if forced is not None and str(key) not in known:
                label = self._mask_key(key, forced)
            else:
                label = self._mask_label(key)
            part = labels[(type(key), key)] = _Part(label, label != key)
        return part

    def _mask_key(self, key: object, plan: ColumnPlan) -> object:
        """A dict key masked under ``plan`` (a key cannot be null: nulling rules redact)."""
        if isinstance(plan.strategy, Null):
            plan = replace(plan, strategy=Redact(token="[REDACTED]"))  # noqa: S106 - a mask token
        out, _ = self._apply_column(pd.Series([str(key)], dtype=object), plan)
        return "[REDACTED]" if out is None else out.iloc[0]

    def _collect(
        self,
        value: Any,
        path: tuple[Any, ...],
        groups: dict[tuple[Any, ...], list[Any]],
        labels: dict[tuple[type, object], _Part],
        forced: ColumnPlan | None = None,
        known: frozenset[str] = frozenset(),
    ) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                part = self._part(key, labels, forced, known)
                self._collect(item, (*path, part), groups, labels, forced, known)
        elif isinstance(value, _SEQUENCES):
            for item in value:
                self._collect(item, (*path, _ITEM), groups, labels, forced, known)
        else:
            groups.setdefault(path, []).append(value)

    def _rebuild(
        self,
        value: Any,
        path: tuple[Any, ...],
        masked: dict[tuple[Any, ...], Iterator[Any]],
        labels: dict[tuple[type, object], _Part],
    ) -> Any:
        if isinstance(value, Mapping):
            out: dict[Any, Any] = {}
            for key, item in value.items():
                part = self._part(key, labels)
                if part.label in out:
                    raise LabelsWouldMerge(
                        "cannot mask the keys of a dict in a cell without merging them: they "
                        "hold personal data; keep the personal value as a value instead"
                    )
                out[part.label] = self._rebuild(item, (*path, part), masked, labels)
            return out
        if isinstance(value, _SEQUENCES):
            items = [self._rebuild(item, (*path, _ITEM), masked, labels) for item in value]
            if isinstance(value, np.ndarray):
                array = np.empty(len(items), dtype=object)
                array[:] = items
                return array
            if isinstance(value, tuple | set | frozenset):
                return type(value)(items)
            return items
        return next(masked[path])

    def _plan_leaves(
        self, name: object, path: tuple[Any, ...], leaves: list[Any], column_label: str
    ) -> ColumnPlan | None:
        """How the values at one path of a nested column are masked."""
        label = column_label + _path_label(path)
        plan = self._plan_by_name(0, name)
        for part in path:
            if part is not _ITEM and not part.personal:
                plan = self._plan_by_name(0, part.label) or plan
        if plan is not None:
            plan = replace(plan, column=label)
        needs_content = (plan is None and self.rules.detect) or (
            plan is not None and plan.pii_type is PiiType.OTHER
        )
        if needs_content:
            positions = sample_positions(len(leaves), self.rules.sample_size)
            sample = _sample_of([leaves[i] for i in positions])
            if plan is None:
                plan = self._plan_by_content(0, label, sample)
            else:
                plan = self._refine_explicit(plan, sample)
        if plan is not None and plan.pii_type is not PiiType.TEXT:
            _check(plan.strategy, plan.pii_type, f"column {plan.column!r}")
        return plan

    def _trusted_columns(self, df: pd.DataFrame) -> dict[int, ColumnPlan | None]:
        """Columns of a frame this masker returned that still hold the arrays it returned."""
        mark = _MASKED.get(df)
        if (
            mark is None
            or (mark.masker is not self and mark.masker._signature != self._signature)
            or mark.rows != len(df)
            or mark.names != tuple(df.columns)
        ):
            return {}
        return {
            j: mark.plans[j]
            for j, ref in enumerate(mark.arrays)
            if ref is not None
            and (array := ref()) is not None
            and arrow_strings(df.iloc[:, j]) is array
        }

    @_refusing_lone_surrogates
    def apply(
        self, df: pd.DataFrame, plans: Sequence[ColumnPlan]
    ) -> tuple[pd.DataFrame, MaskingReport]:
        """Mask ``df`` with plans made earlier (the CLI plans on a file's first chunk)."""
        # A shallow copy is enough under pandas 3's copy-on-write: replacing a column of
        # ``out`` never reaches ``df``, and untouched columns share their buffers.
        out = df.copy(deep=False)
        drop: list[int] = []
        reports: list[ColumnReport] = []
        for plan in plans:
            col = df.iloc[:, plan.position]
            masked, cells = self._apply_chunked(col, plan)
            if masked is None:
                drop.append(plan.position)
            elif masked is not col:
                out.isetitem(plan.position, masked)  # type: ignore[arg-type]  # stubs omit Series
            if cells or not plan.scan:
                reports.append(plan.report(cells))
        if drop:
            keep = [j for j in range(out.shape[1]) if j not in set(drop)]
            out = out.iloc[:, keep]
        return out, MaskingReport(rows=len(df), columns=tuple(reports))

    def _apply_chunked(
        self, col: pd.Series[Any], plan: ColumnPlan
    ) -> tuple[pd.Series[Any] | None, int]:
        size = self.rules.chunk_rows
        if len(col) <= size:
            return self._apply_column(col, plan)
        parts: list[pd.Series[Any]] = []
        cells = 0
        same = True
        for start in range(0, len(col), size):
            piece = col.iloc[start : start + size]
            part, n = self._apply_column(piece, plan)
            if part is None:
                return None, int(col.notna().sum())
            parts.append(part)
            cells += n
            same = same and part is piece
        if same:
            return col, 0
        return pd.concat(parts), cells

    def _apply_column(
        self, col: pd.Series[Any], plan: ColumnPlan
    ) -> tuple[pd.Series[Any] | None, int]:
        strategy = plan.strategy
        if isinstance(strategy, Drop):
            return None, int(col.notna().sum())
        if isinstance(strategy, Null):
            cells = int(col.notna().sum())
            return (col.where(np.zeros(len(col), dtype=bool)) if cells else col), cells
        if isinstance(col.dtype, pd.CategoricalDtype):
            # masked as its values (masked categories could merge: two CPFs, one ending);
            # a column merely scanned stays categorical when nothing in it changed
            values = col.astype(col.cat.categories.dtype)
            masked, cells = self._apply_column(values, plan)
            return (col if plan.scan and cells == 0 else masked), cells
        if plan.pii_type is PiiType.TEXT:
            return self._by_distinct(col, self._scrub_column)
        pii = plan.pii_type
        # a value to mask counts as a masked cell even when the strategy leaves it as it was
        # (an e-mail partial of a cell with no "@", a year generalised): see _mask_values
        return self._by_distinct(
            col,
            lambda c: self._mask_values(c, pii, strategy),
            counted=lambda before, _: pending(before, ALREADY_MASKED),
        )

    def _by_distinct(
        self,
        col: pd.Series[Any],
        work: Callable[[pd.Series[Any]], tuple[pd.Series[Any], int]],
        counted: Callable[[pa.Array, pa.ChunkedArray], Bools] | None = None,
    ) -> tuple[pd.Series[Any], int]:
        """``work(col)``, done on each distinct value once when ``col`` repeats its values
        (cities, statuses, e-mails of a join), then spread back to the rows.

        Every step of masking depends on a cell's value alone, so the result is the same.
        The cells reported are those ``work`` counts: the rows whose distinct value
        ``counted(values, masked)`` selects, by default those whose value changed.
        """
        arrow = arrow_strings(col) if len(col) >= _DISTINCT_MIN_ROWS else None
        if arrow is None:
            return work(col)
        head = arrow.slice(0, _DISTINCT_PROBE)
        if pc.count_distinct(head).as_py() > 0.9 * len(head):
            # 1,000 draws from 10,000 values or more come out nearly all distinct: encoding
            # would cost more than it saves
            return work(col)
        encoded = pc.dictionary_encode(arrow.combine_chunks())
        uniques = to_series(encoded.dictionary, None)
        masked, _ = work(uniques)
        if masked is uniques:
            return col, 0
        after = arrow_strings(masked)
        if after is None or len(after) != len(uniques):
            return work(col)  # an output that is not strings: the plain way
        if counted is None:
            changed = pc.fill_null(pc.not_equal(encoded.dictionary, after), True)
            which = changed.to_numpy(zero_copy_only=False)
        else:
            which = counted(encoded.dictionary, after)
        indices = encoded.indices
        valid = indices.is_valid().to_numpy(zero_copy_only=False)
        counts = np.bincount(indices.fill_null(0).to_numpy()[valid], minlength=len(uniques))
        cells = int(counts[which].sum())
        if cells == 0:
            return col, 0
        return to_series(pc.take(after, indices), col.index), cells

    def _mask_values(
        self, col: pd.Series[Any], pii: PiiType, strategy: Strategy
    ) -> tuple[pd.Series[Any], int]:
        na = col.isna()
        values = _numbers_of(col) if pii in _NUMERIC_IDS else col
        if is_datetime64_any_dtype(values.dtype):
            if isinstance(strategy, Generalize):
                return values.dt.year.astype("Int64"), int((~na).sum())
            text = values.dt.strftime("%Y-%m-%d").astype("str")
        elif (
            is_integer_dtype(values.dtype)
            and isinstance(strategy, Generalize)
            and pii is PiiType.BIRTH_DATE
        ):
            # Years already: generalising again changes nothing.
            return col, 0
        elif is_float_dtype(values.dtype) and bool(((values % 1) == 0).where(~na, True).all()):
            text = values.astype("Int64").astype("str")
        else:
            text = values if values.dtype == "str" else values.astype("str")
        if pii in _NUMERIC_IDS and (is_integer_dtype(values.dtype) or is_float_dtype(values.dtype)):
            # a number has lost the leading zeros of the identifier it stores
            text = text.str.zfill(_NUMERIC_IDS[pii])
        arrow = arrow_strings(text)
        if arrow is not None:
            todo = pd.Series(pending(arrow, ALREADY_MASKED), index=text.index)
        else:
            todo = (~na) & text.str.len().gt(0) & ~text.str.contains(ALREADY_MASKED, regex=True)
            todo = todo.fillna(False).astype(bool)
        cells = int(todo.sum())
        if cells == 0:
            # A column that masking turns into strings is strings even when this chunk has
            # nothing to mask (all null): every chunk of a file gets one output type.
            return (col if text is col or is_object_dtype(col.dtype) else text), 0
        several = self._several_values(text, todo, pii, strategy)
        if several is not None:
            todo = todo & ~several[0]
        everything = several is None and cells == len(text)
        masked = strategy.mask(text if everything else text[todo], pii, self._ctx)
        if everything:
            out = masked
        else:
            out = text.copy()
            out[todo] = masked
            if several is not None:
                out[several[0]] = several[1]
        if is_object_dtype(col.dtype):
            out = out.astype(object)
            if na.any():
                out[na] = col[na]
        return out, cells

    def _several_values(
        self, text: pd.Series[str], todo: pd.Series[bool], pii: PiiType, strategy: Strategy
    ) -> tuple[Bools, list[str]] | None:
        """The cells to scrub as text instead of applying ``strategy`` (a mask over ``text``)
        and their scrubbed values, or ``None``.

        A strategy that keeps part of a cell (``partial`` keeps what follows an e-mail's
        ``@``, an IP address's network) would keep a second value or a sentence around the
        first (``ana@x.com; joao@gmail.com``); such cells, when not one value of the type,
        are scrubbed span by span. A cell in which the scrub finds nothing gets the strategy.
        """
        shape = _ONE_VALUE.get(pii)
        if shape is None or not isinstance(strategy, Partial | Generalize):
            return None
        if pii is PiiType.EMAIL and isinstance(strategy, Partial) and not strategy.keep_domain:
            return None
        arrow = arrow_strings(text)
        if arrow is None:
            return None  # text is always Arrow-backed ``str``
        one = pc.fill_null(pc.match_substring_regex(arrow, f"^(?:{shape})$"), True)
        odd = todo.to_numpy(dtype=bool) & ~one.to_numpy(zero_copy_only=False)
        if not odd.any():
            return None
        # full-width spellings (``ａｎａ＠ｐｆ．ｇｏｖ．ｂｒ``) are one value too
        at = np.flatnonzero(odd)
        wide = [re.fullmatch(shape, narrow(v)) is not None for v in text.iloc[at].tolist()]
        odd[at[np.array(wide, dtype=bool)]] = False
        if not odd.any():
            return None
        before = text[odd]
        after, cells = self._scrub_column(before)
        if cells == 0:
            return None
        changed = (after != before).to_numpy(dtype=bool)
        where = np.zeros(len(text), dtype=bool)
        where[np.flatnonzero(odd)[changed]] = True
        return where, after[changed].tolist()

    def _scrub_column(self, col: pd.Series[Any]) -> tuple[pd.Series[Any], int]:
        if not (is_string_dtype(col.dtype) or is_object_dtype(col.dtype)):
            return col, 0
        if is_object_dtype(col.dtype):
            return self._scrub_objects(col)
        arrow = arrow_strings(col)
        if arrow is not None:
            # Column-wise in Arrow; only sentences with unusual numbers reach Python.
            scrubbed, cells = scrub_strings(
                arrow, self._scrubber, mask_all_cpf_shaped=self.rules.mask_all_cpf_shaped
            )
            if cells == 0:
                return col, 0
            return pd.Series(pd.array(scrubbed, dtype=col.dtype), index=col.index), cells
        hits = col.str.contains(SPAN_GATE, regex=True)
        hits = hits.fillna(False).astype(bool)
        if not hits.any():
            return col, 0
        before = col[hits].tolist()
        after = [self._scrubber(v) if isinstance(v, str) else v for v in before]
        cells = sum(1 for a, b in zip(before, after, strict=True) if a != b)
        if cells == 0:
            return col, 0
        out = col.copy()
        out[hits] = after
        return out, cells

    def _scrub_objects(self, col: pd.Series[Any]) -> tuple[pd.Series[Any], int]:
        """An object column scrubbed: only strings all through go by Arrow, a mix
        (DB-API rows, numbers among text) is read value by value; non-strings stay."""
        kind = infer_dtype(col, skipna=True)
        if kind == "string" and len(col) >= _ARROW_MIN_ROWS:
            if _holds_no_span(col.tolist()):
                return col, 0
            scrubbed, cells = self._scrub_column(col.astype("str"))
            if cells == 0:
                return col, 0
            out = scrubbed.astype(object)
            na = col.isna()
            if na.any():
                out[na] = col[na]
            return out, cells
        if kind not in ("string", "mixed", "mixed-integer", "mixed-integer-float"):
            return col, 0
        # a few rows (fetchone, a small fetchmany) cost less value by value than through Arrow
        values, cells = self._scan_values(col.tolist())
        if not cells:
            return col, 0
        return pd.Series(values, index=col.index, dtype=object, name=col.name), cells

    def _surrogate_cell(self, data: tuple[Any, ...]) -> str:
        """Where the first text holding a lone surrogate is in a method's arguments: a
        frame, or column names and rows (labels masked as text)."""
        if data and isinstance(data[0], pd.DataFrame):
            frame = data[0]
            levels = [frame.index.get_level_values(i) for i in range(frame.index.nlevels)]
            labels: list[Any] = [f"index {n}" for n in frame.index.names] + list(frame.columns)
            columns: Iterator[Any] = iter(
                [*levels, *(frame.iloc[:, j] for j in range(frame.shape[1]))]
            )
        elif len(data) >= 2 and isinstance(data[1], list):
            labels = list(data[0])
            columns = ([row[j] for row in data[1]] for j in range(len(labels)))
        else:
            return "a value"
        for j, values in enumerate(columns):
            for i, value in enumerate(values):
                if _holds_surrogate(value):
                    return f"column {self.mask_text(str(labels[j]))!r}, row {i}"
        return "a value"

    @_refusing_lone_surrogates
    def mask_rows(
        self,
        column_names: Sequence[object],
        rows: list[Any],
        *,
        sources: Sequence[Collection[str]] | None = None,
        scalar_columns: Collection[int] = (),
    ) -> tuple[list[Any], MaskingReport]:
        """Mask DB-API result rows; returns ``rows`` itself when no column needs masking.

        Names are planned once per column-name tuple; content is checked on a sample of
        up to 64 rows of each call, and text columns that get no type from it are still
        scrubbed cell by cell. A dropped column keeps its place with nulls, since a
        cursor's description fixes the shape. ``sources`` is as for :meth:`mask_dataframe`.

        A column holding dicts or lists (jsonb, arrays) is masked leaf by leaf. Every
        column is read whole for them unless its sample holds a type JSON never gives
        (a date, a decimal) or it is among ``scalar_columns``, the positions whose database
        type the caller knows holds no containers (a text or integer column).
        """
        names = tuple(column_names)
        if not rows:
            return rows, MaskingReport(rows=0)
        origins = _sources_for(sources, len(names))
        key = (names, origins)
        by_name = self._name_plans.get(key)
        if by_name is None:
            by_name = tuple(self._plan_by_name(j, n, origins[j]) for j, n in enumerate(names))
            if len(self._name_plans) > 1024:
                self._name_plans.clear()
            self._name_plans[key] = by_name
        positions = list(sample_positions(len(rows), ROWS_SAMPLE))
        width = len(names)
        try:
            nested = self._nested_positions(rows, positions, by_name, frozenset(scalar_columns))
        except IndexError:
            nested = [width]  # a short row: refused below, with every row's width checked
        plans: list[ColumnPlan] = []
        for j, plan in enumerate(by_name):
            if j in nested or (plan is None and not self.rules.detect):
                continue
            if plan is None or plan.pii_type is PiiType.OTHER:
                sample = _sample_of([rows[i][j] for i in positions])
                if plan is None:
                    plan = self._plan_by_content(j, names[j], sample)
                    # a sample of every row has had each of its strings read for spans
                    # (``has_span``) and found none: there is nothing to scrub
                    if (
                        plan is None
                        and len(rows) > len(positions)
                        and _may_hold_text(np.dtype(object), sample)
                        and not _codes(sample)
                    ):
                        plan = self._scan_plan(j, names[j])
                else:
                    plan = self._refine_explicit(plan, sample)
            if plan is not None:
                plans.append(plan)
        if not plans and not nested:
            return rows, MaskingReport(rows=len(rows))
        if set(map(len, rows)) != {width}:
            raise MaskingError(f"mask_rows: every row must have {width} values, as the columns")
        reports: list[ColumnReport] = []
        replaced: dict[int, list[Any]] = {}
        with _collector_paused():
            for j in nested:
                # a jsonb or array column: its leaves are masked as columns of their own
                values = pd.Series(list(map(itemgetter(j), rows)), dtype=object)
                column, column_reports = self._mask_nested(values, names[j], origins[j])
                replaced[j] = _nulls_to_none(column)
                reports += column_reports
            for plan in plans:
                if plan.scan and len(rows) < _ARROW_MIN_ROWS:
                    # fetchone and small fetchmany: value by value, no Series, no Arrow
                    scanned, cells = self._scan_values(list(map(itemgetter(plan.position), rows)))
                    if cells:
                        replaced[plan.position] = scanned
                        reports.append(plan.report(cells))
                    continue
                if plan.pii_type is not PiiType.TEXT:
                    _check(plan.strategy, plan.pii_type, f"column {plan.column!r}")
                # only the planned columns are taken out of the rows
                cells_of = list(map(itemgetter(plan.position), rows))
                if plan.scan and _holds_no_span(cells_of):
                    continue
                values = pd.Series(cells_of, dtype=object)
                drop = isinstance(plan.strategy, Drop)
                applied = replace(plan, strategy=Null()) if drop else plan
                masked, cells = self._apply_chunked(values, applied)
                if masked is not None and masked is not values:
                    replaced[plan.position] = _nulls_to_none(masked)
                if cells or not plan.scan:
                    reports.append(plan.report(cells))
            report = MaskingReport(rows=len(rows), columns=tuple(reports))
            if not replaced:
                return rows, report
            columns = [
                replaced[j] if j in replaced else map(itemgetter(j), rows) for j in range(width)
            ]
            return list(zip(*columns, strict=True)), report

    def _scan_values(self, values: list[Any]) -> tuple[list[Any], int]:
        """``values`` with the spans in their strings scrubbed, and how many changed."""
        cells = 0
        for i, value in enumerate(values):
            if isinstance(value, str) and SPAN_GATE_RE.search(value):
                after = self._scrubber(value)
                if after != value:
                    values[i] = after
                    cells += 1
        return values, cells

    def _nested_positions(
        self,
        rows: list[Any],
        positions: list[int],
        by_name: Sequence[ColumnPlan | None],
        scalars: frozenset[int],
    ) -> list[int]:
        """Columns of DB-API rows holding dicts or lists (jsonb, json, arrays).

        A jsonb column may hold strings in every sampled row and an object in the next, so
        a column is read whole unless it is known to be scalar: among ``scalars`` (the
        driver's type says so) or sampled with a type JSON never decodes to (a date, a
        decimal, bytes), as a database column has one type. Columns a ``drop`` or ``null``
        rule empties are left to that rule.
        """
        found: list[int] = []
        for j, plan in enumerate(by_name):
            if plan is not None and isinstance(plan.strategy, Drop | Null):
                continue
            kinds = {type(rows[i][j]) for i in positions} - {type(None)}
            if not any(issubclass(k, _NESTED) for k in kinds) and (
                j in scalars or any(not issubclass(k, _JSON_SCALARS) for k in kinds)
            ):
                continue
            if any(issubclass(k, _NESTED) for k in set(map(type, map(itemgetter(j), rows)))):
                found.append(j)
        return found

    def mask_text(self, text: str) -> str:
        """``text`` with CPF, CNPJ, e-mail, phone and card spans replaced by type tokens."""
        return self._scrubber(text)


@dataclass(frozen=True)
class IndexLevels:
    """A frame's index levels moved into columns, to be masked like columns and put back."""

    columns: tuple[str, ...]
    """The columns holding the levels: a level's name, or ``__index_level_N__`` when it
    has none or its name is taken by a column (Parquet's own name for such a level)."""
    names: tuple[Any, ...]
    """The levels' own names, restored when they become the index again."""


def index_to_columns(frame: pd.DataFrame) -> tuple[pd.DataFrame, IndexLevels | None]:
    """``frame`` with its index levels as leading columns; a plain ``RangeIndex`` stays.

    >>> flat, levels = index_to_columns(pd.DataFrame({"v": [1]}, index=pd.Index(["Recife"])))
    >>> list(flat.columns), levels.names
    (['__index_level_0__', 'v'], (None,))
    """
    if isinstance(frame.index, pd.RangeIndex):
        return frame, None
    names = tuple(frame.index.names)
    taken = {str(c) for c in frame.columns}
    columns = tuple(
        str(n) if n is not None and str(n) not in taken else f"__index_level_{i}__"
        for i, n in enumerate(names)
    )
    return frame.rename_axis(list(columns)).reset_index(), IndexLevels(columns, names)


def level_sources(flat: pd.DataFrame, levels: IndexLevels | None) -> list[tuple[str, ...]] | None:
    """Per column of ``flat``, the names its values come from (see ``Masker.mask_dataframe``):
    an index level's own name when its column was renamed ``__index_level_N__`` because a
    column has that name (``set_index("nome", drop=False)``), so that its rules still apply."""
    if levels is None:
        return None
    own = {c: n for c, n in zip(levels.columns, levels.names, strict=True) if c != n}
    return [
        (own[c],) if isinstance(c, str) and isinstance(own.get(c), str) else ()
        for c in flat.columns
    ]


def columns_to_index(frame: pd.DataFrame, levels: IndexLevels | None) -> pd.DataFrame:
    """Undo :func:`index_to_columns` on a masked frame; a level the policy dropped stays out."""
    if levels is None:
        return frame
    kept = [(c, n) for c, n in zip(levels.columns, levels.names, strict=True) if c in frame]
    if not kept:
        return frame
    out = frame.set_index([c for c, _ in kept])
    out.index = out.index.set_names([n for _, n in kept])
    return out


#: What ``infer_dtype`` calls an object column that may hold dicts or lists in its cells.
_MIXED = frozenset({"mixed", "mixed-integer", "unknown-array"})
#: Containers whose items are masked one by one, as cells of a column of their own.
_SEQUENCES = (list, tuple, set, frozenset, np.ndarray)
_NESTED = (Mapping, *_SEQUENCES)
#: What a JSON document's scalars decode to; a column sampled with any other type is no JSON.
_JSON_SCALARS = (str, int, float)


@dataclass(frozen=True)
class _Part:
    """A dict key on the path to a nested value: its masked label, and whether masking
    changed it (a key that is a personal value names no rule)."""

    label: Any
    personal: bool


#: The path part of a list's (tuple's, set's) items.
_ITEM = object()

#: Identifiers stored as numbers, and their width once the lost leading zeros are back.
_NUMERIC_IDS: Mapping[PiiType, int] = MappingProxyType({PiiType.CPF: 11, PiiType.CNPJ: 14})


def _path_label(path: tuple[Any, ...]) -> str:
    """``.contato.cpf`` or ``[]`` for a nested value's path."""
    return "".join("[]" if part is _ITEM else f".{part.label}" for part in path)


def _holds_surrogate(value: object) -> bool:
    """Whether ``value`` (or a leaf of it) is text that UTF-8 cannot encode."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, Mapping):
        return any(_holds_surrogate(k) or _holds_surrogate(v) for k, v in value.items())
    if isinstance(value, _SEQUENCES):
        return any(_holds_surrogate(v) for v in value)
    return False


def _invalid_unicode(where: str) -> MaskingError:
    return MaskingError(
        f"{where}: text holding a lone surrogate (not valid Unicode) cannot be masked; "
        "decode the source with errors='replace', or clean the value first"
    )


def _numbers_of(col: pd.Series[Any]) -> pd.Series[Any]:
    """An object column holding only numbers (DB-API rows) as a numeric one; others as they are.

    >>> _numbers_of(pd.Series([6924533393, None], dtype=object)).dtype
    dtype('float64')
    """
    if is_object_dtype(col.dtype) and infer_dtype(col, skipna=True) in (
        "integer",
        "floating",
        "mixed-integer-float",
    ):
        try:
            return pd.to_numeric(col)
        except (ValueError, OverflowError):  # integers beyond 64 bits: left as they are
            return col
    return col


def _sources_for(
    sources: Sequence[Collection[str]] | None, width: int
) -> tuple[tuple[str, ...], ...]:
    """``sources`` checked against the number of columns, as a hashable tuple."""
    if sources is None:
        return ((),) * width
    if isinstance(sources, str | bytes) or len(sources) != width:
        raise MaskingError(
            f"sources: give one collection of column names for each of the {width} columns"
        )
    return tuple((s,) if isinstance(s, str) else tuple(sorted(map(str, s))) for s in sources)


def _check(strategy: Strategy, pii: PiiType, where: str) -> None:
    try:
        strategy.check(pii)
    except MaskingError as err:
        raise MaskingError(f"{where}: {err}") from None


#: A cell holding one value of a type whose strategy keeps part of the cell (see
#: ``Masker._several_values``), in the RE2 subset.
_ONE_VALUE: Mapping[PiiType, str] = MappingProxyType(
    {
        PiiType.EMAIL: f"[ \t]*(?:{EMAIL})[ \t]*",
        PiiType.IP: "[ \t]*(?:[0-9.]+|[0-9A-Fa-f:.]+)[ \t]*",
    }
)


def _may_hold_text(dtype: Any, sample: list[Any]) -> bool:
    """Whether a column that got no plan is scanned for spans: text columns, and object
    columns whose sample holds text or nothing at all (not numbers, dates, bytes alone)."""
    if isinstance(dtype, pd.CategoricalDtype):
        return _may_hold_text(dtype.categories.dtype, sample)
    if is_object_dtype(dtype):
        return not sample or any(isinstance(v, str) for v in sample)
    return is_string_dtype(dtype)


#: Below this many values a text column is scrubbed value by value rather than through Arrow.
_ARROW_MIN_ROWS = 256
#: The most values :func:`_holds_no_span` joins into one text.
_JOINED_VALUES = 1 << 16


def _holds_no_span(values: list[Any]) -> bool:
    """Whether no string among ``values`` can hold a span: joined end to end, they hold no
    match of the scrubber's gate (``text.SPAN_GATE``, which a value's match is a match of
    the joined text too), found by RE2 in one pass per text rather than a search per value.
    The texts grow from 1,024 values to 65,536, so that a column whose first rows hold a
    candidate costs little. ``False`` when a value is neither a string nor empty (numbers
    among text are read value by value).
    """
    start, size = 0, 1 << 10
    while start < len(values):
        part = values[start : start + size]
        try:
            joined = "".join(part)
        except TypeError:  # nulls (or numbers) among the strings
            try:
                joined = "".join(filter(None, part))
            except TypeError:
                return False
        if candidate_rows(pa.array([joined], pa.large_string())) is not None:
            return False
        start, size = start + size, min(size * 4, _JOINED_VALUES)
    return True


_BARE_NUMBER = re.compile(r"(?<![0-9])[0-9]{11,19}(?![0-9])")
#: The most of a sample's identifier-shaped numbers that may validate in a column of codes:
#: above chance (Luhn with an issuer digit passes about once in fifteen), so that a sample of
#: 64 DB-API rows decides alike.
CHANCE_SHARE = 0.2
#: The same for numbers of a CPF's or CNPJ's length (11 and 14 digits), whose check digits
#: pass by chance about once in a hundred: a larger share is people's documents among codes.
DOCUMENT_CHANCE_SHARE = 0.05


def _codes(sample: list[Any]) -> bool:
    """Whether a text column is codes built on numbers (``PED-29098610916``, ``SKU`` and 13
    digits): nearly every sampled value holds one bare run of 11 to 19 digits, few of them
    validate as a CPF, CNPJ or card, and none holds a formatted CPF, an e-mail or a phone. Like a numeric column of ids, such a column is not scrubbed: a code that happens
    to pass a check digit is no personal data, and scrubbing would change one in a hundred.
    A share of CPF- or CNPJ-length numbers that validate well above chance (codes among
    which some cells are people's documents) is no column of codes: it is scrubbed.
    """
    texts = [v for v in sample if isinstance(v, str)]
    if len(texts) < 20:
        return False
    runs = [_BARE_NUMBER.findall(v) for v in texts]
    bare = [(v, found[0]) for v, found in zip(texts, runs, strict=True) if len(found) == 1]
    if len(bare) < 0.9 * len(texts):
        return False
    scrubber = TextScrubber()
    if any(scrubber.has_span(_BARE_NUMBER.sub(" ", v)) for v in texts):
        return False
    documents = [v for v, number in bare if len(number) in (11, 14)]
    others = [v for v, number in bare if len(number) not in (11, 14)]
    return sum(map(scrubber.has_span, documents)) <= DOCUMENT_CHANCE_SHARE * len(documents) and sum(
        map(scrubber.has_span, others)
    ) <= CHANCE_SHARE * len(others)


def _strings(values: list[Any]) -> list[str]:
    return [v for v in values if isinstance(v, str) and v.strip()]


#: Rows a string column needs before :meth:`Masker._by_distinct` looks for repeats, and the
#: rows it looks at: encoding pays off only when they repeat.
_DISTINCT_MIN_ROWS = 4_096
_DISTINCT_PROBE = 1_000


def _first_values(col: pd.Series[Any], count: int) -> list[Any]:
    """The first ``count`` non-null values of ``col``, looking at its head before the rest
    (``col.dropna()`` of a 100,000-row object column alone costs about 9 ms).

    >>> _first_values(pd.Series([None, 1, None, 2, 3]), 2)
    [1.0, 2.0]
    """
    span = 4 * count
    while True:
        head = col.iloc[:span].dropna()
        if len(head) >= count or span >= len(col):
            return head.head(count).tolist()
        span *= 8


def _sample_of(values: list[Any]) -> list[Any]:
    """What content detection reads of sampled values: their non-empty strings, or, for a
    column without text, its other non-null values (numbers). Blanks and nulls alone give
    nothing to read.

    >>> _sample_of(["  ", None]), _sample_of([None, 52998224725]), _sample_of(["", "ana"])
    ([], [52998224725], ['ana'])
    """
    return _strings(values) or [v for v in values if v is not None and not isinstance(v, str)]


@dataclass(frozen=True)
class _Mark:
    """What a masker returned a frame with: its columns, Arrow arrays and plans."""

    masker: Masker
    names: tuple[object, ...]
    rows: int
    arrays: tuple[weakref.ref[pa.ChunkedArray] | None, ...]
    plans: tuple[ColumnPlan | None, ...]


class _MaskedFrames:
    """The frames maskers returned, by identity, while they live.

    Only the very frame object counts (a frame derived from it by any pandas operation is
    unknown, so masked in full), and only its Arrow string columns: those cannot be changed
    in place, unlike numpy-backed ones.
    """

    def __init__(self) -> None:
        self._marks: dict[int, tuple[weakref.ref[pd.DataFrame], _Mark]] = {}

    def add(self, df: pd.DataFrame, masker: Masker, plans: tuple[ColumnPlan | None, ...]) -> None:
        # weak references: a column replaced later does not keep its old array alive
        arrays = tuple(
            None if array is None else weakref.ref(array)
            for array in (arrow_strings(df.iloc[:, j]) for j in range(df.shape[1]))
        )
        mark = _Mark(masker, tuple(df.columns), len(df), arrays, plans)
        key = id(df)

        def forget(ref: weakref.ref[pd.DataFrame]) -> None:
            entry = self._marks.get(key)
            if entry is not None and entry[0] is ref:
                self._marks.pop(key, None)

        self._marks[key] = (weakref.ref(df, forget), mark)

    def get(self, df: pd.DataFrame) -> _Mark | None:
        entry = self._marks.get(id(df))
        if entry is None or entry[0]() is not df:
            return None
        return entry[1]


_MASKED = _MaskedFrames()


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while rows are rebuilt in bulk.

    A result's row tuples hold no reference cycles, but allocating a hundred thousand of them
    triggers collections that walk every object of the process: in an orchestrator's
    worker, with its large heap, that costs more than the masking. Collections resume (and
    catch up) as soon as the block ends.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _nulls_to_none(values: pd.Series[Any]) -> list[Any]:
    """The values as a list, with NaN as ``None`` (only the nulls are looked at one by one).

    >>> _nulls_to_none(pd.Series(["a", None, float("nan"), pd.NaT], dtype=object))
    ['a', None, None, NaT]
    """
    out: list[Any] = values.astype(object).tolist()
    for i in np.flatnonzero(values.isna().to_numpy()).tolist():
        v = out[i]
        if v is None or (isinstance(v, float) and v != v):
            out[i] = None
    return out


def mask_dataframe(
    df: pd.DataFrame, rules: MaskingRules | Masker | None = None
) -> tuple[pd.DataFrame, MaskingReport]:
    """Mask ``df`` under ``rules`` (defaults: detect everything, no key needed)."""
    masker = rules if isinstance(rules, Masker) else Masker(rules)
    return masker.mask_dataframe(df)


def mask_text(text: str, rules: MaskingRules | Masker | None = None) -> str:
    """Scrub personal-data spans from free text (log lines, error messages).

    >>> mask_text("cliente 11.222.333/0001-81 ligou de (11) 98765-4321")
    'cliente [CNPJ] ligou de [PHONE]'
    """
    masker = rules if isinstance(rules, Masker) else Masker(rules)
    return masker.mask_text(text)
