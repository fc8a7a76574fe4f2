"""Secrets, tokens and password hashes.

Nothing here has a default: the token-signing key and the embedded store's password are
generated on first run into ``<data_dir>/secrets.json`` (mode 0600); the admin token comes
from the config or ``RAYDESK_ADMIN_TOKEN``, else it is generated there too and printed once.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Depends, Header

from raydesk.errors import Forbidden, Unauthorized

SECRETS_FILE = "secrets.json"
_ALGORITHM = "HS256"
_hasher = PasswordHasher()
# Verified against when the email is unknown, so a wrong email costs the same as a wrong
# password and does not reveal which agents exist.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class Secrets:
    signing_key: str
    store_password: str
    admin_token: str
    admin_token_generated: bool


def load_or_create_secrets(data_dir: Path, admin_token: str | None) -> Secrets:
    """Read the data folder's secrets, creating any that are missing (0600)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / SECRETS_FILE
    stored: dict[str, str] = {}
    if path.exists():
        stored = json.loads(path.read_text(encoding="utf-8"))
    changed = False
    for key in ("signing_key", "store_password", "admin_token"):
        if not stored.get(key):
            # Hex: a secret that starts with "-" would read as an option on a command line.
            stored[key] = secrets.token_hex(32)
            changed = True
    if changed:
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(stored, handle)
        os.replace(tmp, path)
    return Secrets(
        signing_key=stored["signing_key"],
        store_password=stored["store_password"],
        admin_token=admin_token or stored["admin_token"],
        admin_token_generated=admin_token is None,
    )


TokenRole = Literal["customer", "agent", "admin"]


@dataclass(frozen=True)
class Principal:
    """Who is calling: a visitor (role customer) or an agent (role agent or admin)."""

    id: str
    role: TokenRole

    @property
    def is_agent(self) -> bool:
        return self.role in ("agent", "admin")

    @property
    def wire_role(self) -> Literal["customer", "agent"]:
        return "agent" if self.is_agent else "customer"


class Tokens:
    """Issues and checks signed participant tokens (JWT, HS256)."""

    def __init__(self, signing_key: str, admin_token: str) -> None:
        self._key = signing_key
        self._admin_token = admin_token

    def issue(self, principal: Principal, ttl_s: int) -> str:
        now = int(time.time())
        claims = {"sub": principal.id, "role": principal.role, "iat": now, "exp": now + ttl_s}
        return jwt.encode(claims, self._key, algorithm=_ALGORITHM)

    def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(token, self._key, algorithms=[_ALGORITHM],
                                options={"require": ["sub", "role", "exp"]})
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token expired") from None
        except jwt.PyJWTError:
            raise Unauthorized("invalid token") from None
        role = claims.get("role")
        if role not in ("customer", "agent", "admin") or not isinstance(claims["sub"], str):
            raise Unauthorized("invalid token")
        return Principal(id=claims["sub"], role=role)

    def is_admin_token(self, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self._admin_token.encode())

    def require_admin(self, token: str | None) -> None:
        """Accept the configured admin token or an agent token with the admin role."""
        if not token:
            raise Unauthorized("missing bearer token")
        if self.is_admin_token(token):
            return
        if self.verify(token).role != "admin":
            raise Forbidden("admin role required")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def bearer_token(authorization: Annotated[str | None, Header()] = None) -> str | None:
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization must be 'Bearer <token>'")
    return token.strip()


Bearer = Annotated[str | None, Depends(bearer_token)]
