"""Accounts for multi-user tests: sign up and sign in over HTTP, as a client would."""

from __future__ import annotations

import httpx

PASSWORD = "correct horse battery staple"


async def sign_up_and_in(http: httpx.AsyncClient, email: str) -> str:
    """Sign up `email` (sign-up must be open, or it must be the first account) and sign in; its access token."""
    created = await http.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
    assert created.status_code == 201, created.text
    signed_in = await http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert signed_in.status_code == 200, signed_in.text
    token: str = signed_in.json()["access_token"]
    return token
