"""The data-subject report (LGPD Art. 18/19) and the record of processing operations (Art. 37)."""

from __future__ import annotations

import csv
import html
import io
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lgpd_tasks.audit import AuditEntry, AuditStore, scrub_text
from lgpd_tasks.audit.store import isotime
from lgpd_tasks.evidence.subjects import (
    KEYS_SUFFIX,
    SubjectHasher,
    access_coverage,
    accesses_of_digest,
    accesses_with_unlinked_keys,
    subject_keys,
    trail_key,
)
from lgpd_tasks.policy import Policy
from lgpd_tasks.policy.model import format_duration

# -- reading the audit once -----------------------------------------------------------------


@dataclass
class _Audit:
    """Every record, indexed the ways the reports need."""

    entries: list[AuditEntry]
    by_id: dict[str, AuditEntry] = field(default_factory=dict)
    outcomes: dict[str, AuditEntry] = field(default_factory=dict)
    by_run: dict[tuple[str, str], list[AuditEntry]] = field(default_factory=dict)

    @classmethod
    def load(cls, store: AuditStore) -> _Audit:
        entries = list(store.iter_chain())
        audit = cls(entries)
        runs: dict[tuple[str, str], list[AuditEntry]] = defaultdict(list)
        for entry in entries:
            audit.by_id[entry.record_id] = entry
            if entry.kind == "outcome" and entry.ref:
                audit.outcomes[entry.ref] = entry
            runs[(entry.pipeline, entry.run_id)].append(entry)
        audit.by_run = dict(runs)
        return audit


def _statements(entry: AuditEntry) -> list[dict[str, Any]]:
    found = entry.details.get("statements") or []
    return [s for s in found if isinstance(s, dict)]


def _columns(statements: Iterable[Mapping[str, Any]], side: str) -> dict[str, list[str]]:
    merged: dict[str, set[str]] = defaultdict(set)
    for statement in statements:
        for table, cols in (statement.get(side) or {}).items():
            merged[table].update(cols)
    return {t: sorted(c) for t, c in sorted(merged.items())}


# -- the data-subject report ----------------------------------------------------------------


def subject_report(
    store: AuditStore, identifier: str, *, policy: Policy | None = None
) -> dict[str, Any]:
    """Every statement that returned or changed this person's rows, and where data went next.

    The identifier is hashed with the trail key at once and never stored, printed or
    returned; the report names the person by the first 12 hex digits of that digest.
    """
    keys = subject_keys(policy) if policy is not None else {}
    normalizations = {k.normalize for k in keys.values() if k.references is None} or {"auto"}
    hasher = SubjectHasher(trail_key(policy))
    digests = {hasher.subject(identifier, how) for how in sorted(normalizations)}
    access_ids: set[str] = set()
    for digest in digests:
        access_ids |= accesses_of_digest(store, digest)
    audit = _Audit.load(store)
    accesses: list[dict[str, Any]] = []
    for access_id in access_ids:
        entry = audit.by_id.get(access_id)
        if entry is None:  # purged: the trail went with it
            continue
        accesses.append(_access(entry, audit))
    accesses.sort(key=lambda a: a["seq"])
    coverage = access_coverage(store)
    # rows named by primary key only: unattributed when a key was never linked to a person
    by_key = accesses_with_unlinked_keys(
        store,
        [
            a
            for a, (_, how) in coverage.items()
            if how.endswith(KEYS_SUFFIX) and a not in access_ids and a in audit.by_id
        ],
    )
    unattributed = []
    for access_id, (tables, how) in coverage.items():
        entry = audit.by_id.get(access_id)
        if (
            (how == "none" or access_id in by_key)
            and entry is not None
            and access_id not in access_ids
        ):
            unattributed.append(
                {
                    "seq": entry.seq,
                    "when": entry.ts,
                    "principal": entry.principal,
                    "pipeline": entry.pipeline,
                    "task": entry.task,
                    "run_id": entry.run_id,
                    "purpose": entry.purpose,
                    "tables": tables.split(","),
                    "statement": entry.details.get("normalized", ""),
                    "why": "primary key without subject key" if how != "none" else "no key",
                }
            )
    unattributed.sort(key=lambda a: a["seq"])
    subject_ref = sorted(d.hex() for d in digests)[0][:12]
    return {
        "report": "data-subject access (LGPD Art. 18 II and VII, Art. 19)",
        "subject_ref": subject_ref,
        "generated_at": datetime.now().astimezone().isoformat(timespec="seconds"),
        "store": store.url,
        "accesses": accesses,
        "tasks": sorted({(a["principal"]) for a in accesses}),
        "unattributed": unattributed,
        "note": (
            "Statements are listed when the subject trail recorded this person among the rows "
            "they returned or changed. 'Unattributed' statements read a table of data subjects "
            "without its subject key (aggregates, filters), or by primary keys never seen with "
            "their subject key, so whose rows they used is unknown."
        ),
    }


