"""The ``filter`` of the REST sends: a small OData boolean expression over a connection's ``userId``, ``connectionId``
and ``groups`` (https://learn.microsoft.com/azure/azure-web-pubsub/reference-odata-filter).

:func:`compile_filter` parses and type-checks the text once and returns a predicate on a :class:`Subject`; a text
that does not parse or mixes types raises :class:`FilterError` (the REST API answers 400 with its message).
Supported: ``and``, ``or``, ``not``, ``eq ne gt ge lt le``, ``in (list)`` and ``in groups``, string literals with
``''`` escapes, integers, ``true``/``false``/``null``, and the functions ``tolower toupper trim substring concat
indexof length contains startswith endswith``. Precedence as documented: ``not`` binds tightest, then comparisons,
then ``and``, then ``or``. String comparisons are ordinal (``tolower`` exists for the rest).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["MAX_FILTER_LENGTH", "FilterError", "Subject", "compile_filter"]

MAX_FILTER_LENGTH = 4096
# "if you have over 100 clauses, you are at risk of exceeding the limit" (the reference); nesting is bounded too.
_MAX_NODES = 400
_MAX_DEPTH = 32

_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<int>[+-]?\d+)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<punct>[(),]))"
)
_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a is not None and b is not None and a > b,
    "ge": lambda a, b: a is not None and b is not None and a >= b,
    "lt": lambda a, b: a is not None and b is not None and a < b,
    "le": lambda a, b: a is not None and b is not None and a <= b,
}
_KEYWORDS = frozenset({"and", "or", "not", "in", "true", "false", "null", *_COMPARISONS})


class FilterError(ValueError):
    """A filter that cannot be used; the message says where and why."""


class Subject(Protocol):
    """What a filter looks at: a connection."""

    @property
    def connection_id(self) -> str: ...

    @property
    def user_id(self) -> str | None: ...

    @property
    def groups(self) -> set[str]: ...


Evaluator = Callable[[Subject], Any]


@dataclass(frozen=True)
class _Node:
    kind: str  # "bool", "string", "int", "null", "collection"
    evaluate: Evaluator


def _identifier(name: str) -> _Node | None:
    lowered = name.lower()
    if lowered == "userid":
        return _Node("string", lambda s: s.user_id)
    if lowered == "connectionid":
        return _Node("string", lambda s: s.connection_id)
    if lowered == "groups":
        return _Node("collection", lambda s: s.groups)
    return None


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise FilterError(f"Invalid syntax at position {position}: unexpected {text[position : position + 10]!r}.")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.index = 0
        self.nodes = 0
        self.depth = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def keyword(self, *words: str) -> str | None:
        token = self.peek()
        if token is not None and token[0] == "name" and token[1].lower() in words:
            self.index += 1
            return token[1].lower()
        return None

    def punct(self, char: str) -> bool:
        token = self.peek()
        if token == ("punct", char):
            self.index += 1
            return True
        return False

    def expect(self, char: str) -> None:
        if not self.punct(char):
            token = self.peek()
            found = "the end" if token is None else repr(token[1])
            raise FilterError(f"Invalid syntax: expected {char!r}, found {found}.")

    def count(self) -> None:
        self.nodes += 1
        if self.nodes > _MAX_NODES:
            raise FilterError(f"The filter is too complex: more than {_MAX_NODES} terms.")

    def parse(self) -> _Node:
        node = self.or_expr()
        if self.peek() is not None:
            raise FilterError(f"Invalid syntax: unexpected {self.peek()[1]!r} after a complete expression.")  # type: ignore[index]
        _require(node, "bool", "The filter")
        return node

    def or_expr(self) -> _Node:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise FilterError(f"The filter is nested deeper than {_MAX_DEPTH} levels.")
        left = self.and_expr()
        while self.keyword("or"):
            right = self.and_expr()
            _require(left, "bool", "'or'")
            _require(right, "bool", "'or'")
            left = _Node("bool", _either(left.evaluate, right.evaluate))
            self.count()
        self.depth -= 1
        return left

    def and_expr(self) -> _Node:
        left = self.unary()
        while self.keyword("and"):
            right = self.unary()
            _require(left, "bool", "'and'")
            _require(right, "bool", "'and'")
            left = _Node("bool", _both(left.evaluate, right.evaluate))
            self.count()
        return left

    def unary(self) -> _Node:
        if self.keyword("not"):
            operand = self.unary_operand()
            _require(operand, "bool", "'not'")
            self.count()
            node = _Node("bool", _negation(operand.evaluate))
            return self.comparison_tail(node)
        return self.comparison_tail(self.primary())

    def unary_operand(self) -> _Node:
        if self.keyword("not"):
            operand = self.unary_operand()
            _require(operand, "bool", "'not'")
            return _Node("bool", _negation(operand.evaluate))
        return self.primary()

    def comparison_tail(self, left: _Node) -> _Node:
        operator = self.keyword(*_COMPARISONS)
        if operator is not None:
            right = self.primary()
            _comparable(left, right, operator)
            self.count()
            return _Node("bool", _comparison(_COMPARISONS[operator], left.evaluate, right.evaluate))
        if self.keyword("in"):
            if left.kind not in ("string", "int", "null"):
                raise FilterError("Invalid syntax: the left operand of 'in' must be a single value.")
            value = left.evaluate
            token = self.peek()
            if token is not None and token[0] == "name":
                collection = self.primary()
                _require(collection, "collection", "The right operand of 'in'")
                self.count()
                return _Node("bool", _member(value, collection.evaluate))
            self.expect("(")
            options: list[_Node] = [self.primary()]
            while self.punct(","):
                options.append(self.primary())
            self.expect(")")
            self.count()
            return _Node("bool", _one_of(value, [option.evaluate for option in options]))
        return left

    def primary(self) -> _Node:
        self.count()
        token = self.peek()
        if token is None:
            raise FilterError("Invalid syntax: the filter ends where a value was expected.")
        kind, text = token
        self.index += 1
        if kind == "string":
            return _Node("string", _constant(text[1:-1].replace("''", "'")))
        if kind == "int":
            return _Node("int", _constant(int(text)))
        if kind == "punct":
            if text != "(":
                raise FilterError(f"Invalid syntax: unexpected {text!r}.")
            node = self.or_expr()
            self.expect(")")
            return node
        lowered = text.lower()
        if lowered in ("true", "false"):
            return _Node("bool", _constant(lowered == "true"))
        if lowered == "null":
            return _Node("null", lambda s: None)
        if self.punct("("):
            return self.function(lowered, text)
        identifier = _identifier(text)
        if identifier is None or lowered in _KEYWORDS:
            raise FilterError(f"Invalid syntax: unknown identifier {text[:40]!r} (userId, connectionId or groups).")
        return identifier

    def function(self, name: str, written: str) -> _Node:
        arguments: list[_Node] = []
        if not self.punct(")"):
            arguments.append(self.or_expr())
            while self.punct(","):
                arguments.append(self.or_expr())
            self.expect(")")
        return _function(name, written, arguments)


def _constant(value: Any) -> Evaluator:
    return lambda s: value


def _either(a: Evaluator, b: Evaluator) -> Evaluator:
    return lambda s: bool(a(s)) or bool(b(s))


def _both(a: Evaluator, b: Evaluator) -> Evaluator:
    return lambda s: bool(a(s)) and bool(b(s))


def _negation(a: Evaluator) -> Evaluator:
    return lambda s: not a(s)


def _comparison(compare: Callable[[Any, Any], bool], a: Evaluator, b: Evaluator) -> Evaluator:
    return lambda s: compare(a(s), b(s))


def _member(value: Evaluator, items: Evaluator) -> Evaluator:
    return lambda s: value(s) in items(s)


def _one_of(value: Evaluator, options: list[Evaluator]) -> Evaluator:
    return lambda s: value(s) in [option(s) for option in options]


def _require(node: _Node, kind: str, what: str) -> None:
    if node.kind != kind and not (kind == "string" and node.kind == "null"):
        raise FilterError(f"{what} needs a {kind} value, not a {node.kind} one.")


def _comparable(left: _Node, right: _Node, operator: str) -> None:
    kinds = {left.kind, right.kind} - {"null"}
    if "collection" in kinds:
        raise FilterError(f"'{operator}' cannot compare a collection; use 'in' or length().")
    if len(kinds) > 1:
        raise FilterError(f"'{operator}' compares a {left.kind} with a {right.kind}.")


def _strings(args: Sequence[_Node], count: int, name: str) -> list[Evaluator]:
    if len(args) != count:
        raise FilterError(f"{name}() takes {count} argument{'s' if count > 1 else ''}, not {len(args)}.")
    for arg in args:
        _require(arg, "string", f"{name}()")
    return [arg.evaluate for arg in args]


def _function(name: str, written: str, args: Sequence[_Node]) -> _Node:
    def text(value: Any) -> str | None:
        return value if isinstance(value, str) else None

    if name in ("tolower", "toupper", "trim"):
        (a,) = _strings(args, 1, name)
        operations: dict[str, Callable[[str], str]] = {"tolower": str.lower, "toupper": str.upper, "trim": str.strip}
        operation = operations[name]
        return _Node("string", lambda s: None if text(a(s)) is None else operation(a(s)))
    if name == "concat":
        a, b = _strings(args, 2, name)
        return _Node("string", lambda s: (a(s) or "") + (b(s) or ""))
    if name in ("contains", "startswith", "endswith"):
        a, b = _strings(args, 2, name)
        tests: dict[str, Callable[[str, str], bool]] = {
            "contains": lambda x, y: y in x,
            "startswith": lambda x, y: x.startswith(y),
            "endswith": lambda x, y: x.endswith(y),
        }
        test = tests[name]
        return _Node("bool", lambda s: a(s) is not None and b(s) is not None and test(a(s), b(s)))
    if name == "indexof":
        a, b = _strings(args, 2, name)
        return _Node("int", lambda s: None if a(s) is None or b(s) is None else a(s).find(b(s)))
    if name == "length":
        if len(args) != 1 or args[0].kind not in ("string", "collection", "null"):
            raise FilterError("length() takes one string or collection argument.")
        a = args[0].evaluate
        return _Node("int", lambda s: None if a(s) is None else len(a(s)))
    if name == "substring":
        if not 2 <= len(args) <= 3 or any(arg.kind != "int" for arg in args[1:]):
            raise FilterError("substring() takes a string, a start index and an optional length.")
        _require(args[0], "string", "substring()")
        source, start = args[0].evaluate, args[1].evaluate
        length = args[2].evaluate if len(args) == 3 else None

        def substring(s: Subject) -> str | None:
            value: str | None = source(s)
            begin: int = start(s)
            if value is None or begin < 0:
                return None
            return value[begin:] if length is None else value[begin : begin + max(length(s), 0)]

        return _Node("string", substring)
    raise FilterError(f"Invalid syntax: unknown function {written[:40]!r}.")


def compile_filter(text: str) -> Callable[[Subject], bool]:
    """The predicate ``text`` stands for; raises :class:`FilterError` for a filter that is empty, too long, does not
    parse, or compares values of different types."""
    if len(text) > MAX_FILTER_LENGTH:
        raise FilterError(f"The filter is longer than {MAX_FILTER_LENGTH} characters.")
    if not text.strip():
        raise FilterError("The filter is empty.")
    node = _Parser(text).parse()
    evaluate = node.evaluate
    return lambda subject: bool(evaluate(subject))
