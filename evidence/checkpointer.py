"""Issues a signed checkpoint every N records or every T seconds, whichever comes first.

Runs as one background task per process. Appends nudge it when N records are pending;
otherwise it wakes on its interval. Several processes may run one each: a checkpoint is
keyed by tree size, so two issuing the same head collapse into one row.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog
from prometheus_client import Counter, Gauge
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.platform.errors import DependencyUnavailableError
from evidence import tree
from evidence.checkpoints import Checkpoint
from evidence.signing import TransitSigner

log = structlog.get_logger("evidence.checkpointer")

CHECKPOINTS = Counter("evidence_checkpoints_total", "Signed checkpoints issued.")
CHECKPOINT_FAILURES = Counter(
    "evidence_checkpoint_failures_total", "Checkpoint attempts that failed (Vault or DB down)."
)
TREE_SIZE = Gauge("evidence_checkpoint_tree_size", "Tree size of the latest checkpoint we issued.")
_FAILURE_BACKOFF_S = 1.0


class Checkpointer:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        signer: TransitSigner,
        origin: str,
        every_records: int,
        interval_ms: int,
    ) -> None:
        self._sessions = sessions
        self._signer = signer
        self._origin = origin
        self._every_records = every_records
        self._interval_s = interval_ms / 1000
        self._covered = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def appended(self, seq: int) -> None:
        """Called after each committed append; wakes the loop when N records are pending."""
        if seq + 1 - self._covered >= self._every_records:
            self._wake.set()

    async def tick(self) -> Checkpoint | None:
        """Issue a checkpoint now if the log grew. Raises DependencyUnavailableError."""
        issued = await tree.issue_checkpoint(self._sessions, self._signer, self._origin)
        if issued is not None:
            self._covered = max(self._covered, issued.size)
            CHECKPOINTS.inc()
            TREE_SIZE.set(issued.size)
        return issued

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.tick()
                delay_s = self._interval_s
            except (DependencyUnavailableError, OSError, TimeoutError) as error:
                CHECKPOINT_FAILURES.inc()
                log.warning("checkpoint_failed", error_type=type(error).__name__)
                delay_s = max(self._interval_s, _FAILURE_BACKOFF_S)
            except Exception as error:  # noqa: BLE001 - the loop must outlive a bad tick
                CHECKPOINT_FAILURES.inc()
                log.error("checkpoint_failed", error_type=type(error).__name__)
                delay_s = max(self._interval_s, _FAILURE_BACKOFF_S)
            remaining_s = max(0.0, delay_s - (time.monotonic() - started))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), remaining_s)
            self._wake.clear()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="evidence-checkpointer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
