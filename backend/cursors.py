"""Page cursors: one opaque encoding for every list the API pages, whether by offset or by keyset.

A cursor is the URL-safe base64 of a JSON array of the values the next page starts after (datetimes as ISO
8601 text). Clients treat it as opaque; anything they send that this module did not make is a 400 problem.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime

from backend.errors import BadRequestError

CursorValue = datetime | str | int


def encode_cursor(*values: CursorValue) -> str:
    """A cursor holding `values`, in order."""
    plain = [value.isoformat() if isinstance(value, datetime) else value for value in values]
    return base64.urlsafe_b64encode(json.dumps(plain, separators=(",", ":")).encode()).decode()


def decode_cursor(cursor: str, *types: type[CursorValue]) -> tuple[CursorValue, ...]:
    """The values `encode_cursor` put in `cursor`, one of each of `types`.

    Raises:
        BadRequestError: the cursor was not made by `encode_cursor` with values of these types.
    """
    try:
        plain = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if not isinstance(plain, list) or len(plain) != len(types):
            raise ValueError("wrong shape")
        return tuple(_value(kind, item) for kind, item in zip(types, plain, strict=True))
    except (ValueError, TypeError, binascii.Error, UnicodeError):
        raise BadRequestError(
            f"The cursor {cursor[:80]!r} is not one this API returned; start again without it, or pass the "
            "next_cursor of the previous page."
        ) from None


def decode_offset(cursor: str) -> int:
    """The offset `encode_cursor(offset)` put in `cursor`.

    Raises:
        BadRequestError: as for `decode_cursor`.
    """
    (offset,) = decode_cursor(cursor, int)
    assert isinstance(offset, int)  # decode_cursor checked it
    return offset


def _value(kind: type[CursorValue], item: object) -> CursorValue:
    if kind is datetime and isinstance(item, str):
        return datetime.fromisoformat(item)
    if kind is int and isinstance(item, int) and not isinstance(item, bool) and item >= 0:
        return item
    if kind is str and isinstance(item, str):
        return item
    raise ValueError(f"not a {kind.__name__}")
