"""UserStore: every read and write of user accounts."""

from __future__ import annotations

from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.db.database import Database
from backend.db.models import User, UserRole, new_id, utcnow
from backend.errors import ConflictError, NotFoundError


class UserNotFoundError(NotFoundError):
    slug, title = "user-not-found", "User not found"


class EmailTakenError(ConflictError):
    slug, title = "email-taken", "Email already in use"


class UserStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def create(self, email: str, name: str | None, password_hash: str | None, role: UserRole) -> User:
        """`email` lower-cased, as the service gives it.

        Raises:
            EmailTakenError: an account has this email.
        """
        user = User(
            id=new_id(),
            email=email,
            name=name,
            password_hash=password_hash,
            role=role.value,
            is_disabled=False,
            created_at=utcnow(),
        )

        def write(connection: Connection) -> None:
            if connection.execute(select(User.id).where(User.email == email)).first():
                raise _taken(email)
            with Session(connection) as session:
                session.add(user)
                session.flush()
                session.expunge(user)

        try:
            await self.database.write(write)
        except IntegrityError as exc:  # another request took it between the check and the insert
            raise _taken(email) from exc
        return user

    async def get(self, user_id: str) -> User:
        """Raises:
        UserNotFoundError: no account has this id."""

        def read(connection: Connection) -> User:
            with Session(connection) as session:
                user = session.get(User, user_id)
                if user is None:
                    raise UserNotFoundError(f"No user has the id {user_id!r}.")
                session.expunge(user)
                return user

        return await self.database.read(read)


def _taken(email: str) -> EmailTakenError:
    return EmailTakenError(f"An account with the email {email!r} exists already.")
