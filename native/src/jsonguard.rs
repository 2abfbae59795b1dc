//! One pass over a JSON text, without building anything, checking that pygw
//! can store it and relay it: size, nesting depth, numbers and strings.
//!
//! What it refuses, and why (security review items 1, 11, 12):
//! - more than `max_bytes` bytes;
//! - arrays/objects nested deeper than `max_depth` (the outermost container
//!   is level 1): Python clients fail with RecursionError from depth ~1,000,
//!   orjson refuses to encode past 254 levels, Redis' cjson past 1,000;
//! - an integer outside `[-2**63, 2**64 - 1]`: what orjson can encode back
//!   (pydantic keeps larger ones as Python ints, which then fail every
//!   `orjson.dumps`: the write-behind flush, the response);
//! - a number with a fraction or exponent that overflows a double (`1e400`
//!   becomes infinity in Python, `null` when encoded again);
//! - a `\u` escape of an unpaired UTF-16 surrogate (no Python encoder of
//!   UTF-8 accepts the resulting string);
//! - anything that is not JSON (RFC 8259), with the byte where it stops being.
//!
//! Cost: one branch per byte outside strings, a tight loop inside them, a
//! `f64` parse only for numbers with a fraction or exponent.

use std::fmt;

/// Nesting depth allowed in WebSocket frames and (by default) HTTP bodies.
pub const MAX_DEPTH: usize = 32;

/// The deepest `max_depth` supported.
pub const DEPTH_CAP: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_bytes: usize,
    /// At most [`DEPTH_CAP`]; 0 allows scalars only.
    pub max_depth: usize,
}

/// Why a text was refused; `at` is a byte offset into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    TooLarge { limit: usize },
    TooDeep { limit: usize, at: usize },
    IntegerOutOfRange { at: usize },
    NumberOutOfRange { at: usize },
    LoneSurrogate { at: usize },
    Invalid { at: usize },
}

impl Violation {
    /// A short name: `size`, `depth`, `integer`, `number`, `string`, `syntax`.
    pub fn kind(&self) -> &'static str {
        match self {
            Violation::TooLarge { .. } => "size",
            Violation::TooDeep { .. } => "depth",
            Violation::IntegerOutOfRange { .. } => "integer",
            Violation::NumberOutOfRange { .. } => "number",
            Violation::LoneSurrogate { .. } => "string",
            Violation::Invalid { .. } => "syntax",
        }
    }

    /// The HTTP status for it: 413 for size, else 422.
    pub fn status(&self) -> u16 {
        match self {
            Violation::TooLarge { .. } => 413,
            _ => 422,
        }
    }

    /// The byte offset, if the violation has one.
    pub fn position(&self) -> Option<usize> {
        match *self {
            Violation::TooLarge { .. } => None,
            Violation::TooDeep { at, .. }
            | Violation::IntegerOutOfRange { at }
            | Violation::NumberOutOfRange { at }
            | Violation::LoneSurrogate { at }
            | Violation::Invalid { at } => Some(at),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Violation::TooLarge { limit } => write!(f, "JSON larger than {limit} bytes"),
            Violation::TooDeep { limit, at } => {
                write!(f, "JSON nested deeper than {limit} levels at byte {at}")
            }
            Violation::IntegerOutOfRange { at } => write!(
                f,
                "integer outside the 64-bit range [-2**63, 2**64-1] at byte {at}"
            ),
            Violation::NumberOutOfRange { at } => {
                write!(f, "number too large for a double at byte {at}")
            }
            Violation::LoneSurrogate { at } => {
                write!(f, "unpaired UTF-16 surrogate escape at byte {at}")
            }
            Violation::Invalid { at } => write!(f, "invalid JSON at byte {at}"),
        }
    }
}

/// Containers open at each level: one bit each, 1 for an object.
struct Nesting {
    bits: [u64; DEPTH_CAP / 64],
    depth: usize,
}

impl Nesting {
    fn push(&mut self, object: bool) {
        let (word, bit) = (self.depth / 64, self.depth % 64);
        if object {
            self.bits[word] |= 1 << bit;
        } else {
            self.bits[word] &= !(1 << bit);
        }
        self.depth += 1;
    }

