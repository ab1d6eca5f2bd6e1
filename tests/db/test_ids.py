"""Row ids are random version-4 UUIDs in their usual text form."""

from __future__ import annotations

import uuid

from backend.db.models import new_id


def test_new_ids_are_distinct_version_4_uuids_in_canonical_form() -> None:
    ids = [new_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)
