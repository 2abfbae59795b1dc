//! PEM/DER handling for the key formats JWT deployments actually use.
//!
//! `ring` wants raw key material: PKCS#8 documents for private keys and the
//! bare public key (RSAPublicKey DER, an uncompressed EC point, 32 Ed25519
//! bytes) for public keys. This module unwraps PEM and the small DER layer
//! around them (SubjectPublicKeyInfo, SEC1, PKCS#1), checking the key's
//! algorithm identifier so a wrong key type fails with a clear message.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// The kind of asymmetric key an algorithm needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

/// A private key in a form `ring` can load.
#[derive(Debug, PartialEq, Eq)]
pub enum PrivateKey {
    /// PKCS#8 `PrivateKeyInfo` DER (any key type).
    Pkcs8(Vec<u8>),
    /// PKCS#1 `RSAPrivateKey` DER.
    RsaPkcs1(Vec<u8>),
}

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_SEQUENCE: u8 = 0x30;

// DER-encoded OBJECT IDENTIFIERs (tag and length included).
const OID_RSA: &[u8] = &[6, 9, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 1, 1];
const OID_EC: &[u8] = &[6, 7, 0x2a, 0x86, 0x48, 0xce, 0x3d, 2, 1];
const OID_P256: &[u8] = &[6, 8, 0x2a, 0x86, 0x48, 0xce, 0x3d, 3, 1, 7];
const OID_P384: &[u8] = &[6, 5, 0x2b, 0x81, 4, 0, 0x22];
const OID_ED25519: &[u8] = &[6, 3, 0x2b, 0x65, 0x70];

impl KeyType {
    fn name(self) -> &'static str {
        match self {
            KeyType::Rsa => "an RSA",
            KeyType::EcP256 => "a P-256 EC",
            KeyType::EcP384 => "a P-384 EC",
            KeyType::Ed25519 => "an Ed25519",
        }
    }

    /// Whether a DER `AlgorithmIdentifier` body names this key type.
    fn matches(self, algorithm_id: &[u8]) -> bool {
        match self {
            KeyType::Rsa => algorithm_id.starts_with(OID_RSA),
            KeyType::EcP256 => algorithm_id.starts_with(&[OID_EC, OID_P256].concat()),
            KeyType::EcP384 => algorithm_id.starts_with(&[OID_EC, OID_P384].concat()),
            KeyType::Ed25519 => algorithm_id == OID_ED25519,
        }
    }

    fn curve_oid(self) -> Option<&'static [u8]> {
        match self {
            KeyType::EcP256 => Some(OID_P256),
            KeyType::EcP384 => Some(OID_P384),
            _ => None,
        }
    }
}

/// Decodes the first PEM block of `text`, returning its label and DER body.
pub fn parse_pem(text: &[u8]) -> Result<(String, Vec<u8>), String> {
    let text = std::str::from_utf8(text).map_err(|_| "PEM key is not valid UTF-8")?;
    let start = text.find("-----BEGIN ").ok_or("no PEM block found")?;
    let rest = &text[start + "-----BEGIN ".len()..];
    let label_end = rest.find("-----").ok_or("malformed PEM header")?;
    let label = &rest[..label_end];
    let body = &rest[label_end + 5..];
    let end_marker = format!("-----END {label}-----");
    let body_end = body.find(&end_marker).ok_or("PEM block has no END line")?;
    let b64: String = body[..body_end]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let der = STANDARD
        .decode(b64)
        .map_err(|_| "PEM body is not valid base64")?;
    Ok((label.to_owned(), der))
}

/// Loads a PEM public key: `PUBLIC KEY` (SubjectPublicKeyInfo) for any type,
/// or `RSA PUBLIC KEY` (PKCS#1). Returns the bytes `ring` verifies with.
pub fn public_key(pem: &[u8], kind: KeyType) -> Result<Vec<u8>, String> {
    let (label, der) = parse_pem(pem)?;
    match label.as_str() {
        "PUBLIC KEY" => {
            let mut spki = Der::new(&der).nested(TAG_SEQUENCE)?;
            let algorithm_id = spki.read(TAG_SEQUENCE)?;
            if !kind.matches(algorithm_id) {
                return Err(format!("public key is not {} key", kind.name()));
            }
            match spki.read(TAG_BIT_STRING)? {
                [0, key @ ..] => check_public_key(kind, key.to_vec()),
                _ => Err("malformed public key bit string".into()),
            }
        }
        "RSA PUBLIC KEY" if kind == KeyType::Rsa => check_public_key(kind, der),
        other => Err(format!(
            "unsupported PEM block {other:?} for {} public key",
            kind.name()
        )),
    }
}

