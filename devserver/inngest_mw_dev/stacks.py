"""Readable errors: a run's or step's error object as lines, the user's own frame first.

SDKs send ``{"name", "message", "stack"}``; the stack is a Python traceback (or a JS ``at ...``
trace). Frames from the SDK, installed packages and the standard library are marked as such, so
the CLI and the UI can show the user's code apart from the machinery around it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["Frame", "ReadableError", "error_lines", "marked_lines", "read_error"]

_PY_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<fn>.+)$')
_JS_FRAME = re.compile(r"^\s*at (?:(?P<fn>.+?) \()?(?P<file>[^()]+?):(?P<line>\d+)(?::\d+)?\)?$")
# Paths of code that is not the user's: the SDK and engine, installed packages, the stdlib.
_LIBRARY = re.compile(
    r"(/inngest_mw[a-z_]*/|/inngest/|site-packages/|dist-packages/|/lib/python3[\d.]*/"
    r"|^<frozen |node_modules/|^node:|^internal/)"
)


@dataclass(frozen=True, slots=True)
class Frame:
    file: str
    line: int
    function: str
    code: str
    user: bool

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line} in {self.function}"


@dataclass(slots=True)
class ReadableError:
    """An error split into its headline, its frames (innermost last) and other stack lines."""

    name: str
    message: str
    frames: list[Frame] = field(default_factory=list)
    stack: list[str] = field(default_factory=list)  # every stack line, as sent

    @property
    def headline(self) -> str:
        return f"{self.name}: {self.message}" if self.message else self.name

    @property
    def user_frame(self) -> Frame | None:
        """The innermost frame of the user's code: where the error was raised in their code."""
        return next((f for f in reversed(self.frames) if f.user), None)


def read_error(error: object) -> ReadableError:
    if not isinstance(error, Mapping):
        return ReadableError("Error", "" if error is None else str(error))
    stack = error.get("stack")
    lines = stack.splitlines() if isinstance(stack, str) else []
    readable = ReadableError(
        str(error.get("name") or "Error"), str(error.get("message") or ""), stack=lines
    )
    index = 0
    while index < len(lines):
        match = _PY_FRAME.match(lines[index]) or _JS_FRAME.match(lines[index])
        index += 1
        if match is None:
            continue
        code = ""
        if match.re is _PY_FRAME and index < len(lines) and not _PY_FRAME.match(lines[index]):
            candidate = lines[index]
            if candidate.startswith("    ") and not candidate.strip().startswith(("^", "~")):
                code = candidate.strip()
                index += 1
        file = match.group("file").strip()
        readable.frames.append(
            Frame(
                file,
                int(match.group("line")),
                (match.group("fn") or "<anonymous>").strip(),
                code,
                user=_LIBRARY.search(file) is None,
            )
        )
    return readable


def marked_lines(readable: ReadableError) -> list[tuple[str, bool]]:
    """Every stack line with whether it belongs to a user frame (the frame line and its code)."""
    user_files = {f.file for f in readable.frames if f.user}
    out: list[tuple[str, bool]] = []
    mine = False
    for line in readable.stack:
        match = _PY_FRAME.match(line) or _JS_FRAME.match(line)
        if match is not None:
            mine = match.group("file").strip() in user_files
        elif not line.startswith("    "):
            mine = False
        out.append((line, mine))
    return out


def error_lines(error: object, *, indent: str = "  ") -> list[str]:
    """The error as lines for a terminal: headline, the user's frame, then the whole stack."""
    readable = read_error(error)
    out = [readable.headline]
    frame = readable.user_frame
    if frame is not None:
        out.append(f"{indent}at {frame.where}  (your code)")
        if frame.code:
            out.append(f"{indent}    {frame.code}")
    if readable.stack:
        out.append(f"{indent}stack:")
        for line, mine in marked_lines(readable):
            out.append(f"{indent}{'>' if mine else ' '} {line}")
    return out
