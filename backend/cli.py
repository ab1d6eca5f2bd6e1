"""The `mcpchat` command: `serve` runs the app, `servers check` tries every server in a servers file, `users create`
makes an account, `db upgrade` migrates the database."""

from __future__ import annotations

import argparse
import contextlib
import gc
import getpass
import resource
import socket
import sys
from pathlib import Path

import anyio
import uvicorn
from pydantic import SecretStr

from backend.app import create_app
from backend.config import Settings, SettingsError, load_settings
from backend.db.api_key_store import ApiKeyStore
from backend.db.audit_store import AuditStore
from backend.db.database import open_database
from backend.db.migrate import current_revision, upgrade
from backend.db.models import User, UserRole
from backend.db.refresh_token_store import RefreshTokenStore
from backend.db.user_store import UserStore
from backend.errors import AppError
from backend.logging import configure_logging
from backend.mcp.servers_file import ServersFileError, load_servers_file
from backend.services.audit_log import AuditLog
from backend.services.server_check import ServerReport, check_servers
from backend.services.user_service import UserService

EXIT_CONFIG_ERROR = 2


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `mcpchat` console script."""
    parser = argparse.ArgumentParser(prog="mcpchat", description="MCP Chat: an LLM chat host for MCP servers.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP API (what `make run` runs)")
    serve.add_argument("--host", help="bind address (default: MCPCHAT_HOST)")
    serve.add_argument("--port", type=int, help="port (default: MCPCHAT_PORT)")
    servers = commands.add_parser("servers", help="MCP servers file tools")
    servers_commands = servers.add_subparsers(dest="servers_command", required=True)
    check = servers_commands.add_parser("check", help="validate the servers file and try every server")
    check.add_argument("--file", type=Path, help="servers file (default: MCPCHAT_SERVERS_FILE)")
    db = commands.add_parser("db", help="database tools")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser("upgrade", help="apply migrations to MCPCHAT_DATABASE_URL (start-up does this too)")
    users = commands.add_parser("users", help="user accounts")
    users_commands = users.add_subparsers(dest="users_command", required=True)
    create = users_commands.add_parser(
        "create", help="create an account; the password is asked for twice, or read as one line from stdin"
    )
    create.add_argument("--email", required=True)
    create.add_argument("--name", help="display name")
    create.add_argument("--admin", action="store_true", help="give the account the admin role (default: member)")
    args = parser.parse_args(argv)

    # `serve --host/--port` override settings, so the rule on MCPCHAT_HOST holds for the address actually bound.
    bind = {name: value for name in ("host", "port") if (value := getattr(args, name, None)) is not None}
    try:
        settings = load_settings(**bind)
    except SettingsError as exc:
        print(f"mcpchat: {exc}", file=sys.stderr)  # noqa: T201 - the CLI's own output
        return EXIT_CONFIG_ERROR
    configure_logging(level=settings.log_level, is_json=settings.is_json_logging)
    try:
        if args.command == "serve":
            return _serve(settings)
        if args.command == "users":
            return _create_user(settings, args.email, args.name, UserRole.ADMIN if args.admin else UserRole.MEMBER)
        if args.command == "db":
            revision = anyio.run(_upgrade_database, settings.database_url)
            print(f"database at revision {revision}")  # noqa: T201 - the CLI's own output
            return 0
        path = args.file or settings.servers_file
        reports = anyio.run(check_servers, load_servers_file(path), settings)
        return _print_reports(path, reports)
    except ServersFileError as exc:
        print(f"mcpchat: {exc}", file=sys.stderr)  # noqa: T201 - the CLI's own output
        return EXIT_CONFIG_ERROR


def _create_user(settings: Settings, email: str, name: str | None, role: UserRole) -> int:
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Password again: ") != password:
            print("mcpchat: the two passwords differ; nothing was created", file=sys.stderr)  # noqa: T201
            return 1
    else:
        password = sys.stdin.readline().removesuffix("\n")
    try:
        user = anyio.run(_insert_user, settings, email, SecretStr(password), name, role)
    except AppError as exc:  # the email or password was refused: the message says why
        print(f"mcpchat: {exc.detail}", file=sys.stderr)  # noqa: T201 - the CLI's own output
        return 1
    print(f"created {user.role} {user.email} (id {user.id})")  # noqa: T201 - the CLI's own output
    return 0


async def _insert_user(settings: Settings, email: str, password: SecretStr, name: str | None, role: UserRole) -> User:
    database = open_database(settings.database_url)
    try:
        await upgrade(database)
        refresh_tokens = RefreshTokenStore(database, settings.refresh_token_ttl_s)
        audit = AuditLog(AuditStore(database))
        users = UserService(UserStore(database), refresh_tokens, ApiKeyStore(database), audit)
        return await users.create(email, password, name, role)
    finally:
        await database.aclose()


async def _upgrade_database(url: str) -> str | None:
    database = open_database(url)
    try:
        await upgrade(database)
        return await current_revision(database)
    finally:
        await database.aclose()


def _serve(settings: Settings) -> int:
    raise_open_files_limit()
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        proxy_headers=False,  # X-Forwarded-* count only from MCPCHAT_TRUSTED_PROXIES (create_app)
        timeout_graceful_shutdown=5,
    )
    server = _Server(config)
    server.run()
    return 0 if server.started else 1


def raise_open_files_limit() -> None:
    """Lift this process's soft limit on open files to its hard limit, where the system allows it."""
    # A streamed turn holds the client's socket and a model connection: 1,000 of them overflow a soft limit of 1,024.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):  # an unlimited hard limit cannot be the soft one (macOS)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


GC_YOUNG_THRESHOLD = 7_000


class _Server(uvicorn.Server):
    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # Start-up leaves a great many long-lived objects (modules, schemas, table metadata). Frozen, they are no
        # longer walked by every full collection, each a pause for every request in flight; and a turn makes
        # hundreds of short-lived containers, so the youngest generation is collected ten times less often.
        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def _print_reports(path: Path, reports: list[ServerReport]) -> int:
    lines = [f"servers file: {path}"]
    for report in reports:
        mark = "ok  " if report.is_ok else "FAIL"
        lines.append(f"[{mark}] {report.name} ({report.transport}): {report.status.value}")
        if report.error:
            lines.append(f"       error: {report.error}")
        if report.tools:
            lines.append(f"       tools: {', '.join(report.tools)}")
        lines.extend(f"       problem: {problem}" for problem in report.problems)
    failed = [r.name for r in reports if not r.is_ok]
    lines.append(
        f"{len(reports) - len(failed)} of {len(reports)} servers ok"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    print("\n".join(lines))  # noqa: T201 - the CLI's own output
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
