"""Evaluator for the Inngest dialect of CEL (Google's Common Expression Language).

The embedded engine evaluates trigger filters, wait_for_event/cancel matchers and flow-control
key/priority expressions without Inngest's Go server, so this reimplements the CEL subset users
write plus Inngest's leniency (missing fields are null, loose comparisons) and custom functions.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TypeGuard

__all__ = ["Expression", "ExpressionError", "compile_expression", "interpolate", "truthy"]


class ExpressionError(ValueError):
    """Raised when an expression cannot be parsed/compiled; message says what and where (column)."""


_Scope = Mapping[str, object]
_Program = Callable[[_Scope], object]


# --------------------------------------------------------------------------- lexer


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "number", "string", "literal" (true/false/null), "ident", "op" or "eof"
    value: object
    start: int
    end: int


_SPACE = re.compile(r"(?:[ \t\n\r\f]+|//[^\n]*)+")
_NUMBER = re.compile(
    r"0[xX][0-9a-fA-F]+[uU]?"
    r"|(?:[0-9]+\.[0-9]+|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
    r"|[0-9]+[eE][+-]?[0-9]+"
    r"|[0-9]+[uU]?"
)
_IDENT = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")
_STRING_START = re.compile(r"([rR]?[bB]?|[bB][rR])('''|\"\"\"|'|\")")
_PLAIN_RUN = re.compile(r"[^\\'\"\r\n]+")
_OPERATORS = ("==", "!=", "<=", ">=", "&&", "||", *"<>!+-*/%?:.,()[]{}")
_KEYWORDS: dict[str, object] = {"true": True, "false": False, "null": None}
_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "`": "`",
    "?": "?",
}
_HEX_ESCAPE_WIDTH = {"x": 2, "u": 4, "U": 8}


def _where(source: str, offset: int) -> str:
    line = source.count("\n", 0, offset) + 1
    column = offset - (source.rfind("\n", 0, offset) + 1) + 1
    return f"column {column}" if line == 1 else f"line {line}, column {column}"


def _fail(source: str, offset: int, message: str) -> ExpressionError:
    return ExpressionError(f"{message} at {_where(source, offset)}")


def _tokenize(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos, length = 0, len(source)
    while True:
        space = _SPACE.match(source, pos)
        if space:
            pos = space.end()
        if pos >= length:
            tokens.append(_Token("eof", None, pos, pos))
            return tokens
        if string := _STRING_START.match(source, pos):
            text, end = _scan_string(source, pos, string)
            tokens.append(_Token("string", text, pos, end))
        elif number := _NUMBER.match(source, pos):
            tokens.append(_Token("number", _number_value(source, number), pos, number.end()))
        elif ident := _IDENT.match(source, pos):
            word = ident.group()
            if word in _KEYWORDS:
                tokens.append(_Token("literal", _KEYWORDS[word], pos, ident.end()))
            else:
                tokens.append(_Token("op" if word == "in" else "ident", word, pos, ident.end()))
        else:
            symbol = next((op for op in _OPERATORS if source.startswith(op, pos)), None)
            if symbol is None:
                raise _fail(source, pos, f"unexpected character {source[pos]!r}")
            tokens.append(_Token("op", symbol, pos, pos + len(symbol)))
        pos = tokens[-1].end


def _number_value(source: str, match: re.Match[str]) -> int | float:
    # Unsigned literals are plain ints: operators mix numeric types loosely anyway.
    text = match.group().rstrip("uU")
    if text[:2] in ("0x", "0X"):
        return int(text, 16)
    if any(c in text for c in ".eE"):
        value = float(text)
        if math.isinf(value):
            raise _fail(source, match.start(), "double literal out of range")
        return value
    return int(text)


def _scan_string(source: str, start: int, opening: re.Match[str]) -> tuple[str, int]:
    prefix, quote = opening.group(1).lower(), opening.group(2)
    if "b" in prefix:
        raise _fail(source, start, "bytes literals are not supported")
    raw, multiline = prefix == "r", len(quote) == 3
    chunks: list[str] = []
    pos = opening.end()
    while not source.startswith(quote, pos):
        if pos >= len(source) or (not multiline and source[pos] in "\r\n"):
            raise _fail(source, start, "unterminated string literal")
        if run := _PLAIN_RUN.match(source, pos):
            chunks.append(run.group())
            pos = run.end()
        elif source[pos] == "\\" and not raw:
            char, pos = _scan_escape(source, pos)
            chunks.append(char)
        else:
            chunks.append(source[pos])
            pos += 1
    return "".join(chunks), pos + len(quote)


def _scan_escape(source: str, pos: int) -> tuple[str, int]:
    kind = source[pos + 1 : pos + 2]
    if kind in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[kind], pos + 2
    if kind in _HEX_ESCAPE_WIDTH:
        digits = source[pos + 2 : pos + 2 + _HEX_ESCAPE_WIDTH[kind]]
        if len(digits) == _HEX_ESCAPE_WIDTH[kind] and all(
            c in "0123456789abcdefABCDEF" for c in digits
        ):
            code = int(digits, 16)
            if code <= 0x10FFFF:
                return chr(code), pos + 2 + len(digits)
    octal = source[pos + 1 : pos + 4]
    if len(octal) == 3 and octal[0] in "0123" and all(c in "01234567" for c in octal[1:]):
        return chr(int(octal, 8)), pos + 4
    raise _fail(source, pos, f"invalid escape sequence {source[pos : pos + 2]!r}")


# --------------------------------------------------------------------------- syntax tree


@dataclass(frozen=True, slots=True)
class _Literal:
    value: object
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class _Ident:
    name: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class _Select:
    operand: _Node
    field: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class _Index:
    operand: _Node
    index: _Node
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class _Call:
    name: str
    target: _Node | None  # receiver of `x.f(...)`; None for `f(...)`
    args: tuple[_Node, ...]
    start: int
    end: int
    name_at: int


@dataclass(frozen=True, slots=True)
class _Unary:
    op: str
    operand: _Node
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class _Binary:
    op: str
    left: _Node
    right: _Node
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class _Ternary:
    condition: _Node
    then: _Node
    otherwise: _Node
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class _ListLit:
    items: tuple[_Node, ...]
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class _MapLit:
    entries: tuple[tuple[_Node, _Node], ...]
    start: int
    end: int


_Node = (
    _Literal | _Ident | _Select | _Index | _Call | _Unary | _Binary | _Ternary | _ListLit | _MapLit
)


def _children(node: _Node) -> tuple[_Node, ...]:
    match node:
        case _Select(operand=operand) | _Unary(operand=operand):
            return (operand,)
        case _Index(operand=operand, index=index):
            return (operand, index)
        case _Call(target=target, args=args):
            return args if target is None else (target, *args)
        case _Binary(left=left, right=right):
            return (left, right)
        case _Ternary(condition=condition, then=then, otherwise=otherwise):
            return (condition, then, otherwise)
        case _ListLit(items=items):
            return items
        case _MapLit(entries=entries):
            return tuple(part for entry in entries for part in entry)
    return ()


# --------------------------------------------------------------------------- parser

# Binary operators from loosest to tightest binding.
_PRECEDENCE = (
    frozenset({"||"}),
    frozenset({"&&"}),
    frozenset({"<", "<=", ">", ">=", "==", "!=", "in"}),
    frozenset({"+", "-"}),
    frozenset({"*", "/", "%"}),
)


class _Parser:
    """Recursive descent over CEL's grammar, lowest precedence first."""

    def __init__(self, source: str) -> None:
        self._source = source
        self._tokens = _tokenize(source)
        self._pos = 0

    def parse(self) -> _Node:
        node = self._expr()
        self._reject_unless("eof")
        return node

    def _peek(self) -> _Token:
        return self._tokens[self._pos]

    def _advance(self) -> _Token:
        token = self._tokens[self._pos]
        if token.kind != "eof":
            self._pos += 1
        return token

    def _at(self, op: str) -> bool:
        token = self._tokens[self._pos]
        return token.kind == "op" and token.value == op

    def _reject_unless(self, kind: str, value: object = None) -> _Token:
        token = self._peek()
        if token.kind == kind and (value is None or token.value == value):
            return self._advance()
        raise self._unexpected(token)

    def _unexpected(self, token: _Token) -> ExpressionError:
        if token.kind == "eof":
            return _fail(self._source, token.start, "unexpected end of expression")
        text = self._source[token.start : token.end]
        shown = text if len(text) <= 20 else text[:17] + "..."
        return _fail(self._source, token.start, f"unexpected token {shown!r}")

    def _expect(self, op: str) -> _Token:
        return self._reject_unless("op", op)

    def _expr(self) -> _Node:
        condition = self._or()
        if not self._at("?"):
            return condition
        self._advance()
        then = self._or()
        self._expect(":")
        otherwise = self._expr()
        return _Ternary(condition, then, otherwise, condition.start, otherwise.end)

    def _or(self, level: int = 0) -> _Node:
        """Left-associative binary operators, one precedence level per recursion step."""
        if level == len(_PRECEDENCE):
            return self._unary()
        node = self._or(level + 1)
        while self._peek().kind == "op" and self._peek().value in _PRECEDENCE[level]:
            op = str(self._advance().value)
            right = self._or(level + 1)
            node = _Binary(op, node, right, node.start, right.end)
        return node

    def _unary(self) -> _Node:
        if not (self._at("!") or self._at("-")):
            return self._member()
        token = self._advance()
        operand = self._unary()
        if token.value == "-" and isinstance(operand, _Literal) and _is_number(operand.value):
            # Folding keeps `-1` a literal, so interpolated negatives and index keys stay constant.
            return _Literal(-operand.value, token.start, operand.end)
        return _Unary(str(token.value), operand, token.start, operand.end)

    def _member(self) -> _Node:
        node = self._primary()
        while True:
            if self._at("."):
                self._advance()
                name = self._reject_unless("ident")
                if self._at("("):
                    args, end = self._arguments()
                    node = _Call(str(name.value), node, args, node.start, end, name.start)
                else:
                    node = _Select(node, str(name.value), node.start, name.end)
            elif self._at("["):
                self._advance()
                index = self._expr()
                end = self._expect("]").end
                node = _Index(node, index, node.start, end)
            else:
                return node

    def _arguments(self) -> tuple[tuple[_Node, ...], int]:
        self._expect("(")
        args: list[_Node] = []
        while not self._at(")"):
            args.append(self._expr())
            if not self._at(")"):
                self._expect(",")
        return tuple(args), self._advance().end

    def _primary(self) -> _Node:
        token = self._peek()
        if token.kind in ("number", "string", "literal"):
            self._advance()
            return _Literal(token.value, token.start, token.end)
        if token.kind == "ident":
            self._advance()
            if self._at("("):
                args, end = self._arguments()
                return _Call(str(token.value), None, args, token.start, end, token.start)
            return _Ident(str(token.value), token.start, token.end)
        if self._at("("):
            self._advance()
            node = self._expr()
            self._expect(")")
            return node
        if self._at("["):
            self._advance()
            items: list[_Node] = []
            while not self._at("]"):
                items.append(self._expr())
                if not self._at("]"):
                    self._expect(",")
            return _ListLit(tuple(items), token.start, self._advance().end)
        if self._at("{"):
            self._advance()
            entries: list[tuple[_Node, _Node]] = []
            while not self._at("}"):
                key = self._expr()
                self._expect(":")
                entries.append((key, self._expr()))
                if not self._at("}"):
                    self._expect(",")
            return _MapLit(tuple(entries), token.start, self._advance().end)
        raise self._unexpected(token)


