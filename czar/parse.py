"""Stage 1: SQL text -> one sqlglot expression tree in the qserv dialect."""

from __future__ import annotations

import re
from typing import TypeVar

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import Token, TokenType

from czar.dialects.registry import dialect_named
from qserv.errors import AccessDenied, SyntaxError_, UndefinedParameter, Unsupported

SQL_META = "qserv_sql"  # meta key of the parsed tree's root: the SQL text it was parsed from
# meta key of an identifier written in double quotes in a dialect where they delimit names
# (PostgreSQL, ADQL 2.1 §2.1.3): it matches only a name of exactly its spelling (czar/analyze/
# resolve.py). Backticks (MySQL's quotes, also read in PostgreSQL sessions) and MySQL sessions
# keep MySQL's meaning: case-insensitive.
EXACT = "qserv_exact"


def is_exact(ident: exp.Expr | None) -> bool:
    """Whether ``ident`` is a delimited identifier that must match its spelling exactly."""
    return isinstance(ident, exp.Identifier) and bool(ident.meta.get(EXACT))


def offset_of(sql: str, line: int, col: int) -> int:
    """1-based character offset of sqlglot's (1-based line, column) in ``sql``."""
    lines = sql.split("\n")
    line = max(1, min(line, len(lines)))
    return sum(len(s) + 1 for s in lines[: line - 1]) + max(1, col)


def parse(sql: str, dialect: str = "postgresql") -> exp.Expr:
    """Parse exactly one statement in the session dialect ``dialect`` (czar/dialects/); syntax
    errors raise :class:`SyntaxError_` with a position.

    Messages are PostgreSQL's (``syntax error at or near "FROM"``, ``syntax error at end of
    input``, ``unterminated quoted string at or near "'abc"``), never sqlglot's descriptions.
    """
    chosen = dialect_named(dialect)
    if chosen.parse is not None:
        return chosen.parse(sql)
    assert chosen.sqlglot is not None  # a dialect has a parse function or a sqlglot class
    return parse_in(sql, chosen.sqlglot())


def parse_in(sql: str, dialect: Dialect) -> exp.Expr:
    """:func:`parse` with another sqlglot dialect (ADQL: czar/dialects/adql.py), same checks."""
    try:
        tokens = dialect.tokenize(sql)
        trees = dialect.parser().parse(tokens, sql)
    except ParseError as e:
        _refuse_statement(sql)
        raise _syntax_error(sql, e.errors[0] if e.errors else {}) from None
    except TokenError:
        _refuse_statement(sql)
        message, position = _unterminated(sql) or ("syntax error", None)
        raise SyntaxError_(message, position=position) from None
    _check_tokens(tokens)
    statements = [t for t in trees if t is not None]
    if not statements:
        words = [t for t in tokens if t.token_type is not TokenType.SEMICOLON]
        if words:  # sqlglot read nothing of it (ELSE x FROM t): PostgreSQL stops at the first word
            raise SyntaxError_(f'syntax error at or near "{words[0].text}"', position=words[0].start + 1)
        raise SyntaxError_("empty query: expected one SELECT statement")
    if len(statements) > 1:
        second = statements[1]
        raise SyntaxError_(
            "only one statement per query is accepted; remove the extra statement",
            position=node_position(second),
        )
    if not isinstance(statements[0], exp.Query):
        _refuse_statement(sql)  # name the statement by its first word, at its position
    _check_forms(sql, statements[0], dialect)
    statements[0].meta[SQL_META] = sql  # later passes place errors by it (an operator's position)
    return statements[0]


def _syntax_error(sql: str, first: dict[str, object]) -> SyntaxError_:
    """PostgreSQL's wording for one sqlglot parse error: the token it stopped at, or the end."""
    line, col, near = first.get("line"), first.get("col"), first.get("highlight")
    description = str(first.get("description") or "")
    at_end = not str(first.get("end_context") or "").strip() and not description.startswith(
        "Invalid expression"
    )
    if not isinstance(near, str) or not near.strip() or at_end:
        return SyntaxError_("syntax error at end of input", position=len(sql.rstrip()) + 1)
    position = None
    if isinstance(line, int) and isinstance(col, int):
        # sqlglot reports the column of the token's last character
        position = max(1, offset_of(sql, line, col) - len(near) + 1)
    return SyntaxError_(f'syntax error at or near "{near}"', position=position)