    fn in_object(&self) -> bool {
        let top = self.depth - 1;
        self.bits[top / 64] & (1 << (top % 64)) != 0
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Whether one of the eight bytes is below `n` (`n` <= 0x80).
#[inline]
fn any_below(word: u64, n: u8) -> bool {
    word.wrapping_sub(ONES * u64::from(n)) & !word & HIGHS != 0
}

/// Whether one of the eight bytes ends a run of plain string bytes: `"`,
/// `\` or a control byte.
#[inline]
fn string_special(word: u64) -> bool {
    any_below(word ^ (ONES * u64::from(b'"')), 1)
        || any_below(word ^ (ONES * u64::from(b'\\')), 1)
        || any_below(word, 0x20)
}

struct Scanner<'a> {
    s: &'a [u8],
    i: usize,
}

impl Scanner<'_> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    #[inline]
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    fn invalid(&self) -> Violation {
        Violation::Invalid { at: self.i }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), Violation> {
        if self.s[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(self.invalid())
        }
    }

    /// Four hex digits after `\u` at `self.i`; advances past them.
    fn hex4(&mut self) -> Result<u16, Violation> {
        let digits = self
            .s
            .get(self.i..self.i + 4)
            .ok_or_else(|| self.invalid())?;
        let mut v: u16 = 0;
        for &d in digits {
            let n = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => return Err(self.invalid()),
            };
            v = v << 4 | u16::from(n);
        }
        self.i += 4;
        Ok(v)
    }

    /// A string, `self.i` on its opening quote.
    fn string(&mut self) -> Result<(), Violation> {
        self.i += 1;
        loop {
            // Plain bytes (UTF-8 is checked before scanning): eight at a time,
            // then one by one up to the quote, backslash or control byte.
            while let Some(word) = self.s.get(self.i..self.i + 8) {
                let word = u64::from_le_bytes(word.try_into().expect("8 bytes"));
                if string_special(word) {
                    break;
                }
                self.i += 8;
            }
            while let Some(&b) = self.s.get(self.i) {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.i += 1;
            }
            match self.peek() {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(());
                }
                Some(b'\\') => self.escape()?,
                _ => return Err(self.invalid()), // control character or end of text
            }
        }
    }

    /// One escape, `self.i` on its backslash.
    fn escape(&mut self) -> Result<(), Violation> {
        let start = self.i;
        self.i += 1;
        match self.peek() {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.i += 1;
                Ok(())
            }
            Some(b'u') => {
                self.i += 1;
                let unit = self.hex4()?;
                match unit {
                    0xD800..=0xDBFF => {
                        if self.s[self.i..].starts_with(b"\\u") {
                            self.i += 2;
                            if (0xDC00..=0xDFFF).contains(&self.hex4()?) {
                                return Ok(());
                            }
                        }
                        Err(Violation::LoneSurrogate { at: start })
                    }
                    0xDC00..=0xDFFF => Err(Violation::LoneSurrogate { at: start }),
                    _ => Ok(()),
                }
            }
            _ => Err(self.invalid()),
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        self.i - start
    }

    /// A number, `self.i` on its first byte (`-` or a digit).
    fn number(&mut self) -> Result<(), Violation> {
        let start = self.i;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.i += 1;
        }
        let int_start = self.i;
        match self.digits() {
            0 => return Err(self.invalid()),
            n if n > 1 && self.s[int_start] == b'0' => {
                return Err(Violation::Invalid { at: int_start + 1 })
            }
            _ => {}
        }
        let int_end = self.i;
        let mut float = false;
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(self.invalid());
            }
            float = true;
        }
        // The decimal exponent, saturated (only its size matters).
        let mut exponent: i64 = 0;
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            let sign = match self.peek() {
                Some(b'-') => -1,
                _ => 1,
            };
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            let exp_start = self.i;
            if self.digits() == 0 {
                return Err(self.invalid());
            }
            exponent = self.s[exp_start..self.i].iter().fold(0i64, |e, &d| {
                e.saturating_mul(10).saturating_add(i64::from(d - b'0'))
            }) * sign;
            float = true;
        }
        if float {
            // Below 10**308 whatever the digits: no need to parse.
            let int_digits = (int_end - int_start) as i64;
            if int_digits.saturating_add(exponent) <= 308 {
                return Ok(());
            }
            // The text is ASCII digits, signs, '.', 'e' here: valid UTF-8.
            let text = std::str::from_utf8(&self.s[start..self.i]).map_err(|_| self.invalid())?;
            let finite = text.parse::<f64>().is_ok_and(f64::is_finite);
            return if finite {
                Ok(())
            } else {
                Err(Violation::NumberOutOfRange { at: start })
            };
        }
        let magnitude = self.s[int_start..int_end].iter().try_fold(0u64, |n, &d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        });
        match magnitude {
            Some(m) if !negative || m <= 1 << 63 => Ok(()),
            _ => Err(Violation::IntegerOutOfRange { at: start }),
        }
    }
}

