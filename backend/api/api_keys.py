"""/v1/api-keys: the caller's API keys, one per client; the secret is shown once."""

from __future__ import annotations

from fastapi import APIRouter, Response

from backend.api.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut, Page
from backend.api.views import api_key_out
from backend.deps import ApiKeys, CurrentUser

router = APIRouter(prefix="/v1/api-keys", tags=["accounts"])


@router.post("", status_code=201)
async def create_api_key(body: ApiKeyCreate, keys: ApiKeys, user: CurrentUser) -> ApiKeyCreated:
    """A new key: send it as `Authorization: Bearer mcpc_...` or `X-API-Key`. Keep `key`: it is never shown again."""
    key, secret = await keys.create(user, body.name, body.scopes, body.expires_at)
    return ApiKeyCreated(**api_key_out(key).model_dump(), key=secret)


@router.get("")
async def list_api_keys(keys: ApiKeys, user: CurrentUser) -> Page[ApiKeyOut]:
    """The caller's keys that are not revoked, newest first (never their secrets)."""
    return Page[ApiKeyOut](items=[api_key_out(key) for key in await keys.list(user)])


@router.delete("/{key_id}", status_code=204)
async def revoke_api_key(key_id: str, keys: ApiKeys, user: CurrentUser) -> Response:
    """Revoke the key: it stops working on the next request."""
    await keys.revoke(user, key_id)
    return Response(status_code=204)