def _unterminated(sql: str) -> tuple[str, int] | None:
    """(message, position) of an unterminated quoted string, identifier or comment in ``sql``."""
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
            continue
        if sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            if end < 0:
                return f'unterminated /* comment at or near "{sql[i : i + 20]}"', i + 1
            i = end + 2
            continue
        if ch in "'\"`":
            j = i + 1
            while True:
                j = sql.find(ch, j)
                if j < 0:
                    what = "quoted string" if ch == "'" else "quoted identifier"
                    return f'unterminated {what} at or near "{sql[i : i + 20]}"', i + 1
                if sql.startswith(ch * 2, j):  # a doubled quote is the quote itself
                    j += 2
                    continue
                break
            i = j + 1
            continue
        i += 1
    return None


_NUMBER = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|0[xX][0-9a-fA-F_]+|\d[\d_]*")
_NAME_ENDS = frozenset({TokenType.VAR, TokenType.IDENTIFIER, TokenType.R_PAREN, TokenType.R_BRACKET})
_NO_COMMA_AFTER = frozenset({TokenType.COMMA, TokenType.L_PAREN, TokenType.SELECT, TokenType.DISTINCT})


def _check_tokens(tokens: list[Token]) -> None:
    """Refuse the empty list items sqlglot skips (``a,, b``, ``f(a,)``, ``SELECT, a``) and the
    numbers it runs together (``.199.3``, ``1e5.3``: PostgreSQL stops at the second part)."""
    for i, token in enumerate(tokens):
        if token.token_type is not TokenType.NUMBER:
            continue
        text, start = token.text, token.start
        before = tokens[i - 1] if i else None
        leading_dot = before is not None and before.token_type is TokenType.DOT
        if leading_dot and (i < 2 or tokens[i - 2].token_type not in _NAME_ENDS):
            assert before is not None
            if before.end + 1 != start:  # "- . 5": a dot on its own
                raise SyntaxError_('syntax error at or near "."', position=before.start + 1)
            text, start = "." + text, before.start  # .199.3: the number ".199", then ".3"
        cut = _NUMBER.match(text)
        if cut is not None and cut.end() < len(text):
            raise SyntaxError_(
                f'syntax error at or near "{text[cut.end() :]}"', position=start + cut.end() + 1
            )
    for before, token in zip(tokens, tokens[1:], strict=False):
        if (token.token_type is TokenType.COMMA and before.token_type in _NO_COMMA_AFTER) or (
            token.token_type is TokenType.R_PAREN and before.token_type is TokenType.COMMA
        ):
            raise SyntaxError_(f'syntax error at or near "{token.text}"', position=token.start + 1)