@lru_cache(maxsize=4096)
def _parse(source: str) -> _Node:
    try:
        return _Parser(source).parse()
    except RecursionError:
        raise ExpressionError("expression is nested too deeply") from None


# --------------------------------------------------------------------------- value semantics


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_list(value: object) -> TypeGuard[list[object] | tuple[object, ...]]:
    return isinstance(value, list | tuple)


_TYPE_NAMES: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (type(None), "null"),
    (bool, "bool"),
    (int, "int"),
    (float, "double"),
    (str, "string"),
    (datetime, "timestamp"),
    ((list, tuple), "list"),
    (Mapping, "map"),
)


def _type_name(value: object) -> str:
    return next(
        (name for kind, name in _TYPE_NAMES if isinstance(value, kind)), type(value).__name__
    )


def truthy(value: object) -> bool:
    """JS-like truthiness, which Inngest applies to `&&`, `||`, `!` and match results."""
    if value is None or isinstance(value, bool):
        return value is True
    if _is_number(value):
        return value != 0 and not (isinstance(value, float) and math.isnan(value))
    if isinstance(value, str | list | tuple | Mapping):
        return len(value) > 0
    return True


_MISSING = object()


def _map_find(mapping: Mapping[object, object], key: object) -> object:
    if isinstance(key, str):
        return mapping.get(key, _MISSING)
    # Non-string keys go through loose equality so `m[1.0]` finds key 1 but `m[true]` does not.
    return next((value for k, value in mapping.items() if _equals(k, key)), _MISSING)


