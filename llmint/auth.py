"""Sign-in for the app: who may use it, checked against salted password hashes.

Users come from a file (one `username:secret` per line, `#` comments) and from the
`LLMINT_USERS` environment variable (`name:secret,name2:secret2`). A secret is a
`pbkdf2_sha256$iterations$salt$hash` string from `hash_password` (what a users file
should hold) or, for quick set-ups, a plain password, which is hashed in memory at
load. No user is built in: with none configured, `one_time_users` makes one account
with a random password for this process only, and the app prints it on the console.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import LlmintError

ENV_USERS = "LLMINT_USERS"
ENV_USERS_FILE = "LLMINT_USERS_FILE"
SCHEME = "pbkdf2_sha256"
ITERATIONS = 200_000


class AuthConfigError(LlmintError):
    """A users file or variable that cannot be read as `username:secret` entries."""


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """A `pbkdf2_sha256$iterations$salt$hash` string for a users file."""
    if not isinstance(password, str) or not password:
        raise AuthConfigError("a password must be a non-empty string")
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return f"{SCHEME}${iterations}${salt.hex()}${digest.hex()}"


def _verify(password: str, stored: str) -> bool:
    try:
        _scheme, iterations, salt, digest = stored.split("$")
        got = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), bytes.fromhex(salt), int(iterations))
    except (ValueError, UnicodeEncodeError):
        return False
    return hmac.compare_digest(got.hex(), digest)


def _entry(line: str, where: str) -> tuple[str, str]:
    name, sep, secret = line.partition(":")
    name, secret = name.strip(), secret.strip()
    if not sep or not name or not secret:
        raise AuthConfigError(f"{where}: expected 'username:password' or 'username:{SCHEME}$...'")
    if any(c.isspace() for c in name):
        raise AuthConfigError(f"{where}: a username may not contain spaces ({name!r})")
    if secret.startswith(SCHEME + "$"):
        parts = secret.split("$")
        if len(parts) != 4 or not parts[1].isdigit():
            raise AuthConfigError(f"{where}: a malformed {SCHEME} hash for {name!r}")
        return name, secret
    return name, hash_password(secret, iterations=50_000)  # a plain password, hashed in memory


@dataclass(frozen=True)
class Users:
    """Usernames and their password hashes; `check` is what the app's sign-in calls."""

    hashes: Mapping[str, str]
    one_time_password: str | None = None  # set when the accounts were made up for this process

    def __len__(self) -> int:
        return len(self.hashes)

    def check(self, username: str, password: str) -> bool:
        stored = self.hashes.get(username) if isinstance(username, str) else None
        if stored is None or not isinstance(password, str):
            _verify("x", hash_password("y", iterations=50_000))  # same work for unknown names
            return False
        return _verify(password, stored)


def load_users(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Users:
    """Users from `path` (else `$LLMINT_USERS_FILE`) and `$LLMINT_USERS`; later entries win.

    An empty result is returned as is: the caller decides (the app then makes a one-time account).
    """
    env = os.environ if env is None else env
    hashes: dict[str, str] = {}
    path = path or env.get(ENV_USERS_FILE) or None
    if path is not None:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise AuthConfigError(f"cannot read the users file {p}: {e}") from None
        for n, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if line and not line.startswith("#"):
                name, secret = _entry(line, f"{p}:{n}")
                hashes[name] = secret
    for k, chunk in enumerate(env.get(ENV_USERS, "").split(","), 1):
        if chunk.strip():
            name, secret = _entry(chunk.strip(), f"${ENV_USERS} entry {k}")
            hashes[name] = secret
    return Users(hashes)


def one_time_users(username: str = "admin") -> Users:
    """One account with a random password, for a process started with no users configured."""
    password = secrets.token_urlsafe(12)
    return Users({username: hash_password(password, iterations=50_000)}, one_time_password=password)


__all__ = ["AuthConfigError", "Users", "hash_password", "load_users", "one_time_users"]
