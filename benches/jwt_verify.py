"""JWT verification: pygw's native TokenCodec (cold and cached) against PyJWT.

    python -m benches jwt_verify [--n N] [--repeat R] [--pool P] [--algs HS256,...] [--json PATH]

For each algorithm the same pool of distinct tokens (minted by PyJWT) is verified by:

- ``native cold``: ``TokenCodec.verify`` with an empty cache, so every call decodes, checks
  the signature and claims and inserts into the cache (the cache is cleared between passes
  over the pool, outside the timed region);
- ``native cached``: ``TokenCodec.verify`` of tokens already in the cache;
- ``pyjwt``: ``jwt.decode(token, key, algorithms=[alg])`` with a preloaded key object.

Each measurement runs N verifications, R times; the best run is reported. Ratios are
PyJWT's time per op divided by the mode's, from the same run.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

DEFAULT_ALGS = ("HS256", "RS256", "ES256", "EdDSA")
SUPPORTED_ALGS = ("HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "EdDSA")
HMAC_SECRET = b"benchmark-hmac-secret-0123456789" * 2  # 64 bytes


@dataclass(frozen=True)
class Result:
    alg: str
    mode: str
    ops: int
    seconds: float
    ops_per_sec: float
    us_per_op: float
    ratio_vs_pyjwt: float


@dataclass(frozen=True)
class Keys:
    """PyJWT's signing and verification keys, and the TokenCodec's key material."""

    signing: Any
    verifying: Any
    secret: bytes | None = None
    public_key_pem: bytes | None = None


def make_keys(alg: str) -> Keys:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if alg.startswith("HS"):
        return Keys(HMAC_SECRET, HMAC_SECRET, secret=HMAC_SECRET)
    private: Any
    if alg.startswith("RS"):
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif alg == "ES384":
        private = ec.generate_private_key(ec.SECP384R1())
    else:
        private = ed25519.Ed25519PrivateKey.generate()
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return Keys(private, private.public_key(), public_key_pem=public_pem)


def mint_tokens(alg: str, keys: Keys, count: int) -> list[str]:
    import jwt

    now = int(time.time())
    return [
        jwt.encode(
            {
                "sub": f"user-{i}",
                "role": "user",
                "sid": f"session-{i}",
                "jti": f"token-{i}",
                "iat": now,
                "exp": now + 3600,
            },
            keys.signing,
            algorithm=alg,
        )
        for i in range(count)
    ]


def best_time(run: Callable[[], float], repeat: int) -> float:
    return min(run() for _ in range(repeat))


def timed_passes(tokens: Sequence[str], n: int, verify: Callable[[str], object]) -> float:
    """Seconds to make n calls of verify, cycling over tokens."""
    full, rest = divmod(n, len(tokens))
    start = time.perf_counter()
    for _ in range(full):
        for token in tokens:
            verify(token)
    for token in tokens[:rest]:
        verify(token)
    return time.perf_counter() - start


def bench_alg(alg: str, n: int, repeat: int, pool: int) -> list[Result]:
    import jwt

    from pygw._native import TokenCodec

    keys = make_keys(alg)
    tokens = mint_tokens(alg, keys, min(pool, n))
    codec = TokenCodec(
        alg, secret=keys.secret, public_key_pem=keys.public_key_pem, cache_size=len(tokens)
    )

    def pyjwt_verify(token: str) -> object:
        return jwt.decode(token, keys.verifying, algorithms=[alg])

    # The three paths agree before anything is timed.
    for token in tokens[:3]:
        assert codec.verify(token).sub == pyjwt_verify(token)["sub"]  # type: ignore[index]

    def cold() -> float:
        elapsed = 0.0
        done = 0
        while done < n:
            batch = tokens[: n - done]
            codec.clear_cache()
            elapsed += timed_passes(batch, len(batch), codec.verify)
            done += len(batch)
        return elapsed

    def cached() -> float:
        for token in tokens:
            codec.verify(token)
        return timed_passes(tokens, n, codec.verify)

    timings = {
        "native cold": best_time(cold, repeat),
        "native cached": best_time(cached, repeat),
        "pyjwt": best_time(lambda: timed_passes(tokens, n, pyjwt_verify), repeat),
    }
    baseline = timings["pyjwt"]
    return [
        Result(
            alg=alg,
            mode=mode,
            ops=n,
            seconds=seconds,
            ops_per_sec=n / seconds,
            us_per_op=seconds / n * 1e6,
            ratio_vs_pyjwt=baseline / seconds,
        )
        for mode, seconds in timings.items()
    ]


def format_table(results: Sequence[Result]) -> str:
    header = f"{'alg':<6}  {'mode':<13}  {'ops/s':>12}  {'us/op':>9}  {'vs PyJWT':>9}"
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(
            f"{r.alg:<6}  {r.mode:<13}  {r.ops_per_sec:>12,.0f}  {r.us_per_op:>9.3f}"
            f"  {r.ratio_vs_pyjwt:>8.1f}x"
        )
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benches jwt_verify", description=__doc__)
    parser.add_argument("--n", type=int, default=5000, help="verifications per measurement")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (best kept)")
    parser.add_argument("--pool", type=int, default=1000, help="distinct tokens per algorithm")
    parser.add_argument(
        "--algs",
        default=",".join(DEFAULT_ALGS),
        help=f"comma-separated subset of {','.join(SUPPORTED_ALGS)}",
    )
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    args.algs = [a for a in args.algs.split(",") if a]
    unknown = sorted(set(args.algs) - set(SUPPORTED_ALGS))
    if unknown:
        parser.error(f"unsupported algorithms: {', '.join(unknown)}")
    if args.n < 1 or args.repeat < 1 or args.pool < 1:
        parser.error("--n, --repeat and --pool must be positive")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        import jwt
    except ImportError:
        print("PyJWT is required: pip install 'pyjwt[crypto]'", file=sys.stderr)
        return 2
    results: list[Result] = []
    for alg in args.algs:
        results.extend(bench_alg(alg, args.n, args.repeat, args.pool))
    print(
        f"JWT verify: n={args.n} per measurement, best of {args.repeat}, "
        f"pool={min(args.pool, args.n)} tokens, PyJWT {jwt.__version__}, "
        f"Python {platform.python_version()}"
    )
    print(format_table(results))
    if args.json:
        report = {
            "n": args.n,
            "repeat": args.repeat,
            "pool": min(args.pool, args.n),
            "python": platform.python_version(),
            "pyjwt": jwt.__version__,
            "machine": platform.machine(),
            "results": [asdict(r) for r in results],
        }
        from benches import _harness as h

        h.write_results("jwt_verify", report, args.json, argv=argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
