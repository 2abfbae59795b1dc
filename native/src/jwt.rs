//! JSON Web Tokens (JWS compact form): signing, verification, claim checks,
//! a cache of verified tokens and a revocation list.
//!
//! [`Codec`] owns the key and does the stateless work (structure, header,
//! signature, claim types). [`TokenStore`] holds the state: it applies the
//! time, type and revocation checks on every verification, cached or not.
//!
//! Two kinds of revocation: one token by its `jti`, and every access token of
//! a user issued before a point, by the user's *token generation floor*.
//! Tokens carry the generation that was current for their user when they were
//! issued (the private `gen` claim, read from storage at issue time, so no
//! clocks are compared); an access token whose `gen` is below its user's floor
//! is revoked. Logout, password change, account deletion and role changes
//! raise the floor.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::hmac;
use ring::rand::SystemRandom;
use ring::signature::{self, KeyPair as _};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Number;

use crate::cache::FifoCache;
use crate::keys::{self, KeyType, PrivateKey};

/// Tokens longer than this are rejected before any decoding.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    ES256,
    ES384,
    EdDSA,
}

impl Algorithm {
    pub const ALL: [Algorithm; 9] = [
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];

    /// The JOSE `alg` name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|alg| alg.name() == name)
    }

    fn hmac(self) -> Option<hmac::Algorithm> {
        match self {
            Algorithm::HS256 => Some(hmac::HMAC_SHA256),
            Algorithm::HS384 => Some(hmac::HMAC_SHA384),
            Algorithm::HS512 => Some(hmac::HMAC_SHA512),
            _ => None,
        }
    }

    fn key_type(self) -> KeyType {
        match self {
            Algorithm::ES256 => KeyType::EcP256,
            Algorithm::ES384 => KeyType::EcP384,
            Algorithm::EdDSA => KeyType::Ed25519,
            _ => KeyType::Rsa,
        }
    }

    fn verification(self) -> &'static dyn signature::VerificationAlgorithm {
        match self {
            Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
            Algorithm::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
            _ => &signature::ED25519,
        }
    }
}

/// Why a token was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenError {
    Invalid(Cow<'static, str>),
    Expired,
    Revoked,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Invalid(why) => write!(f, "invalid token: {why}"),
            TokenError::Expired => f.write_str("token expired"),
            TokenError::Revoked => f.write_str("token revoked"),
        }
    }
}

fn invalid(why: impl Into<Cow<'static, str>>) -> TokenError {
    TokenError::Invalid(why.into())
}

/// The claims of a verified token, with defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimsData {
    pub sub: String,
    /// `user_id` claim, or `sub` when absent.
    pub user_id: String,
    /// `role` claim, or `"user"`.
    pub role: String,
    pub exp: i64,
    pub nbf: Option<i64>,
    pub iat: Option<i64>,
    pub jti: Option<String>,
    pub sid: Option<String>,
    /// `typ` claim, or `"access"`.
    pub typ: String,
    /// Refresh-token family.
    pub fam: Option<String>,
    /// The user's token generation when the token was issued (`gen` claim,
    /// or 0): the token is revoked once the user's floor is above it.
    pub generation: i64,
    /// The whole payload JSON text, for access to extra claims.
    pub payload: String,
}

/// Access to the claims inside whatever a [`TokenStore`] caches.
pub trait HasClaims {
    fn claims(&self) -> &ClaimsData;
}

impl HasClaims for ClaimsData {
    fn claims(&self) -> &ClaimsData {
        self
    }
}

/// Key material given to [`Codec::new`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Keys<'a> {
    pub secret: Option<&'a [u8]>,
    pub private_key_pem: Option<&'a [u8]>,
    pub public_key_pem: Option<&'a [u8]>,
}

