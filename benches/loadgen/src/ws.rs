//! Minimal WebSocket (RFC 6455) framing for a client, plus the bits a test
//! server needs. Reading parses as many frames as one buffer holds; payloads
//! are returned as slices into that buffer (no per-frame allocation), except
//! fragmented messages, which are reassembled into one reused buffer.

use std::fmt;
use std::io;
use std::net::IpAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::http::{header_lines, parse_status_line};
use crate::proto::{Msg, Proto};
use crate::scan;
use crate::util::{base64, Rng};

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Largest message accepted (a guard against garbage lengths).
pub const MAX_MESSAGE: usize = 64 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtoError(pub &'static str);

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "websocket protocol error: {}", self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub fin: bool,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub header_len: usize,
    pub payload_len: u64,
}

/// Parse one frame header from the start of `buf`. `Ok(None)`: need more bytes.
#[inline]
pub fn parse_header(buf: &[u8]) -> Result<Option<Header>, ProtoError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let b0 = buf[0];
    let b1 = buf[1];
    if b0 & 0x70 != 0 {
        return Err(ProtoError("reserved bits set"));
    }
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0F;
    let masked = b1 & 0x80 != 0;
    let (payload_len, mut hl) = match b1 & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            let n = u64::from_be_bytes(b);
            if n >> 63 != 0 {
                return Err(ProtoError("64-bit length with MSB set"));
            }
            (n, 10)
        }
        n => (u64::from(n), 2),
    };
    if opcode >= 0x8 && (!fin || payload_len > 125) {
        return Err(ProtoError("invalid control frame"));
    }
    let mask = if masked {
        if buf.len() < hl + 4 {
            return Ok(None);
        }
        let k = [buf[hl], buf[hl + 1], buf[hl + 2], buf[hl + 3]];
        hl += 4;
        Some(k)
    } else {
        None
    };
    Ok(Some(Header {
        fin,
        opcode,
        mask,
        header_len: hl,
        payload_len,
    }))
}

