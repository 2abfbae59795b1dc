//! HTTP request and response details handled natively: URL and query
//! parsing, header copying, body size checks and status lines.
//!
//! Everything here works on byte slices borrowed from uWS for the duration of
//! a callback; the PyO3 layer turns the results into Python objects.

use std::borrow::Cow;

/// Splits a request target at the first `?`: `(path, query)`, the query
/// without its `?` (empty when there is none).
pub fn split_url(full: &[u8]) -> (&[u8], &[u8]) {
    match full.iter().position(|&b| b == b'?') {
        Some(i) => (&full[..i], &full[i + 1..]),
        None => (full, b""),
    }
}

/// The raw query of a request target *including* its leading `?` (what
/// [`query_value`] takes), or an empty slice.
pub fn raw_query(full: &[u8]) -> &[u8] {
    match full.iter().position(|&b| b == b'?') {
        Some(i) => &full[i..],
        None => b"",
    }
}

/// The URL-decoded value of `key` in `raw_query` (which starts with `?`),
/// exactly as uWS's `HttpRequest::getQuery` computes it (it decodes `%XX`
/// and `+`, does not validate hex digits, and gives up on a truncated `%`
/// escape). `None` when the key is absent or the value cannot be decoded;
/// `Some(empty)` for `?key` and `?key=`.
pub fn query_value(raw_query: &[u8], key: &[u8]) -> Option<Vec<u8>> {
    if key.is_empty() {
        return None;
    }
    let mut rest = raw_query;
    while !rest.is_empty() {
        let tail = &rest[1..];
        let end = tail.iter().position(|&b| b == b'&').unwrap_or(tail.len());
        let statement = &tail[..end];
        if statement.first() == Some(&key[0]) {
            match statement.iter().position(|&b| b == b'=') {
                None if statement == key => return Some(Vec::new()),
                None => {}
                Some(eq) if &statement[..eq] == key => {
                    return decode_query_value(&statement[eq + 1..])
                }
                Some(_) => {}
            }
        }
        rest = &rest[(statement.len() + 1).min(rest.len())..];
    }
    None
}

fn hex_digit(b: u8) -> i32 {
    // uWS works on (signed) `char`: no validation, bytes >= 0x80 are negative.
    let mut x = i32::from(b as i8) - i32::from(b'0');
    if x > 9 {
        x &= 223;
        x -= 7;
    }
    x
}

fn decode_query_value(value: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() && value[i] != 0 {
        match value[i] {
            b'%' => {
                if i + 2 >= value.len() {
                    return None;
                }
                out.push((hex_digit(value[i + 1]) * 16 + hex_digit(value[i + 2])) as u8);
                i += 2;
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    Some(out)
}

/// Latin-1 bytes as text (what HTTP header bytes decode to in Python).
pub fn latin1(bytes: &[u8]) -> Cow<'_, str> {
    if bytes.is_ascii() {
        // SAFETY: ASCII is valid UTF-8.
        Cow::Borrowed(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect())
    }
}

/// Text as Latin-1 bytes, or `None` if a character is above U+00FF.
pub fn encode_latin1(text: &str) -> Option<Cow<'_, [u8]>> {
    if text.is_ascii() {
        return Some(Cow::Borrowed(text.as_bytes()));
    }
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect::<Option<Vec<u8>>>()
        .map(Cow::Owned)
}

/// Whether `path` starts with one of `prefixes` (routes that need every
/// request header, e.g. the proxy).
pub fn has_prefix(path: &[u8], prefixes: &[Vec<u8>]) -> bool {
    prefixes.iter().any(|p| path.starts_with(p))
}

/// A `Content-Length` value as Python's `int()` reads it (surrounding
/// whitespace, a sign, `_` between digits). `None` when it is not a number or
/// is negative; values past `u64::MAX` saturate.
pub fn parse_content_length(value: &[u8]) -> Option<u64> {
    let v = value.trim_ascii();
    let (negative, digits) = match v.first() {
        Some(b'+') => (false, &v[1..]),
        Some(b'-') => (true, &v[1..]),
        _ => (false, v),
    };
    if digits.is_empty() || digits[0] == b'_' || digits[digits.len() - 1] == b'_' {
        return None;
    }
    let mut n: u64 = 0;
    let mut previous_underscore = false;
    for &b in digits {
        match b {
            b'0'..=b'9' => {
                n = n.saturating_mul(10).saturating_add(u64::from(b - b'0'));
                previous_underscore = false;
            }
            b'_' if !previous_underscore => previous_underscore = true,
            _ => return None,
        }
    }
    if negative && n != 0 {
        return None;
    }
    Some(n)
}

/// What to do with a request's body, decided from its headers.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyPlan {
    /// No body: dispatch at once.
    Empty,
    /// Read the body (`expected` bytes announced, 0 when chunked).
    Read { expected: usize },
    /// 400: the Content-Length is not a non-negative number.
    Invalid,
    /// 413: the announced body is over the limit.
    TooLarge,
}

