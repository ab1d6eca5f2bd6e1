"""Shared fixtures: real MCP servers as subprocesses, the app on a real socket, settings per test."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import structlog

from backend.config import ENV_FILE_VARIABLE
from backend.mcp.servers_file import ServerSpec
from tests.support.app_runner import RunningApp, run_app
from tests.support.fake_openai import FakeOpenAI, run_fake_openai
from tests.support.specs import calculator_spec, chat_settings, make_settings, testserver_spec

pytest_plugins = ["anyio"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# What a developer's shell may hold for their own `make run` (README quick start): none of it reaches a test.
_DEVELOPER_VARIABLES = ("MCPCHAT_", "OPENAI_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test runs without the developer's MCP Chat, OpenAI and proxy variables, reads no `.env` (nor do the
    app processes it starts), and works in its own directory, so relative paths never land in the checkout."""
    for name in list(os.environ):
        upper = name.upper()
        if upper.startswith(_DEVELOPER_VARIABLES) and not upper.startswith("MCPCHAT_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv(ENV_FILE_VARIABLE, "")
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put logging back as it was after a test that configures it (as `mcpchat serve` does)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        structlog.reset_defaults()
        root.handlers[:], root.level = handlers, level


@pytest.fixture
def marker_dir(tmp_path: Path) -> Path:
    """Where the test server writes files that prove what happened inside it."""
    path = tmp_path / "markers"
    path.mkdir()
    return path


def both_servers(marker_dir: Path) -> list[ServerSpec]:
    """The calculator and the test server (5 s call timeout), over stdio."""
    return [calculator_spec(), testserver_spec(env={"TEST_SERVER_MARKER_DIR": str(marker_dir)}, timeout_s=5)]


@pytest.fixture
async def app(tmp_path: Path, marker_dir: Path) -> AsyncIterator[RunningApp]:
    """The app with the calculator and the test server over stdio, both ready."""
    async with run_app(make_settings(tmp_path), both_servers(marker_dir)) as running:
        await running.wait_ready("calculator", "test")
        yield running


@pytest.fixture
async def fake_llm() -> AsyncIterator[FakeOpenAI]:
    """A fake OpenAI-compatible server on loopback, scripted per test."""
    async with run_fake_openai() as fake:
        yield fake


@pytest.fixture
async def chat_app(tmp_path: Path, marker_dir: Path, fake_llm: FakeOpenAI) -> AsyncIterator[RunningApp]:
    """The app with the calculator and the test server, chatting with the fake model."""
    async with run_app(chat_settings(tmp_path, fake_llm), both_servers(marker_dir)) as running:
        await running.wait_ready("calculator", "test")
        yield running