/// XOR `data` with the 4-byte mask `key` (8 bytes at a time).
#[inline]
pub fn apply_mask(data: &mut [u8], key: [u8; 4]) {
    let k64 = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        c.copy_from_slice(&(u64::from_ne_bytes(w) ^ k64).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

/// A message or control frame, borrowed from the reader's buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    Text(&'a [u8]),
    Binary(&'a [u8]),
    Ping(&'a [u8]),
    Pong(&'a [u8]),
    /// Close code (if the frame carried one) and reason.
    Close(Option<u16>, &'a [u8]),
}

/// Incremental frame reader over one growable buffer.
pub struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Total size of a frame known to be incomplete at `start` (0: unknown).
    need: usize,
    frag: Vec<u8>,
    frag_op: u8,
    frag_ready: bool,
    max_msg: usize,
}

const FRAG_TEXT: u8 = 0x10 | OP_TEXT;
const FRAG_BINARY: u8 = 0x10 | OP_BINARY;

impl FrameReader {
    pub fn with_capacity(cap: usize) -> FrameReader {
        FrameReader {
            buf: vec![0; cap.max(64)],
            start: 0,
            end: 0,
            need: 0,
            frag: Vec::new(),
            frag_op: 0,
            frag_ready: false,
            max_msg: MAX_MESSAGE,
        }
    }

    /// Bytes received but not yet consumed.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Drop `n` buffered bytes (used after the HTTP upgrade response).
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
    }

    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Append raw bytes as if they had been read from the socket.
    pub fn feed(&mut self, data: &[u8]) {
        let mut off = 0;
        while off < data.len() {
            let spare = self.spare();
            let n = spare.len().min(data.len() - off);
            spare[..n].copy_from_slice(&data[off..off + n]);
            self.end += n;
            off += n;
        }
    }

    /// Make room for a read and return the free tail of the buffer.
    fn spare(&mut self) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        let free = self.buf.len() - self.end;
        if free < 64 || self.start + self.need > self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let want = (self.end + 64).max(self.need);
            if want > self.buf.len() {
                let new_len = want.max(self.buf.len() * 2);
                self.buf.resize(new_len, 0);
            }
        }
        &mut self.buf[self.end..]
    }

    /// One `read` from the socket into the buffer; returns 0 on EOF.
    pub async fn read_from(&mut self, s: &mut TcpStream) -> io::Result<usize> {
        let n = s.read(self.spare()).await?;
        self.end += n;
        Ok(n)
    }

    /// The next complete message or control frame, if buffered.
    #[inline]
    pub fn next_event(&mut self) -> Result<Option<Event<'_>>, ProtoError> {
        if self.frag_ready {
            self.frag.clear();
            self.frag_ready = false;
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            return Ok(None);
        }
        let (op, ps, pe) = loop {
            let avail = &self.buf[self.start..self.end];
            let h = match parse_header(avail)? {
                Some(h) => h,
                None => {
                    self.need = 0;
                    return Ok(None);
                }
            };
            if h.payload_len > self.max_msg as u64 {
                return Err(ProtoError("frame too large"));
            }
            let total = h.header_len + h.payload_len as usize;
            if avail.len() < total {
                self.need = total;
                return Ok(None);
            }
            self.need = 0;
            let ps = self.start + h.header_len;
            let pe = self.start + total;
            if let Some(k) = h.mask {
                apply_mask(&mut self.buf[ps..pe], k);
            }
            self.start += total;
            match h.opcode {
                OP_TEXT | OP_BINARY => {
                    if self.frag_op != 0 {
                        return Err(ProtoError("data frame inside a fragmented message"));
                    }
                    if h.fin {
                        break (h.opcode, ps, pe);
                    }
                    self.frag_op = h.opcode;
                    self.frag.clear();
                    self.frag.extend_from_slice(&self.buf[ps..pe]);
                }
                OP_CONT => {
                    if self.frag_op == 0 {
                        return Err(ProtoError("continuation without a first fragment"));
                    }
                    if self.frag.len() + (pe - ps) > self.max_msg {
                        return Err(ProtoError("message too large"));
                    }
                    self.frag.extend_from_slice(&self.buf[ps..pe]);
                    if h.fin {
                        let op = 0x10 | self.frag_op;
                        self.frag_op = 0;
                        self.frag_ready = true;
                        break (op, 0, 0);
                    }
                }
                OP_CLOSE | OP_PING | OP_PONG => break (h.opcode, ps, pe),
                _ => return Err(ProtoError("reserved opcode")),
            }
        };
        let p = &self.buf[ps..pe];
        Ok(Some(match op {
            FRAG_TEXT => Event::Text(&self.frag),
            FRAG_BINARY => Event::Binary(&self.frag),
            OP_TEXT => Event::Text(p),
            OP_BINARY => Event::Binary(p),
            OP_PING => Event::Ping(p),
            OP_PONG => Event::Pong(p),
            _ => {
                if p.len() >= 2 {
                    Event::Close(Some(u16::from_be_bytes([p[0], p[1]])), &p[2..])
                } else {
                    Event::Close(None, p)
                }
            }
        }))
    }
}

/// Frame encoder appending to an output buffer (flushed by the caller).
pub struct FrameWriter {
    pub buf: Vec<u8>,
    mask: bool,
    rng: Rng,
}

impl FrameWriter {
    /// `mask`: true for a client (RFC 6455 requires masked client frames).
    pub fn new(mask: bool, rng: Rng) -> FrameWriter {
        FrameWriter {
            buf: Vec::new(),
            mask,
            rng,
        }
    }

    #[inline]
    pub fn frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        let len = payload.len();
        let mbit = if self.mask { 0x80 } else { 0 };
        self.buf.reserve(len + 14);
        self.buf.push(if fin { 0x80 } else { 0 } | opcode);
        if len < 126 {
            self.buf.push(mbit | len as u8);
        } else if len <= 0xFFFF {
            self.buf.push(mbit | 126);
            self.buf.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            self.buf.push(mbit | 127);
            self.buf.extend_from_slice(&(len as u64).to_be_bytes());
        }
        if self.mask {
            let key = self.rng.next_u32().to_ne_bytes();
            self.buf.extend_from_slice(&key);
            let s = self.buf.len();
            self.buf.extend_from_slice(payload);
            apply_mask(&mut self.buf[s..], key);
        } else {
            self.buf.extend_from_slice(payload);
        }
    }

    #[inline]
    pub fn text(&mut self, payload: &[u8]) {
        self.frame(true, OP_TEXT, payload);
    }

    pub fn ping(&mut self, payload: &[u8]) {
        self.frame(true, OP_PING, payload);
    }

    pub fn pong(&mut self, payload: &[u8]) {
        self.frame(true, OP_PONG, payload);
    }

    pub fn close(&mut self, code: Option<u16>, reason: &[u8]) {
        let mut p = [0u8; 125];
        let mut n = 0;
        if let Some(c) = code {
            p[..2].copy_from_slice(&c.to_be_bytes());
            n = 2;
            let r = reason.len().min(123);
            p[2..2 + r].copy_from_slice(&reason[..r]);
            n += r;
        }
        self.frame(true, OP_CLOSE, &p[..n]);
    }
}

