"""Files sent with a message: uploaded to the homeserver, then posted as `m.file` events."""

from __future__ import annotations

import io
from typing import Any

from nio import AsyncClient, UploadResponse

from gateway.channels.matrix.codec import file_content
from gateway.channels.matrix.rooms import raise_for
from gateway.model import Attachment


async def upload_file(client: AsyncClient, room_id: str, attachment: Attachment) -> dict[str, Any]:
    """Upload `attachment` (encrypted where the room is); return its `m.file` content.

    An upload has no transaction id, so a resend of the row uploads again (the spare copy is
    never referenced); the event posting it is what the txn_id keeps single."""
    room = client.rooms.get(room_id)
    resp, keys = await client.upload(
        io.BytesIO(attachment.data),
        content_type=attachment.mime,
        filename=attachment.name,
        encrypt=bool(room and room.encrypted),
        filesize=len(attachment.data),
    )
    raise_for(resp, f"uploading {attachment.name} for {room_id}")
    assert isinstance(resp, UploadResponse)
    size = len(attachment.data)
    return file_content(attachment.name, resp.content_uri, size, attachment.mime, encryption=keys)