def _equals(left: object, right: object) -> bool:
    if _is_number(left) and _is_number(right):
        return left == right
    if isinstance(left, str) and isinstance(right, str):
        return left == right
    if isinstance(left, bool) and isinstance(right, bool):
        return left == right
    if isinstance(left, datetime) and isinstance(right, datetime):
        return left == right
    if left is None or right is None:
        return left is right
    if _is_list(left) and _is_list(right):
        return len(left) == len(right) and all(map(_equals, left, right))
    if isinstance(left, Mapping) and isinstance(right, Mapping):
        return len(left) == len(right) and all(
            (found := _map_find(right, key)) is not _MISSING and _equals(value, found)
            for key, value in left.items()
        )
    return False


def _order(left: object, right: object) -> int | None:
    """Three-way comparison, or None when the operands are unordered (every ordering is false)."""
    if _is_number(left) and _is_number(right):
        if (isinstance(left, float) and math.isnan(left)) or (
            isinstance(right, float) and math.isnan(right)
        ):
            return None
        return (left > right) - (left < right)
    if isinstance(left, str) and isinstance(right, str):
        return (left > right) - (left < right)
    if isinstance(left, bool) and isinstance(right, bool):
        return (left > right) - (left < right)
    if isinstance(left, datetime) and isinstance(right, datetime):
        return (left > right) - (left < right)
    return None


