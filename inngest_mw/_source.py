"""What a hook's source says about it, read once per middleware class.

* ``needs_loop``: whether an async hook may wait, so needs an event loop (``_bridge``);
* ``does_nothing``: whether an override is a no-op (``pass``, ``return None``, ``return
  call_next()``), so it can be skipped like a hook left at the base class.

Both answer conservatively: when the source cannot be read or parsed, the hook may wait and does
something.
"""

from __future__ import annotations

import ast
import functools
import inspect
import textwrap
from collections.abc import Callable
from typing import Any

__all__ = ["does_nothing", "needs_loop"]

# Names whose use means a coroutine may want the event loop even without awaiting anything.
_LOOP_NAMES = frozenset(
    {
        "asyncio",
        "anyio",
        "trio",
        "get_running_loop",
        "get_event_loop",
        "create_task",
        "ensure_future",
        "run_in_executor",
        "call_soon",
        "call_later",
        "to_thread",
    }
)


def _definition(fn: Callable[..., Any]) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        return None
    node = tree.body[0] if tree.body else None
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not node.decorator_list:
        return node
    return None


def _call_next_name(node: ast.FunctionDef | ast.AsyncFunctionDef, wrap: bool) -> str | None:
    params = [a.arg for a in node.args.posonlyargs + node.args.args]
    return params[1] if wrap and len(params) > 1 else None


@functools.cache
def needs_loop(fn: Callable[..., Any], wrap: bool) -> bool:
    """Whether async ``fn`` may need an event loop; ``True`` whenever that cannot be ruled out.

    It cannot wait if its source has no ``async for``/``async with``, no ``await`` except (for a
    wrap hook) ``await call_next()``, and names nothing that reaches the loop.
    """
    node = _definition(fn)
    if not isinstance(node, ast.AsyncFunctionDef):
        return True
    next_name = _call_next_name(node, wrap)
    for child in _own_nodes(node):
        if isinstance(child, ast.AsyncFor | ast.AsyncWith | ast.Yield | ast.YieldFrom):
            return True
        if isinstance(child, ast.Name | ast.Attribute):
            name = child.id if isinstance(child, ast.Name) else child.attr
            if name in _LOOP_NAMES:
                return True
        if isinstance(child, ast.Await) and not _is_call_next(child.value, next_name):
            return True
    return False


@functools.cache
def does_nothing(fn: Callable[..., Any], wrap: bool) -> bool:
    """Whether hook ``fn`` is a no-op: its body (after a docstring) is ``pass``, ``...`` or
    ``return``/``return None``, or for a wrap hook ``return call_next()`` (``await``-ed or not)."""
    node = _definition(fn)
    if node is None:
        return False
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # a docstring, or a bare ``...``
    if not body:
        return True
    if len(body) != 1:
        return False
    [stmt] = body
    if isinstance(stmt, ast.Pass):
        return True
    if not isinstance(stmt, ast.Return):
        return False
    value = stmt.value
    if value is None or (isinstance(value, ast.Constant) and value.value is None):
        return True
    if isinstance(value, ast.Await):
        value = value.value
    return _is_call_next(value, _call_next_name(node, wrap))


def _own_nodes(fn: ast.AsyncFunctionDef) -> list[ast.AST]:
    """Every node of ``fn``'s body, not descending into nested functions, lambdas or classes
    (which run, if ever, as calls this check then sees as such)."""
    found: list[ast.AST] = []
    todo: list[ast.AST] = [*fn.body]
    while todo:
        node = todo.pop()
        found.append(node)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            continue
        todo.extend(ast.iter_child_nodes(node))
    return found


def _is_call_next(value: ast.expr | None, next_name: str | None) -> bool:
    return (
        next_name is not None
        and isinstance(value, ast.Call)
        and isinstance(value.func, ast.Name)
        and value.func.id == next_name
        and not value.args
        and not value.keywords
    )
