"""Every ``inngest-mw`` option is checked as it is parsed: a bad value is one line saying what to do.

Each case runs the real command in a subprocess and asserts its whole stderr, its exit status and
that nothing started (no stdout, no traceback).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEY_HELP = (
    "a signing key is an even number of hex digits, optionally after a signkey-<env>- prefix"
    " (e.g. signkey-test-0123abcd); generate one with `openssl rand -hex 32`"
)
NOT_JSON = (
    "not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1));"
    " quote it, e.g. --data '{\"id\": 1}'"
)


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "inngest_mw_dev", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["dev", "--port", "99999"],
            "argument --port: give a port from 1 to 65535 (or 0 for any"
            " free port), not 99999 (see inngest-mw dev --help)",
        ),
        (
            ["dev", "--port", "-1"],
            "argument --port: give a port from 1 to 65535 (or 0 for any"
            " free port), not -1 (see inngest-mw dev --help)",
        ),
        (
            ["dev", "--port", "http"],
            "argument --port: 'http' is not a whole number (see inngest-mw dev --help)",
        ),
        (
            ["dev", "--poll-interval", "-1"],
            "argument --poll-interval: give a poll interval of at"
            " least 1 second, not -1 (leave it out to sync only at start) (see inngest-mw dev --help)",
        ),
        (
            ["dev", "--poll-interval", "0.01"],
            "argument --poll-interval: give a poll interval of at"
            " least 1 second, not 0.01 (leave it out to sync only at start)"
            " (see inngest-mw dev --help)",
        ),
        (
            ["dev", "--poll-interval", "inf"],
            "argument --poll-interval: 'inf' is not a finite number (see inngest-mw dev --help)",
        ),
        (
            ["dev", "--retry-base", "-5"],
            "argument --retry-base: give a first retry delay of more"
            " than 0 and at most 3600 seconds, not -5 (see inngest-mw dev --help)",
        ),
        (
            ["dev", "--retry-base", "nan"],
            "argument --retry-base: 'nan' is not a finite number (see inngest-mw dev --help)",
        ),
        (
            ["dev", "--retry-base", "soon"],
            "argument --retry-base: 'soon' is not a number (see inngest-mw dev --help)",
        ),
        (
            ["dev", "--signing-key", "nothex"],
            f"argument --signing-key: {KEY_HELP} (see inngest-mw dev --help)",
        ),
        (
            ["dev", "--signing-key", "signkey-test-abc"],
            f"argument --signing-key: {KEY_HELP} (see inngest-mw dev --help)",
        ),
        (
            ["dev", "--event-key", " "],
            "argument --event-key: an event key cannot be empty (see inngest-mw dev --help)",
        ),
        (
            ["dev", "-u", "localhost:8000"],
            "argument -u/--url: 'localhost:8000' is not an http(s)"
            " URL with a host, e.g. http://127.0.0.1:8000/api/inngest (see inngest-mw dev --help)",
        ),
        (
            ["dev", "-u", "http://[::1"],
            "argument -u/--url: 'http://[::1' is not a URL (Invalid"
            " IPv6 URL) (see inngest-mw dev --help)",
        ),
        (
            ["dev", "-u", "http://127.0.0.1:0/api"],
            "argument -u/--url: 'http://127.0.0.1:0/api'"
            " has port 0; give the port it listens on (see inngest-mw dev --help)",
        ),
        (
            ["dev", "--host", ""],
            "argument --host: give an address to listen on, e.g. 127.0.0.1,"
            " not an empty string (see inngest-mw dev --help)",
        ),
        (
            ["dev", "--db", ""],
            "argument --db: give a file path, not an empty string (see inngest-mw dev --help)",
        ),
        (
            ["demo", "--db", ""],
            "argument --db: give a file path, not an empty string (see inngest-mw demo --help)",
        ),
        (
            ["runs", "--limit", "0"],
            "argument --limit: give a number of runs from 1 to 500, not 0"
            " (see inngest-mw runs --help)",
        ),
        (
            ["runs", "--since", "yesterday"],
            "argument --since: 'yesterday' is not a time: give an"
            " ISO 8601 time (2026-05-01T12:00:00Z), epoch seconds or milliseconds, or an age such as"
            " 30s, 15m, 2h, 7d (see inngest-mw runs --help)",
        ),
        (
            ["cancel", "--function", "f", "--until", "later"],
            "argument --until: 'later' is not a"
            " time: give an ISO 8601 time (2026-05-01T12:00:00Z), epoch seconds or milliseconds, or"
            " an age such as 30s, 15m, 2h, 7d (see inngest-mw cancel --help)",
        ),
        (
            ["runs", "--url", "127.0.0.1:8288"],
            "argument --url: '127.0.0.1:8288' is not an http(s)"
            " URL with a host, e.g. http://127.0.0.1:8000/api/inngest (see inngest-mw runs --help)",
        ),
        (
            ["runs", "--signing-key", "zz"],
            f"argument --signing-key: {KEY_HELP} (see inngest-mw runs --help)",
        ),
        (
            ["send", ""],
            "argument NAME: give an event name, e.g. shop/checkout, not an empty"
            " string (see inngest-mw send --help)",
        ),
        (
            ["send", "a/b", "--data", "{qty: 4}"],
            f"argument --data: {NOT_JSON} (see inngest-mw send --help)",
        ),
        (
            ["send", "a/b", "--data", "[1]"],
            "argument --data: give a JSON object, e.g. --data"
            " '{\"id\": 1}', not [1] (see inngest-mw send --help)",
        ),
        (
            ["send", "a/b", "--event-key", ""],
            "argument --event-key: an event key cannot be empty (see inngest-mw send --help)",
        ),
        (
            ["invoke", "fn", "--data", "3"],
            "argument --data: give a JSON object, e.g. --data"
            " '{\"id\": 1}', not 3 (see inngest-mw invoke --help)",
        ),
        (
            ["invoke", " "],
            "argument FN: give a function ID or name, not an empty string"
            " (see inngest-mw invoke --help)",
        ),
        (
            ["run", ""],
            "argument RUN: give a run ID or the start of one, not an empty string"
            " (see inngest-mw run --help)",
        ),
        (
            ["cancel", ""],
            "argument RUN: give a run ID or the start of one, not an empty string"
            " (see inngest-mw cancel --help)",
        ),
        (
            ["rerun", "01ABC", "--from-step", ""],
            "argument --from-step: give a step name or ID,"
            " not an empty string (see inngest-mw rerun --help)",
        ),
        (
            ["runs", "--status", "sleeping"],
            "argument --status: invalid choice: 'sleeping' (choose"
            " from 'running', 'completed', 'failed', 'cancelled', 'skipped')"
            " (see inngest-mw runs --help)",
        ),
        ([], "the following arguments are required: COMMAND (see inngest-mw --help)"),
        (
            ["serve"],
            "argument COMMAND: invalid choice: 'serve' (choose from 'dev', 'runs',"
            " 'workers', 'run', 'send', 'invoke', 'signal', 'cancel', 'rerun', 'demo')"
            " (see inngest-mw --help)",
        ),
    ],
)
def test_a_bad_option_is_one_line_saying_what_to_give(args: list[str], message: str) -> None:
    result = _cli(*args)
    assert (result.returncode, result.stdout, result.stderr) == (2, "", f"error: {message}\n")


def test_a_bad_signing_key_in_the_environment_is_refused_too() -> None:
    result = _cli("runs", env={**os.environ, "INNGEST_SIGNING_KEY": "secret"})
    assert result.returncode == 2
    assert (
        result.stderr == f"error: argument --signing-key: {KEY_HELP} (see inngest-mw runs --help)\n"
    )


@pytest.mark.parametrize("key", ["0123abcd", "signkey-test-0123ABCD", "signkey-prod-00ff"])
def test_a_hex_signing_key_is_accepted_with_or_without_its_prefix(key: str) -> None:
    # Against a port nothing listens on, an accepted key gets as far as the connection.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        result = _cli("runs", "--url", url, "--signing-key", key)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: cannot reach the engine at {url} (")
    assert result.stderr.endswith("); is `inngest-mw dev` running?\n")


def test_a_port_in_use_is_one_sentence(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = _cli(
            "dev", "--port", str(port), "--connect-port", "0", "--db", str(tmp_path / "engine.db")
        )
    assert (result.returncode, result.stderr) == (
        1,
        (
            f"error: port {port} on 127.0.0.1 is already in use (another engine?); stop what holds it"
            " or give another port with --port (0 picks a free one)\n"
        ),
    )
    assert "Traceback" not in result.stdout


def test_an_address_not_of_this_machine_is_one_sentence(tmp_path: Path) -> None:
    result = _cli("dev", "--host", "192.0.2.1", "--port", "0", "--db", str(tmp_path / "e.db"))
    assert (result.returncode, result.stderr) == (
        1,
        (
            "error: cannot listen on 192.0.2.1:0 (Cannot assign requested address); give an address"
            " of this machine with --host, e.g. 127.0.0.1 or 0.0.0.0\n"
        ),
    )