pub fn body_plan(content_length: Option<&[u8]>, transfer_encoding: bool, limit: usize) -> BodyPlan {
    match content_length {
        None if !transfer_encoding => BodyPlan::Empty,
        None => BodyPlan::Read { expected: 0 },
        Some(raw) => match parse_content_length(raw) {
            None => BodyPlan::Invalid,
            Some(n) if n > limit as u64 => BodyPlan::TooLarge,
            Some(0) => BodyPlan::Empty,
            Some(n) => BodyPlan::Read {
                expected: n as usize,
            },
        },
    }
}

/// The framing headers of one request (`Content-Length`, `Transfer-Encoding`),
/// every occurrence: uWS frames the body by the *first* `Content-Length`, a
/// proxy in front may take the last, so any ambiguity is refused (request
/// smuggling). Fed with every header when either header is present.
#[derive(Debug, Default)]
pub struct Framing {
    length: Option<u64>,
    invalid_length: bool,
    conflicting_length: bool,
    encodings: u32,
    chunked: bool,
}

impl Framing {
    /// One header, name lower-case (as uWS reports it).
    pub fn add(&mut self, name: &[u8], value: &[u8]) {
        if name == b"content-length" {
            match strict_length(value) {
                None => self.invalid_length = true,
                Some(n) => match self.length {
                    None => self.length = Some(n),
                    Some(first) if first != n => self.conflicting_length = true,
                    Some(_) => {} // RFC 9112 6.3: identical repeats are one length
                },
            }
        } else if name == b"transfer-encoding" {
            self.encodings += 1;
            self.chunked = value.trim_ascii().eq_ignore_ascii_case(b"chunked");
        }
    }

    /// The 400 message when the framing is ambiguous or unsupported.
    pub fn refusal(&self) -> Option<&'static str> {
        if self.invalid_length {
            Some("Invalid Content-Length")
        } else if self.conflicting_length {
            Some("Conflicting Content-Length headers")
        } else if self.encodings > 1 || (self.encodings == 1 && !self.chunked) {
            Some("Unsupported Transfer-Encoding")
        } else if self.encodings == 1 && self.length.is_some() {
            Some("Content-Length with Transfer-Encoding")
        } else {
            None
        }
    }
}

