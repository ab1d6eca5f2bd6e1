"""/v1/auth: sign-up, sign-in (JSON, or the OAuth2 password form behind /docs' Authorize button), refresh, sign-out.

Each attempt counts against MCPCHAT_RATE_AUTH per client address, and sign-in and sign-up per account too, so
neither one address nor many can guess a password quickly.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, Response
from pydantic import SecretStr

from backend.api.schemas import RefreshRequest, SignInRequest, SignUpRequest, TokenResponse, UserOut
from backend.api.views import user_out
from backend.config import Settings
from backend.deps import AppConfig, Rates, Sessions, Users, sign_in_enabled
from backend.services.rate_limits import RateLimits
from backend.services.session_service import SessionService, TokenPair

# Every route answers 404 sign-in-disabled in single-user mode.
router = APIRouter(prefix="/v1/auth", tags=["accounts"], dependencies=[Depends(sign_in_enabled)])


@router.post("/signup", status_code=201)
async def sign_up(body: SignUpRequest, request: Request, users: Users, rates: Rates, settings: AppConfig) -> UserOut:
    """Create an account: the first one (it becomes the admin), or any when MCPCHAT_SIGNUP=open."""
    await _count_attempt(request, rates, settings, body.email)
    return user_out(await users.sign_up(body.email, body.password, body.name, is_open=settings.is_signup_open))


@router.post("/login")
async def sign_in(
    body: SignInRequest, request: Request, sessions: Sessions, rates: Rates, settings: AppConfig
) -> TokenResponse:
    """Sign in with email and password: an access token (send it as `Authorization: Bearer`) and a refresh token."""
    return await _sign_in(request, sessions, rates, settings, body.email, body.password)


@router.post("/token")
async def sign_in_with_form(
    username: Annotated[str, Form(max_length=320, description="the account's email")],
    password: Annotated[SecretStr, Form()],
    request: Request,
    sessions: Sessions,
    rates: Rates,
    settings: AppConfig,
) -> TokenResponse:
    """`/login` as an OAuth2 password-grant form (RFC 6749 section 4.3), for /docs' Authorize button."""
    return await _sign_in(request, sessions, rates, settings, username, password)


@router.post("/refresh")
async def refresh(
    body: RefreshRequest, request: Request, sessions: Sessions, rates: Rates, settings: AppConfig
) -> TokenResponse:
    """Trade a refresh token for new tokens. Each refresh token works once; using one twice ends its session."""
    await _count_attempt(request, rates, settings, None)
    return _tokens(await sessions.refresh(body.refresh_token, _address(request)))


@router.post("/logout", status_code=204)
async def sign_out(body: RefreshRequest, request: Request, sessions: Sessions) -> Response:
    """End the session the refresh token belongs to (its access tokens expire on their own, within minutes)."""
    await sessions.sign_out(body.refresh_token, _address(request))
    return Response(status_code=204)


async def _sign_in(
    request: Request, sessions: SessionService, rates: RateLimits, settings: Settings, email: str, password: SecretStr
) -> TokenResponse:
    await _count_attempt(request, rates, settings, email)
    return _tokens(await sessions.sign_in(email, password, _address(request)))


async def _count_attempt(request: Request, rates: RateLimits, settings: Settings, email: str | None) -> None:
    """Raises:
    RateLimitedError: too many attempts from this address, or for this account.
    RateLimitsUnavailableError: the counters' store (Redis) did not answer."""
    await rates.hit("auth-address", settings.rate_auth, _address(request) or "")
    if email is not None:
        await rates.hit("auth-account", settings.rate_auth, email.strip().lower())


def _address(request: Request) -> str | None:
    """The socket's peer, or the client a trusted proxy names (MCPCHAT_TRUSTED_PROXIES; see create_app)."""
    return request.client.host if request.client is not None else None


def _tokens(pair: TokenPair) -> TokenResponse:
    return TokenResponse(access_token=pair.access_token, expires_in=pair.expires_in, refresh_token=pair.refresh_token)
