"""Which scope an API key needs for each route: one table, read only when a request comes with a key.

A route missing here is refused to every key (the authorization tests hold the table and the app's routes
together). Sessions and single-user mode are not limited by scopes, only by their role.
"""

from __future__ import annotations

from backend.auth.principal import Scope

CHAT, READ, TOOLS, ADMIN = Scope.CHAT, Scope.READ, Scope.TOOLS, Scope.ADMIN
ANY = None  # any key of the account
CONVERSATION = "/v1/conversations/{conversation_id}"

ROUTE_SCOPES: dict[tuple[str, str], Scope | None] = {
    ("POST", "/v1/conversations"): CHAT,
    ("GET", "/v1/conversations"): CHAT,
    ("GET", CONVERSATION): CHAT,
    ("PATCH", CONVERSATION): CHAT,
    ("DELETE", CONVERSATION): CHAT,
    ("GET", CONVERSATION + "/messages"): CHAT,
    ("POST", CONVERSATION + "/messages"): CHAT,
    ("POST", CONVERSATION + "/cancel"): CHAT,
    ("POST", "/api/chat"): CHAT,
    ("GET", "/api/history"): CHAT,
    ("POST", "/api/clear"): CHAT,
    ("GET", "/v1/tools"): READ,
    ("GET", "/v1/tools/{name}"): READ,
    ("POST", "/v1/tools/{name}/call"): TOOLS,
    ("GET", "/api/tools"): READ,
    ("GET", "/v1/servers"): READ,
    ("GET", "/v1/servers/{name}"): READ,
    ("POST", "/v1/servers/{name}/reconnect"): ADMIN,
    ("GET", "/api/servers"): READ,
    ("GET", "/v1/prompts"): READ,
    ("POST", "/v1/prompts/{name}/get"): TOOLS,
    ("GET", "/v1/resources"): READ,
    ("GET", "/v1/resources/templates"): READ,
    ("GET", "/v1/resources/read"): TOOLS,
    ("GET", "/v1/me"): ANY,
    ("POST", "/v1/api-keys"): ANY,  # refused to every key by the service: a key cannot make keys
    ("GET", "/v1/api-keys"): ANY,
    ("DELETE", "/v1/api-keys/{key_id}"): ANY,
    ("GET", "/v1/users"): ADMIN,
    ("POST", "/v1/users"): ADMIN,
    ("PATCH", "/v1/users/{user_id}"): ADMIN,
    ("GET", "/v1/audit"): ADMIN,
}