/// `Content-Length = 1*DIGIT` (RFC 9110 8.6), surrounding blanks allowed.
fn strict_length(value: &[u8]) -> Option<u64> {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Where to insert a `Host:` line into `chunk` when it starts with a whole
/// request head that has none: the offset just past the request line, and
/// whether the request is HTTP/1.0.
///
/// uWS never dispatches such a request: with no header at all it waits for
/// more data until its idle timeout (the client sees a hang), with other
/// headers it answers its own 400 page. Only a head that is complete in
/// `chunk` is recognised; anything else (bodies, fragments) gives `None`.
/// Costs a look at the first byte for bodies, and the request line plus the
/// header names up to `Host` (usually the first) for requests.
pub fn hostless_head(chunk: &[u8]) -> Option<(usize, bool)> {
    if !chunk.first()?.is_ascii_uppercase() {
        return None;
    }
    let line_end = chunk.iter().position(|&b| b == b'\n')?;
    let line = chunk[..line_end].strip_suffix(b"\r")?;
    let ancient = if let Some(rest) = line.strip_suffix(b" HTTP/1.1") {
        request_target(rest)?;
        false
    } else {
        request_target(line.strip_suffix(b" HTTP/1.0")?)?;
        true
    };
    let head_start = line_end + 1;
    let mut at = head_start;
    loop {
        let rest = &chunk[at..];
        if rest.starts_with(b"\r\n") {
            return Some((head_start, ancient));
        }
        if rest.len() >= 5 && rest[..5].eq_ignore_ascii_case(b"host:") {
            return None;
        }
        at += rest.iter().position(|&b| b == b'\n')? + 1;
    }
}

/// A whole request head at the start of `chunk` that uWS will never
/// dispatch: `(method, target, why)`. Called only for a chunk uWS kept
/// without a request or body callback (it waits for more data, until its
/// idle timeout: the client sees a hang). uWS's parser (socketify 0.0.31)
/// takes header names of letters, digits and `-` only, so a name with any
/// other token character (`.`, `_`, `+`, `!`, ...) stalls it.
pub fn stuck_head(chunk: &[u8]) -> Option<(&[u8], &[u8], &'static str)> {
    if !chunk.first()?.is_ascii_uppercase() {
        return None;
    }
    let line_end = chunk.iter().position(|&b| b == b'\n')?;
    let line = chunk[..line_end].strip_suffix(b"\r")?;
    let rest = line
        .strip_suffix(b" HTTP/1.1")
        .or_else(|| line.strip_suffix(b" HTTP/1.0"))?;
    request_target(rest)?;
    let space = rest.iter().position(|&b| b == b' ')?;
    let (method, target) = (&rest[..space], &rest[space + 1..]);
    let mut why = "Malformed request";
    let mut at = line_end + 1;
    loop {
        let rest = &chunk[at..];
        if rest.starts_with(b"\r\n") {
            return Some((method, target, why));
        }
        let end = rest.iter().position(|&b| b == b'\n')?;
        let name = rest[..end].split(|&b| b == b':').next().unwrap_or_default();
        if !name.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-') {
            why = "Unsupported header name";
        }
        at += end + 1;
    }
}

/// `METHOD SP target` with a token method and a target without blanks.
fn request_target(line: &[u8]) -> Option<()> {
    let space = line.iter().position(|&b| b == b' ')?;
    let (method, target) = (&line[..space], &line[space + 1..]);
    let token = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    (space <= 32
        && method.iter().all(token)
        && !target.is_empty()
        && target.iter().all(|&b| b > b' ' && b != 0x7f))
    .then_some(())
}

/// A request body being received, refused once it grows past `limit`.
#[derive(Debug)]
pub struct Body {
    buf: Vec<u8>,
    limit: usize,
}

impl Body {
    pub fn new(expected: usize, limit: usize) -> Self {
        Body {
            buf: Vec::with_capacity(expected.min(limit).min(1 << 20)),
            limit,
        }
    }

    /// Appends a chunk; `false` (and nothing appended) if the body would
    /// exceed the limit.
    pub fn push(&mut self, chunk: &[u8]) -> bool {
        if self.buf.len() + chunk.len() > self.limit {
            return false;
        }
        self.buf.extend_from_slice(chunk);
        true
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

/// Every request header, repeated names joined with `", "` (first-seen
/// order), as the old transport built its `dict`.
#[derive(Default, Debug)]
pub struct HeaderList<'a> {
    pub items: Vec<(&'a [u8], Cow<'a, [u8]>)>,
}

impl<'a> HeaderList<'a> {
    pub fn add(&mut self, name: &'a [u8], value: &'a [u8]) {
        if let Some((_, existing)) = self.items.iter_mut().find(|(n, _)| *n == name) {
            let joined = existing.to_mut();
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(value);
        } else {
            self.items.push((name, Cow::Borrowed(value)));
        }
    }
}

/// Upper-cases a method (uWS reports it lower-cased).
pub fn method_upper(method: &[u8]) -> Cow<'_, [u8]> {
    if method.iter().any(u8::is_ascii_lowercase) {
        Cow::Owned(method.to_ascii_uppercase())
    } else {
        Cow::Borrowed(method)
    }
}

