"""structlog JSON logs, with secrets and PII kept out by construction and by filter."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from app.platform.tracing import add_trace_context

# Field names whose values never reach a log line, whatever a caller passes.
_SECRET_FIELDS = re.compile(
    r"(secret|password|token|authorization|signature|private|ciphertext|plaintext|email|"
    # `pan` only as a whole word of the name (card_pan), so `span_id` stays readable.
    r"date_of_birth|name_on|(?:^|_)pan(?:_|$)|cvv)",
    re.IGNORECASE,
)


# Each field name's verdict, found once: a line has about a dozen fields, and searching
# the pattern for each of them on every line cost more than the rest of the line (issue
# 16). Names come from code, so there are few; past the cap, a name is searched each time.
_VERDICTS: dict[str, bool] = {"event": False}
_MAX_VERDICTS = 4096


def _is_secret(key: str) -> bool:
    verdict = _SECRET_FIELDS.search(key) is not None
    if len(_VERDICTS) < _MAX_VERDICTS:
        _VERDICTS[key] = verdict
    return verdict


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    verdicts = _VERDICTS
    for key in list(event):
        secret = verdicts.get(key)
        if secret if secret is not None else _is_secret(key):
            event[key] = "[redacted]"
    return event


def configure_logging(level: str = "info") -> None:
    """JSON lines on stdout, one per event, with request and decision ids bound in context."""
    numeric = getattr(logging, level.upper(), logging.INFO)
    logging.basicConfig(format="%(message)s", stream=sys.stdout, level=numeric, force=True)
    # httpx logs every request at INFO; our own logs already say what matters.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_trace_context,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=False,
    )
