"""Lexical view of SQL text: statement splitting and ``$n`` placeholders.

A small scanner that knows only what matters for finding ``;`` and ``$n`` *outside* literals:
single-quoted strings (``''`` escapes), ``E'...'`` strings (backslash escapes), double-quoted
identifiers, backtick identifiers (the czar dialect accepts MySQL forms), dollar-quoted strings
(``$tag$ ... $tag$``), ``--`` line comments and nested ``/* */`` comments. It never parses SQL:
the czar's parser does that, on text this module hands over unchanged except for placeholders.

Offsets are Python string indices (characters), as PostgreSQL's ErrorResponse position is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z_0-9]*)?\$")
_PARAM = re.compile(r"\$([0-9]+)")
_IDENT_CHAR = re.compile(r"[A-Za-z_0-9$]")
_FIRST_WORD = re.compile(r"[A-Za-z_]+")
# Characters that never begin a literal, comment, ``;`` or ``$n``: skipped in one regex step,
# so scanning a megabyte-long key list costs milliseconds, not a second on the event loop.
_PLAIN = re.compile(r"[^'\"`\-/;$]+")
# PostgreSQL's Bind carries at most 65535 values (an unsigned 16-bit count): a higher ``$n``
# can never be supplied.
MAX_PARAM_NUMBER = 65535


@dataclass(frozen=True)
class Token:
    """A lexical region: ``kind`` is one of code, string, ident, comment, semicolon, param."""

    kind: str
    start: int
    end: int


def scan(sql: str) -> Iterator[Token]:
    """Yield the regions of ``sql`` in order; code runs are split at semicolons and params."""
    i, n, code_start = 0, len(sql), 0

    def flush(upto: int) -> Iterator[Token]:
        if upto > code_start:
            yield Token("code", code_start, upto)

    while i < n:
        c = sql[i]
        end = -1
        kind = ""
        if c == "'":
            escapes = i > 0 and sql[i - 1] in "eE" and (i < 2 or not _IDENT_CHAR.match(sql[i - 2]))
            end, kind = _quoted_end(sql, i, "'", backslash=escapes), "string"
        elif c == '"' or c == "`":
            end, kind = _quoted_end(sql, i, c, backslash=False), "ident"
        elif c == "-" and sql.startswith("--", i):
            nl = sql.find("\n", i)
            end, kind = (n if nl < 0 else nl + 1), "comment"
        elif c == "/" and sql.startswith("/*", i):
            end, kind = _block_comment_end(sql, i), "comment"
        elif c == ";":
            end, kind = i + 1, "semicolon"
        elif c == "$" and (i == 0 or not _IDENT_CHAR.match(sql[i - 1])):
            param = _PARAM.match(sql, i)
            if param:
                end, kind = param.end(), "param"
            else:
                tag = _DOLLAR_TAG.match(sql, i)
                if tag:
                    close = sql.find(tag.group(0), tag.end())
                    end, kind = (n if close < 0 else close + len(tag.group(0))), "string"
        if kind:
            yield from flush(i)
            yield Token(kind, i, end)
            i = code_start = end
        else:
            plain = _PLAIN.match(sql, i + 1)
            i = plain.end() if plain else i + 1
    yield from flush(n)


def _quoted_end(sql: str, start: int, quote: str, *, backslash: bool) -> int:
    """Index just past the closing quote (doubled quotes escape); end of text if unterminated."""
    i, n = start + 1, len(sql)
    while i < n:
        c = sql[i]
        if backslash and c == "\\":
            i += 2
            continue
        if c == quote:
            if i + 1 < n and sql[i + 1] == quote:
                i += 2
                continue
            return i + 1
        i += 1
    return n


def _block_comment_end(sql: str, start: int) -> int:
    """Index just past a (possibly nested) ``/* */`` comment."""
    depth, i, n = 0, start, len(sql)
    while i < n:
        if sql.startswith("/*", i):
            depth += 1
            i += 2
        elif sql.startswith("*/", i):
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    return n


@dataclass(frozen=True)
class Statement:
    """One statement of a multi-statement string, with its offset in the original text."""

    sql: str
    offset: int


def iter_statements(sql: str) -> Iterator[Statement]:
    """The statements of ``sql`` one at a time (a 64 MiB Query of ``SELECT 1;`` is seven
    million of them: they are run as they are found, never all held at once)."""
    start, meaningful = 0, False
    for tok in scan(sql):
        if tok.kind == "semicolon":
            if meaningful:
                yield _trimmed(sql, start, tok.start)
            start, meaningful = tok.end, False
        elif tok.kind != "comment" and (tok.kind != "code" or sql[tok.start : tok.end].strip()):
            meaningful = True
    if meaningful:
        yield _trimmed(sql, start, len(sql))


def split_statements(sql: str) -> list[Statement]:
    """Split at top-level semicolons; statements that are only blanks/comments are dropped."""
    return list(iter_statements(sql))


def _trimmed(sql: str, start: int, end: int) -> Statement:
    text = sql[start:end]
    stripped = text.lstrip()
    return Statement(stripped.rstrip(), start + len(text) - len(stripped))


def first_keyword(sql: str) -> str:
    """The first word of the statement outside comments, upper-cased ("" if none)."""
    for tok in scan(sql):
        if tok.kind == "comment":
            continue
        if tok.kind != "code":
            return ""
        text = sql[tok.start : tok.end].lstrip().lstrip("(").lstrip()
        if not text:
            continue
        m = _FIRST_WORD.match(text)
        return m.group(0).upper() if m else ""
    return ""


HUGE_PARAM_NUMBER = 10**18


def param_number(digits: str) -> int:
    """The number of a ``$n`` from its digits, :data:`HUGE_PARAM_NUMBER` for 19 digits or more
    (a thousand-digit ``$n`` is not converted: Python refuses ints of over 4300 digits)."""
    stripped = digits.lstrip("0")
    return int(stripped or "0") if len(stripped) < 19 else HUGE_PARAM_NUMBER


def max_param_index(sql: str) -> int:
    """The largest ``$n`` used outside literals (0 when there is none)."""
    numbers = (param_number(sql[t.start + 1 : t.end]) for t in scan(sql) if t.kind == "param")
    return max(numbers, default=0)


@dataclass(frozen=True)
class Substituted:
    """SQL with placeholders replaced, and a map to turn its offsets back into the original's."""

    sql: str
    # (start in new text, length in new text, start in original, length in original)
    replacements: tuple[tuple[int, int, int, int], ...]

    def original_position(self, position: int) -> int:
        """Map a 1-based character position in ``sql`` back to the text the client sent."""
        shift = 0
        for new_start, new_len, old_start, old_len in self.replacements:
            if position - 1 < new_start:
                break
            if position - 1 < new_start + new_len:
                return old_start + 1  # inside a substituted literal: point at its ``$n``
            shift += new_len - old_len
        return position - shift


def substitute_params(sql: str, render: Callable[[int], str]) -> Substituted:
    """Replace each ``$n`` outside literals by ``render(n)`` (1-based ``n``)."""
    out: list[str] = []
    replacements: list[tuple[int, int, int, int]] = []
    pos = 0
    length = 0
    for tok in scan(sql):
        if tok.kind != "param":
            continue
        chunk = sql[pos : tok.start]
        out.append(chunk)
        length += len(chunk)
        literal = render(param_number(sql[tok.start + 1 : tok.end]))
        replacements.append((length, len(literal), tok.start, tok.end - tok.start))
        out.append(literal)
        length += len(literal)
        pos = tok.end
    out.append(sql[pos:])
    return Substituted("".join(out), tuple(replacements))
