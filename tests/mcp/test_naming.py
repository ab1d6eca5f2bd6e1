from __future__ import annotations

import re

from backend.mcp.naming import exposed_names

VALID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def test_exposed_name_is_server_and_tool_when_already_valid() -> None:
    assert exposed_names([("calculator", "add")]) == {("calculator", "add"): "calculator__add"}


def test_exposed_name_is_sanitized_when_tool_has_dots_and_spaces() -> None:
    name = exposed_names([("drive", "files.list all")])[("drive", "files.list all")]
    assert VALID.fullmatch(name)
    assert name.startswith("drive__files_list_all_")


def test_exposed_names_differ_when_sanitizing_would_collide() -> None:
    names = exposed_names([("s", "a.b"), ("s", "a_b"), ("s", "a b")])
    assert len(set(names.values())) == 3
    assert names[("s", "a_b")] == "s__a_b"
    assert all(VALID.fullmatch(name) for name in names.values())


def test_exposed_names_differ_when_truncation_would_collide() -> None:
    long_prefix = "x" * 70
    pairs = [("server", long_prefix + "one"), ("server", long_prefix + "two")]
    names = exposed_names(pairs)
    assert len(set(names.values())) == 2
    assert all(len(name) <= 64 and VALID.fullmatch(name) for name in names.values())


def test_exposed_names_differ_when_separator_is_ambiguous() -> None:
    names = exposed_names([("a__b", "c"), ("a", "b__c")])
    assert len(set(names.values())) == 2


def test_exposed_names_are_stable_when_computed_again_in_another_order() -> None:
    pairs = [("s", "a.b"), ("s", "a_b"), ("t", "x" * 80), ("a__b", "c"), ("a", "b__c")]
    assert exposed_names(pairs) == exposed_names(list(reversed(pairs)))
