"""Who a request acts as, and how each auth mode finds out."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from starlette.requests import Request

from backend.db.models import OWNER_ID, UserRole


class AuthMethod(StrEnum):
    SINGLE_USER = "single-user"  # no sign-in: every request is the owner's
    SESSION = "session"  # an access token from signing in
    API_KEY = "api-key"  # a key an account made for one client


class Scope(StrEnum):
    """What an API key may do; a session or the single-user owner may do all its role allows."""

    CHAT = "chat"  # conversations and the legacy chat routes
    TOOLS = "tools"  # direct tool, prompt and resource calls
    READ = "read"  # lists
    ADMIN = "admin"  # admin routes (only an admin's key)


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    role: UserRole
    method: AuthMethod
    key_id: str | None = None  # the API key used, if one was
    scopes: frozenset[Scope] | None = None  # an API key's; None: everything the role allows

    @property
    def is_admin(self) -> bool:
        return self.role is UserRole.ADMIN


OWNER = Principal(OWNER_ID, UserRole.ADMIN, AuthMethod.SINGLE_USER)


class Authenticator(Protocol):
    async def authenticate(self, request: Request) -> Principal:
        """The caller of `request`."""
        ...


class SingleUserAuthenticator:
    """Single-user mode: everyone who reaches the app (loopback only) is the owner, with nothing to check."""

    async def authenticate(self, request: Request) -> Principal:
        return OWNER
