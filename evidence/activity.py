"""Whether a token's client and key are still usable, asked on every request.

A token lives up to 300 s; disabling a client or retiring a key must stop its writes at
once, as on the API. The identity database answers through `identity.key_is_active()`
(identity migration 0002), the one definition both services use. The evidence service's
role there may call that function and nothing else.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.platform.errors import DependencyUnavailableError
from app.platform.web import Principal

_KEY_IS_ACTIVE = text(
    "SELECT identity.key_is_active(CAST(:client_id AS text), CAST(:key_id AS text))"
)


class IdentityUnavailableError(DependencyUnavailableError):
    code = "dependency_unavailable"
    title = "Identity store unavailable"


class ClientActivity:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def is_active(self, principal: Principal) -> bool:
        """True while the client is enabled and its bound key is within its validity.

        Raises IdentityUnavailableError (503) when the question cannot be answered: an
        unanswered check never lets a request through.
        """
        if principal.key_id is None:
            return False
        try:
            async with self._sessions() as session:
                active = (
                    await session.execute(
                        _KEY_IS_ACTIVE,
                        {"client_id": principal.client_id, "key_id": principal.key_id},
                    )
                ).scalar()
        except (DBAPIError, OSError):
            raise IdentityUnavailableError("cannot check whether the client is active") from None
        return active is True