_Operator = Callable[[object, object], object]


def _no_overload(op: str, *operands: object) -> ExpressionError:
    types = ", ".join(_type_name(v) for v in operands)
    return ExpressionError(f"no such overload: {op}({types})")


def _add(left: object, right: object) -> object:
    if _is_number(left) and _is_number(right):
        return left + right
    if isinstance(left, str) and (isinstance(right, str) or _is_number(right)):
        return left + _to_text(right)
    if isinstance(right, str) and _is_number(left):
        return _to_text(left) + right
    if _is_list(left) and _is_list(right):
        return [*left, *right]
    raise _no_overload("+", left, right)


def _numeric(symbol: str, operation: Callable[[float, float], float]) -> _Operator:
    def run(left: object, right: object) -> object:
        if _is_number(left) and _is_number(right):
            return operation(left, right)
        raise _no_overload(symbol, left, right)

    return run


def _divide(left: object, right: object) -> object:
    if not (_is_number(left) and _is_number(right)):
        raise _no_overload("/", left, right)
    if right == 0:
        raise ExpressionError("division by zero")
    if isinstance(left, int) and isinstance(right, int):
        quotient = abs(left) // abs(right)  # CEL truncates toward zero, Python floors
        return quotient if (left < 0) == (right < 0) else -quotient
    return left / right


def _modulo(left: object, right: object) -> object:
    if not (_is_number(left) and _is_number(right)):
        raise _no_overload("%", left, right)
    if right == 0:
        raise ExpressionError("modulus by zero")
    if isinstance(left, int) and isinstance(right, int):
        quotient = _divide(left, right)
        assert isinstance(quotient, int)
        return left - right * quotient
    return math.fmod(left, right)


def _contained(item: object, container: object) -> bool:
    if _is_list(container):
        return any(_equals(item, element) for element in container)
    if isinstance(container, Mapping):
        return _map_find(container, item) is not _MISSING
    if container is None:
        return False
    raise _no_overload("in", item, container)


def _negate(value: object) -> object:
    if _is_number(value):
        return -value
    raise _no_overload("-", value)


def _select(value: object, field: str) -> object:
    return value.get(field) if isinstance(value, Mapping) else None


def _index(value: object, key: object) -> object:
    if isinstance(value, Mapping):
        found = _map_find(value, key)
        return None if found is _MISSING else found
    if _is_list(value) and _is_number(key) and (isinstance(key, int) or key.is_integer()):
        position = int(key)
        return value[position] if 0 <= position < len(value) else None
    return None


_ORDERINGS: dict[str, Callable[[int], bool]] = {
    "<": lambda c: c < 0,
    "<=": lambda c: c <= 0,
    ">": lambda c: c > 0,
    ">=": lambda c: c >= 0,
}
_BINARY: dict[str, _Operator] = {
    "==": _equals,
    "!=": lambda left, right: not _equals(left, right),
    "in": _contained,
    "+": _add,
    "-": _numeric("-", operator.sub),
    "*": _numeric("*", operator.mul),
    "/": _divide,
    "%": _modulo,
}


