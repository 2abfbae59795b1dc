"""JWT issue and verification.

Verification runs in the native extension (``pygw._native.TokenCodec``) with a bounded cache of
verified tokens; a cache hit still checks expiry, the revoked-jti set and the per-user token
generation floors, which every node keeps in memory, loads from storage at start (and after a
broker resync) and updates from the control bus.

Tokens carry, besides the contract's claims (SPEC §1), ``fam`` (refresh family), ``typ``
(access/refresh) and ``gen``: the user's token generation read from storage when the token was
issued (:meth:`pygw.store.base.Storage.token_generation`). Raising the user's floor above it
revokes every access token issued before (logout, password change, deletion, role change).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Literal

import orjson

from pygw._native import Claims, TokenCodec
from pygw.config import Settings

TokenType = Literal["access", "refresh"]


@dataclass(slots=True, frozen=True)
class IssuedToken:
    token: str
    jti: str
    exp: int
    iat: int


def _public_from_private(private_pem: bytes) -> bytes:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(private_pem, password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def build_codec(settings: Settings) -> TokenCodec:
    if settings.algorithm.startswith("HS"):
        return TokenCodec(
            settings.algorithm,
            secret=settings.secret_key.encode(),
            cache_size=settings.token_cache_size,
        )
    public = settings.jwt_public_key
    if public is None and settings.jwt_private_key is not None:
        public = _public_from_private(settings.jwt_private_key)
    return TokenCodec(
        settings.algorithm,
        private_key_pem=settings.jwt_private_key,
        public_key_pem=public,
        cache_size=settings.token_cache_size,
    )


class TokenService:
    def __init__(self, settings: Settings, codec: TokenCodec | None = None) -> None:
        self.codec = codec or build_codec(settings)
        self.access_ttl = settings.access_ttl
        self.refresh_ttl = settings.refresh_ttl

    def issue(
        self,
        *,
        username: str,
        role: str,
        session_id: str,
        family: str,
        typ: TokenType = "access",
        gen: int = 0,
        now: int | None = None,
    ) -> IssuedToken:
        iat = int(time.time()) if now is None else now
        exp = iat + (self.access_ttl if typ == "access" else self.refresh_ttl)
        jti = uuid.uuid4().hex
        payload = {
            "sub": username,
            "user_id": username,
            "role": role,
            "exp": exp,
            "iat": iat,
            "jti": jti,
            "sid": session_id,
            "fam": family,
            "typ": typ,
            "gen": gen,
        }
        return IssuedToken(self.codec.sign(orjson.dumps(payload)), jti, exp, iat)

    def verify(self, token: str, typ: TokenType = "access", *, cache: bool = True) -> Claims:
        """Raises pygw._native.InvalidToken / ExpiredToken / RevokedToken. ``cache=False``:
        reuse a cached verify but do not add one (a token verified once, at a socket's open)."""
        return self.codec.verify(token, typ=typ, cache=cache)

    def revoke_local(self, jti: str, exp: int) -> None:
        self.codec.revoke(jti, exp)

    def revoke_user_local(self, user: str, gen: int, until: int) -> None:
        self.codec.revoke_user(user, gen, until)

    def still_valid(self, user: str, jti: str | None, gen: int, exp: int, now: int) -> str | None:
        """Re-check what a connection remembers of its token: None if still valid, else why
        not ("Token expired" / "Token revoked")."""
        if exp <= now:
            return "Token expired"
        if jti is not None and self.codec.is_revoked(jti):
            return "Token revoked"
        floor = self.codec.user_floor(user)
        if floor is not None and gen < floor:
            return "Token revoked"
        return None
