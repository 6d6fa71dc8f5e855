"""A server backend: a user database for authentication plus a storage for maildrops."""

from __future__ import annotations

from collections.abc import Callable

from ._base import Maildrop, Storage
from ._users import UserDB

__all__ = ["Backend"]


class Backend:
    """What ``pop3_asyncio.serve`` (and the other bindings) need, from two parts.

    ``users`` checks passwords and, for APOP/CRAM-MD5/SCRAM, gives plain
    secrets; ``storage`` opens maildrops. ``check_token`` verifies OAuth bearer
    tokens if given (a function ``(username, token) -> bool``); without it every
    token is refused.
    """

    def __init__(
        self,
        users: UserDB,
        storage: Storage,
        *,
        check_token: Callable[[str, str], bool] | None = None,
    ) -> None:
        self.users = users
        self.storage = storage
        self._check_token = check_token

    def __repr__(self) -> str:
        return f"Backend({self.users!r}, {self.storage!r})"

    def check_password(self, username: str, password: str) -> bool:
        """Whether ``password`` is right for ``username`` (constant time)."""
        return self.users.check_password(username, password)

    def secret(self, username: str) -> str | None:
        """The plain secret of ``username`` if the user database has one."""
        return self.users.secret(username)

    def check_token(self, username: str, token: str) -> bool:
        """Whether ``token`` is a valid OAuth bearer token for ``username``."""
        return self._check_token is not None and self._check_token(username, token)

    def open(self, username: str) -> Maildrop:
        """Open and lock ``username``'s maildrop (see ``Storage.open``)."""
        return self.storage.open(username)
