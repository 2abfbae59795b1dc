//! Minimal HTTP/1.1 client pieces: status/header parsing shared with the
//! WebSocket handshake, and a keep-alive response reader (Content-Length,
//! chunked, or read-to-close bodies).

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::scan;

/// Status code of an `HTTP/1.x NNN reason` line.
pub fn parse_status_line(line: &[u8]) -> Option<u16> {
    if !line.starts_with(b"HTTP/1.") || line.len() < 12 || line[8] != b' ' {
        return None;
    }
    let d = &line[9..12];
    if !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(u16::from(d[0] - b'0') * 100 + u16::from(d[1] - b'0') * 10 + u16::from(d[2] - b'0'))
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// `(name, value)` pairs of the `Name: value\r\n` lines in `block`.
pub fn header_lines(block: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    block.split(|&b| b == b'\n').filter_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&b| b == b':')?;
        Some((trim(&line[..colon]), trim(&line[colon + 1..])))
    })
}

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Length(usize),
    Chunked,
    UntilClose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Bytes of the status line and headers including the blank line.
    pub len: usize,
    pub status: u16,
    pub body: BodyKind,
    /// The server will close the connection after this response.
    pub close: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpError(pub &'static str);

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http: {}", self.0)
    }
}

/// Parse a response head at the start of `buf`; `Ok(None)` if incomplete.
/// `head_request`: the request was HEAD (no body follows).
pub fn parse_head(buf: &[u8], head_request: bool) -> Result<Option<Head>, HttpError> {
    let end = match scan::find(buf, b"\r\n\r\n", 0) {
        Some(e) => e,
        None => {
            if buf.len() > 64 * 1024 {
                return Err(HttpError("response head too large"));
            }
            return Ok(None);
        }
    };
    let line_end = scan::find(buf, b"\r\n", 0).unwrap_or(end);
    let status = parse_status_line(&buf[..line_end]).ok_or(HttpError("bad status line"))?;
    let http10 = buf.starts_with(b"HTTP/1.0");
    let mut len = None;
    let mut chunked = false;
    let mut close = http10;
    for (n, v) in header_lines(&buf[line_end..end]) {
        if n.eq_ignore_ascii_case(b"content-length") {
            let s = std::str::from_utf8(v).map_err(|_| HttpError("bad content-length"))?;
            len = Some(
                s.parse::<usize>()
                    .map_err(|_| HttpError("bad content-length"))?,
            );
        } else if n.eq_ignore_ascii_case(b"transfer-encoding") {
            chunked = v.eq_ignore_ascii_case(b"chunked") || scan::find(v, b"chunked", 0).is_some();
        } else if n.eq_ignore_ascii_case(b"connection") {
            if v.eq_ignore_ascii_case(b"close") {
                close = true;
            } else if v.eq_ignore_ascii_case(b"keep-alive") {
                close = false;
            }
        }
    }
    let no_body = head_request || status / 100 == 1 || status == 204 || status == 304;
    let body = if no_body {
        BodyKind::Length(0)
    } else if chunked {
        BodyKind::Chunked
    } else if let Some(l) = len {
        BodyKind::Length(l)
    } else {
        close = true;
        BodyKind::UntilClose
    };
    Ok(Some(Head {
        len: end + 4,
        status,
        body,
        close,
    }))
}

