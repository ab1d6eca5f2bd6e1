"""UserStore: every read and write of user accounts."""

from __future__ import annotations

from sqlalchemy import Connection, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.db.database import Database
from backend.db.models import OWNER_ID, User, UserRole, new_id, utcnow
from backend.errors import ConflictError, NotFoundError


class UserNotFoundError(NotFoundError):
    slug, title = "user-not-found", "User not found"


class LastAdminError(ConflictError):
    slug, title = "last-admin", "The last admin"


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
            with Session(connection) as session:
                session.add(user)
                session.flush()
                session.expunge(user)

        try:
            await self.database.write(write)
        except IntegrityError as exc:  # the email's unique index
            raise _taken(email) from exc
        return user

    async def claim_owner(self, email: str, name: str | None, password_hash: str) -> User | None:
        """Give the built-in owner account (admin, every conversation from before accounts) this email and password,
        if it has none yet and no other account exists: the first account is the owner. None otherwise.

        Raises:
            EmailTakenError: never in practice (only the owner exists); kept for the unique index.
        """

        def write(connection: Connection) -> User | None:
            others = connection.execute(select(func.count()).select_from(User).where(User.id != OWNER_ID)).scalar()
            if others:
                return None
            claimed = connection.execute(
                update(User)
                .where(User.id == OWNER_ID, User.password_hash.is_(None))
                .values(email=email, name=name, password_hash=password_hash)
            )
            if not claimed.rowcount:
                return None
            with Session(connection) as session:
                user = session.get(User, OWNER_ID)
                assert user is not None  # just updated
                session.expunge(user)
                return user

        try:
            return await self.database.write(write)
        except IntegrityError as exc:
            raise _taken(email) from exc

    async def has_accounts(self) -> bool:
        """Whether anyone can sign in: an account other than the owner, or the owner with a password."""

        def read(connection: Connection) -> bool:
            query = select(User.id).where((User.id != OWNER_ID) | User.password_hash.is_not(None)).limit(1)
            return connection.execute(query).first() is not None

        return await self.database.read(read)

    async def find_by_email(self, email: str) -> User | None:
        """The account with this (lower-cased) email, if any."""

        def read(connection: Connection) -> User | None:
            with Session(connection) as session:
                user = session.scalars(select(User).where(User.email == email)).first()
                if user is not None:
                    session.expunge(user)
                return user

        return await self.database.read(read)

    async def record_login(self, user_id: str) -> None:
        await self.database.write(
            lambda connection: connection.execute(update(User).where(User.id == user_id).values(last_login_at=utcnow()))
        )

    async def list(self) -> list[User]:
        """Every account, oldest first."""

        def read(connection: Connection) -> list[User]:
            with Session(connection) as session:
                users = list(session.scalars(select(User).order_by(User.created_at, User.id)).all())
                session.expunge_all()
                return users

        return await self.database.read(read)

    async def update(self, user_id: str, role: UserRole | None, is_disabled: bool | None) -> User:
        """Change the account's role or disabled flag (None: leave it).

        Raises:
            UserNotFoundError: no account has this id.
            LastAdminError: the change would leave no enabled admin.
        """

        def write(connection: Connection) -> User:
            with Session(connection) as session:
                user = session.get(User, user_id)
                if user is None:
                    raise UserNotFoundError(f"No user has the id {user_id!r}.")
                if role is not None:
                    user.role = role.value
                if is_disabled is not None:
                    user.is_disabled = is_disabled
                session.flush()
                admins = (
                    select(func.count())
                    .select_from(User)
                    .where(User.role == UserRole.ADMIN.value, User.is_disabled.is_(False))
                )
                if not session.execute(admins).scalar():
                    raise LastAdminError("That would leave no enabled admin: make another admin first.")
                session.expunge(user)
                return user

        return await self.database.write(write)

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
