"""pygw._native JWT: PyJWT interoperability, claim checks, cache and revocation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from pygw._native import (
    Claims,
    ExpiredToken,
    InvalidToken,
    RevokedToken,
    TokenCodec,
    TokenError,
)

NOW = 1_700_000_000
SECRET = b"hmac-test-secret-" * 4  # 68 bytes: long enough for HS512
PKCS8 = serialization.PrivateFormat.PKCS8
TRADITIONAL = serialization.PrivateFormat.TraditionalOpenSSL


@dataclass(frozen=True)
class KeyPair:
    private: Any  # a cryptography private key object
    traditional: bool  # whether PKCS#1 / SEC1 private PEM exists for this type

    def private_pem(self, fmt: serialization.PrivateFormat = PKCS8) -> bytes:
        return bytes(
            self.private.private_bytes(
                serialization.Encoding.PEM, fmt, serialization.NoEncryption()
            )
        )

    def public_pem(self) -> bytes:
        return bytes(
            self.private.public_key().public_bytes(
                serialization.Encoding.PEM,
                serialization.PublicFormat.SubjectPublicKeyInfo,
            )
        )


_RSA = KeyPair(rsa.generate_private_key(public_exponent=65537, key_size=2048), True)
KEYS = {
    "RS256": _RSA,
    "RS384": _RSA,
    "RS512": _RSA,
    "ES256": KeyPair(ec.generate_private_key(ec.SECP256R1()), True),
    "ES384": KeyPair(ec.generate_private_key(ec.SECP384R1()), True),
    "EdDSA": KeyPair(ed25519.Ed25519PrivateKey.generate(), False),
}
ASYMMETRIC = sorted(KEYS)
HMAC = ["HS256", "HS384", "HS512"]


def payload(**claims: object) -> dict[str, object]:
    return {"sub": "alice", "exp": NOW + 60, **claims}


def dumps(obj: object) -> bytes:
    return json.dumps(obj).encode()


def hs256(**kwargs: Any) -> TokenCodec:
    return TokenCodec("HS256", secret=SECRET, **kwargs)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def pyjwt_encode(alg: str, claims: dict[str, object]) -> str:
    key = SECRET if alg in HMAC else KEYS[alg].private
    return jwt.encode(claims, key, algorithm=alg)


def pyjwt_decode(alg: str, token: str) -> dict[str, Any]:
    key = SECRET if alg in HMAC else KEYS[alg].private.public_key()
    decoded: dict[str, Any] = jwt.decode(
        token, key, algorithms=[alg], options={"verify_exp": False}
    )
    return decoded


def codec_for(alg: str, *, public_only: bool = False, **kwargs: Any) -> TokenCodec:
    if alg in HMAC:
        return TokenCodec(alg, secret=SECRET, **kwargs)
    if public_only:
        return TokenCodec(alg, public_key_pem=KEYS[alg].public_pem(), **kwargs)
    return TokenCodec(alg, private_key_pem=KEYS[alg].private_pem(), **kwargs)


# --------------------------------------------------------------- interoperability


@pytest.mark.parametrize("alg", HMAC + ASYMMETRIC)
def test_pyjwt_tokens_verify(alg: str) -> None:
    token = pyjwt_encode(alg, payload(role="admin", jti="j-1", sid="s-1", iat=NOW))
    claims = codec_for(alg, public_only=True).verify(token, now=NOW)
    assert (claims.sub, claims.user_id, claims.role) == ("alice", "alice", "admin")
    assert (claims.exp, claims.iat, claims.jti, claims.sid) == (NOW + 60, NOW, "j-1", "s-1")


@pytest.mark.parametrize("alg", HMAC + ASYMMETRIC)
def test_signed_tokens_decode_in_pyjwt(alg: str) -> None:
    body = payload(role="user", extra={"nested": [1, 2]})
    token = codec_for(alg).sign(dumps(body))
    assert pyjwt_decode(alg, token) == body
    assert jwt.get_unverified_header(token) == {"alg": alg, "typ": "JWT"}
    # And the codec accepts its own tokens.
    assert codec_for(alg).verify(token, now=NOW).sub == "alice"


@pytest.mark.parametrize("alg", [a for a in ASYMMETRIC if KEYS[a].traditional])
def test_traditional_private_key_formats(alg: str) -> None:
    codec = TokenCodec(alg, private_key_pem=KEYS[alg].private_pem(TRADITIONAL))
    token = codec.sign(dumps(payload()))
    assert pyjwt_decode(alg, token)["sub"] == "alice"


def test_rsa_pkcs1_public_key() -> None:
    pem = _RSA.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.PKCS1
    )
    codec = TokenCodec("RS256", public_key_pem=pem)
    assert codec.verify(pyjwt_encode("RS256", payload()), now=NOW).sub == "alice"


def test_sign_embeds_payload_verbatim() -> None:
    raw = b'{ "sub" : "bob",  "exp": 1700000060, "z": "\\u00e9" }'
    token = hs256().sign(raw)
    header, body, _ = token.split(".")
    assert b64url_decode(body) == raw
    assert b64url_decode(header) == b'{"alg":"HS256","typ":"JWT"}'


@pytest.mark.parametrize("bad", [b"[1, 2]", b'"text"', b"{", b""])
def test_sign_requires_a_json_object(bad: bytes) -> None:
    with pytest.raises(ValueError, match="JSON object"):
        hs256().sign(bad)


# ------------------------------------------------------------------ construction


@pytest.mark.parametrize(
    ("alg", "kwargs"),
    [
        ("none", {"secret": SECRET}),
        ("HS257", {"secret": SECRET}),
        ("hs256", {"secret": SECRET}),
        ("HS256", {}),
        ("HS256", {"secret": b""}),
        ("HS256", {"secret": SECRET, "public_key_pem": KEYS["EdDSA"].public_pem()}),
        ("RS256", {}),
        ("RS256", {"secret": SECRET}),
        ("RS256", {"public_key_pem": KEYS["ES256"].public_pem()}),
        ("ES256", {"private_key_pem": KEYS["ES384"].private_pem()}),
        ("ES384", {"public_key_pem": KEYS["ES256"].public_pem()}),
        ("EdDSA", {"private_key_pem": _RSA.private_pem()}),
        ("EdDSA", {"public_key_pem": b"not a pem"}),
        ("HS256", {"secret": SECRET, "leeway": -1}),
    ],
)
def test_construction_errors(alg: str, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        TokenCodec(alg, **kwargs)


def test_small_rsa_key_is_refused() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = small.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(ValueError, match="2048"):
        TokenCodec("RS256", public_key_pem=pem)


def test_encrypted_private_key_is_refused() -> None:
    pem = KEYS["ES256"].private.private_bytes(
        serialization.Encoding.PEM,
        PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    with pytest.raises(ValueError, match="encrypted"):
        TokenCodec("ES256", private_key_pem=pem)


@pytest.mark.parametrize("alg", ASYMMETRIC)
def test_public_only_codec_cannot_sign(alg: str) -> None:
    codec = codec_for(alg, public_only=True)
    assert codec.algorithm == alg
    with pytest.raises(ValueError, match="signing key"):
        codec.sign(dumps(payload()))


# ------------------------------------------------------------ refused tokens


def _expect_invalid(codec: TokenCodec, token: str, match: str | None = None) -> None:
    with pytest.raises(InvalidToken, match=match):
        codec.verify(token, now=NOW)
    assert codec.cache_len == 0, "failed verifications are not cached"


def test_alg_none_is_refused() -> None:
    header = b64url(b'{"alg":"none","typ":"JWT"}')
    unsigned = f"{header}.{b64url(dumps(payload()))}."
    _expect_invalid(hs256(), unsigned, "none")


def test_algorithm_mismatch_is_refused() -> None:
    _expect_invalid(hs256(), pyjwt_encode("HS512", payload()), "HS512")
    _expect_invalid(codec_for("RS256"), pyjwt_encode("RS384", payload()))
    _expect_invalid(codec_for("ES256"), pyjwt_encode("HS256", payload()))


def test_public_key_as_hmac_secret_is_refused() -> None:
    # The classic key-confusion attack: HS256 keyed with the RSA public key PEM.
    public_pem = _RSA.public_pem()
    header = b64url(b'{"alg":"HS256","typ":"JWT"}')
    body = b64url(dumps(payload(role="admin")))
    forged_codec = TokenCodec("HS256", secret=public_pem)
    forged = forged_codec.sign(dumps(payload(role="admin")))
    assert forged.startswith(f"{header}.{body}.")
    _expect_invalid(codec_for("RS256", public_only=True), forged, "HS256")


def test_tampered_tokens_are_refused() -> None:
    codec = hs256()
    token = codec.sign(dumps(payload()))
    header, _, signature = token.split(".")
    evil = b64url(dumps(payload(role="admin")))
    _expect_invalid(codec, f"{header}.{evil}.{signature}", "signature")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    _expect_invalid(codec, f"{header}.{token.split('.')[1]}.{flipped}", "signature")
    other = TokenCodec("HS256", secret=b"another secret").sign(dumps(payload()))
    _expect_invalid(codec, other, "signature")


@pytest.mark.parametrize(
    "token", ["", "abc", "a.b", "a.b.c.d", "....", "e30.e30.!!!", "x" * 20_000]
)
def test_malformed_tokens_are_refused(token: str) -> None:
    _expect_invalid(hs256(), token)


@pytest.mark.parametrize(
    ("claims", "match"),
    [
        ({"exp": NOW + 60}, "sub"),
        ({"sub": "a"}, "exp"),
        ({"sub": 5, "exp": NOW + 60}, "claims"),
        ({"sub": "a", "exp": "soon"}, "claims"),
        ({"sub": "a", "exp": NOW + 60, "role": ["admin"]}, "claims"),
        ({"sub": "a", "exp": NOW + 60, "jti": 1}, "claims"),
    ],
)
def test_claims_are_validated(claims: dict[str, object], match: str) -> None:
    _expect_invalid(hs256(), pyjwt_encode("HS256", claims), match)


def test_payload_must_be_an_object() -> None:
    header = b64url(b'{"alg":"HS256","typ":"JWT"}')
    body = b64url(b'["sub", "exp"]')
    mac = hmac.new(SECRET, f"{header}.{body}".encode(), hashlib.sha256).digest()
    _expect_invalid(hs256(), f"{header}.{body}.{b64url(mac)}", "object")


# --------------------------------------------------------- time and token type


def test_expiry_and_leeway() -> None:
    token = pyjwt_encode("HS256", payload())
    assert hs256().verify(token, now=NOW + 59).sub == "alice"
    with pytest.raises(ExpiredToken):
        hs256().verify(token, now=NOW + 60)
    assert hs256(leeway=10).verify(token, now=NOW + 69).sub == "alice"
    with pytest.raises(ExpiredToken):
        hs256(leeway=10).verify(token, now=NOW + 70)
    assert issubclass(ExpiredToken, TokenError)


def test_default_now_is_the_wall_clock() -> None:
    live = pyjwt_encode("HS256", {"sub": "a", "exp": int(time.time()) + 30})
    dead = pyjwt_encode("HS256", {"sub": "a", "exp": int(time.time()) - 30})
    assert hs256().verify(live).sub == "a"
    with pytest.raises(ExpiredToken):
        hs256().verify(dead)


def test_not_before() -> None:
    token = pyjwt_encode("HS256", payload(nbf=NOW + 10))
    with pytest.raises(InvalidToken, match="nbf"):
        hs256().verify(token, now=NOW)
    assert hs256().verify(token, now=NOW + 10).sub == "alice"
    assert hs256(leeway=10).verify(token, now=NOW).sub == "alice"


def test_token_type_must_match() -> None:
    access = pyjwt_encode("HS256", payload())
    refresh = pyjwt_encode("HS256", payload(typ="refresh", fam="fam-1"))
    codec = hs256()
    with pytest.raises(InvalidToken, match="refresh"):
        codec.verify(refresh, now=NOW)
    with pytest.raises(InvalidToken):
        codec.verify(access, now=NOW, typ="refresh")
    claims = codec.verify(refresh, now=NOW, typ="refresh")
    assert (claims.typ, claims.fam) == ("refresh", "fam-1")
    # The cached refresh token is still refused as an access token.
    with pytest.raises(InvalidToken):
        codec.verify(refresh, now=NOW)


# ------------------------------------------------------------------- Claims


def test_claims_defaults_dict_and_repr() -> None:
    body = payload(user_id="u-9", extra={"a": [1, 2.5, None, True]}, n=2**63)
    claims = hs256().verify(pyjwt_encode("HS256", body), now=NOW)
    assert isinstance(claims, Claims)
    assert (claims.user_id, claims.role, claims.typ) == ("u-9", "user", "access")
    assert (claims.iat, claims.jti, claims.sid, claims.fam) == (None, None, None, None)
    as_dict = claims.to_dict()
    assert as_dict == body
    assert list(as_dict) == list(body), "document order is kept"
    assert claims.to_dict() is not as_dict
    text = repr(claims)
    assert text.startswith("Claims(") and "alice" in text and "u-9" in text


def test_claims_are_read_only() -> None:
    claims = hs256().verify(pyjwt_encode("HS256", payload()), now=NOW)
    with pytest.raises(AttributeError):
        claims.sub = "mallory"  # type: ignore[misc]


def test_float_exp_is_floored() -> None:
    claims = hs256().verify(pyjwt_encode("HS256", payload(exp=NOW + 60.9)), now=NOW)
    assert claims.exp == NOW + 60


# ------------------------------------------------------------- cache behaviour


def test_cache_hit_returns_the_same_object() -> None:
    codec = hs256()
    token = pyjwt_encode("HS256", payload())
    first = codec.verify(token, now=NOW)
    assert codec.cache_len == 1
    assert codec.verify(token, now=NOW + 1) is first
    codec.clear_cache()
    assert codec.cache_len == 0
    again = codec.verify(token, now=NOW)
    assert again is not first and again.sub == first.sub


def test_uncached_verify_reuses_but_does_not_add() -> None:
    """cache=False (a WebSocket's one verify at open): checked like any verify, reuses a
    cached entry, adds none."""
    codec = hs256()
    token = pyjwt_encode("HS256", payload(jti="j1"))
    claims = codec.verify(token, now=NOW, cache=False)
    assert claims.sub == "alice" and codec.cache_len == 0
    cached = codec.verify(token, now=NOW)
    assert codec.cache_len == 1
    assert codec.verify(token, now=NOW, cache=False) is cached
    codec.revoke("j1", NOW + 3600)
    codec.clear_cache()
    with pytest.raises(RevokedToken):
        codec.verify(token, now=NOW, cache=False)
    with pytest.raises(ExpiredToken):
        codec.verify(token, now=NOW + 10**6, cache=False)
    assert codec.cache_len == 0


def test_cache_hit_honours_expiry() -> None:
    codec = hs256(leeway=5)
    token = pyjwt_encode("HS256", payload())
    codec.verify(token, now=NOW)
    assert codec.verify(token, now=NOW + 64).sub == "alice"
    with pytest.raises(ExpiredToken):
        codec.verify(token, now=NOW + 65)


def test_cache_hit_honours_nbf_for_earlier_now() -> None:
    codec = hs256()
    token = pyjwt_encode("HS256", payload(nbf=NOW))
    codec.verify(token, now=NOW + 1)
    with pytest.raises(InvalidToken, match="nbf"):
        codec.verify(token, now=NOW - 1)


def test_cache_is_bounded_fifo() -> None:
    codec = hs256(cache_size=2)
    tokens = [pyjwt_encode("HS256", payload(jti=f"j{i}")) for i in range(3)]
    first = [codec.verify(t, now=NOW) for t in tokens]
    assert codec.cache_len == 2
    assert codec.verify(tokens[2], now=NOW) is first[2]
    assert codec.verify(tokens[1], now=NOW) is first[1]
    assert codec.verify(tokens[0], now=NOW) is not first[0], "oldest was evicted"


def test_cache_can_be_disabled() -> None:
    codec = hs256(cache_size=0)
    token = pyjwt_encode("HS256", payload())
    assert codec.verify(token, now=NOW) is not codec.verify(token, now=NOW)
    assert codec.cache_len == 0


# ----------------------------------------------------------------- revocation


def test_revocation_applies_to_cached_tokens() -> None:
    codec = hs256()
    token = pyjwt_encode("HS256", payload(jti="j-1"))
    other = pyjwt_encode("HS256", payload(jti="j-2"))
    codec.verify(token, now=NOW)
    codec.verify(other, now=NOW)
    assert not codec.is_revoked("j-1")
    codec.revoke("j-1", NOW + 60)
    assert codec.is_revoked("j-1") and codec.revoked_len == 1
    with pytest.raises(RevokedToken):
        codec.verify(token, now=NOW)
    assert codec.verify(other, now=NOW).jti == "j-2"
    codec.clear_cache()
    with pytest.raises(RevokedToken):
        codec.verify(token, now=NOW)
    assert issubclass(RevokedToken, TokenError)


def test_user_floor_revokes_every_older_access_token_cached_or_not() -> None:
    """Logout/password change/deletion/role change: every access token of the user issued with
    a generation below the floor is refused, not only the newest one."""
    codec = hs256()
    before_refresh = pyjwt_encode("HS256", payload(jti="a1", gen=5))
    after_refresh = pyjwt_encode("HS256", payload(jti="a2", gen=5))
    legacy = pyjwt_encode("HS256", payload(jti="a0"))  # no gen claim: generation 0
    bob = pyjwt_encode("HS256", payload(sub="bob", gen=5))
    refresh = pyjwt_encode("HS256", payload(typ="refresh", gen=5))
    for token in (before_refresh, after_refresh, legacy, bob):
        codec.verify(token, now=NOW)
    assert codec.verify(before_refresh, now=NOW).gen == 5 and codec.verify(legacy, now=NOW).gen == 0
    assert codec.user_floor("alice") is None
    codec.revoke_user("alice", 6, NOW + 60)
    assert codec.user_floor("alice") == 6 and codec.floors_len == 1
    for token in (before_refresh, after_refresh, legacy):
        with pytest.raises(RevokedToken):
            codec.verify(token, now=NOW)
    assert codec.verify(bob, now=NOW).sub == "bob"
    # Tokens issued after the floor carry it, and pass.
    assert codec.verify(pyjwt_encode("HS256", payload(gen=6)), now=NOW).gen == 6
    # Refresh tokens answer to their family in storage, not to the floor.
    assert codec.verify(refresh, now=NOW, typ="refresh").gen == 5
    # Floors only rise; they go when every token they revoke has expired.
    codec.revoke_user("alice", 2, NOW + 30)
    assert codec.user_floor("alice") == 6
    assert codec.prune(now=NOW + 61) >= 1
    assert codec.user_floor("alice") is None and codec.floors_len == 0


def test_prune_drops_expired_revocations_and_cache_entries() -> None:
    codec = hs256(leeway=2)
    short = pyjwt_encode("HS256", payload(jti="a", exp=NOW + 10))
    long = pyjwt_encode("HS256", payload(jti="b", exp=NOW + 100))
    codec.verify(short, now=NOW)
    codec.verify(long, now=NOW)
    codec.revoke("a", NOW + 10)
    codec.revoke("b", NOW + 100)
    assert codec.prune(now=NOW + 11) == 0, "leeway still applies"
    assert codec.prune(now=NOW + 12) == 2
    assert (codec.cache_len, codec.revoked_len) == (1, 1)
    assert codec.is_revoked("b") and not codec.is_revoked("a")
    assert codec.prune() == 2, "the default now is the wall clock, far past both"


def test_repr_mentions_algorithm() -> None:
    assert "HS256" in repr(hs256())


@pytest.mark.parametrize("alg", ["HS256", "ES256"])
def test_concurrent_verification(alg: str) -> None:
    codec = codec_for(alg, public_only=alg != "HS256", cache_size=64)
    tokens = [pyjwt_encode(alg, payload(sub=f"user-{i}")) for i in range(100)]

    def verify_all(offset: int) -> list[str]:
        return [codec.verify(tokens[(i + offset) % 100], now=NOW).sub for i in range(100)]

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(verify_all, range(0, 100, 25)))
    for offset, subs in zip(range(0, 100, 25), results, strict=True):
        assert subs == [f"user-{(i + offset) % 100}" for i in range(100)]
    assert codec.cache_len == 64
