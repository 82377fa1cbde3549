"""DuckDB error text -> the error PostgreSQL would give, in our words; and the final wording guard.

The czar (describe, merge) and the workers all run DuckDB, whose messages name its own types
(``DOUBLE``, ``INTEGER_LITERAL``), its error kinds (``Binder Error:``), its candidate lists and
a ``LINE 1:`` excerpt of SQL the user never wrote. :func:`translate` is the one place that turns
them into a typed :class:`~qserv.errors.QservError` with PostgreSQL's SQLSTATE and wording:

    Binder Error: No function matches ... '<<(DOUBLE, INTEGER_LITERAL)'
        -> 42883 operator does not exist: double precision << integer
    Conversion Error: Could not convert string 'abc' to INT32
        -> 22P02 invalid input syntax for type integer: "abc"

The error's ``construct`` is the SQL DuckDB pointed at (its caret excerpt), so a caller holding
the user's query tree can place the error (czar/analyze/output.py). :func:`scrub` is the last step before a
client sees any error: text still carrying internal wording (:data:`LEAK`) is replaced by a
generic message and the original is logged.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from qserv.errors import InternalError, QservError, from_sqlstate

log = logging.getLogger(__name__)

# Wording that must never reach a client: parser classes, another engine's words, our own
# internal names (merge table, generated aliases).
LEAK = re.compile(
    r"Binder Error|Catalog Error|Conversion Error|Parser Error|Invalid Input Error|Out of Range Error"
    r"|[A-Z][a-z]+ Error:|Candidate (?:functions|macros|bindings|tables)|LINE \d+:|<class|sqlglot|duckdb"
    r"|_q_|__result|__QSERV|Required keyword|_LITERAL\b|Traceback",
    re.I,
)

_PG_TYPES = {
    "DOUBLE": "double precision",
    "FLOAT8": "double precision",
    "FLOAT": "real",
    "FLOAT4": "real",
    "REAL": "real",
    "INTEGER_LITERAL": "integer",
    "INTEGER": "integer",
    "INT32": "integer",
    "INT": "integer",
    "BIGINT": "bigint",
    "INT64": "bigint",
    "SMALLINT": "smallint",
    "INT16": "smallint",
    "TINYINT": "smallint",
    "INT8": "smallint",
    "HUGEINT": "numeric",
    "INT128": "numeric",
    "UHUGEINT": "numeric",
    "UBIGINT": "numeric",
    "UINTEGER": "bigint",
    "USMALLINT": "integer",
    "UTINYINT": "smallint",
    "DECIMAL": "numeric",
    "VARCHAR": "text",
    "STRING_LITERAL": "unknown",
    "BOOLEAN": "boolean",
    "BOOL": "boolean",
    "DATE": "date",
    "TIME": "time without time zone",
    "TIMESTAMP": "timestamp without time zone",
    "TIMESTAMP WITH TIME ZONE": "timestamp with time zone",
    "INTERVAL": "interval",
    "BLOB": "bytea",
    "UUID": "uuid",
    "NULL": "unknown",
    '"NULL"': "unknown",
}
_TYPE_WORD = re.compile(r"\b(" + "|".join(sorted(map(re.escape, _PG_TYPES), key=len, reverse=True)) + r")\b")
_ADD_CASTS = "You might need to add explicit type casts."


def pg_type(duck: str) -> str:
    """PostgreSQL's name of a DuckDB type (``DOUBLE`` -> ``double precision``; lists keep ``[]``)."""
    text = duck.strip()
    suffix = ""
    while text.endswith("[]"):
        text, suffix = text[:-2], suffix + "[]"
    base = re.sub(r"\(.*\)$", "", text).strip().upper()  # DECIMAL(3,2) -> numeric
    if base in ("TUPLE", "STRUCT", "ROW"):
        return "record" + suffix
    return _PG_TYPES.get(base, text.lower()) + suffix


def _pg_types_in(text: str) -> str:
    return _TYPE_WORD.sub(lambda m: _PG_TYPES[m.group(1)], text)


