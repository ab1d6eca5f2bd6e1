"""/v1/users: accounts, for admins (an admin's API key needs the admin scope)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from backend.api.schemas import Page, UserCreate, UserOut, UserUpdate, paginate
from backend.api.views import user_out
from backend.deps import CurrentUser, Cursor, Limit, Users, require_admin

router = APIRouter(prefix="/v1/users", tags=["accounts"], dependencies=[Depends(require_admin)])


@router.get("")
async def list_users(users: Users, limit: Limit = 100, cursor: Cursor = None) -> Page[UserOut]:
    """Every account, oldest first."""
    return paginate([user_out(user) for user in await users.list()], limit, cursor)


@router.post("", status_code=201)
async def create_user(body: UserCreate, users: Users, admin: CurrentUser) -> UserOut:
    """An account that signs in with this email and password."""
    return user_out(await users.create(body.email, body.password, body.name, body.role, actor_id=admin.user_id))


@router.patch("/{user_id}")
async def update_user(user_id: str, body: UserUpdate, users: Users, admin: CurrentUser) -> UserOut:
    """Change an account's role, or disable it (its sessions end and its API keys are revoked at once) or enable it.
    The last enabled admin cannot be demoted or disabled."""
    return user_out(await users.update(admin.user_id, user_id, body.role, body.is_disabled))