/// Checks `text` against `limits` (see the module documentation).
pub fn check(text: &str, limits: Limits) -> Result<(), Violation> {
    check_members(text, limits, |_, _| {})
}

/// [`check`], also calling `member(name, value)` with the raw text of each
/// member of a top-level object, in document order, as the scan passes it
/// (so also for the members before a violation).
pub fn check_members<'a>(
    text: &'a str,
    limits: Limits,
    mut member: impl FnMut(&'a str, &'a str),
) -> Result<(), Violation> {
    if text.len() > limits.max_bytes {
        return Err(Violation::TooLarge {
            limit: limits.max_bytes,
        });
    }
    let max_depth = limits.max_depth.min(DEPTH_CAP);
    let mut sc = Scanner {
        s: text.as_bytes(),
        i: 0,
    };
    let mut nesting = Nesting {
        bits: [0; DEPTH_CAP / 64],
        depth: 0,
    };
    // The current top-level member: its name, and where its value starts.
    let mut name: &str = "";
    let mut value_start = 0;
    sc.skip_ws();
    'value: loop {
        // A value starts at sc.i.
        if nesting.depth == 1 {
            value_start = sc.i;
        }
        match sc.peek() {
            Some(open @ (b'{' | b'[')) => {
                if nesting.depth == max_depth {
                    return Err(Violation::TooDeep {
                        limit: max_depth,
                        at: sc.i,
                    });
                }
                let object = open == b'{';
                nesting.push(object);
                sc.i += 1;
                sc.skip_ws();
                let close = if object { b'}' } else { b']' };
                if sc.peek() == Some(close) {
                    sc.i += 1;
                    nesting.depth -= 1;
                } else if object {
                    let at_top = nesting.depth == 1;
                    let found = member_name(&mut sc)?;
                    if at_top {
                        name = &text[found];
                    }
                    continue 'value;
                } else {
                    continue 'value;
                }
            }
            Some(b'"') => sc.string()?,
            Some(b'-' | b'0'..=b'9') => sc.number()?,
            Some(b't') => sc.literal(b"true")?,
            Some(b'f') => sc.literal(b"false")?,
            Some(b'n') => sc.literal(b"null")?,
            _ => return Err(sc.invalid()),
        }
        // After a value: close containers, or a comma and the next value.
        loop {
            if nesting.depth == 1 && nesting.in_object() {
                member(name, &text[value_start..sc.i]);
            }
            sc.skip_ws();
            if nesting.depth == 0 {
                return if sc.i == sc.s.len() {
                    Ok(())
                } else {
                    Err(sc.invalid())
                };
            }
            let object = nesting.in_object();
            match sc.peek() {
                Some(b',') => {
                    sc.i += 1;
                    sc.skip_ws();
                    if object {
                        let found = member_name(&mut sc)?;
                        if nesting.depth == 1 {
                            name = &text[found];
                        }
                    }
                    continue 'value;
                }
                Some(b'}') if object => {}
                Some(b']') if !object => {}
                _ => return Err(sc.invalid()),
            }
            sc.i += 1;
            nesting.depth -= 1;
        }
    }
}

/// `"name" :` and the blanks after it, `sc.i` on the name's quote; where the
/// name (with its quotes) is.
fn member_name(sc: &mut Scanner<'_>) -> Result<std::ops::Range<usize>, Violation> {
    if sc.peek() != Some(b'"') {
        return Err(sc.invalid());
    }
    let start = sc.i;
    sc.string()?;
    let found = start..sc.i;
    sc.skip_ws();
    if sc.peek() != Some(b':') {
        return Err(sc.invalid());
    }
    sc.i += 1;
    sc.skip_ws();
    Ok(found)
}

