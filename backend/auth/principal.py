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


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    role: UserRole
    method: AuthMethod

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