def _format_double(value: float) -> str:
    """Go's shortest `%g` formatting, which is how CEL turns a double into a string."""
    if not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    if value == 0:
        return sign + "0"
    mantissa, _, exponent = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    point = len(whole) + int(exponent or 0) - (len(whole + fraction) - len(digits))
    digits = digits.rstrip("0")
    power = point - 1
    if power < -4 or power >= 6:
        head = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{head}e{'-' if power < 0 else '+'}{abs(power):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"


def _format_time(value: datetime) -> str:
    text = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text + "Z"


def _to_text(value: object) -> str:
    match value:
        case str():
            return value
        case bool():
            return "true" if value else "false"
        case int():
            return str(value)
        case float():
            return _format_double(value)
        case datetime():
            return _format_time(value)
    raise _no_overload("string", value)


# --------------------------------------------------------------------------- functions

_Function = Callable[[Sequence[object]], object]
_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_DOUBLE_TEXT = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)", re.IGNORECASE
)
_DURATION = re.compile(r"[+-]?(?:0|(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:ns|us|µs|μs|ms|s|m|h|d|w))+)")
_DURATION_PART = re.compile(r"([0-9]+\.?[0-9]*|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h|d|w)")
_MICROSECONDS_PER_UNIT = {
    "ns": 0.001,
    "us": 1,
    "µs": 1,
    "μs": 1,
    "ms": 1_000,
    "s": 1_000_000,
    "m": 60_000_000,
    "h": 3_600_000_000,
    "d": 86_400_000_000,
    "w": 604_800_000_000,
}
# Inngest's date() reads epoch numbers this large as milliseconds rather than seconds.
_MILLISECONDS_THRESHOLD = 1e11


def _string_arg(function: str, value: object) -> str:
    if isinstance(value, str):
        return value
    raise _no_overload(function, value)


def _size(args: Sequence[object]) -> object:
    (value,) = args
    if isinstance(value, str | list | tuple | Mapping):
        return len(value)
    raise _no_overload("size", value)


def _to_int(args: Sequence[object]) -> object:
    (value,) = args
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    if isinstance(value, str) and _INT_TEXT.fullmatch(value):
        return int(value)
    if isinstance(value, datetime):
        return math.floor(value.timestamp())
    raise ExpressionError(f"int() cannot convert {_type_name(value)} {value!r}")


def _to_double(args: Sequence[object]) -> object:
    (value,) = args
    if _is_number(value):
        try:
            return float(value)
        except OverflowError:
            raise ExpressionError(f"double() cannot convert {value!r}: out of range") from None
    if isinstance(value, str) and _DOUBLE_TEXT.fullmatch(value):
        return float(value)
    raise ExpressionError(f"double() cannot convert {_type_name(value)} {value!r}")


def _to_string(args: Sequence[object]) -> object:
    return _to_text(args[0])


def _text_predicate(name: str, test: Callable[[str, str], bool]) -> _Function:
    def run(args: Sequence[object]) -> object:
        text, other = args
        return test(_string_arg(name, text), _string_arg(name, other))

    return run


def _matches(args: Sequence[object]) -> object:
    text, pattern = (_string_arg("matches", arg) for arg in args)
    # CEL's matches() is an unanchored RE2 search; Python's re covers the common syntax.
    try:
        return re.search(pattern, text) is not None
    except re.error as exc:
        raise ExpressionError(f"matches(): invalid regular expression {pattern!r}: {exc}") from None


def _lowercase(args: Sequence[object]) -> object:
    return _string_arg("lowercase", args[0]).lower()


def _uppercase(args: Sequence[object]) -> object:
    return _string_arg("uppercase", args[0]).upper()


def _b64decode(args: Sequence[object]) -> object:
    text = _string_arg("b64decode", args[0])
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True).decode(
            "utf-8", errors="replace"
        )
    except (binascii.Error, ValueError) as exc:
        raise ExpressionError(f"b64decode(): invalid base64: {exc}") from None


def _json_parse(args: Sequence[object]) -> object:
    text = _string_arg("json_parse", args[0])
    try:
        parsed: object = json.loads(text)
    except ValueError as exc:
        raise ExpressionError(f"json_parse(): invalid JSON: {exc}") from None
    return parsed


def _date(args: Sequence[object]) -> object:
    (value,) = args
    if isinstance(value, datetime):
        return value
    try:
        if _is_number(value):
            seconds = value / 1000 if value > _MILLISECONDS_THRESHOLD else value
            return datetime.fromtimestamp(seconds, UTC)
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value.strip())
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise ExpressionError(f"date(): cannot convert {value!r}: {exc}") from None
    raise _no_overload("date", value)


