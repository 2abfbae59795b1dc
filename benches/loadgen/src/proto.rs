//! The three wire protocols the generator speaks over one WebSocket: pygw's JSON frames, and
//! those of the two peers of `benches/peers.py` — Socket.IO 4 (Engine.IO v4 over the
//! WebSocket transport only) and Centrifuge's JSON protocol (library v0.15, protocol v0.3).
//!
//! Each protocol says how to authenticate after the upgrade, how to subscribe, publish and
//! ping, and what a server message is ([`Msg`]). Classification is a byte scan (no JSON
//! parse), as cheap as pygw's own `"type"` scan.
//!
//! Ground truth for the peers (the sources `make bench-peers` installs):
//! - Engine.IO v4 (`engine.io` 6.x): the server's first packet is `0{"sid":..,"pingInterval":..}`
//!   (OPEN); it sends `2` (PING) every `pingInterval`, which the client answers with `3` (PONG);
//!   every Socket.IO packet rides in a MESSAGE, `4`. Socket.IO (`socket.io-parser`): `40{auth}`
//!   CONNECT (the server answers `40{"sid":..}` or `44{"message":..}` CONNECT_ERROR),
//!   `42[id]["event",args..]` EVENT, `43<id>[args..]` ACK, `41` DISCONNECT.
//! - Centrifuge JSON (`github.com/centrifugal/protocol` 0.3): commands
//!   `{"id":N,"method":M,"params":{..}}` (M: 0 connect — omitted —, 1 subscribe, 3 publish,
//!   7 ping); replies `{"id":N,"result":{..}}` or `{"id":N,"error":{..}}`; pushes carry no id:
//!   a publication is `{"result":{"channel":C,"data":{"data":D,..}}}` (other pushes start with
//!   `"type"`). Every message ends with `\n` and one WebSocket frame may carry several (the
//!   server's writer joins up to 4 queued messages). Keep-alive is WebSocket PING/PONG.

use crate::scan;
use crate::util::{json_escape, push_u64};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Pygw,
    SocketIo,
    Centrifuge,
}

/// One server message, as the modes need to see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Msg<'a> {
    /// Engine.IO OPEN (`0{...}`): the client may now send its CONNECT.
    Open,
    /// Authenticated: pygw's `connected` welcome, Socket.IO's `40{...}`.
    Connected,
    /// A publication delivered to a subscriber (the message carries the published data).
    Delivery,
    /// A reply: pygw's frame of the expected type, a Socket.IO ACK, a Centrifuge reply; with
    /// its id when it carries one.
    Reply(Option<u64>),
    /// A refusal (pygw `error`, Socket.IO CONNECT_ERROR/DISCONNECT or an ACK with `error`,
    /// Centrifuge `error` reply), with the id it answers when known, and the message itself.
    Error(Option<u64>, &'a [u8]),
    /// An application-level keep-alive ping to answer with [`Proto::pong`].
    Ping,
    Other,
}

/// Id of the subscribe command of a subscriber (pygw, Socket.IO ack id, Centrifuge id).
pub const SUBSCRIBE_ID: u64 = 2;
/// Centrifuge: id of the connect command.
pub const CONNECT_ID: u64 = 1;
/// Publish `seq` (0-based) is sent with id `seq + PUBLISH_ID_BASE` (above the ids used while
/// connecting and subscribing).
pub const PUBLISH_ID_BASE: u64 = 3;

/// The messages of one WebSocket TEXT frame (Centrifuge: `\n`-separated; others: the frame).
pub struct Messages<'a> {
    rest: &'a [u8],
    split: bool,
}

impl<'a> Iterator for Messages<'a> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        if !self.split {
            if self.rest.is_empty() {
                return None;
            }
            return Some(std::mem::take(&mut self.rest));
        }
        while !self.rest.is_empty() {
            let (line, rest) = match self.rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&self.rest[..i], &self.rest[i + 1..]),
                None => (self.rest, &self.rest[self.rest.len()..]),
            };
            self.rest = rest;
            if !line.is_empty() {
                return Some(line);
            }
        }
        None
    }
}