enum Signer {
    Hmac(hmac::Key),
    Rsa(signature::RsaKeyPair, &'static dyn signature::RsaEncoding),
    Ecdsa(signature::EcdsaKeyPair),
    Ed25519(signature::Ed25519KeyPair),
}

enum Verifier {
    Hmac(hmac::Key),
    Public(signature::UnparsedPublicKey<Vec<u8>>),
}

/// Signs and verifies tokens for one algorithm and key.
pub struct Codec {
    alg: Algorithm,
    /// base64url of the header this codec writes; tokens carrying exactly it
    /// skip header parsing.
    header_b64: String,
    signer: Option<Signer>,
    verifier: Verifier,
    rng: SystemRandom,
}

impl fmt::Debug for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Codec")
            .field("alg", &self.alg)
            .field("can_sign", &self.can_sign())
            .finish_non_exhaustive()
    }
}

impl Codec {
    pub fn new(algorithm: &str, keys: Keys<'_>) -> Result<Codec, String> {
        let alg = Algorithm::from_name(algorithm)
            .ok_or_else(|| format!("unsupported algorithm {algorithm:?}"))?;
        let rng = SystemRandom::new();
        let (signer, verifier) = match alg.hmac() {
            Some(hmac_alg) => {
                if keys.private_key_pem.is_some() || keys.public_key_pem.is_some() {
                    return Err(format!("{algorithm} takes a secret, not PEM keys"));
                }
                let secret = keys.secret.unwrap_or_default();
                if secret.is_empty() {
                    return Err(format!("{algorithm} requires a non-empty secret"));
                }
                let key = hmac::Key::new(hmac_alg, secret);
                (Some(Signer::Hmac(key.clone())), Verifier::Hmac(key))
            }
            None => {
                if keys.secret.is_some() {
                    return Err(format!("{algorithm} takes PEM keys, not a secret"));
                }
                let signer = keys
                    .private_key_pem
                    .map(|pem| load_signer(alg, pem, &rng))
                    .transpose()?;
                let public = match (keys.public_key_pem, &signer) {
                    (Some(pem), _) => keys::public_key(pem, alg.key_type())?,
                    (None, Some(signer)) => signer.public_key().to_vec(),
                    (None, None) => {
                        return Err(format!(
                            "{algorithm} requires private_key_pem or public_key_pem"
                        ))
                    }
                };
                let public = signature::UnparsedPublicKey::new(alg.verification(), public);
                (signer, Verifier::Public(public))
            }
        };
        let header = format!(r#"{{"alg":"{}","typ":"JWT"}}"#, alg.name());
        Ok(Codec {
            alg,
            header_b64: URL_SAFE_NO_PAD.encode(header),
            signer,
            verifier,
            rng,
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// Whether signature checks are expensive public-key operations (worth
    /// releasing the GIL for).
    pub fn is_asymmetric(&self) -> bool {
        matches!(self.verifier, Verifier::Public(_))
    }

    pub fn can_sign(&self) -> bool {
        self.signer.is_some()
    }

    /// Signs `payload_json` (a JSON object, embedded verbatim).
    pub fn sign(&self, payload_json: &[u8]) -> Result<String, String> {
        let signer = self
            .signer
            .as_ref()
            .ok_or("this codec has no signing key (public key only)")?;
        parse_object::<IgnoredAny>(payload_json)
            .map_err(|e| format!("payload must be a JSON object: {e}"))?;
        let mut token = self.header_b64.clone();
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(payload_json, &mut token);
        let signature = signer.sign(token.as_bytes(), &self.rng)?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        Ok(token)
    }

    /// Checks structure, header, signature and claim types. Time, type and
    /// revocation checks are [`TokenStore::validate`]'s.
    pub fn decode(&self, token: &str) -> Result<ClaimsData, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(invalid("token too long"));
        }
        let malformed = || invalid("malformed token");
        let (signing_input, signature_b64) = token.rsplit_once('.').ok_or_else(malformed)?;
        let (header_b64, payload_b64) = signing_input.split_once('.').ok_or_else(malformed)?;
        if header_b64 != self.header_b64 {
            self.check_header(header_b64)?;
        }
        let signature = decode_b64(signature_b64)?;
        if !self.verifier.verify(signing_input.as_bytes(), &signature) {
            return Err(invalid("invalid signature"));
        }
        let payload = String::from_utf8(decode_b64(payload_b64)?)
            .map_err(|_| invalid("payload is not UTF-8"))?;
        parse_claims(payload)
    }

    fn check_header(&self, header_b64: &str) -> Result<(), TokenError> {
        #[derive(Deserialize)]
        struct Header<'a> {
            #[serde(borrow)]
            alg: Cow<'a, str>,
            crit: Option<IgnoredAny>,
        }
        let bytes = decode_b64(header_b64)?;
        let header: Header<'_> =
            parse_object(&bytes).map_err(|e| invalid(format!("bad header: {e}")))?;
        if header.alg != self.alg.name() {
            return Err(invalid(format!("algorithm {:?} not allowed", header.alg)));
        }
        if header.crit.is_some() {
            return Err(invalid("unsupported critical header parameters"));
        }
        Ok(())
    }
}

fn load_signer(alg: Algorithm, pem: &[u8], rng: &SystemRandom) -> Result<Signer, String> {
    let kind = alg.key_type();
    let key = keys::private_key(pem, kind)?;
    let rejected = |e: ring::error::KeyRejected| format!("invalid private key: {e}");
    Ok(match (alg, key) {
        (Algorithm::ES256 | Algorithm::ES384, PrivateKey::Pkcs8(der)) => {
            let signing = if alg == Algorithm::ES256 {
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING
            } else {
                &signature::ECDSA_P384_SHA384_FIXED_SIGNING
            };
            Signer::Ecdsa(
                signature::EcdsaKeyPair::from_pkcs8(signing, &der, rng).map_err(rejected)?,
            )
        }
        (Algorithm::EdDSA, PrivateKey::Pkcs8(der)) => Signer::Ed25519(
            signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).map_err(rejected)?,
        ),
        (_, key) => {
            let pair = match key {
                PrivateKey::Pkcs8(der) => signature::RsaKeyPair::from_pkcs8(&der),
                PrivateKey::RsaPkcs1(der) => signature::RsaKeyPair::from_der(&der),
            }
            .map_err(rejected)?;
            let encoding: &'static dyn signature::RsaEncoding = match alg {
                Algorithm::RS256 => &signature::RSA_PKCS1_SHA256,
                Algorithm::RS384 => &signature::RSA_PKCS1_SHA384,
                _ => &signature::RSA_PKCS1_SHA512,
            };
            Signer::Rsa(pair, encoding)
        }
    })
}