def _now(args: Sequence[object]) -> object:
    return datetime.now(UTC)


def _parse_duration(text: str) -> timedelta:
    """Go duration syntax extended with d and w, as Inngest's step/time strings allow."""
    compact = text.strip()
    if not _DURATION.fullmatch(compact):
        raise ExpressionError(f"invalid duration {text!r}")
    micros = sum(
        float(amount) * _MICROSECONDS_PER_UNIT[unit]
        for amount, unit in _DURATION_PART.findall(compact)
    )
    try:
        return timedelta(microseconds=-micros if compact.startswith("-") else micros)
    except OverflowError:
        raise ExpressionError(f"duration {text!r} is out of range") from None


def _shifted_now(name: str, direction: int) -> _Function:
    def run(args: Sequence[object]) -> object:
        delta = _parse_duration(_string_arg(name, args[0]))
        try:
            return datetime.now(UTC) + direction * delta
        except OverflowError:
            raise ExpressionError(f"{name}(): result is out of range") from None

    return run


# name -> (accepted argument counts, implementation); methods receive the receiver first.
_FUNCTIONS: dict[str, tuple[tuple[int, ...], _Function]] = {
    "size": ((1,), _size),
    "int": ((1,), _to_int),
    "double": ((1,), _to_double),
    "string": ((1,), _to_string),
    "matches": ((2,), _matches),
    "lowercase": ((1,), _lowercase),
    "uppercase": ((1,), _uppercase),
    "b64decode": ((1,), _b64decode),
    "json_parse": ((1,), _json_parse),
    "date": ((1,), _date),
    "now": ((0,), _now),
    "now_plus": ((1,), _shifted_now("now_plus", 1)),
    "now_minus": ((1,), _shifted_now("now_minus", -1)),
}
_METHODS: dict[str, tuple[tuple[int, ...], _Function]] = {
    "size": ((0,), _size),
    "contains": ((1,), _text_predicate("contains", lambda text, part: part in text)),
    "startsWith": ((1,), _text_predicate("startsWith", str.startswith)),
    "endsWith": ((1,), _text_predicate("endsWith", str.endswith)),
    "matches": ((1,), _matches),
}
_COMPREHENSIONS = {"all": (2,), "exists": (2,), "exists_one": (2,), "map": (2, 3), "filter": (2,)}


def _is_macro(node: _Call) -> bool:
    if node.target is None:
        return node.name == "has"
    return node.name in _COMPREHENSIONS


# --------------------------------------------------------------------------- compiler


def _has(value: object, field: str) -> bool:
    return isinstance(value, Mapping) and field in value


def _range(value: object, macro: str) -> list[object]:
    if _is_list(value):
        return list(value)
    if isinstance(value, Mapping):
        return list(value.keys())
    raise _no_overload(macro, value)