def _split_args(args: str) -> list[str]:
    """Top-level comma-separated parts (``DECIMAL(3,2), INTEGER`` is two)."""
    parts, depth, current = [], 0, ""
    for ch in args:
        depth += 1 if ch in "([" else -1 if ch in ")]" else 0
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    if current.strip():
        parts.append(current)
    return [p.strip() for p in parts]


def _signature(call: str) -> tuple[str, list[str]]:
    """(name, PostgreSQL argument types) of DuckDB's ``name(T1, T2)`` rendering."""
    match = re.match(r"\s*(.*?)\((.*)\)\s*$", call, re.S)
    if not match:
        return call.strip(), []
    return match.group(1).strip().strip('"'), [pg_type(a) for a in _split_args(match.group(2))]


def _is_operator(name: str) -> bool:
    return bool(name) and not re.match(r"[A-Za-z_]", name)


def _call_text(name: str, types: list[str], *, unique: bool) -> tuple[str, str]:
    """(message, hint) for a call with no (unique) match, as PostgreSQL words it."""
    if _is_operator(name):
        operands = f"{types[0]} {name} {types[1]}" if len(types) == 2 else f"{name} {', '.join(types)}"
        if unique:
            return (
                f"operator does not exist: {operands}",
                f"No operator matches the given name and argument types. {_ADD_CASTS}",
            )
        return (
            f"operator is not unique: {operands}",
            f"Could not choose a best candidate operator. {_ADD_CASTS}",
        )
    call = f"{name.lower()}({', '.join(types)})"
    if unique:
        return (
            f"function {call} does not exist",
            f"No function matches the given name and argument types. {_ADD_CASTS}",
        )
    return f"function {call} is not unique", f"Could not choose a best candidate function. {_ADD_CASTS}"


def _out_of_range(duck_type: str) -> str:
    pg = pg_type(duck_type)
    if pg in ("double precision", "real"):
        return "value out of range: overflow"
    return f"{pg} out of range"