/// Sanity checks `ring` would otherwise only report as failed verifications.
fn check_public_key(kind: KeyType, key: Vec<u8>) -> Result<Vec<u8>, String> {
    let ok = match kind {
        KeyType::Rsa => {
            let mut rsa = Der::new(&key).nested(TAG_SEQUENCE)?;
            let modulus = rsa.read(TAG_INTEGER)?;
            let significant = modulus.iter().skip_while(|&&b| b == 0).count();
            if !(256..=1024).contains(&significant) {
                return Err("RSA keys must have 2048 to 8192 bits".into());
            }
            true
        }
        KeyType::EcP256 => key.len() == 65 && key[0] == 4,
        KeyType::EcP384 => key.len() == 97 && key[0] == 4,
        KeyType::Ed25519 => key.len() == 32,
    };
    if ok {
        Ok(key)
    } else {
        Err(format!("malformed {} public key", kind.name()))
    }
}

/// Loads a PEM private key: `PRIVATE KEY` (PKCS#8) for any type, `RSA PRIVATE
/// KEY` (PKCS#1) or `EC PRIVATE KEY` (SEC1, rewrapped as PKCS#8).
pub fn private_key(pem: &[u8], kind: KeyType) -> Result<PrivateKey, String> {
    let (label, der) = parse_pem(pem)?;
    match label.as_str() {
        "PRIVATE KEY" => {
            let mut info = Der::new(&der).nested(TAG_SEQUENCE)?;
            info.read(TAG_INTEGER)?;
            if !kind.matches(info.read(TAG_SEQUENCE)?) {
                return Err(format!("private key is not {} key", kind.name()));
            }
            Ok(PrivateKey::Pkcs8(der))
        }
        "RSA PRIVATE KEY" if kind == KeyType::Rsa => Ok(PrivateKey::RsaPkcs1(der)),
        "EC PRIVATE KEY" => {
            let curve = kind
                .curve_oid()
                .ok_or_else(|| format!("an EC key cannot be used as {} key", kind.name()))?;
            if !der.windows(curve.len()).any(|w| w == curve) {
                return Err(format!("private key is not {} key", kind.name()));
            }
            Ok(PrivateKey::Pkcs8(sec1_to_pkcs8(&der, curve)))
        }
        "ENCRYPTED PRIVATE KEY" => Err("encrypted private keys are not supported".into()),
        other => Err(format!(
            "unsupported PEM block {other:?} for {} private key",
            kind.name()
        )),
    }
}

/// Wraps a SEC1 `ECPrivateKey` in a PKCS#8 `PrivateKeyInfo`.
fn sec1_to_pkcs8(sec1: &[u8], curve_oid: &[u8]) -> Vec<u8> {
    let algorithm = tlv(TAG_SEQUENCE, &[OID_EC, curve_oid].concat());
    let body = [
        &tlv(TAG_INTEGER, &[0])[..],
        &algorithm,
        &tlv(TAG_OCTET_STRING, sec1),
    ]
    .concat();
    tlv(TAG_SEQUENCE, &body)
}