def _access(entry: AuditEntry, audit: _Audit) -> dict[str, Any]:
    statements = _statements(entry)
    outcome = audit.outcomes.get(entry.record_id)
    kinds = sorted({str(s.get("kind")) for s in statements})
    return {
        "seq": entry.seq,
        "when": entry.ts,
        "orchestrator": entry.orchestrator,
        "pipeline": entry.pipeline,
        "task": entry.task,
        "run_id": entry.run_id,
        "attempt": entry.attempt,
        "principal": entry.principal,
        "scope": entry.scope,
        "purpose": entry.purpose,
        "legal_basis": entry.legal_basis,
        "action": "changed"
        if any(k in {"insert", "update", "delete", "merge"} for k in kinds)
        else "read",
        "statement_kinds": kinds,
        "statement": entry.details.get("normalized", ""),
        "columns_read": _columns(statements, "columns_read"),
        "columns_written": _columns(statements, "columns_written"),
        "rows": None if outcome is None else outcome.details.get("rows"),
        "status": "incomplete" if outcome is None else outcome.details.get("status"),
        "masked_on_the_way_out": sorted((outcome.details.get("masked") or {}) if outcome else {}),
        "went_next": _downstream(entry, audit),
    }


def _downstream(access: AuditEntry, audit: _Audit) -> list[dict[str, Any]]:
    """Where data went after the access, in the same run: masking lineage and later writes."""
    found: list[dict[str, Any]] = []
    seen: set[tuple[str, str, str]] = set()
    for entry in audit.by_run.get((access.pipeline, access.run_id), []):
        if entry.seq <= access.seq:
            continue
        same_task = entry.task == access.task
        relation = "same task" if same_task else "later task in the same run"
        if entry.kind == "masking":
            # scrubbed again: records written before record_masking scrubbed them
            destination = scrub_text(str(entry.details.get("destination", "")))
            item = ("masking", entry.principal, destination)
            if destination and item not in seen:
                seen.add(item)
                found.append(
                    {
                        "kind": "masked output",
                        "task": entry.principal,
                        "destination": destination,
                        "source": scrub_text(str(entry.details.get("source", ""))),
                        "relation": relation,
                        "masked": sorted(
                            c.get("column", "")
                            for c in (entry.details.get("report") or {}).get("columns", [])
                        ),
                    }
                )
        elif entry.kind == "statement" and entry.details.get("event") == "intent":
            for statement in _statements(entry):
                for table in statement.get("tables_written") or []:
                    item = ("table", entry.principal, str(table))
                    if item not in seen:
                        seen.add(item)
                        found.append(
                            {
                                "kind": "table written",
                                "task": entry.principal,
                                "destination": str(table),
                                "relation": relation,
                            }
                        )
    return found