def _rules() -> list[tuple[re.Pattern[str], str, Callable[[re.Match[str]], tuple[str, str | None]]]]:
    """(pattern on DuckDB's message, SQLSTATE, builder of PostgreSQL's (message, hint))."""

    def r(pattern: str) -> re.Pattern[str]:
        return re.compile(pattern, re.I | re.S)

    return [
        (r(r"No function matches the given name and argument types '(.*?)'(?:\.|\s*$|\n)"), "42883",
         lambda m: _call_text(*_signature(m.group(1)), unique=True)),
        (r(r'Could not choose a best candidate function for the function call "(.*?)"'), "42725",
         lambda m: _call_text(*_signature(m.group(1)), unique=False)),
        (r(r'(?:Scalar|Aggregate|Table|Macro) Function with name (?:"([^"]+)"|(\S+?)) does not exist'), "42883",
         lambda m: (f"function {(m.group(1) or m.group(2)).lower()} does not exist", None)),
        (r(r"Macro \"?(\w+)\"?\(\) does not support the supplied arguments.*?Candidate macros:\s*(\S[^\n]*)"),
         "42883",
         lambda m: (f"function {m.group(1)} does not accept these arguments", f"call it as {m.group(2).strip()}")),
        (r(r"Macro \"?(\w+)\"?\(\) does not support the supplied arguments"), "42883",
         lambda m: (f"function {m.group(1)} does not accept these arguments", None)),
        (r(r'column "([^"]+)" must appear in the GROUP BY clause or (?:must be part of|be used in) an aggregate'),
         "42803",
         lambda m: (f'column "{m.group(1)}" must appear in the GROUP BY clause or be used in an aggregate function',
                    None)),
        (r(r"Cannot mix aggregates with non-aggregated columns"), "42803",
         lambda m: ("every selected column must appear in the GROUP BY clause or be used in an aggregate function",
                    None)),
        (r(r"(WHERE|GROUP BY|HAVING|JOIN) clause cannot contain aggregates"), "42803",
         lambda m: (f"aggregate functions are not allowed in {m.group(1).upper()}", None)),
        (r(r"aggregate function calls cannot be nested"), "42803",
         lambda m: ("aggregate function calls cannot be nested", None)),
        (r(r"(?:ORDER|GROUP BY) term out of range - should be between 1 and (\d+)"), "42P10",
         lambda m: (f"{'ORDER' if m.group(0).upper().startswith('ORDER') else 'GROUP'} BY position is not in select "
                    "list", f"the select list has {m.group(1)} column{'s' if m.group(1) != '1' else ''}")),
        (r(r'Referenced column "([^"]+)" (?:not found|was not found)'), "42703",
         lambda m: (f'column "{m.group(1)}" does not exist', None)),
        (r(r'Table "([^"]+)" does not have a column named "([^"]+)"'), "42703",
         lambda m: (f"column {m.group(1)}.{m.group(2)} does not exist", None)),
        (r(r'Referenced table "([^"]+)" not found'), "42P01",
         lambda m: (f'missing FROM-clause entry for table "{m.group(1)}"', None)),
        (r(r'Table with name (?:"([^"]+)"|(\S+?)) does not exist'), "42P01",
         lambda m: (f'relation "{m.group(1) or m.group(2)}" does not exist', None)),
        (r(r'Ambiguous reference to column name "([^"]+)"'), "42702",
         lambda m: (f'column reference "{m.group(1)}" is ambiguous', None)),
        (r(r"Cannot compare values of type (.+?) and (?:type )?(.+?)(?: in [^-]*)? - an explicit cast is required"),
         "42883",
         lambda m: (f"cannot compare values of type {pg_type(m.group(1))} and {pg_type(m.group(2))}",
                    _ADD_CASTS)),
        (r(r"Cannot mix values of type (\S+) and (\S+) in (\w+)"), "42804",
         lambda m: (f"{m.group(3).upper()} types {pg_type(m.group(1))} and {pg_type(m.group(2))} cannot be "
                    "matched", _ADD_CASTS)),
        (r(r"Could not convert string '((?:[^']|'')*)' to (\w+)"), "22P02",
         lambda m: (f'invalid input syntax for type {pg_type(m.group(2))}: "{m.group(1)}"', None)),
        (r(r"Type \S+ with value .* can't be cast because the value is out of range for the destination type (\w+)"),
         "22003", lambda m: (_out_of_range(m.group(1)), None)),
        (r(r"Overflow in \w+ of (\w+)"), "22003", lambda m: (_out_of_range(m.group(1)), None)),
        (r(r"Failed to cast (?:decimal )?value \S+ to type (\w+)"), "22003",
         lambda m: (_out_of_range(m.group(1)), None)),
        (r(r"Unimplemented type for cast \((.+) -> ([^()]+(?:\([^()]*\))?)\)"), "42846",
         lambda m: (f"cannot cast type {pg_type(m.group(1))} to {pg_type(m.group(2))}", None)),
        (r(r"ORDER BY non-integer literal has no effect"), "42601",
         lambda m: ("non-integer constant in ORDER BY", None)),
        (r(r'Type with name (?:"([^"]+)"|(\S+?)) does not exist'), "42704",
         lambda m: (f'type "{(m.group(1) or m.group(2)).lower()}" does not exist', None)),
        (r(r"Division by zero"), "22012", lambda m: ("division by zero", None)),
        (r(r"LIMIT/OFFSET cannot be negative"), "2201W", lambda m: ("LIMIT must not be negative", None)),
        (r(r"Values were not provided for the following parameters: (\d+)"), "42P02",
         lambda m: (f"there is no parameter ${m.group(1)}", None)),
        (r(r"unterminated string literal"), "42601", lambda m: ("unterminated quoted string", None)),
        (r(r"unterminated quoted identifier"), "42601", lambda m: ("unterminated quoted identifier", None)),
        (r(r"(syntax error at (?:or near \"[^\"]*\"|end of input))"), "42601", lambda m: (m.group(1), None)),
        (r(r"SELECT clause without selection list"), "0A000",
         lambda m: ("a SELECT without a select list is not supported: select at least one column", None)),
    ]  # fmt: skip