/// Decode a complete chunked body from `buf` into `out`; returns the bytes
/// consumed, or `Ok(None)` if the body is not complete yet.
pub fn decode_chunked(buf: &[u8], out: &mut Vec<u8>) -> Result<Option<usize>, HttpError> {
    out.clear();
    let mut i = 0;
    loop {
        let le = match scan::find(buf, b"\r\n", i) {
            Some(le) => le,
            None => return Ok(None),
        };
        let size_txt = &buf[i..le];
        let size_txt = match size_txt.iter().position(|&b| b == b';') {
            Some(p) => &size_txt[..p],
            None => size_txt,
        };
        let size_txt = trim(size_txt);
        if size_txt.is_empty() {
            return Err(HttpError("bad chunk size"));
        }
        let mut size: usize = 0;
        for &b in size_txt {
            let d = (b as char)
                .to_digit(16)
                .ok_or(HttpError("bad chunk size"))? as usize;
            size = size
                .checked_mul(16)
                .and_then(|s| s.checked_add(d))
                .ok_or(HttpError("chunk too large"))?;
        }
        i = le + 2;
        if size == 0 {
            // trailers end with an empty line
            loop {
                let te = match scan::find(buf, b"\r\n", i) {
                    Some(te) => te,
                    None => return Ok(None),
                };
                let empty = te == i;
                i = te + 2;
                if empty {
                    return Ok(Some(i));
                }
            }
        }
        if buf.len() < i + size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&buf[i..i + size]);
        if &buf[i + size..i + size + 2] != b"\r\n" {
            return Err(HttpError("missing CRLF after chunk"));
        }
        i += size + 2;
    }
}

/// A keep-alive HTTP/1.1 connection: write a request, read its response.
pub struct HttpConn {
    pub stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    body_range: (usize, usize),
    chunked_body: Vec<u8>,
    body_is_chunked: bool,
}

#[derive(Debug)]
pub enum ReqError {
    Io(io::Error),
    Http(HttpError),
    /// The server closed the connection before a complete response.
    Eof,
}

impl ReqError {
    pub fn kind(&self) -> String {
        match self {
            ReqError::Io(e) => format!("io:{:?}", e.kind()),
            ReqError::Http(_) => "http_parse".into(),
            ReqError::Eof => "eof".into(),
        }
    }
}