/// Encodes one DER tag-length-value.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// A cursor over DER-encoded bytes (definite lengths only).
struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Der(bytes)
    }

    /// Reads one element with the expected tag and returns its content.
    fn read(&mut self, tag: u8) -> Result<&'a [u8], String> {
        let malformed = || format!("malformed DER (expected tag 0x{tag:02x})");
        let (&actual, rest) = self.0.split_first().ok_or_else(malformed)?;
        let (&first, rest) = rest.split_first().ok_or_else(malformed)?;
        if actual != tag {
            return Err(malformed());
        }
        let (len, rest) = match first {
            n if n < 0x80 => (usize::from(n), rest),
            n @ 0x81..=0x84 => {
                let width = usize::from(n & 0x7f);
                if rest.len() < width {
                    return Err(malformed());
                }
                let len = rest[..width]
                    .iter()
                    .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
                (len, &rest[width..])
            }
            _ => return Err(malformed()),
        };
        if rest.len() < len {
            return Err(malformed());
        }
        let (content, rest) = rest.split_at(len);
        self.0 = rest;
        Ok(content)
    }

    /// Reads one element and returns a cursor over its content.
    fn nested(&mut self, tag: u8) -> Result<Der<'a>, String> {
        self.read(tag).map(Der)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem(label: &str, der: &[u8]) -> Vec<u8> {
        let b64 = STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
        .into_bytes()
    }

    fn spki(algorithm: &[u8], key: &[u8]) -> Vec<u8> {
        let bits = [&[0u8][..], key].concat();
        tlv(
            TAG_SEQUENCE,
            &[tlv(TAG_SEQUENCE, algorithm), tlv(TAG_BIT_STRING, &bits)].concat(),
        )
    }

    #[test]
    fn tlv_uses_long_form_lengths() {
        assert_eq!(tlv(4, &[1, 2]), vec![4, 2, 1, 2]);
        let long = tlv(4, &[0; 300]);
        assert_eq!(&long[..4], &[4, 0x82, 0x01, 0x2c]);
        assert_eq!(Der::new(&long).read(4).unwrap().len(), 300);
    }

    #[test]
    fn der_reader_rejects_truncation_and_wrong_tags() {
        assert!(Der::new(&[0x30, 5, 1, 2]).read(TAG_SEQUENCE).is_err());
        assert!(Der::new(&[0x04, 1, 1]).read(TAG_SEQUENCE).is_err());
        assert!(Der::new(&[0x30, 0x85, 0, 0, 0, 0, 1])
            .read(TAG_SEQUENCE)
            .is_err());
    }

    #[test]
    fn pem_parsing_ignores_surrounding_text() {
        let mut text = b"junk\n".to_vec();
        text.extend(pem("PUBLIC KEY", b"hello"));
        assert_eq!(
            parse_pem(&text).unwrap(),
            ("PUBLIC KEY".into(), b"hello".to_vec())
        );
        assert!(parse_pem(b"-----BEGIN X-----\nAAAA\n").is_err());
        assert!(parse_pem(b"no pem").is_err());
    }

    #[test]
    fn spki_public_key_is_unwrapped_and_type_checked() {
        let key = [7u8; 32];
        let doc = pem("PUBLIC KEY", &spki(OID_ED25519, &key));
        assert_eq!(public_key(&doc, KeyType::Ed25519).unwrap(), key);
        let err = public_key(&doc, KeyType::Rsa).unwrap_err();
        assert!(err.contains("not an RSA key"), "{err}");

        let ec = pem("PUBLIC KEY", &spki(&[OID_EC, OID_P256].concat(), &[4; 65]));
        assert_eq!(public_key(&ec, KeyType::EcP256).unwrap(), [4; 65]);
        assert!(public_key(&ec, KeyType::EcP384).is_err());
        let short = pem("PUBLIC KEY", &spki(&[OID_EC, OID_P256].concat(), &[4; 33]));
        assert!(public_key(&short, KeyType::EcP256).is_err());
    }

    #[test]
    fn rsa_public_keys_need_2048_to_8192_bits() {
        let rsa_key = |bytes: usize| {
            let modulus = [&[0u8, 0x80][..], &vec![1; bytes - 1]].concat();
            let body = [tlv(TAG_INTEGER, &modulus), tlv(TAG_INTEGER, &[1, 0, 1])].concat();
            tlv(TAG_SEQUENCE, &body)
        };
        let algorithm = [OID_RSA, &[5, 0]].concat();
        for (bytes, ok) in [(128, false), (256, true), (512, true), (1025, false)] {
            let der = rsa_key(bytes);
            let spki_pem = pem("PUBLIC KEY", &spki(&algorithm, &der));
            assert_eq!(public_key(&spki_pem, KeyType::Rsa).is_ok(), ok, "{bytes}");
            let pkcs1 = pem("RSA PUBLIC KEY", &der);
            assert_eq!(public_key(&pkcs1, KeyType::Rsa).is_ok(), ok, "{bytes}");
        }
    }

    #[test]
    fn sec1_keys_are_rewrapped_as_pkcs8() {
        let sec1 = tlv(
            TAG_SEQUENCE,
            &[tlv(TAG_INTEGER, &[1]), tlv(0xa0, OID_P384)].concat(),
        );
        let PrivateKey::Pkcs8(der) =
            private_key(&pem("EC PRIVATE KEY", &sec1), KeyType::EcP384).unwrap()
        else {
            panic!("expected PKCS#8");
        };
        let mut info = Der::new(&der).nested(TAG_SEQUENCE).unwrap();
        assert_eq!(info.read(TAG_INTEGER).unwrap(), [0]);
        assert!(KeyType::EcP384.matches(info.read(TAG_SEQUENCE).unwrap()));
        assert_eq!(info.read(TAG_OCTET_STRING).unwrap(), sec1);
        assert!(private_key(&pem("EC PRIVATE KEY", &sec1), KeyType::EcP256).is_err());
        assert!(private_key(&pem("EC PRIVATE KEY", &sec1), KeyType::Rsa).is_err());
    }

    #[test]
    fn encrypted_keys_are_refused() {
        let err = private_key(&pem("ENCRYPTED PRIVATE KEY", &[1]), KeyType::Rsa).unwrap_err();
        assert!(err.contains("encrypted"));
    }
}