class _Compiler:
    """Turns a syntax tree into nested closures so evaluation does no tree dispatch."""

    def __init__(self, source: str, *, restrictive: bool) -> None:
        self._source = source
        self._restrictive = restrictive

    def compile(self, node: _Node) -> _Program:
        match node:
            case _Literal(value=value):
                return lambda scope: value
            case _Ident(name=name):
                return lambda scope: scope.get(name)
            case _Select(operand=operand, field=field):
                target = self.compile(operand)
                return lambda scope: _select(target(scope), field)
            case _Index(operand=operand, index=index):
                target, key = self.compile(operand), self.compile(index)
                return lambda scope: _index(target(scope), key(scope))
            case _Unary(op="!", operand=operand):
                inner = self.compile(operand)
                return lambda scope: not truthy(inner(scope))
            case _Unary(operand=operand):
                inner = self.compile(operand)
                return lambda scope: _negate(inner(scope))
            case _Binary(op="&&" | "||" as op, left=left, right=right):
                return _logical(op == "||", self.compile(left), self.compile(right))
            case _Binary(op=op, left=left, right=right):
                return _binary(op, self.compile(left), self.compile(right))
            case _Ternary(condition=condition, then=then, otherwise=otherwise):
                test, yes, no = self.compile(condition), self.compile(then), self.compile(otherwise)
                return lambda scope: yes(scope) if truthy(test(scope)) else no(scope)
            case _ListLit(items=items):
                elements = [self.compile(item) for item in items]
                return lambda scope: [element(scope) for element in elements]
            case _MapLit(entries=entries):
                pairs = [(self.compile(k), self.compile(v)) for k, v in entries]
                return lambda scope: _build_map([(k(scope), v(scope)) for k, v in pairs])
            case _Call():
                return self._macro(node) if _is_macro(node) else self._call(node)

    def _call(self, node: _Call) -> _Program:
        registry = _FUNCTIONS if node.target is None else _METHODS
        if node.name not in registry:
            kind = "function" if node.target is None else "method"
            raise _fail(self._source, node.name_at, f"unknown {kind} {node.name!r}")
        arities, function = registry[node.name]
        if len(node.args) not in arities:
            expected = " or ".join(map(str, arities))
            message = f"{node.name}() takes {expected} argument(s), got {len(node.args)}"
            raise _fail(self._source, node.name_at, message)
        arguments = [self.compile(arg) for arg in _children(node)]
        return lambda scope: function([argument(scope) for argument in arguments])

    def _macro(self, node: _Call) -> _Program:
        if self._restrictive:
            message = f"macro {node.name!r} is not allowed in this expression"
            raise _fail(self._source, node.name_at, message)
        if node.name == "has":
            match node.args:
                case (_Select(operand=operand, field=field),):
                    target = self.compile(operand)
                    return lambda scope: _has(target(scope), field)
            raise _fail(self._source, node.name_at, "has() expects a single field selection")
        assert node.target is not None
        if len(node.args) not in _COMPREHENSIONS[node.name]:
            raise _fail(self._source, node.name_at, f"wrong number of arguments to {node.name}()")
        variable = node.args[0]
        if not isinstance(variable, _Ident):
            message = f"{node.name}() needs an identifier as its first argument"
            raise _fail(self._source, variable.start, message)
        source = self.compile(node.target)
        bodies = [self.compile(arg) for arg in node.args[1:]]
        return _comprehension(node.name, variable.name, source, bodies)


def _logical(is_or: bool, left: _Program, right: _Program) -> _Program:
    # Like CEL, an error on one side is absorbed when the other side alone decides the result.
    def run(scope: _Scope) -> object:
        try:
            decided = truthy(left(scope)) == is_or
        except ExpressionError:
            if truthy(right(scope)) == is_or:
                return is_or
            raise
        return is_or if decided else truthy(right(scope))

    return run


def _binary(op: str, left: _Program, right: _Program) -> _Program:
    if op in _ORDERINGS:
        accept = _ORDERINGS[op]

        def compare(scope: _Scope) -> object:
            outcome = _order(left(scope), right(scope))
            return outcome is not None and accept(outcome)

        return compare
    function = _BINARY[op]
    return lambda scope: function(left(scope), right(scope))


def _build_map(entries: list[tuple[object, object]]) -> dict[object, object]:
    built: dict[object, object] = {}
    for key, value in entries:
        if not isinstance(key, str | int):
            raise ExpressionError(f"unsupported map key type {_type_name(key)}")
        if key in built:
            raise ExpressionError(f"repeated map key {key!r}")
        built[key] = value
    return built


def _comprehension(macro: str, variable: str, source: _Program, bodies: list[_Program]) -> _Program:
    def each(scope: _Scope, body: _Program) -> list[object]:
        return [body({**scope, variable: item}) for item in _range(source(scope), macro)]

    def quantifier(scope: _Scope) -> object:
        # all/exists ignore per-element errors when another element decides the answer.
        deciding = macro == "exists"
        failure: ExpressionError | None = None
        for item in _range(source(scope), macro):
            try:
                if truthy(bodies[0]({**scope, variable: item})) == deciding:
                    return deciding
            except ExpressionError as exc:
                failure = failure or exc
        if failure is not None:
            raise failure
        return not deciding

    def exists_one(scope: _Scope) -> object:
        return sum(map(truthy, each(scope, bodies[0]))) == 1

    def filtered(scope: _Scope) -> list[object]:
        items = _range(source(scope), macro)
        return [item for item in items if truthy(bodies[0]({**scope, variable: item}))]

    def mapped(scope: _Scope) -> object:
        if len(bodies) == 1:
            return each(scope, bodies[0])
        return [bodies[1]({**scope, variable: item}) for item in filtered(scope)]

    programs: dict[str, _Program] = {
        "all": quantifier,
        "exists": quantifier,
        "exists_one": exists_one,
        "filter": filtered,
        "map": mapped,
    }
    return programs[macro]


