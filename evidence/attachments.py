"""Attachments of evidence records: content stored once under its sha-256 digest."""

from __future__ import annotations

import base64
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.platform.errors import NotFoundError, ValidationError
from evidence import records


class AttachmentTooLargeError(ValidationError):
    status = 413
    title = "Attachment too large"


# ---- attachments ----------------------------------------------------------------------


async def store_attachment(
    session: AsyncSession, media_type: str, content_base64: str, limit_bytes: int
) -> dict[str, Any]:
    """Store content under its sha-256 digest (idempotent: same bytes, same digest).

    Raises ValidationError for bad base64 and AttachmentTooLargeError past `limit_bytes`.
    """
    if len(content_base64) > (limit_bytes + 2) // 3 * 4 + 4:
        raise AttachmentTooLargeError(f"attachment larger than {limit_bytes} bytes")
    try:
        content = base64.b64decode(content_base64, validate=True)
    except ValueError:
        raise ValidationError("/content_base64: not valid base64") from None
    if len(content) > limit_bytes:
        raise AttachmentTooLargeError(f"attachment larger than {limit_bytes} bytes")
    digest = records.attachment_digest(content)
    await session.execute(
        text(
            """
            INSERT INTO evidence.attachments (digest, media_type, size_bytes, content)
            VALUES (:digest, :media_type, :size, :content)
            ON CONFLICT (digest) DO NOTHING
            """
        ),
        {"digest": digest, "media_type": media_type, "size": len(content), "content": content},
    )
    return {"digest": digest, "media_type": media_type, "size_bytes": len(content)}


async def get_attachment(session: AsyncSession, digest: str) -> dict[str, Any]:
    """Raises NotFoundError."""
    row = (
        await session.execute(
            text(
                "SELECT digest, media_type, size_bytes, content FROM evidence.attachments "
                "WHERE digest = :digest"
            ),
            {"digest": digest},
        )
    ).first()
    if row is None:
        raise NotFoundError(f"no attachment {digest}")
    return {
        "digest": row.digest,
        "media_type": row.media_type,
        "size_bytes": row.size_bytes,
        "content_base64": base64.b64encode(bytes(row.content)).decode(),
    }