/// `Sec-WebSocket-Accept` for a given `Sec-WebSocket-Key`.
pub fn accept_key(key: &[u8]) -> String {
    let mut s = key.to_vec();
    s.extend_from_slice(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64(&crate::sha1::sha1(&s))
}

/// An established client connection.
pub struct WsConn {
    pub stream: TcpStream,
    pub rd: FrameReader,
    pub wr: FrameWriter,
}

impl WsConn {
    /// Write everything queued in `wr.buf`.
    #[inline]
    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.wr.buf.is_empty() {
            self.stream.write_all(&self.wr.buf).await?;
            self.wr.buf.clear();
        }
        Ok(())
    }

    /// Best-effort close frame without waiting (used at the end of a run).
    pub fn close_now(&mut self, code: u16) {
        self.wr.close(Some(code), b"");
        let _ = self.stream.try_write(&self.wr.buf);
        self.wr.buf.clear();
    }
}

#[derive(Debug)]
pub enum HandshakeError {
    Io(io::Error),
    Status(u16),
    BadAccept,
    Malformed,
    Eof,
}

impl From<io::Error> for HandshakeError {
    fn from(e: io::Error) -> Self {
        HandshakeError::Io(e)
    }
}

/// Perform the HTTP/1.1 upgrade on a connected stream. `extra_headers` must
/// be complete `Name: value\r\n` lines.
pub async fn handshake(
    mut stream: TcpStream,
    host: &str,
    path: &[u8],
    extra_headers: &[u8],
    rng: &mut Rng,
    rd_cap: usize,
) -> Result<WsConn, HandshakeError> {
    let mut nonce = [0u8; 16];
    nonce[..8].copy_from_slice(&rng.next_u64().to_ne_bytes());
    nonce[8..].copy_from_slice(&rng.next_u64().to_ne_bytes());
    let key = base64(&nonce);
    let mut req = Vec::with_capacity(192 + path.len() + extra_headers.len());
    req.extend_from_slice(b"GET ");
    req.extend_from_slice(path);
    req.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    req.extend_from_slice(host.as_bytes());
    req.extend_from_slice(
        b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ",
    );
    req.extend_from_slice(key.as_bytes());
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(extra_headers);
    req.extend_from_slice(b"\r\n");
    stream.write_all(&req).await?;
    let mut rd = FrameReader::with_capacity(rd_cap.max(512));
    loop {
        if let Some(end) = scan::find(rd.buffered(), b"\r\n\r\n", 0) {
            let head = &rd.buffered()[..end + 2];
            let line_end = scan::find(head, b"\r\n", 0).unwrap_or(head.len());
            let status = parse_status_line(&head[..line_end]).ok_or(HandshakeError::Malformed)?;
            if status != 101 {
                return Err(HandshakeError::Status(status));
            }
            let expected = accept_key(key.as_bytes());
            let ok = header_lines(&head[line_end..]).any(|(n, v)| {
                n.eq_ignore_ascii_case(b"sec-websocket-accept") && v == expected.as_bytes()
            });
            if !ok {
                return Err(HandshakeError::BadAccept);
            }
            rd.consume(end + 4);
            let wr = FrameWriter::new(true, Rng::new(rng.next_u64()));
            return Ok(WsConn { stream, rd, wr });
        }
        if rd.buffered().len() > 16384 {
            return Err(HandshakeError::Malformed);
        }
        if rd.read_from(&mut stream).await? == 0 {
            return Err(HandshakeError::Eof);
        }
    }
}

/// Why a connection attempt, or a wait for a reply, failed.
#[derive(Debug)]
pub enum ConnError {
    Connect(io::Error),
    Handshake(HandshakeError),
    Closed(Option<u16>, String),
    Eof,
    Io(io::Error),
    Proto(ProtoError),
    ServerError(String),
    Timeout,
}