/// Digits at the start of `s` as a number, and how many there were.
#[inline]
fn leading_u64(s: &[u8]) -> (Option<u64>, usize) {
    match scan::parse_u64_at(s, 0) {
        Some((v, end)) => (Some(v), end),
        None => (None, 0),
    }
}

const SIO_DELIVERY: &[u8] = br#"["message","#;

impl Proto {
    pub fn from_name(s: &str) -> Option<Proto> {
        match s {
            "pygw" => Some(Proto::Pygw),
            "socketio" => Some(Proto::SocketIo),
            "centrifuge" => Some(Proto::Centrifuge),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Proto::Pygw => "pygw",
            Proto::SocketIo => "socketio",
            Proto::Centrifuge => "centrifuge",
        }
    }

    /// The request `ws-rtt` sends by default (`{id}`: the per-connection counter): pygw's
    /// `ping` command, a Socket.IO `ping` event with an ack, Centrifuge's PING command.
    pub fn default_rtt_frame(self) -> &'static str {
        match self {
            Proto::Pygw => r#"{"type":"ping","id":{id}}"#,
            Proto::SocketIo => r#"42{id}["ping"]"#,
            Proto::Centrifuge => r#"{"id":{id},"method":7}"#,
        }
    }

    /// The messages in one TEXT frame.
    #[inline]
    pub fn messages(self, frame: &[u8]) -> Messages<'_> {
        Messages {
            rest: frame,
            split: self == Proto::Centrifuge,
        }
    }

    /// What `msg` is. `reply_type` is pygw's reply `"type"` expected in this context
    /// (`pong`, `published`, `subscribed`, ...); the peers' replies are recognised by shape.
    #[inline]
    pub fn classify<'a>(self, msg: &'a [u8], reply_type: &[u8]) -> Msg<'a> {
        match self {
            Proto::Pygw => {
                let (t, _) = scan::msg_type(msg);
                if t == b"message" {
                    Msg::Delivery
                } else if t == reply_type {
                    Msg::Reply(scan::u64_field(msg, b"\"id\"", 0).map(|(id, _)| id))
                } else if t == b"ping" {
                    Msg::Ping
                } else if t == b"error" {
                    Msg::Error(scan::u64_field(msg, b"\"id\"", 0).map(|(id, _)| id), msg)
                } else if t == b"connected" {
                    Msg::Connected
                } else {
                    Msg::Other
                }
            }
            Proto::SocketIo => classify_socketio(msg),
            Proto::Centrifuge => classify_centrifuge(msg),
        }
    }

    /// The TEXT frame answering a [`Msg::Ping`].
    pub fn pong(self) -> &'static [u8] {
        match self {
            Proto::Pygw => br#"{"type":"pong"}"#,
            Proto::SocketIo => b"3",
            // Centrifuge keeps connections alive with WebSocket PING frames only.
            Proto::Centrifuge => b"",
        }
    }

    /// The frame that authenticates with `token` (Socket.IO: after OPEN; Centrifuge: right
    /// after the upgrade); pygw authenticates in the URL and has none.
    pub fn connect_frame(self, token: &str, out: &mut Vec<u8>) {
        match self {
            Proto::Pygw => {}
            Proto::SocketIo => {
                out.extend_from_slice(br#"40{"token":""#);
                out.extend_from_slice(json_escape(token).as_bytes());
                out.extend_from_slice(br#""}"#);
            }
            Proto::Centrifuge => {
                out.extend_from_slice(br#"{"id":"#);
                push_u64(out, CONNECT_ID);
                out.extend_from_slice(br#","params":{"token":""#);
                out.extend_from_slice(json_escape(token).as_bytes());
                out.extend_from_slice(br#""}}"#);
            }
        }
    }

    /// Subscribe to the channel (`channel_json`: already JSON-escaped), id [`SUBSCRIBE_ID`].
    pub fn subscribe_frame(self, channel_json: &str, out: &mut Vec<u8>) {
        let id = SUBSCRIBE_ID;
        match self {
            Proto::Pygw => {
                out.extend_from_slice(br#"{"type":"subscribe","channel":""#);
                out.extend_from_slice(channel_json.as_bytes());
                out.extend_from_slice(br#"","id":"#);
                push_u64(out, id);
                out.push(b'}');
            }
            Proto::SocketIo => {
                out.extend_from_slice(b"42");
                push_u64(out, id);
                out.extend_from_slice(br#"["subscribe",""#);
                out.extend_from_slice(channel_json.as_bytes());
                out.extend_from_slice(br#""]"#);
            }
            Proto::Centrifuge => {
                out.extend_from_slice(br#"{"id":"#);
                push_u64(out, id);
                out.extend_from_slice(br#","method":1,"params":{"channel":""#);
                out.extend_from_slice(channel_json.as_bytes());
                out.extend_from_slice(br#""}}"#);
            }
        }
    }

    /// pygw's reply type to a subscribe.
    pub const SUBSCRIBED: &'static [u8] = b"subscribed";
    /// pygw's reply type to a publish.
    pub const PUBLISHED: &'static [u8] = b"published";

    /// A publish of `data` (a JSON value written by `push_data`) with `id`: the text before
    /// and after the data, so that the data can be written in place.
    pub fn publish_frame(
        self,
        channel_json: &str,
        id: u64,
        out: &mut Vec<u8>,
        data: impl FnOnce(&mut Vec<u8>),
    ) {
        match self {
            Proto::Pygw => {
                out.extend_from_slice(br#"{"type":"publish","channel":""#);
                out.extend_from_slice(channel_json.as_bytes());
                out.extend_from_slice(br#"","data":"#);
                data(out);
                out.extend_from_slice(br#","id":"#);
                push_u64(out, id);
                out.push(b'}');
            }
            Proto::SocketIo => {
                out.extend_from_slice(b"42");
                push_u64(out, id);
                out.extend_from_slice(br#"["publish",{"channel":""#);
                out.extend_from_slice(channel_json.as_bytes());
                out.extend_from_slice(br#"","data":"#);
                data(out);
                out.extend_from_slice(b"}]");
            }
            Proto::Centrifuge => {
                out.extend_from_slice(br#"{"id":"#);
                push_u64(out, id);
                out.extend_from_slice(br#","method":3,"params":{"channel":""#);
                out.extend_from_slice(channel_json.as_bytes());
                out.extend_from_slice(br#"","data":"#);
                data(out);
                out.extend_from_slice(b"}}");
            }
        }
    }
}

fn classify_socketio(msg: &[u8]) -> Msg<'_> {
    match msg {
        b"2" => return Msg::Ping,
        b"1" => return Msg::Error(None, msg), // Engine.IO CLOSE
        _ => {}
    }
    if msg.first() == Some(&b'0') {
        return Msg::Open;
    }
    if msg.len() < 2 || msg[0] != b'4' {
        return Msg::Other; // NOOP, PONG, ...
    }
    let body = &msg[2..];
    match msg[1] {
        b'2' => {
            let (_, n) = leading_u64(body);
            if body[n..].starts_with(SIO_DELIVERY) {
                Msg::Delivery
            } else {
                Msg::Other
            }
        }
        b'3' => {
            let (id, n) = leading_u64(body);
            if scan::value_start(&body[n..], b"\"error\"", 0).is_some() {
                Msg::Error(id, msg)
            } else {
                Msg::Reply(id)
            }
        }
        b'0' => Msg::Connected,
        b'4' | b'1' => Msg::Error(None, msg), // CONNECT_ERROR, DISCONNECT
        _ => Msg::Other,
    }
}

fn classify_centrifuge(msg: &[u8]) -> Msg<'_> {
    if let Some(rest) = msg.strip_prefix(br#"{"id":"#) {
        let (id, n) = leading_u64(rest);
        if rest[n..].starts_with(br#","error":"#) {
            Msg::Error(id, msg)
        } else {
            Msg::Reply(id)
        }
    } else if msg.starts_with(br#"{"result":{"channel":"#) {
        Msg::Delivery
    } else {
        Msg::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(p: Proto, frame: &[u8]) -> Vec<&[u8]> {
        p.messages(frame).collect()
    }

    #[test]
    fn names_round_trip() {
        for p in [Proto::Pygw, Proto::SocketIo, Proto::Centrifuge] {
            assert_eq!(Proto::from_name(p.name()), Some(p));
        }
        assert_eq!(Proto::from_name("stomp"), None);
    }

    #[test]
    fn centrifuge_frames_split_on_newlines() {
        let f = b"{\"id\":3}\n{\"result\":{\"channel\":\"c\",\"data\":{\"data\":{\"s\":1}}}}\n";
        assert_eq!(
            all(Proto::Centrifuge, f),
            vec![
                &b"{\"id\":3}"[..],
                &b"{\"result\":{\"channel\":\"c\",\"data\":{\"data\":{\"s\":1}}}}"[..]
            ]
        );
        assert_eq!(
            all(Proto::Centrifuge, b"a\n\nb"),
            vec![&b"a"[..], &b"b"[..]]
        );
        assert!(all(Proto::Centrifuge, b"\n").is_empty());
        // other protocols: one message per frame, newlines included
        assert_eq!(all(Proto::Pygw, b"a\nb"), vec![&b"a\nb"[..]]);
        assert!(all(Proto::SocketIo, b"").is_empty());
    }

    #[test]
    fn centrifuge_classification() {
        let c = Proto::Centrifuge;
        assert_eq!(
            c.classify(
                br#"{"id":1,"result":{"client":"x","version":"0.15.0"}}"#,
                b""
            ),
            Msg::Reply(Some(1))
        );
        assert_eq!(c.classify(br#"{"id":17}"#, b""), Msg::Reply(Some(17)));
        let err = br#"{"id":4,"error":{"code":103,"message":"permission denied"}}"#;
        assert_eq!(c.classify(err, b""), Msg::Error(Some(4), &err[..]));
        let publication =
            br#"{"result":{"channel":"loadgen","data":{"data":{"t":5,"s":6,"p":"x"}}}}"#;
        assert_eq!(c.classify(publication, b""), Msg::Delivery);
        assert_eq!(
            c.classify(br#"{"result":{"type":1,"channel":"c","data":{}}}"#, b""),
            Msg::Other
        );
        assert_eq!(c.pong(), b"");
    }

    #[test]
    fn socketio_classification() {
        let s = Proto::SocketIo;
        let open = br#"0{"sid":"a","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
        assert_eq!(s.classify(open, b""), Msg::Open);
        assert_eq!(s.classify(br#"40{"sid":"b"}"#, b""), Msg::Connected);
        let refused = br#"44{"message":"Invalid token"}"#;
        assert_eq!(s.classify(refused, b""), Msg::Error(None, &refused[..]));
        assert_eq!(s.classify(b"2", b""), Msg::Ping);
        assert_eq!(s.pong(), b"3");
        assert_eq!(s.classify(b"1", b""), Msg::Error(None, &b"1"[..]));
        assert_eq!(s.classify(b"41", b""), Msg::Error(None, &b"41"[..]));
        assert_eq!(
            s.classify(
                br#"42["message",{"channel":"c","data":{"t":1,"s":2}}]"#,
                b""
            ),
            Msg::Delivery
        );
        assert_eq!(s.classify(br#"42["other",{}]"#, b""), Msg::Other);
        assert_eq!(
            s.classify(br#"4312[{"channel":"c"}]"#, b""),
            Msg::Reply(Some(12))
        );
        assert_eq!(s.classify(br#"43[]"#, b""), Msg::Reply(None));
        let bad = br#"437[{"error":"channel required"}]"#;
        assert_eq!(s.classify(bad, b""), Msg::Error(Some(7), &bad[..]));
        assert_eq!(s.classify(b"3", b""), Msg::Other);
        assert_eq!(s.classify(b"", b""), Msg::Other);
    }

    #[test]
    fn pygw_classification() {
        let p = Proto::Pygw;
        assert_eq!(
            p.classify(br#"{"type":"pong","id":5,"timestamp":1}"#, b"pong"),
            Msg::Reply(Some(5))
        );
        assert_eq!(
            p.classify(br#"{"type":"published","id":9}"#, b"pong"),
            Msg::Other
        );
        assert_eq!(
            p.classify(br#"{"type":"message","channel":"c","data":{}}"#, b"pong"),
            Msg::Delivery
        );
        assert_eq!(p.classify(br#"{"type":"ping"}"#, b"pong"), Msg::Ping);
        assert_eq!(
            p.classify(br#"{"type":"connected","user_id":"u"}"#, b"x"),
            Msg::Connected
        );
        let e = br#"{"type":"error","code":429,"id":3}"#;
        assert_eq!(p.classify(e, b"pong"), Msg::Error(Some(3), &e[..]));
        assert_eq!(p.pong(), br#"{"type":"pong"}"#);
    }

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut v = Vec::new();
        f(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn client_frames() {
        let tok = "a\"b";
        assert_eq!(text(|o| Proto::Pygw.connect_frame(tok, o)), "");
        assert_eq!(
            text(|o| Proto::SocketIo.connect_frame(tok, o)),
            r#"40{"token":"a\"b"}"#
        );
        assert_eq!(
            text(|o| Proto::Centrifuge.connect_frame(tok, o)),
            r#"{"id":1,"params":{"token":"a\"b"}}"#
        );
        assert_eq!(
            text(|o| Proto::Pygw.subscribe_frame("ch", o)),
            r#"{"type":"subscribe","channel":"ch","id":2}"#
        );
        assert_eq!(
            text(|o| Proto::SocketIo.subscribe_frame("ch", o)),
            r#"422["subscribe","ch"]"#
        );
        assert_eq!(
            text(|o| Proto::Centrifuge.subscribe_frame("ch", o)),
            r#"{"id":2,"method":1,"params":{"channel":"ch"}}"#
        );
        let data = |o: &mut Vec<u8>| o.extend_from_slice(br#"{"s":1}"#);
        assert_eq!(
            text(|o| Proto::Pygw.publish_frame("ch", 7, o, data)),
            r#"{"type":"publish","channel":"ch","data":{"s":1},"id":7}"#
        );
        assert_eq!(
            text(|o| Proto::SocketIo.publish_frame("ch", 7, o, data)),
            r#"427["publish",{"channel":"ch","data":{"s":1}}]"#
        );
        assert_eq!(
            text(|o| Proto::Centrifuge.publish_frame("ch", 7, o, data)),
            r#"{"id":7,"method":3,"params":{"channel":"ch","data":{"s":1}}}"#
        );
        // every generated frame is JSON where the protocol is JSON
        for p in [Proto::Pygw, Proto::Centrifuge] {
            let f = text(|o| p.publish_frame("ch", 7, o, data));
            serde_json::from_str::<serde_json::Value>(&f).unwrap();
        }
        let f = text(|o| Proto::SocketIo.publish_frame("ch", 7, o, data));
        serde_json::from_str::<serde_json::Value>(&f[3..]).unwrap();
    }

    #[test]
    fn rtt_frames_are_recognised_by_their_replies() {
        assert!(Proto::SocketIo.default_rtt_frame().contains("{id}"));
        assert!(Proto::Centrifuge.default_rtt_frame().contains("{id}"));
        assert!(Proto::Pygw.default_rtt_frame().contains("{id}"));
    }
}