def _check_forms(sql: str, tree: exp.Expr, dialect: Dialect) -> None:
    """Refuse, as PostgreSQL does, forms sqlglot accepts: ``(*)``, ``* AS x``, ``AS 'x'``, ``""``,
    ``%``/``?`` and unbound ``$n``; drop what PostgreSQL ignores: the alias of ``t.* AS x``, the ``ALL`` of
    ``GROUP BY ALL a`` (bare ``GROUP BY ALL`` keeps DuckDB's meaning: every plain column).
    Mark each double-quoted name :data:`EXACT` where double quotes delimit names."""
    # one walk collects the nodes of every check (each walk of the tree costs ~0.1 ms); they
    # are checked in the order they were, kind by kind
    found: dict[type[exp.Expr], list[exp.Expr]] = {kind: [] for kind in _FORM_NODES}
    for node in tree.walk():
        bucket = found.get(_FORM_KIND.get(type(node), type(node)))
        if bucket is not None:
            bucket.append(node)
    for star in found[exp.Star]:
        if isinstance(star.parent, exp.Paren):
            raise SyntaxError_('syntax error at or near "*"', position=node_position(star))
        alias = star.parent if isinstance(star.parent, exp.Alias) else None
        column = star.parent if isinstance(star.parent, exp.Column) else None
        if alias is not None:
            # PostgreSQL stops at the AS (or at the alias, if AS is left out)
            name_at = node_position(alias.args["alias"]) or len(sql)
            star_at = node_position(star) or 1
            match = re.search(r"\bAS\b", sql[star_at : name_at - 1], re.I)
            word, position = ("AS", star_at + match.start() + 1) if match else (alias.alias, name_at)
            raise SyntaxError_(f'syntax error at or near "{word}"', position=position)
        if column is not None and isinstance(column.parent, exp.Alias):
            column.parent.replace(column)
    for dot in found[exp.Dot]:
        if isinstance(dot.this, (exp.Column, exp.Dot, exp.Literal)):  # a.b.c.d.e, 1.2.3
            name = dot.sql()
            if isinstance(dot.this, exp.Literal):
                raise SyntaxError_(
                    f'syntax error at or near ".{dot.expression.sql()}"',
                    position=(node_position(dot.expression) or 1) - 1,
                )
            raise SyntaxError_(
                f"improper qualified name (too many dotted names): {name}", position=node_position(dot)
            )
    for col in found[exp.Column]:
        if col.args.get("catalog") is not None:  # a.b.c.d: database.schema.table.column
            raise Unsupported(
                f"cross-database references are not implemented: {col.sql()}",
                position=node_position(col),
            )
    delimits = '"' in dialect.tokenizer_class.IDENTIFIERS
    for ident in found[exp.Identifier]:
        if ident.root() is not tree:  # the alias of ``t.* AS x``, dropped above
            continue
        start = ident.meta.get("start")
        if not isinstance(start, int) or start >= len(sql) or sql[start] not in "'\"`":
            continue
        if sql[start] == '"' and delimits and isinstance(ident, exp.Identifier) and ident.quoted:
            ident.meta[EXACT] = True
        string_aliases = dialect.parser_class.STRING_ALIASES  # MySQL's SELECT a 'x'
        if sql[start] == "'" and not string_aliases:  # sqlglot takes 'x' as a name where PostgreSQL wants one
            raise SyntaxError_(
                f'syntax error at or near "{sql[start : ident.meta["end"] + 1]}"', position=start + 1
            )
        if ident.this == "":
            quote = sql[start] * 2
            raise SyntaxError_(f'zero-length delimited identifier at or near "{quote}"', position=start + 1)
    for group in found[exp.Group]:
        if group.args.get("all") and group.expressions:
            group.set("all", None)  # GROUP BY ALL a: PostgreSQL's set quantifier, GROUP BY a
    if found[exp.Parameter]:
        match = re.search(r"\$\d*", sql)
        name = match.group(0) if match else "$"
        raise UndefinedParameter(
            f"there is no parameter {name}", position=match.start() + 1 if match else None
        )
    if found[exp.Placeholder]:
        text, at = _placeholder(sql, dialect)
        raise SyntaxError_(f'syntax error at or near "{text}"', position=at)


_FORM_NODES = (exp.Star, exp.Dot, exp.Column, exp.Identifier, exp.Group, exp.Parameter, exp.Placeholder)
_FORM_KIND: dict[type[exp.Expr], type[exp.Expr]] = {
    exp.Pseudocolumn: exp.Column
}  # the subclasses of those node types

# Words after which a ``%`` starts an operand (sqlglot reads it as a placeholder), not a modulo.
_OPERAND_STARTS = frozenset(
    "SELECT WHERE AND OR NOT ON BY HAVING WHEN THEN ELSE IN IS LIKE BETWEEN LIMIT".split()
)


