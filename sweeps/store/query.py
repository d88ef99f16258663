"""A model query is a filter, not a call: ``filter_rows(table, "seed == 0 and density < 0.5")``.

The query language is small and read by the parser below, never by ``eval`` or pandas' query
engine, so nothing in a query can run code, read a file or reach an attribute:

* a comparison: ``column OP value``, ``value OP column`` or ``column OP column``, with OP one of
  ``== != < <= > >=``; chained comparisons (``0.1 < density <= 0.5``) mean each pair;
* membership: ``column in [v, ...]`` and ``column not in (v, ...)``;
* a column of booleans on its own;
* ``and`` / ``&``, ``or`` / ``|``, ``not`` / ``~`` and parentheses (``not`` binds tightest, then
  ``and``, then ``or``, as in Python).

Values are numbers (``3``, ``-0.5``, ``1e-3``), quoted text (``'relu'`` or ``"relu"``, no escapes)
and ``True`` / ``False``. Columns are the table's own (a name that is not an identifier in
backticks: ``\\`my col\\```); a column of arrays (``W``) cannot be compared. Anything else (a call,
an attribute, ``is``, ``@variables``, arithmetic) is refused with one line naming the query
(``ConfigError``; docs/security.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from toymodels.registry import ConfigError

MAX_LENGTH = 4000  # characters of a query
MAX_DEPTH = 50  # nested parentheses and not's
COMPARISONS = ("==", "!=", "<=", ">=", "<", ">")
_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<string>'[^']*'|"[^"]*")
  | (?P<quoted>`[^`]+`)
  | (?P<name>[A-Za-z_][A-Za-z_0-9]*)
  | (?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,|&|\||~|-)
""",
    re.VERBOSE,
)
_WORDS = {"and", "or", "not", "in", "True", "False"}


class QueryError(Exception):
    """What is wrong with a query (turned into a ConfigError naming the query)."""


@dataclass(frozen=True)
class _Token:
    kind: str  # number, string, name, column (backticks), op, word, end
    text: str
    at: int


def _tokens(query: str) -> list[_Token]:
    out, at = [], 0
    while at < len(query):
        match = _TOKEN.match(query, at)
        if not match:
            raise QueryError(f"{query[at]!r} at position {at} is not allowed")
        kind = match.lastgroup
        assert kind is not None  # every alternative of _TOKEN is a named group
        text = match.group()
        if kind == "name" and text in _WORDS:
            kind = "word"
        elif kind == "quoted":
            kind, text = "column", text[1:-1]
        if kind != "space":
            out.append(_Token(kind, text, at))
        at = match.end()
    out.append(_Token("end", "", len(query)))
    return out


# The parsed query: nested tuples, evaluated by _evaluate.
#   ("or", a, b) ("and", a, b) ("not", a) ("cmp", op, left, right) ("in", negated, left, values)
#   ("column", name) ("value", python value)


