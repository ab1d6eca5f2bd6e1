"""The `mcpchat` command and `make run` as a user runs them: real processes, real signals."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import anyio
import httpx
import pytest

from tests.support.processes import free_port, wait_http_ok
from tests.support.specs import REPO_ROOT
from tests.support.waiting import is_alive


def run_cli(*args: str, env: dict[str, str] | None = None, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backend.cli", *args],
        cwd=REPO_ROOT,
        env={**os.environ, "MCPCHAT_ENV": "test", **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def write_servers(path: Path, servers: Mapping[str, object]) -> Path:
    path.write_text(json.dumps({"mcpServers": servers}))
    return path


def testserver_entry(*extra_args: str) -> dict[str, object]:
    args = ["-m", "tests.support.mcp_test_server", *extra_args]
    return {"command": sys.executable, "args": args, "cwd": str(REPO_ROOT)}


def test_serve_exits_nonzero_naming_file_and_server_when_servers_file_is_bad(tmp_path: Path) -> None:
    path = write_servers(tmp_path / "servers.json", {"good": testserver_entry(), "orphan": {"args": ["x"]}})
    result = run_cli("serve", env={"MCPCHAT_SERVERS_FILE": str(path), "MCPCHAT_PORT": str(free_port())})
    assert result.returncode == 2
    assert str(path) in result.stderr
    assert "server 'orphan': neither stdio nor http" in result.stderr


def test_serve_exits_nonzero_naming_variable_when_setting_is_bad() -> None:
    result = run_cli("serve", env={"MCPCHAT_PORT": "not-a-port"})
    assert result.returncode == 2
    assert "MCPCHAT_PORT" in result.stderr


def test_servers_check_reports_tools_when_every_server_starts(tmp_path: Path) -> None:
    calculator = {"command": sys.executable, "args": ["-m", "mcp_servers.calculator"], "cwd": str(REPO_ROOT)}
    path = write_servers(tmp_path / "servers.json", {"calculator": calculator})
    result = run_cli("servers", "check", "--file", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[ok  ] calculator (stdio): ready" in result.stdout
    assert "tools: add, sum, sum_many, multiply, divide" in result.stdout
    assert "1 of 1 servers ok" in result.stdout


def test_servers_check_fails_with_the_error_when_a_server_cannot_start(tmp_path: Path) -> None:
    servers = {"broken": testserver_entry("--fail-on-start", "no credentials"), "test": testserver_entry()}
    path = write_servers(tmp_path / "servers.json", servers)
    result = run_cli("servers", "check", "--file", str(path))
    assert result.returncode == 1
    assert "[FAIL] broken (stdio): failed" in result.stdout
    assert "no credentials" in result.stdout
    assert "[ok  ] test (stdio): ready" in result.stdout


def test_serve_exits_nonzero_naming_the_variable_when_the_database_is_in_memory() -> None:
    result = run_cli("serve", env={"MCPCHAT_DATABASE_URL": "sqlite://", "MCPCHAT_PORT": str(free_port())})
    assert result.returncode == 2
    assert "MCPCHAT_DATABASE_URL" in result.stderr
    assert "in-memory" in result.stderr


def test_serve_exits_nonzero_naming_the_variable_when_redis_does_not_answer(tmp_path: Path) -> None:
    env = {
        "MCPCHAT_REDIS_URL": "redis://:hunter2-secret@127.0.0.1:1/0",  # nothing listens on port 1
        "MCPCHAT_PORT": str(free_port()),
        "MCPCHAT_DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}",
        "MCPCHAT_SERVERS_FILE": str(write_servers(tmp_path / "servers.json", {})),
    }
    result = run_cli("serve", env=env)
    assert result.returncode != 0
    assert "MCPCHAT_REDIS_URL: Redis at 127.0.0.1:1/0 did not answer" in result.stderr
    assert "hunter2-secret" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        ((), {"MCPCHAT_HOST": "0.0.0.0"}, ("MCPCHAT_AUTH is single-user", "MCPCHAT_HOST must be a loopback address")),
        (("--host", "0.0.0.0"), {}, ("MCPCHAT_AUTH is single-user", "not '0.0.0.0'")),
        (
            (),
            {"MCPCHAT_ENV": "prod"},
            ("MCPCHAT_AUTH is multi-user (the default when MCPCHAT_ENV=prod)", "MCPCHAT_SECRET_KEYS must be set"),
        ),
    ],
    ids=["host-variable", "host-option", "prod-default"],
)
def test_serve_exits_nonzero_naming_auth_and_host_when_the_auth_mode_cannot_serve_there(
    args: tuple[str, ...], env: dict[str, str], says: tuple[str, ...]
) -> None:
    result = run_cli("serve", *args, env={"MCPCHAT_PORT": str(free_port()), **env})
    assert result.returncode == 2
    for fragment in says:
        assert fragment in result.stderr


def _checkout_database_state() -> tuple[float, int] | None:
    database = REPO_ROOT / "data" / "mcpchat.db"
    return (database.stat().st_mtime, database.stat().st_size) if database.exists() else None


def test_make_run_stops_with_all_children_when_sent_sigterm(tmp_path: Path) -> None:
    path = write_servers(tmp_path / "servers.json", {"test": testserver_entry("--ignore-stdin-eof")})
    port = free_port()
    database = tmp_path / "data" / "mcpchat.db"
    env = {
        **os.environ,
        "MCPCHAT_PORT": str(port),
        "MCPCHAT_SERVERS_FILE": str(path),
        "MCPCHAT_ENV": "test",
        "MCPCHAT_DATABASE_URL": f"sqlite:///{database}",
    }
    checkout_database = _checkout_database_state()
    make = subprocess.Popen(["make", "--no-print-directory", "run"], cwd=REPO_ROOT, env=env)
    try:
        anyio.run(wait_http_ok, f"http://127.0.0.1:{port}/readyz")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            child = client.get("/v1/servers/test").json()["pid"]
            grandchild = int(
                client.post("/v1/tools/test__spawn_grandchild/call", json={"arguments": {}}).json()["content"][0][
                    "text"
                ]
            )
        assert is_alive(child) and is_alive(grandchild)
        make.send_signal(signal.SIGTERM)
        assert make.wait(timeout=15) is not None
    finally:
        if make.poll() is None:
            make.kill()
    assert not is_alive(child)
    assert not is_alive(grandchild)
    # The test's own database, and not the developer's in the checkout.
    assert database.exists()
    assert _checkout_database_state() == checkout_database


def test_users_create_makes_an_account_with_the_password_from_stdin_once_per_email(tmp_path: Path) -> None:
    database = tmp_path / "app.db"
    env = {"MCPCHAT_DATABASE_URL": f"sqlite:///{database}"}
    password = "correct horse battery staple"
    made = run_cli("users", "create", "--email", "Ada@Example.com", "--admin", env=env, stdin=f"{password}\n")
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("created admin ada@example.com (id ")
    again = run_cli("users", "create", "--email", "ADA@example.com", env=env, stdin=f"{password}\n")
    assert again.returncode == 1
    assert "exists already" in again.stderr
    short = run_cli("users", "create", "--email", "bob@example.com", env=env, stdin="tiny-secret\n")
    assert short.returncode == 1
    assert "at least 12 characters" in short.stderr
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT email, role, password_hash FROM users ORDER BY created_at").fetchall()
    assert [(email, role) for email, role, _ in rows] == [("ada@example.com", "admin")]  # it claimed the owner's
    assert rows[0][2].startswith("$argon2id$")
    for run in (made, again, short):
        assert password not in run.stdout + run.stderr
        assert "tiny-secret" not in run.stdout + run.stderr