def _placeholder(sql: str, dialect: Dialect) -> tuple[str, int | None]:
    """The text and 1-based position of the first ``?`` or operand-position ``%`` in ``sql``."""
    tokens = dialect.tokenize(sql)
    for i, token in enumerate(tokens):
        if token.token_type is TokenType.PLACEHOLDER:
            return token.text, token.start + 1
        if token.token_type is TokenType.MOD:
            before = tokens[i - 1].text if i else ""
            if not re.search(r"[\w)\"'`\]]$", before) or before.upper() in _OPERAND_STARTS:
                return token.text, token.start + 1
    first = next((t for t in tokens if t.token_type in (TokenType.PLACEHOLDER, TokenType.MOD)), None)
    return (first.text, first.start + 1) if first is not None else ("%", None)


# Statements refused outright even when sqlglot cannot parse them (ATTACH 'x.db').
_REFUSED_WORDS = frozenset(
    """ATTACH DETACH INSTALL LOAD COPY INSERT UPDATE DELETE MERGE CREATE DROP ALTER SET RESET PRAGMA
    CALL EXPORT IMPORT CHECKPOINT VACUUM TRUNCATE GRANT REVOKE USE BEGIN COMMIT ROLLBACK""".split()
)


def _refuse_statement(sql: str) -> None:
    match = re.match(r"\s*([A-Za-z]+)", sql)
    if match and match.group(1).upper() in _REFUSED_WORDS:
        raise AccessDenied(
            f"{match.group(1).upper()} is not allowed: qserv accepts read-only SELECT queries only",
            position=match.start(1) + 1,
        )


def node_end(node: exp.Expr) -> int | None:
    """1-based character offset of the last character of a node, if known."""
    best: int | None = None
    for n in node.walk():
        end = n.meta.get("end") if n.meta else None
        if isinstance(end, int) and (best is None or end > best):
            best = end
    return None if best is None else best + 1


def operator_position(node: exp.Expr, sql: str) -> int | None:
    """1-based offset of a binary node's operator in ``sql`` (where PostgreSQL places its errors)."""
    left, right = node.args.get("this"), node.args.get("expression")
    if not isinstance(left, exp.Expr) or not isinstance(right, exp.Expr):
        return node_position(node)
    after, before = node_end(left), node_position(right)
    if after is None or before is None:
        return node_position(node)
    match = re.search(r"[^\s()]", sql[after : before - 1])
    return after + match.start() + 1 if match else node_position(node)


def node_position(node: exp.Expr) -> int | None:
    """1-based character offset of a node (or its first positioned descendant), if known."""
    best: int | None = None
    for n in node.walk():
        start = n.meta.get("start") if n.meta else None
        if isinstance(start, int) and (best is None or start < best):
            best = start
    return None if best is None else best + 1


E = TypeVar("E", bound=exp.Expr)


def copy_tree(root: E) -> E:
    """A deep copy of ``root`` as ``root.copy()`` makes it, but with each node's meta copied
    shallowly.

    sqlglot's copy runs ``copy.deepcopy`` over every node's meta (positions, and a resolved
    column's form as written, itself a tree): most of the cost of copying a query. Meta values
    are never changed in place (a column's written form is copied where it is used), so the
    copies can share them. Follows sqlglot's own ``Expr.__deepcopy__`` (sqlglot is pinned).
    """
    new_root = root.__class__()
    stack: list[tuple[exp.Expr, exp.Expr]] = [(root, new_root)]
    while stack:
        node, copy = stack.pop()
        if node.comments is not None:
            copy.comments = list(node.comments)
        if node._type is not None:
            copy._type = node._type.copy()
        if node._meta is not None:
            copy._meta = dict(node._meta)
        if node._hash is not None:
            copy._hash = node._hash
        for key, value in node.args.items():
            if isinstance(value, exp.Expr):
                child = value.__class__()
                stack.append((value, child))
                copy.set(key, child)
            elif type(value) is list:
                copy.args[key] = []
                for item in value:
                    if isinstance(item, exp.Expr):
                        child = item.__class__()
                        stack.append((item, child))
                        copy.append(key, child)
                    else:
                        copy.append(key, item)
            else:
                copy.args[key] = value
    return new_root
