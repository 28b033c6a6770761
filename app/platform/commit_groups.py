"""Group commit: the queued effects of concurrent requests committed as one transaction.

Every ledger write holds the chain head from its `ledger.apply_entries()` call through its
COMMIT, so the ledger commits one transaction at a time however many requests are in
flight. Each commit also costs a pooled connection, a round trip, a WAL flush and a
backend wake-up, whatever its size (issue 16). So a process sends the effects that became
ready while its previous commit was on the wire together, in one BEGIN .. COMMIT
(`db_wire.commit`): the first statements of every member, then their last statements (the
ones that take the chain head) in arrival order. Nothing is waited for to make a group
but one turn of the event loop: a request that finds no commit in flight leads at once.

A group commits or fails as a whole. When a statement of it refuses (an overdraft, a lost
idempotency claim, a deadlock) the group is rolled back and each member is committed on
its own, so every request gets exactly the outcome it would have had alone, its own
refusal included. When the exchange itself broke off (the connection, a timeout, a
cancellation), whether the COMMIT happened is unknown for all of them, as it is for a
single request, and every member gets that error.

Only transactions whose every statement was queued with the commit come here
(`db_pipeline._commit_pooled`): nothing of them ran earlier, so no member holds a lock or
a snapshot while it waits for its group.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, LiteralString

import psycopg

from app.platform.errors import InvariantViolation

# Bound a group, and so its transaction's size and its time on the chain head: members
# over either wait for the next group (a member over MAX_GROUP_BYTES on its own, a batch of
# a thousand transfers, commits alone). The queue itself holds one entry per request in
# flight, so the server's own limits bound it.
MAX_GROUP_MEMBERS = 32
MAX_GROUP_BYTES = 1 << 20

Statement = tuple[LiteralString, Any]
# Commits statements in one transaction on a pooled connection, `members` being how many
# transactions they are (for its trace). Raises psycopg.Error when a statement refused and
# the transaction was rolled back cleanly, CommitBrokenError when the exchange broke off.
Committer = Callable[[Sequence[Statement], int], Awaitable[None]]


class CommitBrokenError(Exception):
    """The exchange broke off (connection, timeout): whether its COMMIT happened is unknown."""

    def __init__(self, error: psycopg.Error) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(slots=True)
class _Member:
    first: list[Statement]
    last: list[Statement]
    size: int  # the bytes of its text parameters, about what it sends
    # Resolved with True when it is this member's turn to lead a group, with False once
    # its outcome is settled by another member's group.
    turn: asyncio.Future[bool] = field(repr=False)
    settled: bool = False
    outcome: BaseException | None = None

    def settle(self, outcome: BaseException | None) -> None:
        if self.settled:
            return
        self.settled, self.outcome = True, outcome
        if not self.turn.done():
            self.turn.set_result(False)


class CommitGroups:
    """The group committer of one engine on one event loop."""

    def __init__(self, commit: Committer) -> None:
        self._commit = commit
        self._waiting: list[_Member] = []
        self._leading = False

    async def commit(self, first: list[Statement], last: list[Statement]) -> None:
        """Commit `first` then `last` (one transaction's statements), grouped with others.

        Raises the psycopg.Error of this transaction's own refusal (found by committing it
        alone), or, when the exchange it went in broke off, a psycopg.OperationalError."""
        size = sum(
            len(value)
            for _, params in (*first, *last)
            for value in params.values()
            if isinstance(value, str)
        )
        member = _Member(first, last, size, asyncio.get_running_loop().create_future())
        self._waiting.append(member)
        if self._leading:
            try:
                leads = await member.turn
            except asyncio.CancelledError:
                self._pass_on_a_lead_left(member)
                raise
            if not leads:
                return _raise_outcome(member)
        self._leading = True
        try:
            # One turn of the event loop before the group is closed: requests whose
            # effects become ready in that same turn join it (members per commit went from
            # 1.31 to 1.59 with four clients on one process), at no cost a request could
            # notice.
            await asyncio.sleep(0)
            await self._commit_next_group()
        finally:
            if member in self._waiting:
                # Cancelled before its group was taken: nobody will wait for its turn.
                self._waiting.remove(member)
            self._hand_over()
        if not member.settled:
            raise InvariantViolation("db.commit_group", "a leader left out of its own group")
        return _raise_outcome(member)

    async def _commit_next_group(self) -> None:
        group: list[_Member] = []
        size = 0
        while self._waiting and len(group) < MAX_GROUP_MEMBERS:
            member = self._waiting[0]
            if group and size + member.size > MAX_GROUP_BYTES:
                break
            del self._waiting[0]
            # A member whose request went away before its turn is left out: its request
            # already answered (and released its idempotency key).
            if not member.turn.cancelled():
                group.append(member)
                size += member.size
        if not group:
            return
        try:
            if len(group) == 1:
                await self._commit_alone(group[0])
                return
            statements = [s for m in group for s in m.first] + [s for m in group for s in m.last]
            try:
                await self._commit(statements, len(group))
            except psycopg.Error:
                # Rolled back cleanly: find whose it was by committing each on its own.
                for member in group:
                    await self._commit_alone(member)
                return
            for member in group:
                member.settle(None)
        except BaseException as broken:
            # Settled on every member, the leader included, which raises it as theirs;
            # only a cancellation (or an interrupt) goes on up as it is.
            for member in group:
                member.settle(_unknown_outcome(broken))
            if not isinstance(broken, Exception):
                raise

    async def _commit_alone(self, member: _Member) -> None:
        try:
            await self._commit([*member.first, *member.last], 1)
        except psycopg.Error as refused:
            member.settle(refused)
            return
        member.settle(None)

    def _pass_on_a_lead_left(self, member: _Member) -> None:
        """A member cancelled just as it was handed the lead passes it on, or nobody
        would ever lead again."""
        turn = member.turn
        if turn.done() and not turn.cancelled() and turn.result():
            if member in self._waiting:
                self._waiting.remove(member)
            self._hand_over()

    def _hand_over(self) -> None:
        """The next waiting member leads the next group; with none, nobody leads."""
        while self._waiting:
            head = self._waiting[0]
            if not head.turn.done():
                head.turn.set_result(True)
                return
            self._waiting.pop(0)  # its request went away before its turn
        self._leading = False


def _raise_outcome(member: _Member) -> None:
    if member.outcome is not None:
        raise member.outcome


def _unknown_outcome(broken: BaseException) -> BaseException:
    """What each member of a broken group raises: its own exception, never a shared one."""
    cause = broken.error if isinstance(broken, CommitBrokenError) else broken
    error = psycopg.OperationalError(
        f"the commit this transaction went in broke off ({type(cause).__name__}: {cause}); "
        "whether it committed is unknown"
    )
    error.__cause__ = cause
    return error


_groups: weakref.WeakKeyDictionary[
    object, weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, CommitGroups]
] = weakref.WeakKeyDictionary()


def groups_for(owner: object, commit: Committer) -> CommitGroups:
    """The group committer of `owner` (an engine) on the running event loop."""
    loop = asyncio.get_running_loop()
    per_loop = _groups.get(owner)
    if per_loop is None:
        per_loop = _groups[owner] = weakref.WeakKeyDictionary()
    found = per_loop.get(loop)
    if found is None:
        found = per_loop[loop] = CommitGroups(commit)
    return found