class _Parser:
    def __init__(self, query: str):
        self.tokens = _tokens(query)
        self.i = 0
        self.depth = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def accept(self, *texts: str) -> _Token | None:
        token = self.peek()
        if token.kind in ("op", "word") and token.text in texts:
            self.i += 1
            return token
        return None

    def expect(self, text: str) -> None:
        if not self.accept(text):
            raise QueryError(f"expected {text!r} {self.where()}")

    def where(self) -> str:
        token = self.peek()
        return "at the end" if token.kind == "end" else f"at {token.text!r} (position {token.at})"

    def deeper(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise QueryError(f"nests more than {MAX_DEPTH} levels")

    def parse(self):
        if self.peek().kind == "end":
            raise QueryError("is empty")
        tree = self.disjunction()
        if self.peek().kind != "end":
            raise QueryError(f"{self.unexpected()}")
        return tree

    def unexpected(self) -> str:
        token = self.peek()
        if token.kind == "end":
            return "ends too early"
        if token.kind == "name" and token.text == "is":
            return "'is' is not allowed (compare with ==, !=)"
        if token.text == "-":
            return f"arithmetic is not allowed {self.where()}"
        return f"unexpected {token.text!r} at position {token.at}"

    def disjunction(self):
        tree = self.conjunction()
        while self.accept("or", "|"):
            tree = ("or", tree, self.conjunction())
        return tree

    def conjunction(self):
        tree = self.negation()
        while self.accept("and", "&"):
            tree = ("and", tree, self.negation())
        return tree

    def negation(self):
        if self.accept("not", "~"):
            self.deeper()
            tree = ("not", self.negation())
            self.depth -= 1
            return tree
        return self.comparison()

    def comparison(self):
        token = self.peek()
        if token.kind == "op" and token.text == "(":
            self.take()
            self.deeper()
            tree = self.disjunction()
            self.depth -= 1
            self.expect(")")
            return tree
        left = self.operand()
        terms: list[tuple] = []  # ("cmp", ...) and ("in", ...) nodes of the tree above
        while True:
            op = self.accept(*COMPARISONS)
            if op:
                right = self.operand()
                terms.append(("cmp", op.text, left, right))
                left = right
                continue
            negated = bool(self.accept("not"))
            if negated and not self.accept("in"):
                raise QueryError(f"expected 'in' after 'not' {self.where()}")
            if negated or self.accept("in"):
                terms.append(("in", negated, left, self.values()))
                continue
            break
        if not terms:
            if left[0] == "column":
                return ("truth", left)
            raise QueryError(f"{left[1]!r} is a value, not a condition (compare a column with it)")
        tree = terms[0]
        for term in terms[1:]:
            tree = ("and", tree, term)
        return tree

    def operand(self):
        token = self.take()
        if token.kind == "name":
            return ("column", token.text)
        if token.kind == "column":
            return ("column", token.text)
        if token.kind == "word" and token.text in ("True", "False"):
            return ("value", token.text == "True")
        if token.kind == "op" and token.text == "-" and self.peek().kind == "number":
            return ("value", -_number(self.take().text))
        if token.kind == "number":
            return ("value", _number(token.text))
        if token.kind == "string":
            return ("value", token.text[1:-1])
        self.i -= 1
        raise QueryError(
            f"expected a column or a value {self.where()}"
            if token.kind != "end"
            else "ends too early"
        )

    def values(self) -> tuple:
        close = {"[": "]", "(": ")"}
        token = self.take()
        if token.kind != "op" or token.text not in close:
            self.i -= 1
            raise QueryError(f"'in' takes a list of values, [v, ...] or (v, ...), {self.where()}")
        values = []
        if not self.accept(close[token.text]):
            while True:
                item = self.operand()
                if item[0] != "value":
                    raise QueryError(f"a list after 'in' holds values, not the column {item[1]!r}")
                values.append(item[1])
                if self.accept(close[token.text]):
                    break
                self.expect(",")
                if self.accept(close[token.text]):  # a trailing comma: ('relu',)
                    break
        return tuple(values)


def _number(text: str):
    return float(text) if any(c in text for c in ".eE") else int(text)


def parse_query(query: str):
    """The query's tree (see above), or QueryError saying what is wrong."""
    if not isinstance(query, str):
        raise QueryError(f"must be text, got {type(query).__name__}")
    if len(query) > MAX_LENGTH:
        raise QueryError(f"is longer than {MAX_LENGTH} characters")
    return _Parser(query).parse()


def _is_text(series: pd.Series) -> bool:
    if isinstance(series.dtype, pd.StringDtype):
        return True
    return series.dtype == object and bool(
        series.map(lambda v: v is None or isinstance(v, str)).all()
    )


def _kind_of(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return "bool"
    if pd.api.types.is_numeric_dtype(series):
        return "number"
    if _is_text(series):
        return "text"
    return "arrays"


def _value_kind(value) -> str:
    if isinstance(value, bool):
        return "bool"
    return "number" if isinstance(value, (int, float)) else "text"


class _Evaluator:
    def __init__(self, table: pd.DataFrame):
        self.table = table

    def column(self, name: str) -> pd.Series:
        if name not in self.table.columns:
            raise QueryError(f"{name!r} is not a column of the store")
        series = self.table[name]
        if _kind_of(series) == "arrays":
            raise QueryError(
                f"column {name!r} holds arrays or mixed values; compare columns of numbers or text"
            )
        return series

    def operand(self, node):
        if node[0] == "column":
            series = self.column(node[1])
            return series, _kind_of(series), f"column {node[1]!r}"
        return node[1], _value_kind(node[1]), repr(node[1])

    def evaluate(self, node) -> np.ndarray:
        what = node[0]
        if what == "or":
            return self.evaluate(node[1]) | self.evaluate(node[2])
        if what == "and":
            return self.evaluate(node[1]) & self.evaluate(node[2])
        if what == "not":
            return ~self.evaluate(node[1])
        if what == "truth":
            series = self.column(node[1][1])
            if _kind_of(series) != "bool":
                raise QueryError(
                    f"column {node[1][1]!r} is not true/false on its own; compare it with a value"
                )
            return series.to_numpy(dtype=bool)
        if what == "cmp":
            _, op, left, right = node
            a, kind_a, name_a = self.operand(left)
            b, kind_b, name_b = self.operand(right)
            if left[0] == right[0] == "value":
                raise QueryError(f"{name_a} {op} {name_b} compares two values; name a column")
            if {kind_a, kind_b} == {"bool", "number"}:
                kind_a = kind_b = "number"
            if kind_a != kind_b:
                raise QueryError(f"{name_a} {op} {name_b} compares {kind_a} with {kind_b}")
            if kind_a in ("text", "bool") and op not in ("==", "!="):
                raise QueryError(f"{name_a} {op} {name_b}: {kind_a} is compared with == or != only")
            result = _COMPARE[op](a, b)
            return (
                np.asarray(result, dtype=bool)
                if not isinstance(result, bool)
                else np.full(len(self.table), result)
            )
        if what == "in":
            _, negated, left, values = node
            if left[0] != "column":
                raise QueryError(f"{left[1]!r} in [...]: the left side of 'in' is a column")
            series = self.column(left[1])
            kind = _kind_of(series)
            for value in values:
                value_kind = (
                    "number"
                    if kind == "number" and _value_kind(value) == "bool"
                    else _value_kind(value)
                )
                if value_kind != kind:
                    raise QueryError(
                        f"column {left[1]!r} holds {kind}, the list after 'in' has {value!r}"
                    )
            found = series.isin(list(values)).to_numpy(dtype=bool)
            return ~found if negated else found
        raise QueryError(
            f"cannot evaluate {what!r}"
        )  # not reachable: the parser makes no other node


_COMPARE = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def comparable_columns(table: pd.DataFrame) -> list[str]:
    """The columns a query may name (numbers, text, booleans; not arrays)."""
    return [c for c in table.columns if _kind_of(table[c]) != "arrays"]


def filter_rows(table: pd.DataFrame, query: str | None, key: str = "--models") -> pd.DataFrame:
    """The rows of ``table`` that ``query`` selects (all of them for an empty query). A query that
    is not a filter over the table's columns, or that selects nothing, is a ``ConfigError`` of
    ``key`` naming the query, in one line."""
    if query is None or (isinstance(query, str) and not query.strip()):
        return table
    try:
        mask = _Evaluator(table).evaluate(parse_query(query))
    except QueryError as error:
        columns = ", ".join(comparable_columns(table)[:40])
        raise ConfigError(
            key,
            f"bad query {query!r}: {error}. A query compares the store's columns with "
            f"numbers or quoted text (== != < <= > >= in), joined by and / or / not; columns: "
            f"{columns}",
        ) from None
    chosen = table[mask]
    if chosen.empty:
        raise ConfigError(key, f"query {query!r} selects no model out of {len(table)}")
    return chosen