impl Signer {
    fn public_key(&self) -> &[u8] {
        match self {
            Signer::Hmac(_) => &[],
            Signer::Rsa(pair, _) => pair.public().as_ref(),
            Signer::Ecdsa(pair) => pair.public_key().as_ref(),
            Signer::Ed25519(pair) => pair.public_key().as_ref(),
        }
    }

    fn sign(&self, message: &[u8], rng: &SystemRandom) -> Result<Vec<u8>, String> {
        let failed = |_| "signing failed".to_string();
        Ok(match self {
            Signer::Hmac(key) => hmac::sign(key, message).as_ref().to_vec(),
            Signer::Rsa(pair, encoding) => {
                let mut sig = vec![0; pair.public().modulus_len()];
                pair.sign(*encoding, rng, message, &mut sig)
                    .map_err(failed)?;
                sig
            }
            Signer::Ecdsa(pair) => pair.sign(rng, message).map_err(failed)?.as_ref().to_vec(),
            Signer::Ed25519(pair) => pair.sign(message).as_ref().to_vec(),
        })
    }
}

impl Verifier {
    fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            Verifier::Hmac(key) => hmac::verify(key, message, signature).is_ok(),
            Verifier::Public(key) => key.verify(message, signature).is_ok(),
        }
    }
}

fn decode_b64(segment: &str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| invalid("malformed token (bad base64url)"))
}

/// Deserializes `bytes`, which must hold a JSON object (serde would also
/// accept an array for a struct).
fn parse_object<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, String> {
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err("not a JSON object".into());
    }
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