def render_subject(report: Mapping[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n"
    accesses = report["accesses"]
    lines = [
        "# Data-subject report",
        "",
        f"Subject reference `{report['subject_ref']}` (a keyed digest; the identifier itself "
        "is not kept). ",
        f"Generated {report['generated_at']} from the audit {report['store']}.",
        "",
        f"{len(accesses)} statements in {len(report['tasks'])} tasks read or changed this "
        "person's data.",
        "",
    ]
    for a in accesses:
        lines += [
            f"## {a['when'][:19].replace('T', ' ')} — {a['pipeline']} / {a['task']} ({a['action']})",
            "",
            f"- run `{a['run_id']}`, attempt {a['attempt']}, {a['orchestrator']}",
            f"- purpose **{a['purpose']}**, legal basis **{a['legal_basis']}**, scope `{a['scope']}`",
            f"- columns read: {_cols(a['columns_read'])}",
            f"- columns written: {_cols(a['columns_written'])}",
            f"- statement: `{a['statement']}` ({a['status']}, {a['rows']} rows)",
        ]
        if a["masked_on_the_way_out"]:
            lines.append(
                f"- masked before leaving the task: {', '.join(a['masked_on_the_way_out'])}"
            )
        if a["went_next"]:
            lines.append("- went next:")
            for d in a["went_next"]:
                lines.append(
                    f"  - {d['kind']} `{d['destination']}` by {d['task']} ({d['relation']})"
                )
        lines.append("")
    if report["unattributed"]:
        lines += ["## Unattributed statements over tables of data subjects", ""]
        for u in report["unattributed"]:
            lines.append(
                f"- {u['when'][:19].replace('T', ' ')} {u['principal']} run `{u['run_id']}`: "
                f"{', '.join(u['tables'])} — `{u['statement']}` ({u['why']})"
            )
        lines.append("")
    lines += [str(report["note"]), ""]
    text = "\n".join(lines)
    if fmt == "md":
        return text
    return _html_page("Data-subject report", _md_to_html(text))


def _cols(columns: Mapping[str, Sequence[str]]) -> str:
    if not columns:
        return "none"
    return "; ".join(f"{t} ({', '.join(c)})" for t, c in columns.items())


# -- the record of processing operations ------------------------------------------------------


def ropa_report(
    store: AuditStore,
    policy: Policy,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """Art. 37: per purpose, what the policy declares and what the audit shows was done."""
    audit = _Audit.load(store)
    # records carry UTC times: compare in UTC (``-03:00`` is three hours later), as purge does
    lo = isotime(since) if since else None
    hi = isotime(until) if until else None
    entries = [e for e in audit.entries if (lo is None or e.ts >= lo) and (hi is None or e.ts < hi)]
    keys = subject_keys(policy)
    subject_categories = {k.category for k in keys.values() if k.category}
    purposes: dict[str, dict[str, Any]] = {}
    for name, purpose in policy.purposes.items():
        scopes = [s for s in policy.scopes.values() if s.purpose.name == name]
        purposes[name] = {
            "purpose": name,
            "description": purpose.description,
            "legal_basis": purpose.legal_basis,
            "retention": format_duration(purpose.retention),
            "data_subjects": sorted(set(purpose.data_subjects) | subject_categories)
            if purpose.data_subjects
            else sorted(subject_categories),
            "personal_data": set(),
            "sources": set(),
            "destinations": set(),
            "recipients": set(),
            "granted_sources": sorted({t for s in scopes for t in s.read}),
            "scopes": sorted(s.name for s in scopes),
            "measures": Counter(),
            "counts": Counter(),
            "tasks": set(),
            "runs": set(),
        }
    masked_names = {c.lower() for c in policy.masking.columns}
    edges: set[tuple[str, str, str]] = set()
    for entry in entries:
        slot = purposes.get(entry.purpose or "")
        if slot is None:
            continue
        task = f"{entry.pipeline}.{entry.task}"
        if entry.kind == "statement":
            refused = entry.details.get("event") == "refused"
            slot["counts"]["statements"] += 1
            if refused:
                slot["measures"][
                    "blocked statements" if entry.decision == "block" else "refused statements"
                ] += 1
                continue
            slot["tasks"].add(task)
            slot["runs"].add((entry.pipeline, entry.run_id))
            slot["recipients"].add(entry.principal)
            slot["measures"]["statements checked by the guard"] += 1
            if entry.details.get("role"):
                slot["measures"]["statements on a scoped database role"] += 1
            if entry.decision == "approved":
                slot["measures"]["statements run after a person's approval"] += 1
            for statement in _statements(entry):
                for table in statement.get("tables_read") or []:
                    slot["sources"].add(table)
                    edges.add(("read", str(table), task))
                for table in statement.get("tables_written") or []:
                    slot["destinations"].add(f"table {table}")
                    edges.add(("write", task, f"table {table}"))
                for cols in (statement.get("columns_read") or {}).values():
                    slot["personal_data"].update(c for c in cols if c.lower() in masked_names)
            outcome = audit.outcomes.get(entry.record_id)
            if outcome is not None:
                rows = int(outcome.details.get("rows") or 0)
                slot["counts"]["rows read or changed"] += rows
                for info in (outcome.details.get("masked") or {}).values():
                    slot["personal_data"].add(str(info.get("pii_type")))
                    slot["measures"]["cells masked in results"] += int(info.get("cells") or 0)
        elif entry.kind == "masking":
            slot["measures"]["masking steps between tasks"] += 1
            destination = scrub_text(str(entry.details.get("destination", "")))
            if destination:
                slot["destinations"].add(destination)
                edges.add(("write", task, destination))
            for col in (entry.details.get("report") or {}).get("columns", []):
                if col.get("detected_type"):
                    slot["personal_data"].add(str(col["detected_type"]))
        elif entry.kind == "approval":
            slot["measures"][f"approval {entry.details.get('event', 'event')}"] += 1
    result = []
    for slot in purposes.values():
        counts = slot["counts"]
        counts["tasks"] = len(slot["tasks"])
        counts["runs"] = len(slot["runs"])
        result.append(
            {
                **{k: slot[k] for k in ("purpose", "description", "legal_basis", "retention")},
                "data_subjects": slot["data_subjects"],
                "personal_data": sorted(p for p in slot["personal_data"] if p and p != "None"),
                "sources": sorted(slot["sources"]),
                "granted_sources": slot["granted_sources"],
                "recipients": sorted(slot["recipients"]),
                "destinations": sorted(slot["destinations"]),
                "scopes": slot["scopes"],
                "security_measures": dict(sorted(slot["measures"].items())),
                "counts": dict(sorted(counts.items())),
            }
        )
    return {
        "report": "record of processing operations (LGPD Art. 37)",
        "policy": policy.source,
        "store": store.url,
        "period": {"since": lo, "until": hi},
        "generated_at": datetime.now().astimezone().isoformat(timespec="seconds"),
        "purposes": result,
        "lineage": sorted([list(e) for e in edges]),
    }


ROPA_CSV_COLUMNS = (
    "purpose",
    "description",
    "legal_basis",
    "retention",
    "data_subjects",
    "personal_data",
    "sources",
    "recipients",
    "destinations",
    "security_measures",
    "counts",
)


def render_ropa(report: Mapping[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(ROPA_CSV_COLUMNS)
        for p in report["purposes"]:
            writer.writerow([_flat(p[c]) for c in ROPA_CSV_COLUMNS])
        return out.getvalue()
    period = report["period"]
    lines = [
        "# Record of processing operations (LGPD Art. 37)",
        "",
        f"Policy {report['policy']}; audit {report['store']}; period "
        f"{period['since'] or 'start'} to {period['until'] or 'now'}.",
        "",
    ]
    for p in report["purposes"]:
        lines += [
            f"## {p['purpose']}",
            "",
            f"{p['description']}".strip() or "(no description)",
            "",
            f"- legal basis: **{p['legal_basis']}**; retention: {p['retention']}",
            f"- categories of data subjects: {_flat(p['data_subjects']) or 'not declared'}",
            f"- categories of personal data: {_flat(p['personal_data']) or 'none seen'}",
            f"- sources: {_flat(p['sources']) or 'none in the period'}",
            f"- recipients (tasks): {_flat(p['recipients']) or 'none'}",
            f"- destinations: {_flat(p['destinations']) or 'none'}",
            f"- security measures applied: {_flat(p['security_measures']) or 'none recorded'}",
            f"- counts: {_flat(p['counts'])}",
            "",
        ]
    text = "\n".join(lines)
    if fmt == "md":
        return text
    svg = lineage_svg(report["lineage"])
    return _html_page(
        "Record of processing operations",
        _md_to_html(text) + "<h2>Lineage</h2>\n" + svg,
    )


def _flat(value: Any) -> str:
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {v}" for k, v in value.items())
    if isinstance(value, list | tuple | set):
        return ", ".join(str(v) for v in value)
    return str(value)


# -- HTML and the lineage diagram -----------------------------------------------------------


def lineage_svg(edges: Sequence[Sequence[str]]) -> str:
    """Tables -> tasks -> destinations in three columns, as a self-contained inline SVG.

    >>> svg = lineage_svg([["read", "crm.customers", "dag.extract"],
    ...                    ["write", "dag.extract", "s3://reports/x"]])
    >>> svg.startswith("<svg") and "crm.customers" in svg and svg.count("<path") == 2
    True
    """
    sources = sorted({e[1] for e in edges if e[0] == "read"})
    tasks = sorted(
        {e[2] for e in edges if e[0] == "read"} | {e[1] for e in edges if e[0] == "write"}
    )
    sinks = sorted({e[2] for e in edges if e[0] == "write"})
    box_w, box_h, gap, col_gap, pad = 240, 28, 14, 90, 20
    columns = [sources, tasks, sinks]
    xs = [pad + i * (box_w + col_gap) for i in range(3)]
    height = pad * 2 + 24 + max(1, *(len(c) for c in columns)) * (box_h + gap)
    width = pad * 2 + 3 * box_w + 2 * col_gap
    where: dict[tuple[int, str], tuple[int, int]] = {}
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="lineage: tables, tasks, destinations" '
        'font-family="sans-serif" font-size="12">'
    ]
    for i, title in enumerate(("sources (tables)", "tasks", "destinations")):
        parts.append(f'<text x="{xs[i]}" y="{pad + 10}" font-weight="bold">{title}</text>')
    fills = ("#e8f0fe", "#fef7e0", "#e6f4ea")
    for i, column in enumerate(columns):
        for j, name in enumerate(column):
            x, y = xs[i], pad + 24 + j * (box_h + gap)
            where[(i, name)] = (x, y)
            label = name if len(name) <= 36 else name[:17] + "…" + name[-18:]
            parts.append(
                f'<rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" rx="4" '
                f'fill="{fills[i]}" stroke="#5f6368"/>'
                f'<text x="{x + 8}" y="{y + 18}"><title>{html.escape(name)}</title>'
                f"{html.escape(label)}</text>"
            )
    for kind, a, b in (tuple(e) for e in edges):
        left, right = ((0, a), (1, b)) if kind == "read" else ((1, a), (2, b))
        if left not in where or right not in where:
            continue
        (x1, y1), (x2, y2) = where[left], where[right]
        x1, y1, y2 = x1 + box_w, y1 + box_h // 2, y2 + box_h // 2
        mid = (x1 + x2) // 2
        parts.append(
            f'<path d="M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}" fill="none" '
            'stroke="#1a73e8" stroke-width="1.5"/>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _md_to_html(text: str) -> str:
    """The small Markdown subset the reports write (headings, bullets, bold, code)."""
    import re

    out: list[str] = []
    in_list = 0
    for raw in text.splitlines():
        line = html.escape(raw)
        line = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", line)
        line = re.sub(r"`(.+?)`", r"<code>\1</code>", line)
        depth = 2 if raw.startswith("  - ") else 1 if raw.startswith("- ") else 0
        while in_list > depth:
            out.append("</ul>")
            in_list -= 1
        while in_list < depth:
            out.append("<ul>")
            in_list += 1
        if depth:
            out.append(f"<li>{line.lstrip()[2:]}</li>")
        elif raw.startswith("## "):
            out.append(f"<h2>{line[3:]}</h2>")
        elif raw.startswith("# "):
            out.append(f"<h1>{line[2:]}</h1>")
        elif raw.strip():
            out.append(f"<p>{line}</p>")
    out.extend("</ul>" for _ in range(in_list))
    return "\n".join(out)


def _html_page(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="pt-BR"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto;line-height:1.4}"
        "code{background:#f1f3f4;padding:0 .2em}</style></head><body>\n"
        f"{body}\n</body></html>\n"
    )
