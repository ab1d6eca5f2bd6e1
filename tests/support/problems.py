"""What every problem answer must hold, for tests that expect one."""

from __future__ import annotations

import httpx


def assert_problem(response: httpx.Response, status: int, type_: str, *detail_parts: str) -> dict[str, object]:
    """Check `response` is an RFC 9457 problem of `status` and `type_`, with the request id, whose detail holds
    each of `detail_parts`; return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = response.json()
    assert (body["type"], body["status"]) == (type_, status)
    assert isinstance(body["title"], str) and body["title"]
    detail = body["detail"]
    assert isinstance(detail, str) and detail
    for part in detail_parts:
        assert part in detail, f"{part!r} is not in the detail {detail!r}"
    assert body["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    return body