fn parse_claims(payload: String) -> Result<ClaimsData, TokenError> {
    #[derive(Deserialize)]
    struct Raw<'a> {
        #[serde(borrow)]
        sub: Option<Cow<'a, str>>,
        #[serde(borrow)]
        user_id: Option<Cow<'a, str>>,
        #[serde(borrow)]
        role: Option<Cow<'a, str>>,
        exp: Option<Number>,
        nbf: Option<Number>,
        iat: Option<Number>,
        #[serde(borrow)]
        jti: Option<Cow<'a, str>>,
        #[serde(borrow)]
        sid: Option<Cow<'a, str>>,
        #[serde(borrow)]
        typ: Option<Cow<'a, str>>,
        #[serde(borrow)]
        fam: Option<Cow<'a, str>>,
        #[serde(rename = "gen")]
        generation: Option<Number>,
    }
    let raw: Raw<'_> =
        parse_object(payload.as_bytes()).map_err(|e| invalid(format!("bad claims: {e}")))?;
    let sub = raw.sub.ok_or_else(|| invalid("missing claim: sub"))?;
    let exp = raw.exp.ok_or_else(|| invalid("missing claim: exp"))?;
    let owned = |s: Option<Cow<'_, str>>| s.map(Cow::into_owned);
    let claims = ClaimsData {
        user_id: raw.user_id.unwrap_or(Cow::Borrowed(&sub)).into_owned(),
        role: raw.role.map_or_else(|| "user".into(), Cow::into_owned),
        exp: numeric_date(&exp),
        nbf: raw.nbf.as_ref().map(numeric_date),
        iat: raw.iat.as_ref().map(numeric_date),
        jti: owned(raw.jti),
        sid: owned(raw.sid),
        typ: raw.typ.map_or_else(|| "access".into(), Cow::into_owned),
        fam: owned(raw.fam),
        generation: raw.generation.as_ref().map_or(0, numeric_date),
        sub: sub.into_owned(),
        payload: String::new(),
    };
    Ok(ClaimsData { payload, ..claims })
}

/// A JSON number (seconds, or a generation), truncated towards negative
/// infinity.
fn numeric_date(n: &Number) -> i64 {
    n.as_i64()
        .unwrap_or_else(|| n.as_f64().map_or(i64::MAX, |f| f.floor() as i64))
}

/// A user's token generation floor: access tokens with a lower `gen` are
/// revoked; kept until `until`, when every such token has expired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Floor {
    pub generation: i64,
    pub until: i64,
}

/// Verified-token cache and revocation lists, plus the checks that depend on
/// them and on the clock.
pub struct TokenStore<C> {
    cache: FifoCache<C>,
    /// Revoked `jti` -> the latest `exp` it was revoked with.
    revoked: HashMap<Box<str>, i64>,
    /// User (`sub`) -> token generation floor.
    floors: HashMap<Box<str>, Floor>,
    leeway: i64,
}

impl<C: HasClaims> TokenStore<C> {
    pub fn new(cache_size: usize, leeway: i64) -> Self {
        TokenStore {
            cache: FifoCache::new(cache_size),
            revoked: HashMap::new(),
            floors: HashMap::new(),
            leeway,
        }
    }

    /// The cached verification of `token`, re-checked at `now`; `None` on a
    /// miss.
    pub fn cached(&self, token: &str, now: i64, typ: &str) -> Option<Result<&C, TokenError>> {
        let entry = self.cache.get(token)?;
        Some(self.validate(entry.claims(), now, typ).map(|()| entry))
    }

    /// Expiry (with leeway), `nbf`, token type and revocation (by `jti`, and
    /// for access tokens by the user's generation floor).
    pub fn validate(&self, claims: &ClaimsData, now: i64, typ: &str) -> Result<(), TokenError> {
        if claims.exp.saturating_add(self.leeway) <= now {
            return Err(TokenError::Expired);
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(self.leeway))
        {
            return Err(invalid("token not yet valid (nbf)"));
        }
        if claims.typ != typ {
            return Err(invalid(format!(
                "expected a {typ:?} token, got {:?}",
                claims.typ
            )));
        }
        if let Some(jti) = &claims.jti {
            if !self.revoked.is_empty() && self.revoked.contains_key(jti.as_str()) {
                return Err(TokenError::Revoked);
            }
        }
        // Refresh tokens are governed by their family in storage (a role
        // change raises the floor, and the refresh is how the client gets a
        // token with the new role).
        if !self.floors.is_empty() && claims.typ == "access" {
            if let Some(floor) = self.floors.get(claims.sub.as_str()) {
                if claims.generation < floor.generation {
                    return Err(TokenError::Revoked);
                }
            }
        }
        Ok(())
    }

