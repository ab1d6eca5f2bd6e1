"""How stored credentials (refresh tokens, API keys) are kept: a SHA-256 of the secret, in hex.

Both secrets are 256 random bits, so a fast hash is enough to make a stolen table useless (a password needs a
slow one because it can be guessed; these cannot), and a lookup is one indexed equality.
"""

from __future__ import annotations

import hashlib


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
