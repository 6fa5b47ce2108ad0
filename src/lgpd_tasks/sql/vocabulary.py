"""Statement kinds and function names the guard rules classify."""

from __future__ import annotations

#: Statements that read or change data; the scope rules judge them.
DATA_KINDS = frozenset({"select", "insert", "update", "delete", "merge", "copy"})
#: Transaction control touches no data and is allowed.
TRANSACTION_KINDS = frozenset({"begin", "commit", "rollback"})
DDL_KINDS = frozenset(
    {"create", "drop", "alter", "truncate", "comment", "refresh", "reindex", "cluster"}
)
DCL_KINDS = frozenset({"grant", "revoke"})
SESSION_KINDS = frozenset({"set", "reset", "discard", "use", "pragma", "show"})
PROCEDURAL_KINDS = frozenset({"do", "call", "prepare", "execute", "deallocate"})
ADMIN_KINDS = frozenset(
    {
        "lock",
        "vacuum",
        "alter system",
        "load",
        "checkpoint",
        "listen",
        "notify",
        "unlisten",
        "analyze",
        "describe",
    }
)
#: Every kind some rule knows; anything else is refused by the ``unparsable`` rule.
KNOWN_KINDS = (
    DATA_KINDS
    | TRANSACTION_KINDS
    | DDL_KINDS
    | DCL_KINDS
    | SESSION_KINDS
    | PROCEDURAL_KINDS
    | ADMIN_KINDS
)

#: Functions that change session settings (the ``session`` rule blocks them).
SESSION_FUNCTIONS = frozenset({"set_config"})

#: Functions with side effects, or file, network, process or server-control access.
SIDE_EFFECT_FUNCTIONS = frozenset(
    {
        "pg_read_file",
        "pg_read_binary_file",
        "pg_stat_file",
        "pg_ls_dir",
        "pg_terminate_backend",
        "pg_cancel_backend",
        "pg_reload_conf",
        "pg_rotate_logfile",
        "pg_switch_wal",
        "pg_promote",
        "pg_notify",
        "pg_sleep",
        "pg_sleep_for",
        "pg_sleep_until",
        "pg_import_system_collations",
        "query_to_xml",
        "query_to_xml_and_xmlschema",
        "query_to_xmlschema",
        "cursor_to_xml",
        "cursor_to_xmlschema",
        "table_to_xml",
        "table_to_xml_and_xmlschema",
        "schema_to_xml",
        "schema_to_xml_and_xmlschema",
        "database_to_xml",
        "database_to_xml_and_xmlschema",
        # a sequence is state the scope does not grant; a column default needs no call
        "nextval",
        "setval",
        "txid_current",
        "load_extension",
        "readfile",
        "writefile",
        "edit",
        "fts3_tokenizer",
    }
)
#: Prefixes of families of such functions (``dblink_exec``, ``lo_export``, ``pg_ls_logdir``...).
SIDE_EFFECT_PREFIXES: tuple[str, ...] = (
    "dblink",
    "lo_",
    "pg_ls_",
    "pg_read_",
    "pg_file_",
    "pg_logdir_",
    "pg_advisory",
    "pg_try_advisory",
    "pg_backup_",
    "pg_start_backup",
    "pg_stop_backup",
    "pg_create_",
    "pg_drop_",
    "pg_replication_",
    "pg_logical_",
    "pg_copy_",
    "pg_wal_replay",
    "http",
    "plpython",
)


def is_side_effect_function(name: str) -> bool:
    """Whether calling ``name`` can change state or reach files, the network or processes.

    >>> is_side_effect_function("dblink_exec"), is_side_effect_function("upper")
    (True, False)
    """
    name = name.lower().rsplit(".", 1)[-1]
    return name in SIDE_EFFECT_FUNCTIONS or name.startswith(SIDE_EFFECT_PREFIXES)


#: Built-in functions sqlglot does not model but which only compute a value. Any other
#: function it does not know (user-defined ones included) is refused: it could do anything.
KNOWN_SAFE_FUNCTIONS = frozenset(
    {
        # PostgreSQL
        "age",
        "date_part",
        "make_date",
        "make_time",
        "make_timestamp",
        "make_timestamptz",
        "make_interval",
        "justify_days",
        "justify_hours",
        "justify_interval",
        "isfinite",
        "clock_timestamp",
        "statement_timestamp",
        "transaction_timestamp",
        "timeofday",
        "to_number",
        "btrim",
        "initcap",
        "quote_ident",
        "quote_literal",
        "quote_nullable",
        "format",
        "regexp_match",
        "regexp_matches",
        "regexp_split_to_array",
        "regexp_split_to_table",
        "string_to_table",
        "translate",
        "to_hex",
        "chr",
        "ascii",
        "octet_length",
        "bit_length",
        "sha224",
        "sha384",
        "encode",
        "decode",
        "digest",
        "width_bucket",
        "div",
        "cbrt",
        "gcd",
        "lcm",
        "factorial",
        "trim_scale",
        "scale",
        "array_length",
        "array_position",
        "array_positions",
        "array_remove",
        "array_replace",
        "array_cat",
        "array_append",
        "array_prepend",
        "array_dims",
        "array_ndims",
        "array_lower",
        "array_upper",
        "cardinality",
        "unnest",
        "jsonb_build_object",
        "json_build_object",
        "jsonb_build_array",
        "json_build_array",
        "jsonb_agg",
        "json_agg",
        "jsonb_object_agg",
        "json_object_agg",
        "jsonb_extract_path",
        "jsonb_extract_path_text",
        "json_extract_path",
        "json_extract_path_text",
        "jsonb_array_elements",
        "jsonb_array_elements_text",
        "json_array_elements",
        "json_array_elements_text",
        "jsonb_each",
        "jsonb_each_text",
        "jsonb_typeof",
        "jsonb_set",
        "jsonb_strip_nulls",
        "jsonb_pretty",
        "to_jsonb",
        "to_json",
        "row_to_json",
        "bool_and",
        "bool_or",
        "every",
        "mode",
        "percentile_cont",
        "percentile_disc",
        "nullif",
        "num_nulls",
        "num_nonnulls",
        "pg_typeof",
        "gen_random_uuid",
        "uuid_generate_v4",
        "currval",
        "lastval",
        "current_database",
        "current_schema",
        "current_user",
        "session_user",
        "version",
        "overlay",
        "strpos",
        "to_ascii",
        "unaccent",
        # SQLite
        "strftime",
        "julianday",
        "unixepoch",
        "printf",
        "instr",
        "ifnull",
        "iif",
        "likelihood",
        "likely",
        "unlikely",
        "total",
        "typeof",
        "zeroblob",
        "randomblob",
        "hex",
        "unhex",
        "quote",
        "glob",
        "soundex",
        "changes",
        "total_changes",
        "last_insert_rowid",
        "json",
        "json_array",
        "json_object",
        "json_extract",
        "json_type",
        "json_valid",
        "json_group_array",
        "json_group_object",
        "json_each",
        "json_tree",
    }
)