    /// Caches a token that passed [`Codec::decode`] and [`Self::validate`].
    pub fn insert(&mut self, token: &str, claims: C) {
        self.cache.insert(token, claims);
    }

    /// Revokes `jti` until `exp` (plus leeway), after which [`Self::prune`]
    /// may drop it: tokens carrying it are expired by then anyway.
    pub fn revoke(&mut self, jti: &str, exp: i64) {
        let until = self.revoked.entry(jti.into()).or_insert(exp);
        *until = (*until).max(exp);
    }

    pub fn is_revoked(&self, jti: &str) -> bool {
        self.revoked.contains_key(jti)
    }

    /// Revokes `user`'s access tokens with a `gen` below `generation`, until `until`
    /// (plus leeway). Floors only rise: an older, lower one arriving late
    /// changes nothing.
    pub fn revoke_user(&mut self, user: &str, generation: i64, until: i64) {
        let floor = self
            .floors
            .entry(user.into())
            .or_insert(Floor { generation, until });
        floor.generation = floor.generation.max(generation);
        floor.until = floor.until.max(until);
    }

    /// The user's current floor, if any.
    pub fn floor(&self, user: &str) -> Option<Floor> {
        self.floors.get(user).copied()
    }

    /// Drops expired revocations, floors and cache entries; returns how many.
    pub fn prune(&mut self, now: i64) -> usize {
        let leeway = self.leeway;
        let live = |exp: i64| exp.saturating_add(leeway) > now;
        let revocations = self.revoked.len() + self.floors.len();
        self.revoked.retain(|_, &mut exp| live(exp));
        self.floors.retain(|_, floor| live(floor.until));
        let cached = self.cache.retain(|entry| live(entry.claims().exp));
        revocations - self.revoked.len() - self.floors.len() + cached
    }

    pub fn clear_cache(&mut self) {
        self.cache.clear();
    }

    pub fn cache_len(&self) -> usize {
        self.cache.len()
    }

    pub fn revoked_len(&self) -> usize {
        self.revoked.len()
    }

    pub fn floors_len(&self) -> usize {
        self.floors.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair};

    const NOW: i64 = 1_700_000_000;

    fn hs256() -> Codec {
        let keys = Keys {
            secret: Some(b"top secret"),
            ..Keys::default()
        };
        Codec::new("HS256", keys).unwrap()
    }

    fn payload(extra: &str) -> Vec<u8> {
        format!(r#"{{"sub":"u1","exp":{}{extra}}}"#, NOW + 60).into_bytes()
    }

    fn pem(label: &str, der: &[u8]) -> Vec<u8> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        format!("-----BEGIN {label}-----\n{b64}\n-----END {label}-----\n").into_bytes()
    }

