//! Cheap scans over JSON frames. The load generator never fully parses a
//! delivery: it looks for `"type":"..."` and a few numeric fields by byte search.
//! Keys must be given with their quotes (`b"\"type\""`). A match is accepted
//! only when the quoted key is followed (after optional whitespace) by `:`, so a
//! string *value* equal to the key name is skipped.

/// Position of `needle` in `hay[from..]` (absolute index).
#[inline]
pub fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let n = needle.len();
    if n == 0 {
        return Some(from.min(hay.len()));
    }
    if hay.len() < n {
        return None;
    }
    let first = needle[0];
    let last_start = hay.len() - n;
    let mut i = from;
    while i <= last_start {
        match hay[i..=last_start].iter().position(|&b| b == first) {
            Some(p) => {
                i += p;
                if &hay[i..i + n] == needle {
                    return Some(i);
                }
                i += 1;
            }
            None => return None,
        }
    }
    None
}

#[inline]
fn skip_ws(hay: &[u8], mut i: usize) -> usize {
    while i < hay.len() && matches!(hay[i], b' ' | b'\t' | b'\r' | b'\n') {
        i += 1;
    }
    i
}

/// Index just after the `:` that follows the first occurrence of `key` used as a key.
#[inline]
pub fn value_start(hay: &[u8], key: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    loop {
        let p = find(hay, key, i)?;
        let j = skip_ws(hay, p + key.len());
        if j < hay.len() && hay[j] == b':' {
            return Some(skip_ws(hay, j + 1));
        }
        i = p + 1;
    }
}

/// The string value of `key` (without quotes; escapes are not interpreted)
/// and the index just past its closing quote.
#[inline]
pub fn str_field<'a>(hay: &'a [u8], key: &[u8], from: usize) -> Option<(&'a [u8], usize)> {
    let v = value_start(hay, key, from)?;
    if v >= hay.len() || hay[v] != b'"' {
        return None;
    }
    let end = hay[v + 1..].iter().position(|&b| b == b'"')? + v + 1;
    Some((&hay[v + 1..end], end + 1))
}

/// The unsigned integer value of `key` (a fractional part is truncated) and
/// the index just past its digits.
#[inline]
pub fn u64_field(hay: &[u8], key: &[u8], from: usize) -> Option<(u64, usize)> {
    let v = value_start(hay, key, from)?;
    parse_u64_at(hay, v)
}

/// Parse the digits at `hay[i..]`.
#[inline]
pub fn parse_u64_at(hay: &[u8], mut i: usize) -> Option<(u64, usize)> {
    let start = i;
    let mut n: u64 = 0;
    while i < hay.len() && hay[i].is_ascii_digit() {
        n = n.wrapping_mul(10).wrapping_add(u64::from(hay[i] - b'0'));
        i += 1;
    }
    if i == start {
        None
    } else {
        Some((n, i))
    }
}

/// Values of the numeric keys `"t"` and `"s"` wherever they are, in one pass
/// over the frame's quote characters (key order does not matter). Stops as
/// soon as `"s"` (and `"t"` if `want_t`) are found.
#[inline]
pub fn ts_fields(hay: &[u8], want_t: bool) -> (Option<u64>, Option<u64>) {
    let (mut t, mut s) = (None, None);
    let n = hay.len();
    let mut i = 0;
    while i + 3 < n {
        let q = match hay[i..n - 3].iter().position(|&b| b == b'"') {
            Some(q) => i + q,
            None => break,
        };
        let k = hay[q + 1];
        if (k == b't' || k == b's') && hay[q + 2] == b'"' {
            let j = skip_ws(hay, q + 3);
            if j < n && hay[j] == b':' {
                if let Some((v, e)) = parse_u64_at(hay, skip_ws(hay, j + 1)) {
                    if k == b't' {
                        t = Some(v);
                    } else {
                        s = Some(v);
                    }
                    if s.is_some() && (t.is_some() || !want_t) {
                        break;
                    }
                    i = e;
                    continue;
                }
            }
        }
        i = q + 1;
    }
    (t, s)
}

/// The frame's `"type"` value, or `b""` when absent. Also returns where the
/// scan stopped so that later scans can start there.
#[inline]
pub fn msg_type(hay: &[u8]) -> (&[u8], usize) {
    match str_field(hay, b"\"type\"", 0) {
        Some((t, end)) => (t, end),
        None => (b"", 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds() {
        assert_eq!(find(b"abcabc", b"ca", 0), Some(2));
        assert_eq!(find(b"abcabc", b"abc", 1), Some(3));
        assert_eq!(find(b"abc", b"abcd", 0), None);
        assert_eq!(find(b"abc", b"x", 0), None);
        assert_eq!(find(b"aaab", b"ab", 0), Some(2));
    }

    #[test]
    fn type_compact_and_spaced() {
        assert_eq!(msg_type(br#"{"type":"pong","id":3}"#).0, b"pong");
        assert_eq!(msg_type(br#"{"type": "pong", "id": 3}"#).0, b"pong");
        assert_eq!(
            msg_type(br#"{"channel":"type","type":"message"}"#).0,
            b"message"
        );
        assert_eq!(msg_type(br#"{"id":1}"#).0, b"");
        assert_eq!(msg_type(br#"{"type":1}"#).0, b"");
    }

    #[test]
    fn numbers() {
        let m = br#"{"type":"message","channel":"c","data":{"t":123456789,"s":42,"p":"xx"},"offset":7}"#;
        let (_, after) = msg_type(m);
        let (t, e) = u64_field(m, b"\"t\"", after).unwrap();
        assert_eq!(t, 123456789);
        assert_eq!(u64_field(m, b"\"s\"", e).unwrap().0, 42);
        assert_eq!(u64_field(m, b"\"offset\"", 0).unwrap().0, 7);
        assert_eq!(
            u64_field(br#"{"timestamp": 17.25}"#, b"\"timestamp\"", 0)
                .unwrap()
                .0,
            17
        );
        assert!(u64_field(br#"{"t":"x"}"#, b"\"t\"", 0).is_none());
        // "type" must not be mistaken for "t"
        assert!(u64_field(br#"{"type":"x"}"#, b"\"t\"", 0).is_none());
    }

    #[test]
    fn ts_any_order() {
        let a = br#"{"type":"message","channel":"t","data":{"t":12,"s":3,"p":"xx"},"offset":7}"#;
        assert_eq!(ts_fields(a, true), (Some(12), Some(3)));
        assert_eq!(ts_fields(a, false), (Some(12), Some(3)));
        let b =
            br#"{"channel":"s","data":{"p":"x\"s\":9","s":4,"t":99},"offset":1,"type":"message"}"#;
        assert_eq!(ts_fields(b, true), (Some(99), Some(4)));
        assert_eq!(ts_fields(b, false), (None, Some(4)));
        let c = br#"{"data": {"s": 5, "t": 6}}"#;
        assert_eq!(ts_fields(c, true), (Some(6), Some(5)));
        assert_eq!(
            ts_fields(br#"{"type":"message","data":{}}"#, true),
            (None, None)
        );
        assert_eq!(ts_fields(br#"{"t":"#, true), (None, None));
    }
}
