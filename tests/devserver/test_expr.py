"""Tests for the Inngest-flavoured CEL evaluator used by the embedded engine."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from inngest_mw_dev.expr import (
    Expression,
    ExpressionError,
    compile_expression,
    interpolate,
    truthy,
)

EVENT: dict[str, object] = {
    "name": "app/user.created",
    "data": {
        "id": "01H.abc",
        "plan": "pro",
        "amount": 150,
        "currency": "usd",
        "priority": 7,
        "tags": ["a", "b"],
        "user": {"email": "Ada@Example.com", "age": 36},
        "a-b": "dashed",
        "flag": False,
        "nothing": None,
    },
}
VARIABLES: dict[str, object] = {
    "event": EVENT,
    "async": {"name": "app/user.paid", "data": {"id": "01H.abc", "correlation_id": "01H.abc"}},
}


def run(source: str, variables: Mapping[str, object] | None = None) -> object:
    return compile_expression(source).evaluate(VARIABLES if variables is None else variables)


# --------------------------------------------------------------------------- syntax and operators


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("10 - 4 - 3", 3),
        ("7 / 2", 3),
        ("-7 / 2", -3),
        ("7 / -2", -3),
        ("7 % 3", 1),
        ("-7 % 3", -1),
        ("7.0 / 2", 3.5),
        ("1.5 * 2", 3.0),
        ("-(3)", -3),
        ("--3", 3),
        ("0x1F", 31),
        ("3u + 1", 4),
        ("1e3", 1000.0),
        (".5 + .5", 1.0),
        ("1 < 2", True),
        ("2 <= 2", True),
        ("3 > 2.5", True),
        ("2 >= 3", False),
        ("1 == 1", True),
        ("1 != 2", True),
        ("2 in [1, 2, 3]", True),
        ("4 in [1, 2, 3]", False),
        ("'a' in {'a': 1}", True),
        ("'b' in {'a': 1}", False),
        ("true && false", False),
        ("true || false", True),
        ("!true", False),
        ("true ? 'yes' : 'no'", "yes"),
        ("false ? 'yes' : 1 > 0 ? 'nested' : 'no'", "nested"),
        ("[1, 2] + [3]", [1, 2, 3]),
        ("'ab' + 'cd'", "abcd"),
        ("{'a': {'b': [10, 20]}}.a.b[1]", 20),
        ("{'a': 1,}['a']", 1),
        ("[1, 2,][0]", 1),
        ("1 + // comment\n 2", 3),
    ],
)
def test_operators(source: str, expected: object) -> None:
    result = run(source)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (r"'it\'s'", "it's"),
        (r'"say \"hi\""', 'say "hi"'),
        (r"'tab\there\nnew'", "tab\there\nnew"),
        (r"'\x41\u00e9\U0001F600\101'", "Aé😀A"),
        (r"r'\n\d+'", "\\n\\d+"),
        ("'''multi\nline'''", "multi\nline"),
        ('"""with "quotes" inside"""', 'with "quotes" inside'),
        ("'ünïcode'", "ünïcode"),
    ],
)
def test_string_literals(source: str, expected: str) -> None:
    assert run(source) == expected


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("event.data.plan == ", "unexpected end of expression at column 20"),
        ("(1 + 2))", "unexpected token ')' at column 8"),
        ("f(1", "unexpected end of expression"),
        ("1 = 2", "unexpected character '=' at column 3"),
        ("'open", "unterminated string literal at column 1"),
        ("'line\nbreak'", "unterminated string literal"),
        (r"'\q'", "invalid escape sequence"),
        ("b'bytes'", "bytes literals are not supported"),
        ("1e999", "double literal out of range"),
        ("a ? b", "unexpected end of expression"),
        ("true &&\n  )", "unexpected token ')' at line 2, column 3"),
        ("", "unexpected end of expression at column 1"),
    ],
)
def test_parse_errors_name_the_column(source: str, fragment: str) -> None:
    with pytest.raises(ExpressionError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        compile_expression(source)


def test_unknown_functions_fail_at_compile_time() -> None:
    with pytest.raises(ExpressionError, match="unknown function 'nope' at column 12"):
        compile_expression("event.x && nope(1)")
    with pytest.raises(ExpressionError, match="unknown method 'nope'"):
        compile_expression("event.data.nope()")
    with pytest.raises(ExpressionError, match="takes 1 argument"):
        compile_expression("lowercase('a', 'b')")


def test_excessive_nesting_is_an_expression_error() -> None:
    with pytest.raises(ExpressionError, match="nested too deeply"):
        compile_expression("(" * 2000 + "1" + ")" * 2000)
    deep: list[object] = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(ExpressionError, match="nested too deeply"):
        interpolate("event.data", {"event": {"data": deep}})


def test_compiled_expressions_are_cached() -> None:
    first = compile_expression("event.data.plan == 'pro'")
    assert compile_expression("event.data.plan == 'pro'") is first
    assert isinstance(first, Expression)
    assert first.source == "event.data.plan == 'pro'"


# --------------------------------------------------------------------------- Inngest leniency


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("1 == 1.0", True),
        ("1 < 1.5", True),
        ("2.0 == 2u", True),
        ("1 + 0.5", 1.5),
        ('"a" + 1 == "a1"', True),
        ('1 + "a"', "1a"),
        ('"v" + 1.5', "v1.5"),
        ('"v" + 2.0', "v2"),
        ('"1" == 1', False),
        ('"1" != 1', True),
        ("'abc' < 'abd'", True),
        ("'b' > 'abc'", True),
        ("'a' < 1", False),
        ("'a' >= 1", False),
        ("true == 1", False),
        ("false < true", True),
        ("[1, 'x'] == [1.0, 'x']", True),
        ("{'a': 1} == {'a': 1.0}", True),
        ("{'a': 1} == {'b': 1}", False),
        ("[1] == [1, 2]", False),
    ],
)
def test_loose_typing(source: str, expected: object) -> None:
    assert run(source) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("null == null", True),
        ("null != null", False),
        ("null == 0", False),
        ("null == ''", False),
        ("null < 1", False),
        ("null >= 1", False),
        ("1 > null", False),
        ("event.data.nothing == null", True),
        ("event.data.missing == null", True),
        ("event.data.missing.deeper.still", None),
        ("event.data.missing[0]", None),
        ("event.data.tags[5]", None),
        ("event.data.tags[-1]", None),
        ("event.data.tags[1.0]", "b"),
        ("event.data.plan.not_a_map", None),
        ("unknown_root.field", None),
        ("event.data.missing > 5", False),
        ("'x' in event.data.missing", False),
        ("event.data.missing == event.data.absent", True),
    ],
)
def test_missing_attributes_and_null(source: str, expected: object) -> None:
    assert run(source) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("event.data.plan && event.data.amount", True),
        ("event.data.flag || event.data.plan", True),
        ("event.data.missing || 0 || ''", False),
        ("event.data.tags && {}", False),
        ("!event.data.missing", True),
        ("!event.data.plan", False),
        ("!![]", False),
        ("event.data.amount ? 'paid' : 'free'", "paid"),
    ],
)
def test_logical_operators_use_truthiness(source: str, expected: object) -> None:
    assert run(source) is expected if isinstance(expected, bool) else run(source) == expected


def test_logical_operators_short_circuit_and_absorb_errors() -> None:
    assert run("false && 1 / 0 == 1") is False
    assert run("true || 1 / 0 == 1") is True
    # CEL is commutative here: an error is absorbed when the other side decides the result.
    assert run("1 / 0 == 1 || true") is True
    assert run("1 / 0 == 1 && false") is False
    with pytest.raises(ExpressionError, match="division by zero"):
        run("1 / 0 == 1 || false")


@pytest.mark.parametrize(
    "source",
    ["1 / 0", "1 % 0", "1.5 / 0", "'a' - 1", "-'a'", "[1] * 2", "{'a': 1} + 1", "1 in 'abc'"],
)
def test_evaluation_errors(source: str) -> None:
    expression = compile_expression(source)
    with pytest.raises(ExpressionError):
        expression.evaluate(VARIABLES)
    assert expression.matches(VARIABLES) is False


def test_repeated_map_keys_are_an_error() -> None:
    with pytest.raises(ExpressionError, match="repeated map key"):
        run("{'a': 1, 'a': 2}")


def test_huge_numbers_become_expression_errors() -> None:
    with pytest.raises(ExpressionError):
        compile_expression("a + 0.5").evaluate({"a": 10**400})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, False),
        (False, False),
        (True, True),
        (0, False),
        (0.0, False),
        (float("nan"), False),
        (-1, True),
        ("", False),
        ("0", True),
        ([], False),
        ([0], True),
        ({}, False),
        ({"a": None}, True),
        (datetime(2024, 1, 1, tzinfo=UTC), True),
    ],
)
def test_truthy(value: object, expected: bool) -> None:
    assert truthy(value) is expected


# --------------------------------------------------------------------------- standard functions


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("size('héllo')", 5),
        ("size([1, 2])", 2),
        ("size({'a': 1})", 1),
        ("event.data.tags.size()", 2),
        ("'hello'.contains('ell')", True),
        ("'hello'.startsWith('he')", True),
        ("'hello'.endsWith('lo')", True),
        ("'hello'.endsWith('he')", False),
        ("'abc123'.matches('[0-9]+$')", True),
        ("matches('abc', '^b')", False),
        ("int('42')", 42),
        ("int(-3.9)", -3),
        ("int(7)", 7),
        ("double('1.5')", 1.5),
        ("double(2)", 2.0),
        ("string(42)", "42"),
        ("string(1.0)", "1"),
        ("string(0.25)", "0.25"),
        ("string(1e21)", "1e+21"),
        ("string(true)", "true"),
        ("string('s')", "s"),
        ("has(event.data.plan)", True),
        ("has(event.data.nothing)", True),
        ("has(event.data.missing)", False),
        ("has(event.data.missing.deeper)", False),
        ("has(event.data.user.email)", True),
    ],
)
def test_standard_functions(source: str, expected: object) -> None:
    result = run(source)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    "source",
    ["int('1.5')", "int('x')", "double('abc')", "size(1)", "string(null)", "'a'.contains(1)"],
)
def test_conversion_errors(source: str) -> None:
    with pytest.raises(ExpressionError):
        run(source)


def test_invalid_regex_is_an_evaluation_error() -> None:
    with pytest.raises(ExpressionError, match="invalid regular expression"):
        run("'a'.matches('(')")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("[1, 2, 3].all(x, x > 0)", True),
        ("[1, 2, 3].all(x, x > 1)", False),
        ("[].all(x, false)", True),
        ("[1, 2, 3].exists(x, x == 2)", True),
        ("[1, 2, 3].exists(x, x == 5)", False),
        ("[1, 2, 3].exists_one(x, x > 1)", False),
        ("[1, 2, 3].exists_one(x, x > 2)", True),
        ("[1, 2, 3].map(x, x * 10)", [10, 20, 30]),
        ("[1, 2, 3].map(x, x > 1, x * 10)", [20, 30]),
        ("[1, 2, 3, 4].filter(x, x % 2 == 0)", [2, 4]),
        ("{'a': 1, 'b': 2}.map(k, k + '!')", ["a!", "b!"]),
        ("{'a': 1, 'b': 2}.exists(k, k == 'b')", True),
        ("event.data.tags.exists(t, t == 'b')", True),
        ("[[1, 2], [3]].map(xs, xs.map(x, x + 1))", [[2, 3], [4]]),
        ("[1, 2].exists(event, event == 2) && event.data.plan == 'pro'", True),
        # A per-element error does not matter when another element decides the result.
        ("[0, 1].exists(x, 1 / x == 1)", True),
        ("[0, 1].all(x, 1 / x == 2)", False),
    ],
)
def test_macros(source: str, expected: object) -> None:
    assert run(source) == expected


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("has(event.data)", None),
        ("has(event.data.x)", "macro 'has' is not allowed"),
        ("event.data.tags.all(t, t != '')", "macro 'all' is not allowed"),
        ("event.data.tags.exists(t, t == 'a')", "macro 'exists' is not allowed"),
        ("event.data.tags.exists_one(t, t == 'a')", "macro 'exists_one' is not allowed"),
        ("event.data.tags.map(t, t)", "macro 'map' is not allowed"),
        ("event.data.tags.filter(t, true)", "macro 'filter' is not allowed"),
    ],
)
def test_restrictive_mode_rejects_macros(source: str, fragment: str | None) -> None:
    compile_expression(source)  # fine when unrestricted
    with pytest.raises(ExpressionError, match=fragment or "macro 'has' is not allowed"):
        compile_expression(source, restrictive=True)


def test_restrictive_mode_allows_plain_expressions() -> None:
    expression = compile_expression(
        "async.data.id == 'x' && size(async.data.tags) > 0", restrictive=True
    )
    assert expression.matches({"async": {"data": {"id": "x", "tags": [1]}}})


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("has(event.data['x'])", "has\\(\\) expects a single field selection"),
        ("[1].all(1, true)", "needs an identifier"),
        ("[1].map(x)", "wrong number of arguments"),
    ],
)
def test_malformed_macros(source: str, fragment: str) -> None:
    with pytest.raises(ExpressionError, match=fragment):
        compile_expression(source)


# --------------------------------------------------------------------------- Inngest functions


def test_case_functions() -> None:
    assert run("lowercase(event.data.user.email)") == "ada@example.com"
    assert run("uppercase('mixed Case')") == "MIXED CASE"
    with pytest.raises(ExpressionError):
        run("lowercase(1)")


def test_b64decode() -> None:
    encoded = base64.b64encode(b"hello world").decode()
    assert run(f"b64decode('{encoded}') == 'hello world'") is True
    assert run("b64decode('aGk')") == "hi"  # padding is optional
    with pytest.raises(ExpressionError, match="invalid base64"):
        run("b64decode('***')")


def test_json_parse() -> None:
    payload = json.dumps({"user": {"id": 5, "roles": ["admin"]}})
    variables = {"event": {"data": {"payload": payload}}}
    assert run("json_parse(event.data.payload).user.id == 5", variables) is True
    assert run("'admin' in json_parse(event.data.payload).user.roles", variables) is True
    assert run("json_parse('[1, 2]')") == [1, 2]
    with pytest.raises(ExpressionError, match="invalid JSON"):
        run("json_parse('{nope')")


def test_date_parses_rfc3339_seconds_and_milliseconds() -> None:
    expected = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    assert run("date('2024-03-01T12:00:00Z')") == expected
    assert run("date('2024-03-01T14:00:00+02:00')") == expected
    assert run("date('2024-03-01T12:00:00.000000001Z')") == expected
    seconds = int(expected.timestamp())
    assert run(f"date({seconds})") == expected
    assert run(f"date({seconds * 1000})") == expected
    assert run(f"date({seconds}) == date('2024-03-01T12:00:00Z')") is True
    assert run("date('2024-01-01T00:00:00Z') < date('2024-06-01T00:00:00Z')") is True
    assert run("string(date('2024-03-01T12:00:00.5Z'))") == "2024-03-01T12:00:00.5Z"
    assert run("int(date('2024-03-01T12:00:00Z'))") == seconds
    with pytest.raises(ExpressionError):
        run("date('yesterday')")
    with pytest.raises(ExpressionError):
        run("date(true)")


def test_now_and_relative_times() -> None:
    before = datetime.now(UTC)
    now = run("now()")
    assert isinstance(now, datetime)
    assert before <= now <= datetime.now(UTC)
    later = run("now_plus('1h30m')")
    assert isinstance(later, datetime)
    assert abs(later - before - timedelta(hours=1, minutes=30)) < timedelta(seconds=5)
    earlier = run("now_minus('2d')")
    assert isinstance(earlier, datetime)
    assert abs(before - earlier - timedelta(days=2)) < timedelta(seconds=5)
    assert run("date('2000-01-01T00:00:00Z') < now_minus('1w')") is True
    assert run("now_plus('1s') > now()") is True


@pytest.mark.parametrize(
    ("duration", "expected"),
    [
        ("500ms", timedelta(milliseconds=500)),
        ("1500us", timedelta(microseconds=1500)),
        ("1500µs", timedelta(microseconds=1500)),
        ("2000ns", timedelta(microseconds=2)),
        ("90s", timedelta(seconds=90)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1.5h", timedelta(hours=1, minutes=30)),
        ("1w2d", timedelta(days=9)),
    ],
)
def test_durations(duration: str, expected: timedelta) -> None:
    shifted = run(f"now_plus('{duration}')")
    assert isinstance(shifted, datetime)
    assert abs(shifted - datetime.now(UTC) - expected) < timedelta(seconds=5)


@pytest.mark.parametrize("duration", ["", "1", "1y", "h", "1h 30m"])
def test_invalid_durations(duration: str) -> None:
    with pytest.raises(ExpressionError, match="invalid duration"):
        run(f"now_plus('{duration}')")


# --------------------------------------------------------------------------- typical expressions


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("event.data.plan == 'pro'", True),
        ("async.data.id == event.data.id", True),
        ('event.data.amount > 100 && event.data.currency == "usd"', True),
        ('event.name == "app/user.created"', True),
        ('async.data.correlation_id == "01H.abc"', True),
        ("event.data.plan == 'free'", False),
        ('event.data.amount > 200 && event.data.currency == "usd"', False),
        ("event.data['a-b'] == 'dashed'", True),
        ("event.data.user.email.endsWith('@Example.com')", True),
    ],
)
def test_typical_inngest_matchers(source: str, expected: bool) -> None:
    assert compile_expression(source).matches(VARIABLES) is expected


def test_priority_and_key_expressions_return_values() -> None:
    assert run("event.data.priority") == 7
    assert run("event.data.priority * 10 - 5") == 65
    assert run("event.data.user.email + '-' + event.data.plan") == "Ada@Example.com-pro"
    assert run("event.data.missing") is None


def test_matches_returns_false_on_errors_and_falsy_results() -> None:
    assert compile_expression("event.data.amount / 0 > 1").matches(VARIABLES) is False
    assert compile_expression("event.data.missing").matches(VARIABLES) is False
    assert compile_expression("event.data.plan").matches(VARIABLES) is True
    assert compile_expression("async.data.id == 'x'").matches({}) is False


# --------------------------------------------------------------------------- interpolate


def test_interpolate_inlines_event_references() -> None:
    event = {"data": {"id": 'quote " and \\ and \n', "n": -3, "f": 1.5, "ok": True, "x": None}}
    source = (
        "async.data.id == event.data.id && event.data.n < 0 && event.data.ok"
        " && event.data.x == null && event.data.missing.deep == null && async.f == event.data.f"
    )
    result = interpolate(source, {"event": event})
    assert "event" not in result
    assert result == (
        'async.data.id == "quote \\" and \\\\ and \\n" && (-3) < 0 && true'
        " && null == null && null == null && async.f == 1.5"
    )
    async_event = {"data": {"id": event["data"]["id"]}, "f": 1.5}
    assert compile_expression(result).evaluate({"async": async_event}) is True


def test_interpolate_nested_paths_and_index_keys() -> None:
    variables = {"event": {"data": {"a-b": {"c": [10, {"d": "deep"}]}, "k": "a-b"}}}
    assert interpolate('event.data["a-b"].c[1].d', variables) == '"deep"'
    assert interpolate("event.data['a-b'].c", variables) == '[10, {"d": "deep"}]'
    # A computed key cannot be resolved textually: the parts are inlined separately.
    assert interpolate("event.data[event.data.k].c[0]", variables) == (
        '{"a-b": {"c": [10, {"d": "deep"}]}, "k": "a-b"}["a-b"].c[0]'
    )
    assert run(interpolate("event.data[event.data.k].c[0]", variables), {}) == 10


def test_interpolate_whole_event_and_name() -> None:
    variables = {"event": {"name": "app/x", "data": {}}}
    assert interpolate("event.name == async.name", variables) == '"app/x" == async.name'
    assert interpolate("event == async", variables) == '{"name": "app/x", "data": {}} == async'


def test_interpolate_leaves_async_and_shadowing_variables_alone() -> None:
    variables = {"event": {"data": {"tags": ["a"], "id": "x"}}}
    source = "async.data.tags.exists(event, event == async.data.id) && async.event.data.id == 1"
    assert interpolate(source, variables) == source
    mixed = "event.data.tags.exists(t, t == event.data.id)"
    assert interpolate(mixed, variables) == '["a"].exists(t, t == "x")'


def test_interpolate_resolves_has_macro() -> None:
    variables = {"event": {"data": {"id": 1}}}
    assert interpolate("has(event.data.id) && !has(event.data.no)", variables) == "true && !false"


def test_interpolate_keeps_member_calls_well_formed() -> None:
    variables = {"event": {"data": {"n": -1, "f": -2.5, "s": "abc"}}}
    assert run(interpolate("-event.data.n", variables), {}) == 1
    assert run(interpolate("event.data.s.size() + event.data.n", variables), {}) == 2
    assert run(interpolate("10 - event.data.f", variables), {}) == 12.5


def test_interpolate_rejects_invalid_source() -> None:
    with pytest.raises(ExpressionError):
        interpolate("event.data.id ==", {"event": {}})


@pytest.mark.parametrize(
    "source",
    [
        "async.data.id == event.data.id",
        "async.data.amount > event.data.amount - 100 && event.data.currency == 'usd'",
        "event.data.tags.exists(t, t == async.data.tag)",
        "async.data.user == event.data.user && has(event.data.plan)",
        "event.data.missing == async.data.missing",
        "event.name + '/' + async.data.id == 'app/user.created/01H.abc'",
    ],
)
def test_interpolated_expression_agrees_with_original(source: str) -> None:
    async_event = {"data": {"id": "01H.abc", "amount": 200, "tag": "b", "user": EVENT["data"]}}
    both = {"event": EVENT, "async": async_event}
    inlined = interpolate(source, both)
    assert compile_expression(inlined).evaluate({"async": async_event}) == run(source, both)


# --------------------------------------------------------------------------- properties

_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=12,
)


@given(st.text())
def test_parser_only_raises_expression_error(source: str) -> None:
    with contextlib.suppress(ExpressionError):
        compile_expression(source)


@given(st.text(alphabet="()[]{}.,!?:+-*/%<>=&|'\"\\ 0123456789abcdefxnu_", max_size=40))
def test_operator_soup_only_raises_expression_error(source: str) -> None:
    with contextlib.suppress(ExpressionError):
        compile_expression(source).evaluate(VARIABLES)


@given(_JSON)
def test_interpolated_literals_round_trip(value: object) -> None:
    source = interpolate("event.data.x == async.x", {"event": {"data": {"x": value}}})
    assert compile_expression(source).evaluate({"async": {"x": value}}) is True


@given(_JSON)
def test_interpolated_literals_evaluate_to_the_value(value: object) -> None:
    source = interpolate("event.data.x", {"event": {"data": {"x": value}}})
    assert compile_expression(source).evaluate({}) == value
