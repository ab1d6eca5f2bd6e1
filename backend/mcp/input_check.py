"""What is wrong with a resource URI or a prompt argument a user wants sent to an MCP server.

Pure checks that answer with a sentence (None: nothing is wrong); the MCP service turns one into a 422 before
anything is sent, so bad input is refused by us rather than forwarded and answered by a server's error.
"""

from __future__ import annotations

import re
import string
import unicodedata

MAX_URI_CHARS = 4096
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
_SUB_DELIMS = frozenset("!$&'()*+,;=")
_GEN_DELIMS = frozenset(":/?#[]@")
_URI_ASCII = _UNRESERVED | _SUB_DELIMS | _GEN_DELIMS | {"%"}
# RFC 3986 section 3: which characters each component may hold besides percent-encodings.
_PATH_CHARS = _UNRESERVED | _SUB_DELIMS | frozenset(":@/%")
_QUERY_CHARS = _PATH_CHARS | {"?"}
_AUTHORITY_CHARS = _UNRESERVED | _SUB_DELIMS | frozenset(":@[]%")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
_AUTHORITY = re.compile(r"(?:[^@]*@)?(?:\[[^\[\]@]+\]|[^:\[\]@]*)(?::[0-9]*)?")
_BROKEN_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
# Letters, marks, numbers, punctuation and symbols beyond ASCII are kept as RFC 3987 (IRIs) allows: servers
# list file paths and names in any script, and the SDK sends them as they are. Controls, separators,
# format characters (bidi overrides, zero-width), private-use and unassigned code points are refused.
_NON_ASCII_CATEGORIES = frozenset("LMNPS")
_ARGUMENT_CONTROLS_KEPT = frozenset("\t\n\r")


def resource_uri_problem(uri: str) -> str | None:
    """Say what makes `uri` unfit to send as a resource URI, and how to fix it (None: it is fit)."""
    if not uri:
        return "is empty; send a URI such as file:///notes.txt"
    if len(uri) > MAX_URI_CHARS:
        return f"is {len(uri)} characters long; the limit is {MAX_URI_CHARS}"
    for position, char in enumerate(uri):
        if not _is_uri_char(char):
            return f"contains {_describe(char)} at position {position}; {_advice(char)}"
    scheme, colon, rest = uri.partition(":")
    if not colon or not _SCHEME.fullmatch(scheme):
        return "has no scheme: a URI starts with a scheme and a colon, as in file:///notes.txt or test://greeting"
    if broken := _BROKEN_PERCENT.search(uri):
        return (
            f"has a '%' at position {broken.start()} that is not followed by two hex digits; write a literal '%' as %25"
        )
    return _components_problem(rest)


def shown_uri(uri: str) -> str:
    """`uri` as an error message may quote it: a password in its userinfo hidden, and cut at 80 characters."""
    scheme, separator, rest = uri.partition("://")
    authority, slash, path = rest.partition("/")
    if separator and "@" in authority:
        user, _, host = authority.rpartition("@")
        authority = f"{user.partition(':')[0]}:***@{host}" if ":" in user else authority
        uri = f"{scheme}{separator}{authority}{slash}{path}"
    return repr(uri) if len(uri) <= 80 else repr(uri[:80]) + "..."


def prompt_argument_problem(value: str, max_chars: int) -> str | None:
    """Say what makes `value` unfit to send as a prompt argument (None: it is fit)."""
    if len(value) > max_chars:
        return f"is {len(value)} characters long; the limit is {max_chars}"
    for position, char in enumerate(value):
        category = unicodedata.category(char)
        if (category == "Cc" and char not in _ARGUMENT_CONTROLS_KEPT) or category == "Cs":
            return (
                f"contains {_describe(char)} at position {position}; remove it "
                "(tab, newline and carriage return are the only control characters allowed)"
            )
    return None


def _is_uri_char(char: str) -> bool:
    if char.isascii():
        return char in _URI_ASCII
    return unicodedata.category(char)[0] in _NON_ASCII_CATEGORIES


def _components_problem(rest: str) -> str | None:
    """RFC 3986 section 3 for what follows `scheme:`: [//authority] path [?query] [#fragment]."""
    rest, _, fragment = rest.partition("#")
    hierarchy, _, query = rest.partition("?")
    authority = None
    path = hierarchy
    if hierarchy.startswith("//"):
        authority, slash, path = hierarchy[2:].partition("/")
        path = slash + path
    if authority is not None:
        if problem := _chars_problem(authority, _AUTHORITY_CHARS, "authority"):
            return problem
        if not _AUTHORITY.fullmatch(authority):
            return (
                f"has the authority {authority!r}, which is not [user@]host[:port] "
                "(an IPv6 host goes in brackets, a port is digits)"
            )
    return (
        _chars_problem(path, _PATH_CHARS, "path")
        or _chars_problem(query, _QUERY_CHARS, "query")
        or _chars_problem(fragment, _QUERY_CHARS, "fragment")
    )


def _chars_problem(component: str, allowed: frozenset[str], name: str) -> str | None:
    for char in component:
        if char.isascii() and char not in allowed:
            return f"has {char!r} in its {name}, where RFC 3986 does not allow it; {_advice(char)}"
    return None


def _describe(char: str) -> str:
    category = unicodedata.category(char)
    if category == "Cc":
        return f"the control character U+{ord(char):04X}"
    if char.isspace() or category.startswith("Z"):
        return f"whitespace (U+{ord(char):04X})"
    if category == "Cs":
        return f"the lone surrogate U+{ord(char):04X}, which is not a character"
    if char.isascii():
        return f"the character {char!r}"
    return f"the invisible, private-use or unassigned character U+{ord(char):04X}"


def _advice(char: str) -> str:
    if char in "{}":
        return "fill in the URI template's variables first (GET /v1/resources/templates lists them)"
    if unicodedata.category(char) == "Cs":
        return "remove it"
    encoded = "".join(f"%{byte:02X}" for byte in char.encode())
    return f"percent-encode it as {encoded} if it belongs in the URI"