# --------------------------------------------------------------------------- public API


class Expression:
    """A compiled expression; immutable and safe to share between threads."""

    __slots__ = ("_program", "source")
    source: str

    def __init__(self, source: str, program: _Program) -> None:
        self.source = source
        self._program = program

    def evaluate(self, variables: Mapping[str, object]) -> object:
        try:
            return self._program(variables)
        except ExpressionError:
            raise
        except (ArithmeticError, RecursionError) as exc:
            # Python-level limits (float overflow of huge ints, deep nesting) surface here.
            raise ExpressionError(f"evaluation failed: {exc!r}") from exc

    def matches(self, variables: Mapping[str, object]) -> bool:
        try:
            return truthy(self.evaluate(variables))
        except ExpressionError:
            return False

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"


@lru_cache(maxsize=4096)
def compile_expression(source: str, *, restrictive: bool = False) -> Expression:
    """Parse and compile once; restrictive=True (cancel/wait `if`) rejects every macro."""
    root = _parse(source)
    try:
        program = _Compiler(source, restrictive=restrictive).compile(root)
    except RecursionError:
        raise ExpressionError("expression is nested too deeply") from None
    return Expression(source, program)


def interpolate(source: str, variables: Mapping[str, object]) -> str:
    """Inline every `event`-rooted reference as a CEL literal of its value in `variables`.

    Used when a wait starts: the stored expression then only references `async`. Other text,
    including `async` references and macro variables that shadow `event`, is left untouched.
    """
    replacements: list[tuple[int, int, str]] = []
    try:
        _collect_event_references(_parse(source), variables, frozenset(), replacements)
    except RecursionError:
        raise ExpressionError("event data is nested too deeply to inline") from None
    pieces: list[str] = []
    cursor = 0
    for start, end, text in sorted(replacements):
        pieces.extend((source[cursor:start], text))
        cursor = end
    pieces.append(source[cursor:])
    return "".join(pieces)


def _is_event_path(node: _Node, bound: frozenset[str]) -> bool:
    match node:
        case _Ident(name="event"):
            return "event" not in bound
        case _Select(operand=operand) | _Index(operand=operand, index=_Literal()):
            return _is_event_path(operand, bound)
    return False


def _collect_event_references(
    node: _Node,
    variables: Mapping[str, object],
    bound: frozenset[str],
    out: list[tuple[int, int, str]],
) -> None:
    def value_of(path: _Node) -> object:
        return _Compiler("", restrictive=False).compile(path)(variables)

    if _is_event_path(node, bound):
        out.append((node.start, node.end, _literal(value_of(node))))
        return
    match node:
        case _Call(name="has", target=None, args=(_Select(operand=operand, field=field),)) if (
            _is_event_path(operand, bound)
        ):
            # has() needs a field selection, not a literal, so the macro itself is resolved.
            out.append((node.start, node.end, _literal(_has(value_of(operand), field))))
            return
        case _Call(target=target, args=(_Ident(name=variable), *bodies)) if (
            target is not None and node.name in _COMPREHENSIONS
        ):
            _collect_event_references(target, variables, bound, out)
            for body in bodies:
                _collect_event_references(body, variables, bound | {variable}, out)
            return
    for child in _children(node):
        _collect_event_references(child, variables, bound, out)


def _literal(value: object) -> str:
    """Render a JSON-like value as CEL source that evaluates back to an equal value."""
    match value:
        case None:
            return "null"
        case bool():
            return "true" if value else "false"
        case int():
            return f"({value})" if value < 0 else str(value)
        case float() if not math.isfinite(value):
            return f'double("{value}")'
        case float():
            text = repr(value)
            return f"({text})" if text.startswith("-") else text
        case str():
            return _quote(value)
        case list() | tuple():
            return "[" + ", ".join(map(_literal, value)) + "]"
        case Mapping():
            entries = (f"{_literal(k)}: {_literal(v)}" for k, v in value.items())
            return "{" + ", ".join(entries) + "}"
    raise ExpressionError(f"cannot inline a value of type {type(value).__name__}")


_QUOTE_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _quote(text: str) -> str:
    out = ['"']
    for char in text:
        if char in _QUOTE_ESCAPES:
            out.append(_QUOTE_ESCAPES[char])
        elif char.isprintable():
            out.append(char)
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    out.append('"')
    return "".join(out)