    /// A token with the given header and payload, signed by `codec`'s key.
    fn forge(codec: &Codec, header: &str, payload: &str) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let sig = codec
            .signer
            .as_ref()
            .unwrap()
            .sign(input.as_bytes(), &codec.rng)
            .unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    #[test]
    fn hs256_round_trip_applies_defaults() {
        let codec = hs256();
        let token = codec.sign(&payload(r#","jti":"j1","x":[1]"#)).unwrap();
        assert!(token.starts_with("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."));
        let claims = codec.decode(&token).unwrap();
        assert_eq!(claims.sub, "u1");
        assert_eq!(claims.user_id, "u1");
        assert_eq!(claims.role, "user");
        assert_eq!(claims.typ, "access");
        assert_eq!(claims.exp, NOW + 60);
        assert_eq!(claims.jti.as_deref(), Some("j1"));
        assert_eq!(claims.iat, None);
        assert_eq!(claims.payload.as_bytes(), payload(r#","jti":"j1","x":[1]"#));
    }

    #[test]
    fn verifies_a_third_party_hs256_token() {
        // The jwt.io example token: its signature is valid but it has no exp.
        let codec = Codec::new(
            "HS256",
            Keys {
                secret: Some(b"your-256-bit-secret"),
                ..Keys::default()
            },
        )
        .unwrap();
        let token = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6Ikp\
                     vaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
        assert_eq!(
            codec.decode(token),
            Err(invalid("missing claim: exp")),
            "signature must verify, then the claims fail"
        );
        let other = Codec::new(
            "HS256",
            Keys {
                secret: Some(b"wrong"),
                ..Keys::default()
            },
        )
        .unwrap();
        assert_eq!(other.decode(token), Err(invalid("invalid signature")));
    }

    #[test]
    fn tampering_is_detected() {
        let codec = hs256();
        let token = codec.sign(&payload("")).unwrap();
        let (input, sig) = token.rsplit_once('.').unwrap();
        let (header, _) = input.split_once('.').unwrap();
        let forged_payload = URL_SAFE_NO_PAD.encode(format!(r#"{{"sub":"admin","exp":{}}}"#, NOW));
        let forged = format!("{header}.{forged_payload}.{sig}");
        assert_eq!(codec.decode(&forged), Err(invalid("invalid signature")));
        for bad in ["", "a.b", "a.b.c.d", &token[..token.len() - 1], "!!.e30.AA"] {
            assert!(codec.decode(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn header_algorithm_must_match() {
        let codec = hs256();
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(payload(""))
        );
        assert!(matches!(codec.decode(&none), Err(TokenError::Invalid(m)) if m.contains("none")));
        let hs512 = forge(
            &codec,
            r#"{"alg":"HS512"}"#,
            &String::from_utf8(payload("")).unwrap(),
        );
        assert!(codec.decode(&hs512).is_err());
        // A different but valid header spelling is accepted.
        let spaced = forge(
            &codec,
            r#"{ "typ": "JWT", "alg": "HS256", "kid": "k" }"#,
            r#"{"sub":"s","exp":1}"#,
        );
        assert_eq!(codec.decode(&spaced).unwrap().sub, "s");
        let crit = forge(
            &codec,
            r#"{"alg":"HS256","crit":["b64"]}"#,
            r#"{"sub":"s","exp":1}"#,
        );
        assert!(codec.decode(&crit).is_err());
        let array = forge(&codec, r#"["HS256"]"#, r#"{"sub":"s","exp":1}"#);
        assert!(codec.decode(&array).is_err());
    }

    #[test]
    fn claim_types_are_checked() {
        let codec = hs256();
        let hdr = r#"{"alg":"HS256"}"#;
        for payload in [
            r#"{"exp":1}"#,
            r#"{"sub":1,"exp":1}"#,
            r#"{"sub":"s"}"#,
            r#"{"sub":"s","exp":"1"}"#,
            r#"{"sub":"s","exp":1,"role":5}"#,
            r#"{"sub":"s","exp":1,"sub":"t"}"#,
            r#"["sub","exp"]"#,
            "not json",
        ] {
            assert!(
                matches!(
                    codec.decode(&forge(&codec, hdr, payload)),
                    Err(TokenError::Invalid(_))
                ),
                "{payload} must be refused"
            );
        }
        let claims = codec
            .decode(&forge(
                &codec,
                hdr,
                r#"{"sub":"s","exp":10.9,"iat":5,"user_id":"u\u0041","typ":"refresh","fam":"f"}"#,
            ))
            .unwrap();
        assert_eq!((claims.exp, claims.iat), (10, Some(5)));
        assert_eq!(claims.user_id, "uA");
        assert_eq!(
            (claims.typ.as_str(), claims.fam.as_deref()),
            ("refresh", Some("f"))
        );
    }

    #[test]
    fn construction_errors() {
        let none = Keys::default();
        assert!(Codec::new("none", none)
            .unwrap_err()
            .contains("unsupported"));
        assert!(Codec::new("HS256", none).is_err());
        assert!(Codec::new("RS256", none).is_err());
        let both = Keys {
            secret: Some(b"s"),
            public_key_pem: Some(b"x"),
            ..Keys::default()
        };
        assert!(Codec::new("HS256", both).is_err());
        assert!(Codec::new("ES256", both).is_err());
    }

    #[test]
    fn ecdsa_and_eddsa_sign_and_verify() {
        let rng = SystemRandom::new();
        let p256 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap();
        let p384 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, &rng)
            .unwrap();
        let ed = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        for (alg, der) in [("ES256", &p256), ("ES384", &p384), ("EdDSA", &ed)] {
            let private = pem("PRIVATE KEY", der.as_ref());
            let codec = Codec::new(
                alg,
                Keys {
                    private_key_pem: Some(&private),
                    ..Keys::default()
                },
            )
            .unwrap();
            assert!(codec.is_asymmetric());
            let token = codec.sign(&payload("")).unwrap();
            assert_eq!(codec.decode(&token).unwrap().sub, "u1", "{alg}");
            let mut bad = token.into_bytes();
            let last = bad.len() - 3;
            bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
            assert!(codec.decode(std::str::from_utf8(&bad).unwrap()).is_err());
        }
        // A P-256 key cannot back ES384 or EdDSA.
        let private = pem("PRIVATE KEY", p256.as_ref());
        for alg in ["ES384", "EdDSA", "RS256"] {
            let keys = Keys {
                private_key_pem: Some(&private),
                ..Keys::default()
            };
            assert!(Codec::new(alg, keys).is_err(), "{alg}");
        }
    }

    #[test]
    fn public_only_codec_verifies_but_cannot_sign() {
        let rng = SystemRandom::new();
        let der = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(der.as_ref()).unwrap();
        let spki = [
            &[0x30, 42, 0x30, 5, 6, 3, 0x2b, 0x65, 0x70, 3, 33, 0][..],
            pair.public_key().as_ref(),
        ]
        .concat();
        let public = pem("PUBLIC KEY", &spki);
        let private = pem("PRIVATE KEY", der.as_ref());
        let signer = Codec::new(
            "EdDSA",
            Keys {
                private_key_pem: Some(&private),
                ..Keys::default()
            },
        )
        .unwrap();
        let verifier = Codec::new(
            "EdDSA",
            Keys {
                public_key_pem: Some(&public),
                ..Keys::default()
            },
        )
        .unwrap();
        let token = signer.sign(&payload("")).unwrap();
        assert_eq!(verifier.decode(&token).unwrap().sub, "u1");
        assert!(!verifier.can_sign());
        assert!(verifier.sign(&payload("")).is_err());
    }

    #[test]
    fn sign_requires_a_json_object() {
        let codec = hs256();
        assert!(codec.sign(b"[1]").is_err());
        assert!(codec.sign(b"{").is_err());
        assert!(codec.sign(b" {}").is_ok());
    }

    fn claims(exp: i64, nbf: Option<i64>, typ: &str, jti: Option<&str>) -> ClaimsData {
        ClaimsData {
            sub: "s".into(),
            user_id: "s".into(),
            role: "user".into(),
            exp,
            nbf,
            iat: None,
            jti: jti.map(Into::into),
            sid: None,
            typ: typ.into(),
            fam: None,
            generation: 0,
            payload: "{}".into(),
        }
    }

    fn with_gen(generation: i64, typ: &str) -> ClaimsData {
        ClaimsData {
            generation,
            ..claims(NOW + 10, None, typ, Some("j"))
        }
    }

    #[test]
    fn gen_claim_is_parsed_with_a_default_of_zero() {
        let codec = hs256();
        let token = codec.sign(&payload(r#","gen":1700000000123456"#)).unwrap();
        assert_eq!(
            codec.decode(&token).unwrap().generation,
            1_700_000_000_123_456
        );
        let token = codec.sign(&payload("")).unwrap();
        assert_eq!(codec.decode(&token).unwrap().generation, 0);
        let bad = forge(
            &codec,
            r#"{"alg":"HS256"}"#,
            r#"{"sub":"s","exp":1,"gen":"7"}"#,
        );
        assert!(matches!(codec.decode(&bad), Err(TokenError::Invalid(_))));
    }

    #[test]
    fn user_floor_revokes_older_access_tokens_only() {
        let mut store = TokenStore::<ClaimsData>::new(10, 0);
        store.revoke_user("s", 100, NOW + 60);
        assert_eq!(
            store.validate(&with_gen(99, "access"), NOW, "access"),
            Err(TokenError::Revoked)
        );
        assert_eq!(
            store.validate(&with_gen(0, "access"), NOW, "access"),
            Err(TokenError::Revoked)
        );
        assert_eq!(
            store.validate(&with_gen(100, "access"), NOW, "access"),
            Ok(())
        );
        assert_eq!(
            store.validate(&with_gen(101, "access"), NOW, "access"),
            Ok(())
        );
        // Refresh tokens answer to their family in storage, not to the floor.
        assert_eq!(
            store.validate(&with_gen(0, "refresh"), NOW, "refresh"),
            Ok(())
        );
        // Another user is not affected.
        let other = ClaimsData {
            sub: "t".into(),
            ..with_gen(0, "access")
        };
        assert_eq!(store.validate(&other, NOW, "access"), Ok(()));
    }

    #[test]
    fn floors_only_rise_and_expire() {
        let mut store = TokenStore::<ClaimsData>::new(10, 1);
        store.revoke_user("s", 100, NOW + 60);
        store.revoke_user("s", 50, NOW + 90);
        assert_eq!(
            store.floor("s"),
            Some(Floor {
                generation: 100,
                until: NOW + 90
            })
        );
        store.insert("t", with_gen(50, "access"));
        assert_eq!(
            store.cached("t", NOW, "access").unwrap().err(),
            Some(TokenError::Revoked),
            "cached tokens are checked against the floor too"
        );
        assert_eq!(store.prune(NOW + 90), 1, "the cache entry (exp NOW+10)");
        assert_eq!(store.floors_len(), 1, "leeway keeps the floor");
        assert_eq!(store.prune(NOW + 91), 1);
        assert_eq!(store.floor("s"), None);
    }

    #[test]
    fn validate_applies_expiry_with_leeway_and_nbf() {
        let store = TokenStore::<ClaimsData>::new(10, 5);
        let c = claims(NOW, Some(NOW - 10), "access", None);
        assert_eq!(store.validate(&c, NOW + 4, "access"), Ok(()));
        assert_eq!(
            store.validate(&c, NOW + 5, "access"),
            Err(TokenError::Expired)
        );
        assert_eq!(store.validate(&c, NOW - 15, "access"), Ok(()));
        assert!(matches!(
            store.validate(&c, NOW - 16, "access"),
            Err(TokenError::Invalid(_))
        ));
        assert!(matches!(
            store.validate(&c, NOW, "refresh"),
            Err(TokenError::Invalid(_))
        ));
    }

    #[test]
    fn cache_hits_are_revalidated() {
        let mut store = TokenStore::new(10, 0);
        store.insert("t", claims(NOW + 10, None, "access", Some("j")));
        assert!(store.cached("other", NOW, "access").is_none());
        assert_eq!(store.cached("t", NOW, "access").unwrap().unwrap().sub, "s");
        assert_eq!(
            store.cached("t", NOW + 10, "access").unwrap().err(),
            Some(TokenError::Expired)
        );
        assert!(store.cached("t", NOW, "refresh").unwrap().is_err());
        store.revoke("j", NOW + 10);
        assert_eq!(
            store.cached("t", NOW, "access").unwrap().err(),
            Some(TokenError::Revoked)
        );
        assert!(store.is_revoked("j"));
    }

    #[test]
    fn prune_drops_expired_revocations_and_entries() {
        let mut store = TokenStore::new(10, 2);
        store.insert("a", claims(NOW, None, "access", None));
        store.insert("b", claims(NOW + 100, None, "access", None));
        store.revoke("old", NOW);
        store.revoke("new", NOW);
        store.revoke("new", NOW + 100);
        assert_eq!(store.prune(NOW + 1), 0, "leeway keeps them");
        assert_eq!(store.prune(NOW + 2), 2);
        assert_eq!((store.cache_len(), store.revoked_len()), (1, 1));
        assert!(store.is_revoked("new"));
        store.clear_cache();
        assert_eq!(store.cache_len(), 0);
    }
}