/// The status line uWS writes for `code`: socketify's phrases for the codes
/// it knows, else `"<code> Unknown"` (never uWS's default `200 OK`).
pub fn status_line(code: i64) -> Cow<'static, str> {
    match status_phrase(code) {
        Some(line) => Cow::Borrowed(line),
        None => Cow::Owned(format!("{code} Unknown")),
    }
}

/// socketify's status table (`libsocketify.cpp`), so responses read as before.
fn status_phrase(code: i64) -> Option<&'static str> {
    Some(match code {
        100 => "100 Continue",
        101 => "101 Switching Protocols",
        102 => "102 Processing",
        103 => "103 Early Hints",
        200 => "200 OK",
        201 => "201 Created",
        202 => "202 Accepted",
        203 => "203 Non-Authoritative Information",
        204 => "204 No Content",
        205 => "205 Reset Content",
        206 => "206 Partial Content",
        207 => "207 Multi-Status",
        208 => "208 Already Reported",
        226 => "226 IM Used (HTTP Delta encoding)",
        300 => "300 Multiple Choices",
        301 => "301 Moved Permanently",
        302 => "302 Found",
        303 => "303 See Other",
        304 => "304 Not Modified",
        305 => "305 Use Proxy Deprecated",
        306 => "306 unused",
        307 => "307 Temporary Redirect",
        308 => "308 Permanent Redirect",
        400 => "400 Bad Request",
        401 => "401 Unauthorized",
        402 => "402 Payment Required Experimental",
        403 => "403 Forbidden",
        404 => "404 Not Found",
        405 => "405 Method Not Allowed",
        406 => "406 Not Acceptable",
        407 => "407 Proxy Authentication Required",
        408 => "408 Request Timeout",
        409 => "409 Conflict",
        410 => "410 Gone",
        411 => "411 Length Required",
        412 => "412 Precondition Failed",
        413 => "413 Payload Too Large",
        414 => "414 URI Too Long",
        415 => "415 Unsupported Media Type",
        416 => "416 Range Not Satisfiable",
        417 => "417 Expectation Failed",
        418 => "418 I'm a teapot",
        421 => "421 Misdirected Request",
        422 => "422 Unprocessable Entity",
        423 => "423 Locked",
        424 => "424 Failed Dependency",
        425 => "425 Too Early Experimental",
        426 => "426 Upgrade Required",
        428 => "428 Precondition Required",
        429 => "429 Too Many Requests",
        431 => "431 Request Header Fields Too Large",
        451 => "451 Unavailable For Legal Reasons",
        500 => "500 Internal Server Error",
        501 => "501 Not Implemented",
        502 => "502 Bad Gateway",
        503 => "503 Service Unavailable",
        504 => "504 Gateway Timeout",
        505 => "505 HTTP Version Not Supported",
        506 => "506 Variant Also Negotiates",
        507 => "507 Insufficient Storage",
        508 => "508 Loop Detected",
        510 => "510 Not Extended",
        511 => "511 Network Authentication Required",
        _ => return None,
    })
}

