"""Row ids are version-7 UUIDs in their usual text form: unique, and ordered by the millisecond they were made."""

from __future__ import annotations

import time
import uuid

from backend.db.models import new_id


def test_new_ids_are_distinct_version_7_uuids_in_canonical_form() -> None:
    ids = [new_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (7, uuid.RFC_4122, text)


def test_an_id_carries_the_millisecond_it_was_made_so_later_ids_sort_later() -> None:
    before_ms = time.time_ns() // 1_000_000
    first = second = new_id()
    while uuid.UUID(second).int >> 80 == uuid.UUID(first).int >> 80:  # until the clock moves on a millisecond
        second = new_id()
    after_ms = time.time_ns() // 1_000_000
    assert before_ms <= uuid.UUID(first).int >> 80 < uuid.UUID(second).int >> 80 <= after_ms
    assert first < second
