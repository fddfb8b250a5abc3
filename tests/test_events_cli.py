"""``sse-sim validate-events`` and ``sse-sim schema events``: exit codes, one line per problem."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from sse_sim.cli import app

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "data" / "examples"
runner = CliRunner()
GOOD = (EXAMPLES / "notification_1_bonus_granted.json").read_text()
GOOD_LINE = json.dumps(json.loads(GOOD))


def run(*args: str, stdin: bytes | None = None):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args), input=stdin)


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_valid_file_exit_0() -> None:
    result = run("validate-events", str(EXAMPLES / "notification_1_bonus_granted.json"))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().endswith("1 event(s), all valid (lenient)")


def test_documented_example_with_bad_uuid_exit_1_one_line() -> None:
    path = str(EXAMPLES / "notification_2_promotion_available.json")
    result = run("validate-events", path, "--strict")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"{path}:6: $.event_data.message_id: expected a UUID (8-4-4-4-12 hex digits 0-9, a-f), "
        "got string 'b8e9d045-2c3e-5f6g-0d9b-8e7f6g5b4c3d'"
    ]
    assert "1 problem(s)" in result.stderr


def test_json_lines_from_stdin_with_line_numbers() -> None:
    bad = GOOD_LINE.replace('"is_read": false', '"is_read": "no"')
    stdin = "\n".join(
        [GOOD_LINE, "", bad, '{"type": "keepalive", "timestamp": "x"}', "{trunc"]
    ).encode()
    result = run("validate-events", "-", stdin=stdin)
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "<stdin>:3: $.event_data.is_read: expected a boolean, got string 'no'",
        "<stdin>:4: $.timestamp: expected a time as YYYY-MM-DD HH:MM:SS, got string 'x'",
        "<stdin>:5: $: invalid JSON: Expecting property name enclosed in double quotes (column 2)",
    ]


def test_json_array_paths_and_lines(tmp_path: Path) -> None:
    events = [json.loads(GOOD), {"type": "error"}]
    path = write(tmp_path, "events.json", json.dumps(events, indent=2).encode())
    result = run("validate-events", path)
    assert result.exit_code == 1
    # A missing field points at the line where its object starts.
    assert result.stdout.splitlines() == [f"{path}:19: $[1].message: required field is missing"]


def test_large_array_lines_and_paths(tmp_path: Path) -> None:
    # 20,000 pretty-printed events with a few bad ones, far apart: each problem keeps its exact
    # line and path. Looking lines up once was quadratic (a problem in each of 10,000 items took
    # two minutes); bench/bench_validate.py times it, this checks the answers.
    good = json.loads(GOOD)
    bad = {
        0: ("player_id", -1),
        7: ("is_read", "no"),
        9_999: ("player_id", 0),
        19_998: ("time", "yesterday"),
        19_999: None,  # a system event missing its message: points at the object's first line
    }
    pieces, expected = [], []
    line = 2  # the first item starts on line 2, after "["
    for index in range(20_000):
        item = json.loads(GOOD)
        spec = bad.get(index, ...)
        if spec is None:
            item = {"type": "error", "timestamp": "2025-10-22 14:30:45"}
        elif spec is not ...:
            field, value = spec
            (item["event_data"] if field in good["event_data"] else item)[field] = value
        text = "\n".join("  " + row for row in json.dumps(item, indent=2).splitlines())
        if spec is None:
            expected.append(f"{line}: $[{index}].message: required field is missing")
        elif spec is not ...:
            field, value = spec
            offset = next(n for n, row in enumerate(text.splitlines()) if f'"{field}":' in row)
            where = "event_data." if field in good["event_data"] else ""
            expected.append(f"{line + offset}: $[{index}].{where}{field}: ")
        pieces.append(text)
        line += text.count("\n") + 1
    path = write(tmp_path, "large.json", ("[\n" + ",\n".join(pieces) + "\n]\n").encode())
    result = run("validate-events", path)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert len(lines) == len(expected)
    for got, want in zip(lines, expected, strict=True):
        assert got.startswith(f"{path}:{want}"), (got, want)
    assert lines[2].endswith("expected an integer in 1..9223372036854775807, got integer 0")
    assert "5 problem(s) on 5 line(s), 20000 event(s) read (lenient)" in result.stderr


def test_strict_and_format_options(tmp_path: Path) -> None:
    custom = '{"brand_id": 1, "player_id": 2, "event_type": "custom", "event_data": {}}\n'
    path = write(tmp_path, "c.jsonl", custom.encode() * 2)
    assert run("validate-events", path).exit_code == 0
    strict = run("validate-events", path, "--strict")
    assert strict.exit_code == 1 and len(strict.stdout.splitlines()) == 2
    assert run("validate-events", path, "--format", "json").exit_code == 1
    one = write(tmp_path, "one.json", custom.encode())
    assert run("validate-events", one, "--format", "jsonl").exit_code == 0
    assert run("validate-events", one, "--format", "yaml").exit_code == 2


def test_unreadable_file_exit_2(tmp_path: Path) -> None:
    result = run("validate-events", str(tmp_path / "missing.json"))
    assert result.exit_code == 2 and "cannot read" in result.stderr
    result = run("validate-events", str(tmp_path))
    assert result.exit_code == 2


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", ["F:1: $: no events (the input is empty)"]),
        (b"\x00\xff\xfe\x80garbage\x9c", ["F:1: $: not UTF-8 text (column 2)"]),
        (
            b'{"brand_id": 1, "player_id": 2, "event_ty',
            ["F:1: $: invalid JSON: Unterminated string starting at (column 33)"],
        ),
        (b"[" * 100_000 + b"]" * 100_000, ["F:1: $: invalid JSON: nested too deeply to parse"]),
        (b'{"a": NaN}', ["F:1: $: invalid JSON: NaN is not valid JSON"]),
        (b"[]", ["F:1: $: expected an event or a non-empty array of events, got an empty array"]),
        (
            b"42",
            [
                "F:1: $: expected a JSON object (an event envelope or a system event), got integer 42"
            ],
        ),
    ],
    ids=["empty", "binary", "truncated", "deep", "nan", "empty-array", "scalar"],
)
def test_bad_input_clear_lines_no_traceback(
    tmp_path: Path, data: bytes, expected: list[str]
) -> None:
    path = write(tmp_path, "F", data)
    result = run("validate-events", path)
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stdout.replace(path, "F").splitlines() == expected


def test_binary_line_inside_json_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path, "F", (GOOD_LINE + "\n").encode() + b"\xff\xfe\x00\n" + GOOD_LINE.encode()
    )
    result = run("validate-events", path)
    assert result.exit_code == 1
    assert result.stdout.replace(path, "F").splitlines() == ["F:2: $: not UTF-8 text (column 1)"]


def test_ten_megabyte_lines(tmp_path: Path) -> None:
    big = "x" * 10_000_000
    valid = json.dumps(
        {"brand_id": 1, "player_id": 2, "event_type": "message", "event_data": {"text": big}}
    )
    garbage = "{" + big
    path = write(tmp_path, "big.jsonl", f"{valid}\n{garbage}\n{valid}\n".encode())
    result = run("validate-events", path)
    assert result.exit_code == 1
    (line,) = result.stdout.splitlines()
    assert (
        line
        == f"{path}:2: $: invalid JSON: Expecting property name enclosed in double quotes (column 2)"
    )
    path = write(
        tmp_path, "big.json", valid.replace('"text"', '"text", "brand_id": "1"', 0).encode()
    )
    assert run("validate-events", path).exit_code == 0


def test_console_script_never_shows_a_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, "deep.json", b'{"event_data":' * 50_000 + b"\xff")
    for args in ([path], ["-"]):
        proc = subprocess.run(
            [str(Path(sys.executable).with_name("sse-sim")), "validate-events", *args],
            input=b"\x89PNG\r\n\x1a\n\x00\x00",
            capture_output=True,
            timeout=60,
        )
        assert proc.returncode == 1, proc.stderr
        assert b"Traceback" not in proc.stderr + proc.stdout
        lines = proc.stdout.decode().splitlines()
        assert lines and all(line.startswith(("<stdin>:", f"{path}:")) for line in lines)
        assert proc.stderr.decode().count("\n") == 1


def test_schema_events_command() -> None:
    result = run("schema", "events")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert "event.notification" in schema["$defs"] and "event.keepalive" in schema["$defs"]
    one = json.loads(
        run("schema", "events", "--event", "gamification_balance_update", "--strict").stdout
    )
    assert one["properties"]["event_type"] == {
        "const": "gamification_balance_update",
        "description": "The type of event.",
    }
    assert one["additionalProperties"] is False
    bad = run("schema", "events", "--event", "nope")
    assert bad.exit_code == 2 and "unknown event type 'nope'" in bad.stderr
