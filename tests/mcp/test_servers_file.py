from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from backend.mcp.servers_file import ServersFileError, load_servers_file


def write(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "servers.json"
    path.write_text(json.dumps(document) if not isinstance(document, str) else document)
    return path


def test_servers_file_reads_claude_desktop_format_when_stdio_and_http_are_mixed(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "mcpServers": {
                "calc": {"command": "python", "args": ["-m", "calc"], "env": {"A": "1"}, "timeout_s": 5},
                "remote": {"url": "http://127.0.0.1:9/mcp", "headers": {"X-Key": "k"}},
            }
        },
    )
    calc, remote = load_servers_file(path, environ={})
    assert (calc.transport, calc.command, calc.args, dict(calc.env), calc.call_timeout_s) == (
        "stdio",
        "python",
        ("-m", "calc"),
        {"A": "1"},
        5,
    )
    assert calc.cwd == str(tmp_path.resolve())
    assert (remote.transport, remote.url, dict(remote.headers)) == ("http", "http://127.0.0.1:9/mcp", {"X-Key": "k"})


def test_servers_file_reads_vscode_format_when_types_are_given(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "servers": {
                "a": {"type": "stdio", "command": "node"},
                "b": {"type": "http", "url": "http://127.0.0.1:1/mcp"},
                "c": {"type": "sse", "url": "http://127.0.0.1:1/sse"},
            }
        },
    )
    assert [spec.transport for spec in load_servers_file(path, environ={})] == ["stdio", "http", "sse"]


def test_servers_file_substitutes_env_and_python_when_referenced(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {"mcpServers": {"s": {"command": "${python}", "args": ["--token=${env:TOKEN}"], "env": {"K": "${env:TOKEN}"}}}},
    )
    (spec,) = load_servers_file(path, environ={"TOKEN": "secret"})
    assert spec.command == sys.executable
    assert spec.args == ("--token=secret",)
    assert spec.env["K"] == "secret"
    assert spec.config_error is None


def test_servers_file_marks_only_that_server_when_env_variable_is_unset(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {"mcpServers": {"ok": {"command": "x"}, "bad": {"url": "http://h/${env:MISSING_HOST_VAR}"}}},
    )
    ok, bad = load_servers_file(path, environ={})
    assert ok.config_error is None
    assert bad.config_error is not None and "MISSING_HOST_VAR" in bad.config_error


def test_servers_file_reads_enabled_and_timeouts_when_given(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {"mcpServers": {"s": {"command": "x", "enabled": False, "connect_timeout_s": 3, "description": "d"}}},
    )
    (spec,) = load_servers_file(path, environ={})
    assert (spec.is_enabled, spec.connect_timeout_s, spec.call_timeout_s, spec.description) == (False, 3, 60, "d")


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("{not json", "not valid JSON"),
        ([], "top level must be an object"),
        ({"other": {}}, "no 'mcpServers'"),
        ({"mcpServers": []}, "must be an object"),
        ({"mcpServers": {"nothing": {"args": ["x"]}}}, "server 'nothing': neither stdio nor http"),
        ({"mcpServers": {"s": {"type": "stdio", "url": "http://x"}}}, "server 's': type 'stdio' needs a 'command'"),
        ({"mcpServers": {"s": {"type": "sse"}}}, "server 's': type 'sse' needs a 'url'"),
        ({"mcpServers": {"s": {"command": "x", "timeout_s": -1}}}, "server 's': timeout_s"),
        ({"mcpServers": {"s": "python"}}, "server 's': must be an object"),
        ({"mcpServers": {"bad name!": {"command": "x"}}}, "server 'bad name!': names may hold only"),
    ],
)
def test_servers_file_error_names_file_and_server_when_invalid(tmp_path: Path, document: object, message: str) -> None:
    path = write(tmp_path, document)
    with pytest.raises(ServersFileError) as caught:
        load_servers_file(path, environ={})
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_servers_file_error_names_file_when_missing(tmp_path: Path) -> None:
    with pytest.raises(ServersFileError, match="cannot be read"):
        load_servers_file(tmp_path / "absent.json", environ={})


def test_bundled_servers_file_runs_calculator_with_this_interpreter() -> None:
    from backend.config import BUNDLED_SERVERS_FILE

    (spec,) = load_servers_file(BUNDLED_SERVERS_FILE, environ={})
    assert (spec.name, spec.command, spec.args) == ("calculator", sys.executable, ("-m", "mcp_servers.calculator"))
    assert Path(spec.cwd or "", "mcp_servers", "calculator", "__main__.py").is_file()