/// [`check`] for bytes: invalid UTF-8 is invalid JSON.
pub fn check_bytes(bytes: &[u8], limits: Limits) -> Result<(), Violation> {
    if bytes.len() > limits.max_bytes {
        return Err(Violation::TooLarge {
            limit: limits.max_bytes,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| Violation::Invalid {
        at: e.valid_up_to(),
    })?;
    check(text, limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOOSE: Limits = Limits {
        max_bytes: usize::MAX,
        max_depth: MAX_DEPTH,
    };

    fn ok(text: &str) {
        assert_eq!(check(text, LOOSE), Ok(()), "{text:?}");
        // The checker agrees with a real parser on what is JSON.
        assert!(
            serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok(),
            "{text:?}"
        );
    }

    fn refused(text: &str) -> Violation {
        check(text, LOOSE).expect_err(text)
    }

    fn nested(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn accepts_json() {
        for text in [
            "0",
            "-0",
            "1.5e-3",
            "-12.25E+2",
            " true ",
            "false",
            "null",
            r#""""#,
            r#""a\"b\\c\/d\b\f\n\r\t\u00e9\uD83D\uDE00 é ☃""#,
            "[]",
            "{}",
            "[1, [2, [3]], {\"a\": {\"b\": []}}]",
            "{\"a\" : 1 , \"b\":[true,false,null] }\n",
            "18446744073709551615",
            "-9223372036854775808",
            "1e308",
            "1.7976931348623157e308",
            "0.00001e310",
            "123456789012345678901234567890.5",
            "1e-400",
            "1e-99999999999999999999999",
        ] {
            ok(text);
        }
        ok(&nested(MAX_DEPTH));
    }

    #[test]
    fn refuses_what_is_not_json() {
        for (text, at) in [
            ("", 0),
            (" ", 1),
            ("nul", 0),
            ("01", 1),
            ("-", 1),
            ("1.", 2),
            ("1e", 2),
            (".5", 0),
            ("+1", 0),
            ("[1,]", 3),
            ("[1 2]", 3),
            ("{\"a\" 1}", 5),
            ("{\"a\":1,}", 7),
            ("{1:2}", 1),
            ("[}", 1),
            ("{]", 1),
            ("\"a", 2),
            ("\"a\nb\"", 2),
            ("\"\\x\"", 2),
            ("\"\\u12G4\"", 3),
            ("[1] [2]", 4),
            ("[", 1),
            ("NaN", 0),
            ("Infinity", 0),
        ] {
            assert_eq!(refused(text), Violation::Invalid { at }, "{text:?}");
            assert!(serde_json::from_str::<serde::de::IgnoredAny>(text).is_err());
        }
        assert_eq!(
            check_bytes(b"\"\xff\"", LOOSE),
            Err(Violation::Invalid { at: 1 })
        );
    }

    #[test]
    fn depth_is_limited() {
        let deep = nested(MAX_DEPTH + 1);
        assert_eq!(
            refused(&deep),
            Violation::TooDeep {
                limit: MAX_DEPTH,
                at: MAX_DEPTH
            }
        );
        let doc = format!("{{\"data\": {{\"x\": {}}}}}", nested(30));
        ok(&doc);
        let doc = format!("{{\"data\": {{\"x\": {}}}}}", nested(31));
        assert!(matches!(refused(&doc), Violation::TooDeep { .. }));
        // Scalars only.
        let scalar = Limits {
            max_bytes: 256,
            max_depth: 0,
        };
        assert_eq!(check("\"id\"", scalar), Ok(()));
        assert_eq!(
            check("[]", scalar),
            Err(Violation::TooDeep { limit: 0, at: 0 })
        );
        // Past the cap, the cap applies; a deep document fails fast.
        let huge = Limits {
            max_bytes: usize::MAX,
            max_depth: usize::MAX,
        };
        assert_eq!(check(&nested(DEPTH_CAP), huge), Ok(()));
        assert!(matches!(
            check(&nested(20_000), huge),
            Err(Violation::TooDeep {
                limit: DEPTH_CAP,
                ..
            })
        ));
        // Objects and arrays interleaved past one 64-bit word of nesting.
        let mixed: String = (0..100)
            .map(|i| if i % 2 == 0 { "{\"k\":" } else { "[" })
            .collect();
        let closing: String = (0..100)
            .rev()
            .map(|i| if i % 2 == 0 { "}" } else { "]" })
            .collect();
        assert_eq!(check(&format!("{mixed}1{closing}"), huge), Ok(()));
    }

    #[test]
    fn numbers_must_fit() {
        for text in [
            "18446744073709551616",
            "-9223372036854775809",
            "99999999999999999999999",
        ] {
            assert_eq!(refused(text), Violation::IntegerOutOfRange { at: 0 });
        }
        assert_eq!(
            refused("{\"a\": [1, 2, 18446744073709551616]}"),
            Violation::IntegerOutOfRange { at: 13 }
        );
        for text in [
            "1e400",
            "-1.5e309",
            "1.8e308",
            "10e308",
            "1e99999999999999999999",
            &"9".repeat(400),
            &format!("{}.0", "9".repeat(400)),
        ] {
            let v = check(text, LOOSE).unwrap_err();
            assert!(
                matches!(
                    v,
                    Violation::NumberOutOfRange { at: 0 } | Violation::IntegerOutOfRange { at: 0 }
                ),
                "{text}: {v:?}"
            );
        }
    }

    #[test]
    fn eight_bytes_at_a_time_find_what_ends_plain_runs() {
        let word = |b: &[u8; 8]| u64::from_le_bytes(*b);
        assert!(!string_special(word(b"abcdefgh")));
        assert!(!string_special(word(
            "é☃xyz".as_bytes().try_into().unwrap()
        )));
        for special in [b'"', b'\\', b'\n', 0, 0x1f] {
            for at in 0..8 {
                let mut bytes = *b"abcdefgh";
                bytes[at] = special;
                assert!(string_special(word(&bytes)), "{special} at {at}");
            }
        }
        assert!(!string_special(word(b"        ")), "space is plain");
        // Every position of a long string, each special byte.
        for special in ["\\\"", "\\n", "\""] {
            for at in 0..20 {
                let text = format!("\"{}{special}{}\"", "a".repeat(at), "b".repeat(20 - at));
                let closing_early = special == "\"";
                assert_eq!(check(&text, LOOSE).is_ok(), !closing_early, "{text}");
            }
        }
        assert_eq!(
            check(&format!("\"{}\u{1}\"", "a".repeat(13)), LOOSE),
            Err(Violation::Invalid { at: 14 })
        );
    }

    #[test]
    fn top_level_members_are_reported_raw() {
        let text = r#" { "a" : 1 , "b\"c":{"d":[1,{"e":2}]}, "f":"x" ,"g":[] } "#;
        let mut seen = Vec::new();
        check_members(text, LOOSE, |name, value| seen.push((name, value))).unwrap();
        assert_eq!(
            seen,
            vec![
                (r#""a""#, "1"),
                (r#""b\"c""#, r#"{"d":[1,{"e":2}]}"#),
                (r#""f""#, r#""x""#),
                (r#""g""#, "[]")
            ]
        );
        let mut seen = Vec::new();
        check_members("[1, {\"a\": 2}]", LOOSE, |n, v| seen.push((n, v))).unwrap();
        assert!(seen.is_empty(), "only members of a top-level object");
        let mut seen = Vec::new();
        let refused = check_members(r#"{"a":1,"b":[[["#, LOOSE, |n, v| seen.push((n, v)));
        assert!(refused.is_err());
        assert_eq!(seen, vec![(r#""a""#, "1")]);
    }

    #[test]
    fn surrogates_must_pair() {
        for (text, at) in [
            (r#""\ud800""#, 1),
            (r#""x\uDBFF\u0041""#, 2),
            (r#""\udc00\ud800""#, 1),
            (r#""\ud800\""#, 1),
        ] {
            assert_eq!(refused(text), Violation::LoneSurrogate { at }, "{text}");
        }
    }

    #[test]
    fn size_and_messages() {
        let small = Limits {
            max_bytes: 4,
            max_depth: 8,
        };
        let v = check("[1,2]", small).unwrap_err();
        assert_eq!(v, Violation::TooLarge { limit: 4 });
        assert_eq!((v.kind(), v.status(), v.position()), ("size", 413, None));
        assert_eq!(v.to_string(), "JSON larger than 4 bytes");
        let v = refused(&nested(40));
        assert_eq!(
            v.to_string(),
            "JSON nested deeper than 32 levels at byte 32"
        );
        assert_eq!(
            (v.kind(), v.status(), v.position()),
            ("depth", 422, Some(32))
        );
        assert_eq!(
            refused("[18446744073709551616]").to_string(),
            "integer outside the 64-bit range [-2**63, 2**64-1] at byte 1"
        );
        assert_eq!(refused("1e999").kind(), "number");
        assert_eq!(refused(r#""\udfff""#).kind(), "string");
        assert_eq!(refused("[1,]").to_string(), "invalid JSON at byte 3");
    }
}