/// A whole response with `Connection: close`, for writing straight to the
/// socket (not through uWS's response, e.g. to close at once).
pub fn raw_response(
    status: i64,
    headers: &[(Vec<u8>, Vec<u8>)],
    content_type: &[u8],
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + body.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status_line(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut header = |name: &[u8], value: &[u8]| {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    };
    for (name, value) in headers {
        header(name, value);
    }
    if !content_type.is_empty() {
        header(b"Content-Type", content_type);
    }
    header(b"Content-Length", body.len().to_string().as_bytes());
    header(b"Connection", b"close");
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// The last-resort error body: `{"error":..,"detail":null,"status_code":..}`.
pub fn plain_error_body(status: i64, error: &str) -> Vec<u8> {
    format!(r#"{{"error":"{error}","detail":null,"status_code":{status}}}"#).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_at_the_first_question_mark() {
        assert_eq!(split_url(b"/a/b?x=1&y=2"), (&b"/a/b"[..], &b"x=1&y=2"[..]));
        assert_eq!(split_url(b"/a?"), (&b"/a"[..], &b""[..]));
        assert_eq!(split_url(b"/a?b?c"), (&b"/a"[..], &b"b?c"[..]));
        assert_eq!(split_url(b"/plain"), (&b"/plain"[..], &b""[..]));
        assert_eq!(raw_query(b"/p?a=1"), b"?a=1");
        assert_eq!(raw_query(b"/p"), b"");
    }

    fn q(query: &str, key: &str) -> Option<String> {
        query_value(query.as_bytes(), key.as_bytes()).map(|v| String::from_utf8(v).unwrap())
    }

    #[test]
    fn query_values_are_found_and_decoded_like_uws() {
        let query = "?token=a.b%2Ec&session_id=s+1&empty=&flag&x=%C3%A9";
        assert_eq!(q(query, "token").as_deref(), Some("a.b.c"));
        assert_eq!(q(query, "session_id").as_deref(), Some("s 1"));
        assert_eq!(q(query, "empty").as_deref(), Some(""));
        assert_eq!(q(query, "flag").as_deref(), Some(""));
        assert_eq!(q(query, "x").as_deref(), Some("é"));
        assert_eq!(q(query, "missing"), None);
        assert_eq!(q(query, ""), None);
        assert_eq!(q("", "token"), None);
        assert_eq!(q("?", "token"), None);
        // Only whole keys match, the first occurrence wins.
        assert_eq!(
            q("?tokens=1&token=2&token=3", "token").as_deref(),
            Some("2")
        );
        // Lower-case hex and other bytes pass; a truncated escape gives nothing.
        assert_eq!(q("?a=%2f%2F", "a").as_deref(), Some("//"));
        assert_eq!(q("?a=abc%4", "a"), None);
        assert_eq!(q("?a=%41", "a").as_deref(), Some("A"));
        // Empty statements are skipped.
        assert_eq!(q("?&&a=1", "a").as_deref(), Some("1"));
        // uWS does not validate hex digits: it computes something anyway.
        // 'z' -> (122 - 48) & 223 - 7 = 67; 67 * 16 + 67 = 1139 = 115 (mod 256).
        assert_eq!(query_value(b"?a=%zz", b"a"), Some(vec![115]));
    }

    #[test]
    fn latin1_round_trip() {
        assert_eq!(latin1(b"plain"), "plain");
        assert!(matches!(latin1(b"plain"), Cow::Borrowed(_)));
        assert_eq!(latin1(b"caf\xe9"), "café");
        assert_eq!(encode_latin1("café").unwrap().as_ref(), b"caf\xe9");
        assert_eq!(encode_latin1("ascii").unwrap().as_ref(), b"ascii");
        assert!(encode_latin1("snow ☃").is_none());
    }

    #[test]
    fn content_length_reads_like_python_int() {
        assert_eq!(parse_content_length(b"20"), Some(20));
        assert_eq!(parse_content_length(b" 20 \t"), Some(20));
        assert_eq!(parse_content_length(b"+7"), Some(7));
        assert_eq!(parse_content_length(b"0"), Some(0));
        assert_eq!(parse_content_length(b"-0"), Some(0));
        assert_eq!(parse_content_length(b"1_000"), Some(1000));
        assert_eq!(
            parse_content_length(b"99999999999999999999999"),
            Some(u64::MAX)
        );
        for bad in [
            &b""[..],
            b" ",
            b"-1",
            b"abc",
            b"1a",
            b"0x10",
            b"_1",
            b"1_",
            b"1__0",
            b"+",
            b"1 2",
        ] {
            assert_eq!(parse_content_length(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn body_plans() {
        assert_eq!(body_plan(None, false, 100), BodyPlan::Empty);
        assert_eq!(body_plan(None, true, 100), BodyPlan::Read { expected: 0 });
        assert_eq!(body_plan(Some(b"0"), false, 100), BodyPlan::Empty);
        assert_eq!(body_plan(Some(b"0"), true, 100), BodyPlan::Empty);
        assert_eq!(
            body_plan(Some(b"100"), false, 100),
            BodyPlan::Read { expected: 100 }
        );
        assert_eq!(body_plan(Some(b"101"), false, 100), BodyPlan::TooLarge);
        assert_eq!(body_plan(Some(b"1e9"), false, 100), BodyPlan::Invalid);
        assert_eq!(body_plan(Some(b"-3"), true, 100), BodyPlan::Invalid);
    }

    fn framing(headers: &[(&str, &str)]) -> Option<&'static str> {
        let mut f = Framing::default();
        for (name, value) in headers {
            f.add(name.as_bytes(), value.as_bytes());
        }
        f.refusal()
    }

    #[test]
    fn framing_headers_must_be_unambiguous() {
        let cl = "content-length";
        let te = "transfer-encoding";
        assert_eq!(framing(&[(cl, "10"), ("host", "x")]), None);
        assert_eq!(framing(&[(cl, "10"), (cl, " 10 ")]), None);
        assert_eq!(framing(&[(te, "chunked")]), None);
        assert_eq!(framing(&[(te, " Chunked ")]), None);
        let conflict = Some("Conflicting Content-Length headers");
        assert_eq!(framing(&[(cl, "0"), (cl, "35")]), conflict);
        assert_eq!(framing(&[(cl, "35"), (cl, "0"), (cl, "35")]), conflict);
        for bad in [
            "",
            " ",
            "1_0",
            "+7",
            "-1",
            "0x10",
            "1 2",
            "2, 2",
            "99999999999999999999",
        ] {
            assert_eq!(
                framing(&[(cl, bad)]),
                Some("Invalid Content-Length"),
                "{bad:?}"
            );
        }
        assert_eq!(framing(&[(cl, "007")]), None, "leading zeros are digits");
        let unsupported = Some("Unsupported Transfer-Encoding");
        assert_eq!(framing(&[(te, "gzip, chunked")]), unsupported);
        assert_eq!(framing(&[(te, "identity")]), unsupported);
        assert_eq!(framing(&[(te, "chunked"), (te, "chunked")]), unsupported);
        assert_eq!(
            framing(&[(te, "chunked"), (cl, "3")]),
            Some("Content-Length with Transfer-Encoding")
        );
    }

    #[test]
    fn hostless_heads_are_found_at_request_starts_only() {
        assert_eq!(hostless_head(b"GET / HTTP/1.1\r\n\r\n"), Some((16, false)));
        assert_eq!(
            hostless_head(b"GET /a?b HTTP/1.0\r\n\r\nrest"),
            Some((19, true))
        );
        assert_eq!(
            hostless_head(b"POST /p HTTP/1.1\r\nX-A: 1\r\nContent-Length: 2\r\n\r\n{}"),
            Some((18, false))
        );
        for with_host in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nX-A: 1\r\nhOsT:\r\n\r\n",
        ] {
            assert_eq!(hostless_head(with_host), None);
        }
        for not_a_whole_head in [
            &b""[..],
            b"{\"a\":1}",
            b"GET / HTTP/1.1\r\n",
            b"GET / HTTP/1.1\r\nX-A: 1\r\n",
            b"GET / HTTP/1.1\r\nX-A",
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET  HTTP/1.1\r\n\r\n",
            b"get / HTTP/1.1\r\n\r\n",
            b"G(T / HTTP/1.1\r\n\r\n",
            b"GET /a b HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\n\n",
        ] {
            assert_eq!(
                hostless_head(not_a_whole_head),
                None,
                "{not_a_whole_head:?}"
            );
        }
    }

    #[test]
    fn stuck_heads_are_whole_heads_with_a_reason() {
        assert_eq!(
            stuck_head(b"POST /a?b HTTP/1.1\r\nHost: x\r\nX.Y: 1\r\n\r\n{}"),
            Some((&b"POST"[..], &b"/a?b"[..], "Unsupported header name"))
        );
        for name in ["x_y", "a+b", "a!b", "a~b", "a b"] {
            let head = format!("GET / HTTP/1.0\r\n{name}: v\r\n\r\n");
            assert_eq!(
                stuck_head(head.as_bytes()).map(|s| s.2),
                Some("Unsupported header name"),
                "{name}"
            );
        }
        assert_eq!(
            stuck_head(b"GET / HTTP/1.1\r\nHost: x\r\nX-Ok-1: v:w\r\n\r\n").map(|s| s.2),
            Some("Malformed request")
        );
        for not_whole in [
            &b"GET / HTTP/1.1\r\nX.Y: 1\r\n"[..],
            b"{\"a\": 1}",
            b"GET / HTTP/2\r\n\r\n",
            b"",
        ] {
            assert_eq!(stuck_head(not_whole), None);
        }
    }

    #[test]
    fn body_limit_is_enforced_while_streaming() {
        let mut body = Body::new(10, 10);
        assert!(body.is_empty());
        assert!(body.push(b"12345"));
        assert!(body.push(b""));
        assert!(body.push(b"67890"));
        assert_eq!(body.len(), 10);
        assert!(!body.push(b"x"), "11th byte refused");
        assert_eq!(body.len(), 10, "nothing appended past the limit");
        assert_eq!(body.take(), b"1234567890");
        assert!(body.is_empty());

        let mut chunked = Body::new(0, 4);
        assert!(chunked.push(b"ab"));
        assert!(!chunked.push(b"cde"));
        // A huge announced length does not reserve a huge buffer.
        let big = Body::new(usize::MAX, usize::MAX);
        assert!(big.buf.capacity() <= 1 << 20);
    }

    #[test]
    fn repeated_headers_are_joined() {
        let mut list = HeaderList::default();
        list.add(b"accept", b"a");
        list.add(b"x-one", b"1");
        list.add(b"accept", b"b");
        list.add(b"accept", b"c");
        let items: Vec<(&[u8], &[u8])> = list.items.iter().map(|(n, v)| (*n, v.as_ref())).collect();
        assert_eq!(
            items,
            vec![
                (&b"accept"[..], &b"a, b, c"[..]),
                (&b"x-one"[..], &b"1"[..])
            ]
        );
    }

    #[test]
    fn methods_and_prefixes() {
        assert_eq!(method_upper(b"get").as_ref(), b"GET");
        assert_eq!(method_upper(b"POST").as_ref(), b"POST");
        assert!(matches!(method_upper(b"PUT"), Cow::Borrowed(_)));
        let prefixes = vec![b"/api/proxy/".to_vec()];
        assert!(has_prefix(b"/api/proxy/x/y", &prefixes));
        assert!(!has_prefix(b"/api/prox", &prefixes));
        assert!(!has_prefix(b"/health", &[]));
    }

    #[test]
    fn raw_responses_close() {
        let headers = [(b"X-A".to_vec(), b"1".to_vec())];
        assert_eq!(
            raw_response(400, &headers, b"application/json", b"{}"),
            b"HTTP/1.1 400 Bad Request\r\nX-A: 1\r\nContent-Type: application/json\r\n\
              Content-Length: 2\r\nConnection: close\r\n\r\n{}"
        );
        assert_eq!(
            raw_response(599, &[], b"", b""),
            b"HTTP/1.1 599 Unknown\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_line(200), "200 OK");
        assert_eq!(status_line(413), "413 Payload Too Large");
        assert_eq!(status_line(429), "429 Too Many Requests");
        assert_eq!(status_line(599), "599 Unknown");
        assert_eq!(status_line(299), "299 Unknown");
        assert_eq!(
            plain_error_body(403, "Forbidden"),
            br#"{"error":"Forbidden","detail":null,"status_code":403}"#
        );
    }
}
