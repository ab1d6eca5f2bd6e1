"""/v1/me: who the caller is."""

from __future__ import annotations

from fastapi import APIRouter

from backend.api.schemas import MeOut
from backend.deps import CurrentUser, Users

router = APIRouter(prefix="/v1", tags=["accounts"])


@router.get("/me")
async def me(user: CurrentUser, users: Users) -> MeOut:
    """The caller's account, and how the request was authenticated."""
    account = await users.get(user.user_id)
    return MeOut(
        id=account.id,
        email=account.email,
        name=account.name,
        role=account.role,
        auth_method=user.method.value,
        created_at=account.created_at,
    )