_RULES = _rules()
_KIND = re.compile(r"^\s*([A-Za-z ]+?) Error: ")
# the SQLSTATE of an error kind whose message no rule knows
_KIND_STATES = {
    "parser": "42601",
    "binder": "42804",
    "catalog": "42P01",
    "conversion": "22P02",
    "out of range": "22003",
    "invalid input": "22023",
    "constraint": "23000",
    "out of memory": "53200",
    "not implemented": "0A000",
    "interrupt": "57014",
    "permission": "42501",
}
_GENERIC = {
    "42601": "syntax error",
    "42": "the query cannot be evaluated as written",
    "22": "invalid data value in the query",
    "0A": "feature not supported",
    "53": "insufficient resources to run the query",
    "57": "the query was cancelled",
}


def caret(text: str) -> str | None:
    """The SQL DuckDB pointed at under its ``LINE n:`` excerpt (its ``^^^`` underline), if any."""
    match = re.search(r"LINE \d+: (.*)\n( *)(\^+)", text)
    if not match:
        return None
    start = len(match.group(2)) - len(text[match.start() : match.start(1)])
    snippet = match.group(1)[max(0, start) : max(0, start) + len(match.group(3))]
    return snippet.strip() or None


def kind(text: str) -> str:
    """DuckDB's error kind, lower-cased (``binder``), or '' when the text has none."""
    match = _KIND.match(text)
    return match.group(1).lower() if match else ""


def translate(text: str) -> QservError:
    """The typed error PostgreSQL would raise for DuckDB error ``text`` (see the module doc)."""
    text = text.strip()
    body = _KIND.sub("", text, count=1)
    construct = caret(text)
    message: str | None = None
    hint: str | None = None
    sqlstate = ""
    for pattern, state, build in _RULES:
        match = pattern.search(body)
        if match:
            message, hint = build(match)
            sqlstate = state
            break
    if message is None and not kind(text):
        # not DuckDB's (no "... Error:" prefix): an internal error, told by its incident id
        internal = InternalError()
        log.error("untranslated engine error, incident %s: %s", internal.incident, text)
        return internal
    if message is None:
        sqlstate = _KIND_STATES.get(kind(text), "42000")
        first = re.split(r"\n|\. (?=[A-Z])", body, maxsplit=1)[0].strip().rstrip("!.")
        first = re.sub(r" when casting from source column .*", "", first)  # an internal name
        message = _pg_types_in(first)
        if message[1:2].islower():  # "Could not ..." -> "could not ...", not "oRDER BY"
            message = message[:1].lower() + message[1:]
    if sqlstate == "42P10" and construct and construct.isdigit():  # ORDER BY 9: name the position
        message = message.replace("BY position", f"BY position {construct}")
    err = from_sqlstate(sqlstate, message, hint=hint)
    err.construct = construct
    return scrub(err, original=text)


def _generic(sqlstate: str) -> str:
    return _GENERIC.get(sqlstate) or _GENERIC.get(sqlstate[:2]) or "the query failed"


def scrub(err: QservError, original: str | None = None) -> QservError:
    """``err``, or in place of text that leaks internals, a generic message (the original logged)."""
    fields = (err.message, err.detail or "", err.hint or "")
    if not any(LEAK.search(f) for f in fields):
        return err
    log.warning("internal wording replaced in a client error (%s): %s", err.sqlstate, original or fields)
    message = err.message if not LEAK.search(err.message) else _generic(err.sqlstate)
    if err.construct and not LEAK.search(err.construct) and message == _generic(err.sqlstate):
        message = f'{message} at or near "{err.construct}"'
    clean = from_sqlstate(
        err.sqlstate,
        message,
        detail=None if err.detail is None or LEAK.search(err.detail) else err.detail,
        hint=None if err.hint is None or LEAK.search(err.hint) else err.hint,
        position=err.position,
    )
    clean.construct = err.construct
    return clean