impl std::fmt::Display for ReqError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReqError::Io(e) => write!(f, "io: {e}"),
            ReqError::Http(e) => write!(f, "{e}"),
            ReqError::Eof => write!(f, "connection closed before a complete response"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Response {
    pub status: u16,
    /// The connection can't be reused.
    pub close: bool,
}

impl HttpConn {
    pub fn new(stream: TcpStream) -> HttpConn {
        HttpConn {
            stream,
            buf: vec![0; 4096],
            start: 0,
            end: 0,
            body_range: (0, 0),
            chunked_body: Vec::new(),
            body_is_chunked: false,
        }
    }

    async fn fill(&mut self) -> Result<usize, ReqError> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.buf.len() - self.end < 1024 {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.buf.len() - self.end < 1024 {
                let n = self.buf.len() * 2;
                self.buf.resize(n, 0);
            }
        }
        let n = self
            .stream
            .read(&mut self.buf[self.end..])
            .await
            .map_err(ReqError::Io)?;
        self.end += n;
        Ok(n)
    }

    /// Whether the server closed this idle connection (EOF, an error, or unexpected bytes are
    /// pending). Servers close keep-alive connections idle past their timeout (Node: 5 s).
    pub fn peer_closed(&self) -> bool {
        let mut b = [0u8; 1];
        match self.stream.try_read(&mut b) {
            Err(e) => e.kind() != io::ErrorKind::WouldBlock,
            Ok(_) => true,
        }
    }

    /// Send `req` (a complete request) and read the response.
    pub async fn request(&mut self, req: &[u8], head_request: bool) -> Result<Response, ReqError> {
        self.stream.write_all(req).await.map_err(ReqError::Io)?;
        self.read_response(head_request).await
    }

    /// Read one response; its body is then available from [`HttpConn::body`].
    pub async fn read_response(&mut self, head_request: bool) -> Result<Response, ReqError> {
        let head = loop {
            match parse_head(&self.buf[self.start..self.end], head_request)
                .map_err(ReqError::Http)?
            {
                Some(h) => break h,
                None => {
                    if self.fill().await? == 0 {
                        return Err(ReqError::Eof);
                    }
                }
            }
        };
        self.start += head.len;
        self.body_is_chunked = false;
        match head.body {
            BodyKind::Length(n) => {
                if self.start + n > self.buf.len() {
                    self.buf.copy_within(self.start..self.end, 0);
                    self.end -= self.start;
                    self.start = 0;
                    if n > self.buf.len() {
                        self.buf.resize(n + 1024, 0);
                    }
                }
                while self.end - self.start < n {
                    if self.fill().await? == 0 {
                        return Err(ReqError::Eof);
                    }
                }
                self.body_range = (self.start, self.start + n);
                self.start += n;
            }
            BodyKind::Chunked => loop {
                let avail = &self.buf[self.start..self.end];
                if let Some(used) =
                    decode_chunked(avail, &mut self.chunked_body).map_err(ReqError::Http)?
                {
                    self.start += used;
                    self.body_is_chunked = true;
                    break;
                }
                if self.fill().await? == 0 {
                    return Err(ReqError::Eof);
                }
            },
            BodyKind::UntilClose => {
                while self.fill().await? != 0 {}
                self.body_range = (self.start, self.end);
                self.start = self.end;
            }
        }
        Ok(Response {
            status: head.status,
            close: head.close,
        })
    }

    pub fn body(&self) -> &[u8] {
        if self.body_is_chunked {
            &self.chunked_body
        } else {
            &self.buf[self.body_range.0..self.body_range.1]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(
            parse_status_line(b"HTTP/1.1 101 Switching Protocols"),
            Some(101)
        );
        assert_eq!(parse_status_line(b"HTTP/1.0 404 Not Found"), Some(404));
        assert_eq!(parse_status_line(b"HTTP/1.1 200"), Some(200));
        assert_eq!(parse_status_line(b"HTTP/2 200"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 2x0 OK"), None);
    }

    #[test]
    fn headers() {
        let h: Vec<_> = header_lines(b"\r\nA: 1\r\nB-c:  two words \r\nbroken\r\n").collect();
        assert_eq!(
            h,
            vec![(&b"A"[..], &b"1"[..]), (&b"B-c"[..], &b"two words"[..])]
        );
    }

    #[test]
    fn head_content_length() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: x\r\n\r\nhello";
        let h = parse_head(r, false).unwrap().unwrap();
        assert_eq!(h.status, 200);
        assert_eq!(h.body, BodyKind::Length(5));
        assert!(!h.close);
        assert_eq!(&r[h.len..], b"hello");
        assert_eq!(parse_head(&r[..20], false).unwrap(), None);
    }

    #[test]
    fn head_variants() {
        let h = parse_head(b"HTTP/1.1 204 No Content\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert_eq!(h.body, BodyKind::Length(0));
        let h = parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n", true)
            .unwrap()
            .unwrap();
        assert_eq!(h.body, BodyKind::Length(0));
        let h = parse_head(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.body, BodyKind::Chunked);
        let h = parse_head(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert_eq!(h.body, BodyKind::UntilClose);
        assert!(h.close);
        let h = parse_head(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert!(h.close);
        assert!(parse_head(b"garbage\r\n\r\n", false).is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false).is_err());
    }

    #[test]
    fn chunked_bodies() {
        let mut out = Vec::new();
        let b = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\nNEXT";
        let used = decode_chunked(b, &mut out).unwrap().unwrap();
        assert_eq!(out, b"hello, world");
        assert_eq!(&b[used..], b"NEXT");
        for cut in 0..b.len() - 4 {
            assert_eq!(
                decode_chunked(&b[..cut], &mut out).unwrap(),
                None,
                "cut {cut}"
            );
        }
        let b = b"3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n";
        assert_eq!(decode_chunked(b, &mut out).unwrap(), Some(b.len()));
        assert_eq!(out, b"abc");
        assert!(decode_chunked(b"zz\r\n", &mut out).is_err());
        assert!(decode_chunked(b"3\r\nabcXY0\r\n\r\n", &mut out).is_err());
    }
}