impl ConnError {
    /// A short category used as a key in the reports.
    pub fn kind(&self) -> String {
        match self {
            ConnError::Connect(e) => format!("connect:{:?}", e.kind()),
            ConnError::Handshake(HandshakeError::Status(s)) => format!("http_status:{s}"),
            ConnError::Handshake(HandshakeError::Io(e)) => format!("handshake_io:{:?}", e.kind()),
            ConnError::Handshake(HandshakeError::Eof) => "handshake_eof".into(),
            ConnError::Handshake(HandshakeError::BadAccept) => "handshake_bad_accept".into(),
            ConnError::Handshake(HandshakeError::Malformed) => "handshake_malformed".into(),
            ConnError::Closed(Some(c), _) => format!("close:{c}"),
            ConnError::Closed(None, _) => "close:none".into(),
            ConnError::Eof => "eof".into(),
            ConnError::Io(e) => format!("io:{:?}", e.kind()),
            ConnError::Proto(_) => "protocol".into(),
            ConnError::ServerError(_) => "server_error".into(),
            ConnError::Timeout => "timeout".into(),
        }
    }

    pub fn message(&self) -> String {
        match self {
            ConnError::Connect(e) => format!("connect: {e}"),
            ConnError::Handshake(HandshakeError::Io(e)) => format!("handshake: {e}"),
            ConnError::Handshake(h) => format!("handshake: {h:?}"),
            ConnError::Closed(c, r) => format!("closed by server: code {c:?} reason {r:?}"),
            ConnError::Eof => "connection closed without a close frame".into(),
            ConnError::Io(e) => format!("io: {e}"),
            ConnError::Proto(p) => p.to_string(),
            ConnError::ServerError(m) => format!("server error frame: {m}"),
            ConnError::Timeout => "timed out".into(),
        }
    }
}

impl From<ProtoError> for ConnError {
    fn from(e: ProtoError) -> Self {
        ConnError::Proto(e)
    }
}

/// Counters of keep-alive traffic answered while waiting or running.
#[derive(Default, Debug, Clone, Copy)]
pub struct PingCounts {
    /// `{"type":"ping"}` text frames answered with `{"type":"pong"}`.
    pub text: u64,
    /// Protocol-level PING frames answered with PONG.
    pub proto: u64,
}

/// `proto.classify(msg, reply_type)`, answering a [`Msg::Ping`] on `wr` (counted) first.
#[inline]
pub fn classify_answering<'a>(
    proto: Proto,
    msg: &'a [u8],
    reply_type: &[u8],
    wr: &mut FrameWriter,
    pings: &mut PingCounts,
) -> Msg<'a> {
    let m = proto.classify(msg, reply_type);
    if m == Msg::Ping {
        wr.text(proto.pong());
        pings.text += 1;
    }
    m
}

/// A pygw reply type no frame has (for contexts that expect no reply).
pub const NO_REPLY: &[u8] = b"\0";

/// What [`wait_for`] waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want<'a> {
    /// Engine.IO's OPEN packet.
    Open,
    /// The authenticated welcome (pygw `connected`, Socket.IO `40`).
    Connected,
    /// The reply with this id (pygw: the frame of this `"type"`, whatever its id).
    Reply(&'a [u8], u64),
}

/// Read until the message `want` arrives, answering the protocol's pings. An error message,
/// a close or EOF ends the wait with an error.
pub async fn wait_for(
    conn: &mut WsConn,
    proto: Proto,
    want: Want<'_>,
    pings: &mut PingCounts,
) -> Result<(), ConnError> {
    let reply_type = match want {
        Want::Reply(t, _) => t,
        _ => NO_REPLY,
    };
    loop {
        let mut found = false;
        while let Some(ev) = conn.rd.next_event()? {
            match ev {
                Event::Text(p) => {
                    for m in proto.messages(p) {
                        match classify_answering(proto, m, reply_type, &mut conn.wr, pings) {
                            Msg::Open if want == Want::Open => found = true,
                            Msg::Connected if want == Want::Connected => found = true,
                            Msg::Reply(id) => {
                                if let Want::Reply(_, w) = want {
                                    found |= proto == Proto::Pygw || id == Some(w);
                                }
                            }
                            Msg::Error(_, e) => {
                                return Err(ConnError::ServerError(
                                    String::from_utf8_lossy(&e[..e.len().min(200)]).into_owned(),
                                ));
                            }
                            _ => {}
                        }
                    }
                    if found {
                        break;
                    }
                }
                Event::Binary(_) | Event::Pong(_) => {}
                Event::Ping(p) => {
                    conn.wr.pong(p);
                    pings.proto += 1;
                }
                Event::Close(code, reason) => {
                    let r = String::from_utf8_lossy(reason).into_owned();
                    conn.wr.close(code, b"");
                    let _ = conn.flush().await;
                    return Err(ConnError::Closed(code, r));
                }
            }
        }
        conn.flush().await.map_err(ConnError::Io)?;
        if found {
            return Ok(());
        }
        match conn.rd.read_from(&mut conn.stream).await {
            Ok(0) => return Err(ConnError::Eof),
            Ok(_) => {}
            Err(e) => return Err(ConnError::Io(e)),
        }
    }
}

/// What a connection needs to reach a WebSocket endpoint.
pub struct WsDial<'a> {
    pub addr: std::net::SocketAddr,
    pub host_header: &'a str,
    pub path: &'a [u8],
    pub extra_headers: &'a [u8],
    pub source: Option<IpAddr>,
    pub rd_cap: usize,
    pub proto: Proto,
    /// Sent in the protocol's connect message (Socket.IO, Centrifuge).
    pub token: &'a str,
}

/// TCP connect, upgrade, and authenticate: pygw's `connected` welcome; Socket.IO's OPEN,
/// CONNECT with the token as `auth`, and its answer; Centrifuge's connect command and reply.
pub async fn dial(
    d: &WsDial<'_>,
    rng: &mut Rng,
    pings: &mut PingCounts,
) -> Result<WsConn, ConnError> {
    let stream = crate::net::tcp_connect(d.addr, d.source)
        .await
        .map_err(ConnError::Connect)?;
    let mut conn = handshake(
        stream,
        d.host_header,
        d.path,
        d.extra_headers,
        rng,
        d.rd_cap,
    )
    .await
    .map_err(ConnError::Handshake)?;
    let mut connect = Vec::new();
    d.proto.connect_frame(d.token, &mut connect);
    match d.proto {
        Proto::Pygw => wait_for(&mut conn, d.proto, Want::Connected, pings).await?,
        Proto::SocketIo => {
            wait_for(&mut conn, d.proto, Want::Open, pings).await?;
            conn.wr.text(&connect);
            wait_for(&mut conn, d.proto, Want::Connected, pings).await?;
        }
        Proto::Centrifuge => {
            conn.wr.text(&connect);
            let want = Want::Reply(b"", crate::proto::CONNECT_ID);
            wait_for(&mut conn, d.proto, want, pings).await?;
        }
    }
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(mask: bool, fin: bool, op: u8, payload: &[u8]) -> Vec<u8> {
        let mut w = FrameWriter::new(mask, Rng::new(7));
        w.frame(fin, op, payload);
        w.buf
    }

    #[test]
    fn rfc_accept_key() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn header_lengths() {
        for (len, hl) in [
            (0usize, 2usize),
            (125, 2),
            (126, 4),
            (65535, 4),
            (65536, 10),
        ] {
            let payload = vec![b'a'; len];
            let f = encode(false, true, OP_TEXT, &payload);
            let h = parse_header(&f).unwrap().unwrap();
            assert_eq!(h.header_len, hl);
            assert_eq!(h.payload_len, len as u64);
            assert!(h.fin);
            assert_eq!(h.opcode, OP_TEXT);
            assert_eq!(f.len(), hl + len);
            let fm = encode(true, true, OP_TEXT, &payload);
            let hm = parse_header(&fm).unwrap().unwrap();
            assert_eq!(hm.header_len, hl + 4);
            assert!(hm.mask.is_some());
        }
    }

    #[test]
    fn partial_headers_need_more() {
        let f = encode(true, true, OP_TEXT, &vec![1u8; 70000]);
        for cut in 0..14 {
            assert_eq!(parse_header(&f[..cut]).unwrap(), None, "cut {cut}");
        }
        assert!(parse_header(&f[..14]).unwrap().is_some());
    }

    #[test]
    fn rejects_bad_frames() {
        assert!(parse_header(&[0xC1, 0x00]).is_err()); // RSV1
        assert!(parse_header(&[0x09, 0x00]).is_err()); // fragmented ping
        assert!(parse_header(&[0x89, 126, 0, 200]).is_err()); // long ping
        let mut r = FrameReader::with_capacity(64);
        r.feed(&[0x83, 0x00]); // reserved opcode 3
        assert!(r.next_event().is_err());
        let mut r = FrameReader::with_capacity(64);
        r.feed(&encode(false, true, OP_CONT, b"x"));
        assert!(r.next_event().is_err());
    }

    #[test]
    fn mask_roundtrip_and_reference() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        // RFC 6455 5.7: masked "Hello"
        let mut data = b"Hello".to_vec();
        apply_mask(&mut data, key);
        assert_eq!(data, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
        for n in 0..40 {
            let orig: Vec<u8> = (0..n as u8).collect();
            let mut d = orig.clone();
            apply_mask(&mut d, key);
            let slow: Vec<u8> = orig
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ key[i % 4])
                .collect();
            assert_eq!(d, slow);
            apply_mask(&mut d, key);
            assert_eq!(d, orig);
        }
    }

    #[test]
    fn many_frames_in_one_buffer_masked_and_not() {
        for mask in [false, true] {
            let mut bytes = Vec::new();
            let msgs: Vec<Vec<u8>> = (0..200)
                .map(|i| format!("{{\"type\":\"message\",\"s\":{i}}}").into_bytes())
                .collect();
            for m in &msgs {
                bytes.extend(encode(mask, true, OP_TEXT, m));
            }
            let mut r = FrameReader::with_capacity(128);
            r.feed(&bytes);
            for m in &msgs {
                assert_eq!(r.next_event().unwrap(), Some(Event::Text(m)));
            }
            assert_eq!(r.next_event().unwrap(), None);
        }
    }

    #[test]
    fn byte_by_byte_delivery() {
        let mut bytes = Vec::new();
        bytes.extend(encode(false, true, OP_TEXT, b"first"));
        bytes.extend(encode(false, true, OP_BINARY, &vec![9u8; 300]));
        bytes.extend(encode(false, true, OP_TEXT, &vec![b'z'; 70000]));
        let mut r = FrameReader::with_capacity(64);
        let mut got = Vec::new();
        for b in &bytes {
            r.feed(std::slice::from_ref(b));
            while let Some(ev) = r.next_event().unwrap() {
                got.push(match ev {
                    Event::Text(p) => (1, p.len()),
                    Event::Binary(p) => (2, p.len()),
                    _ => (0, 0),
                });
            }
        }
        assert_eq!(got, vec![(1, 5), (2, 300), (1, 70000)]);
    }

    #[test]
    fn fragmented_with_interleaved_control() {
        let mut bytes = Vec::new();
        bytes.extend(encode(false, false, OP_TEXT, b"{\"type\":"));
        bytes.extend(encode(false, true, OP_PING, b"hb"));
        bytes.extend(encode(false, false, OP_CONT, b"\"mess"));
        bytes.extend(encode(false, true, OP_CONT, b"age\"}"));
        bytes.extend(encode(false, true, OP_TEXT, b"after"));
        let mut r = FrameReader::with_capacity(64);
        r.feed(&bytes);
        assert_eq!(r.next_event().unwrap(), Some(Event::Ping(b"hb")));
        assert_eq!(
            r.next_event().unwrap(),
            Some(Event::Text(b"{\"type\":\"message\"}"))
        );
        assert_eq!(r.next_event().unwrap(), Some(Event::Text(b"after")));
        assert_eq!(r.next_event().unwrap(), None);
        // a new data frame during a fragmented message is an error
        let mut r = FrameReader::with_capacity(64);
        r.feed(&encode(false, false, OP_TEXT, b"a"));
        r.feed(&encode(false, true, OP_TEXT, b"b"));
        assert!(r.next_event().is_err());
    }

    #[test]
    fn close_frames() {
        let mut w = FrameWriter::new(false, Rng::new(1));
        w.close(Some(1008), b"Pong timeout");
        w.close(None, b"");
        let mut r = FrameReader::with_capacity(64);
        r.feed(&w.buf);
        assert_eq!(
            r.next_event().unwrap(),
            Some(Event::Close(Some(1008), b"Pong timeout"))
        );
        assert_eq!(r.next_event().unwrap(), Some(Event::Close(None, b"")));
    }

    #[test]
    fn masked_client_frames_decode() {
        let mut w = FrameWriter::new(true, Rng::new(3));
        w.text(br#"{"type":"ping","id":1}"#);
        w.pong(b"abc");
        assert_eq!(w.buf[1] & 0x80, 0x80);
        let mut r = FrameReader::with_capacity(64);
        r.feed(&w.buf);
        assert_eq!(
            r.next_event().unwrap(),
            Some(Event::Text(br#"{"type":"ping","id":1}"#))
        );
        assert_eq!(r.next_event().unwrap(), Some(Event::Pong(b"abc")));
    }
}
