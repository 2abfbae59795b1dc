//! The client wire protocol: decoding client frames and encoding the
//! server's `message` frames.
//!
//! Raw members (`id`, `data`) are kept as slices of the input, so they can be
//! echoed or forwarded byte for byte without re-encoding. Before that, the
//! whole frame passes [`jsonguard`]: at most [`jsonguard::MAX_DEPTH`] levels
//! of nesting, 64-bit integers, finite numbers, paired surrogates; and an `id`
//! must be a scalar of at most [`MAX_ID_BYTES`] bytes, since it is echoed.

use std::borrow::Cow;
use std::ops::Range;

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::jsonguard::{self, Limits, Violation};

/// The longest `id` (its raw JSON text) a frame may carry.
pub const MAX_ID_BYTES: usize = 256;

const FRAME_LIMITS: Limits = Limits {
    max_bytes: usize::MAX, // the transport caps frames (PYGW_WS_MAX_MESSAGE_BYTES)
    max_depth: jsonguard::MAX_DEPTH,
};

const ID_LIMITS: Limits = Limits {
    max_bytes: MAX_ID_BYTES,
    max_depth: 0,
};

/// A decoded client frame; borrows from the input text.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub kind: Cow<'a, str>,
    pub id: Option<&'a str>,
    pub channel: Option<Cow<'a, str>>,
    pub key: Option<Cow<'a, str>>,
    pub data: Option<&'a str>,
    pub since: Option<Since<'a>>,
}

/// A recovery position: `"since": {"epoch": ..., "offset": ...}`.
#[derive(Debug, PartialEq, Eq, Deserialize)]
pub struct Since<'a> {
    #[serde(borrow)]
    pub epoch: Cow<'a, str>,
    pub offset: u64,
}

/// A refused frame, with the raw `id` when one could be read.
#[derive(Debug, PartialEq, Eq)]
pub struct FrameError<'a> {
    pub code: u16,
    pub message: Cow<'static, str>,
    pub id: Option<&'a str>,
}

impl<'a> FrameError<'a> {
    fn new(message: impl Into<Cow<'static, str>>, id: Option<&'a str>) -> Self {
        FrameError {
            code: 400,
            message: message.into(),
            id,
        }
    }
}

/// The members the protocol reads, as raw JSON text; `null` counts as
/// present (`Some("null")`).
#[derive(Default)]
struct Members<'a> {
    kind: Option<&'a str>,
    id: Option<&'a str>,
    channel: Option<&'a str>,
    key: Option<&'a str>,
    data: Option<&'a str>,
    since: Option<&'a str>,
    /// One of them was given twice.
    repeated: bool,
}

impl<'a> Members<'a> {
    /// A top-level member: `name` with its quotes, as in the input.
    fn add(&mut self, name: &str, value: &'a str) {
        let decoded: Cow<'_, str> = if name.contains('\\') {
            serde_json::from_str(name).unwrap_or_default()
        } else {
            Cow::Borrowed(&name[1..name.len() - 1])
        };
        let slot = match &*decoded {
            "type" => &mut self.kind,
            "id" => &mut self.id,
            "channel" => &mut self.channel,
            "key" => &mut self.key,
            "data" => &mut self.data,
            "since" => &mut self.since,
            _ => return,
        };
        if slot.replace(value).is_some() {
            self.repeated = true;
        }
    }
}

fn is_object(text: &str) -> bool {
    text.trim_start().starts_with('{')
}

/// A string, number, boolean or null of at most [`MAX_ID_BYTES`] bytes.
fn valid_id(id: &str) -> bool {
    jsonguard::check(id, ID_LIMITS).is_ok()
}

/// The frame's `id` wherever it is, if it can be read and echoed: for the
/// error reply to a frame the guard refused before reaching it.
fn echoable_id(input: &str) -> Option<&str> {
    #[derive(Deserialize)]
    struct IdOnly<'a> {
        #[serde(borrow, default, deserialize_with = "raw")]
        id: Option<&'a RawValue>,
    }
    fn raw<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
        <&RawValue>::deserialize(d).map(Some)
    }
    if !is_object(input) {
        return None;
    }
    let only: IdOnly<'_> = serde_json::from_str(input).ok()?;
    only.id.map(RawValue::get).filter(|id| valid_id(id))
}

/// Decodes a client frame in one pass of [`jsonguard`], which also finds the
/// members. Errors carry code 400 and one of the messages `Invalid JSON`,
/// `Missing message type`, `Invalid field: <name>` or the guard's (e.g.
/// `JSON nested deeper than 32 levels at byte 40`). Duplicate members make
/// the frame invalid JSON.
pub fn decode_frame<'a>(input: &'a str) -> Result<Frame<'a>, FrameError<'a>> {
    let mut raw: Members<'a> = Members::default();
    match jsonguard::check_members(input, FRAME_LIMITS, |name, value| raw.add(name, value)) {
        Ok(()) => {}
        Err(Violation::Invalid { .. }) => return Err(FrameError::new("Invalid JSON", None)),
        Err(refused) => {
            let id = match raw.id.filter(|id| valid_id(id)) {
                Some(id) => Some(id),
                None => echoable_id(input),
            };
            return Err(FrameError::new(refused.to_string(), id));
        }
    }
    if raw.repeated || !is_object(input) {
        return Err(FrameError::new("Invalid JSON", None));
    }
    let id = match raw.id {
        Some(id) if !valid_id(id) => return Err(FrameError::new("Invalid field: id", None)),
        id => id,
    };
    let string = |value: Option<&'a str>| -> Option<Result<Cow<'a, str>, ()>> {
        value.map(|v| serde_json::from_str::<Cow<'_, str>>(v).map_err(drop))
    };
    let kind = match string(raw.kind) {
        Some(Ok(kind)) if !kind.is_empty() => kind,
        _ => return Err(FrameError::new("Missing message type", id)),
    };
    let field = |name: &'static str, value| {
        string(value)
            .transpose()
            .map_err(|()| FrameError::new(format!("Invalid field: {name}"), id))
    };
    let channel = field("channel", raw.channel)?;
    let key = field("key", raw.key)?;
    let since = match raw.since {
        None => None,
        Some(v) if is_object(v) => {
            Some(serde_json::from_str(v).map_err(|_| FrameError::new("Invalid field: since", id))?)
        }
        Some(_) => return Err(FrameError::new("Invalid field: since", id)),
    };
    Ok(Frame {
        kind,
        id,
        channel,
        key,
        data: raw.data,
        since,
    })
}

/// `{"type":"message","channel":<channel>,"data":<data_json>[,"offset":<n>]}`,
/// with `data_json` embedded verbatim (the caller has validated it).
pub fn encode_message(channel: &str, data_json: &[u8], offset: Option<u64>) -> Vec<u8> {
    encode_message_with_data_range(channel, data_json, offset).0
}

/// [`encode_message`], also returning where `data_json` sits in the result.
pub fn encode_message_with_data_range(
    channel: &str,
    data_json: &[u8],
    offset: Option<u64>,
) -> (Vec<u8>, Range<usize>) {
    let mut out = Vec::with_capacity(48 + channel.len() + data_json.len());
    out.extend_from_slice(br#"{"type":"message","channel":"#);
    serde_json::to_writer(&mut out, channel).expect("writing to a Vec cannot fail");
    out.extend_from_slice(br#","data":"#);
    let start = out.len();
    out.extend_from_slice(data_json);
    let data = start..out.len();
    if let Some(offset) = offset {
        out.extend_from_slice(br#","offset":"#);
        out.extend_from_slice(offset.to_string().as_bytes());
    }
    out.push(b'}');
    (out, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(input: &str) -> (u16, String, Option<&str>) {
        let e = decode_frame(input).unwrap_err();
        (e.code, e.message.into_owned(), e.id)
    }

    #[test]
    fn decodes_all_fields_with_raw_slices() {
        let input = r#"{"type":"publish","id": 7 ,"channel":"chat:a\u0062","key":"k",
            "data": {"x": [1, 2.50, "é"]} ,"since":{"epoch":"e1","offset":42},"extra":null}"#;
        let frame = decode_frame(input).unwrap();
        assert_eq!(frame.kind, "publish");
        assert_eq!(frame.id, Some("7"));
        assert_eq!(frame.channel.as_deref(), Some("chat:ab"));
        assert_eq!(frame.key.as_deref(), Some("k"));
        assert_eq!(frame.data, Some(r#"{"x": [1, 2.50, "é"]}"#));
        assert_eq!(
            frame.since,
            Some(Since {
                epoch: "e1".into(),
                offset: 42
            })
        );
    }

    #[test]
    fn optional_fields_default_to_none_and_null_is_kept_raw() {
        let frame = decode_frame(r#"{"type":"ping","id":"a\"b","data":null}"#).unwrap();
        assert_eq!(frame.id, Some(r#""a\"b""#));
        assert_eq!(frame.data, Some("null"));
        assert_eq!((frame.channel, frame.key, frame.since), (None, None, None));
    }

    #[test]
    fn invalid_json_and_non_objects() {
        for input in [
            "",
            "{",
            "[1]",
            "\"x\"",
            "nul",
            r#"{"type":"a","type":"b"}"#,
            "{} x",
        ] {
            assert_eq!(err(input), (400, "Invalid JSON".into(), None), "{input:?}");
        }
    }

    #[test]
    fn missing_or_bad_type_echoes_id() {
        assert_eq!(
            err(r#"{"id":3}"#),
            (400, "Missing message type".into(), Some("3"))
        );
        for kind in ["\"\"", "1", "null", "[]"] {
            let input = format!(r#"{{"type":{kind},"id":"x"}}"#);
            assert_eq!(err(&input).1, "Missing message type");
            assert_eq!(err(&input).2, Some("\"x\""));
        }
    }

    #[test]
    fn invalid_fields_are_named() {
        let cases = [
            (r#"{"type":"s","id":1,"channel":5}"#, "channel"),
            (r#"{"type":"s","id":1,"channel":null}"#, "channel"),
            (r#"{"type":"s","id":1,"key":[]}"#, "key"),
            (r#"{"type":"s","id":1,"since":[]}"#, "since"),
            (r#"{"type":"s","id":1,"since":{"epoch":"e"}}"#, "since"),
            (
                r#"{"type":"s","id":1,"since":{"epoch":1,"offset":1}}"#,
                "since",
            ),
            (
                r#"{"type":"s","id":1,"since":{"epoch":"e","offset":-1}}"#,
                "since",
            ),
            (
                r#"{"type":"s","id":1,"since":{"epoch":"e","offset":1.5}}"#,
                "since",
            ),
        ];
        for (input, name) in cases {
            assert_eq!(
                err(input),
                (400, format!("Invalid field: {name}"), Some("1")),
                "{input}"
            );
        }
    }

    #[test]
    fn ids_are_bounded_scalars() {
        for id in ["1", "-2.5", "\"x\"", "true", "null"] {
            let input = format!(r#"{{"type":"ping","id":{id}}}"#);
            assert_eq!(decode_frame(&input).unwrap().id, Some(id));
        }
        let long = format!("\"{}\"", "x".repeat(MAX_ID_BYTES - 2));
        let input = format!(r#"{{"type":"ping","id":{long}}}"#);
        assert_eq!(decode_frame(&input).unwrap().id, Some(long.as_str()));
        let too_long = format!("\"{}\"", "x".repeat(MAX_ID_BYTES - 1));
        for id in ["{}", "[1]", "{\"a\":1}", too_long.as_str()] {
            let input = format!(r#"{{"type":"ping","id":{id}}}"#);
            assert_eq!(err(&input), (400, "Invalid field: id".into(), None), "{id}");
        }
    }

    #[test]
    fn guarded_frames_are_refused_with_the_reason() {
        let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
        let input = format!(r#"{{"type":"publish","id":7,"data":{deep}}}"#);
        assert_eq!(
            err(&input),
            (
                400,
                "JSON nested deeper than 32 levels at byte 63".into(),
                Some("7")
            )
        );
        // A very deep frame: refused early, and the id still found for the reply.
        let deep = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
        let input = format!(r#"{{"id":"d","type":"publish","data":{deep}}}"#);
        assert_eq!(err(&input).2, Some("\"d\""));
        let input = r#"{"type":"publish","id":"x","data":{"n":18446744073709551616}}"#;
        let (code, message, id) = err(input);
        assert_eq!((code, id), (400, Some("\"x\"")));
        assert!(
            message.starts_with("integer outside the 64-bit range"),
            "{message}"
        );
        // An id that is itself out of range is not echoed.
        let input = r#"{"type":"ping","id":18446744073709551616}"#;
        assert_eq!(err(input).2, None);
        let input = r#"{"type":"publish","id":1,"data":"\ud800"}"#;
        assert_eq!(
            err(input),
            (
                400,
                "unpaired UTF-16 surrogate escape at byte 33".into(),
                Some("1")
            )
        );
        // Syntax errors keep the protocol's message.
        assert_eq!(err("{\"type\":\"ping\",}").1, "Invalid JSON");
    }

    #[test]
    fn encodes_messages_compactly() {
        assert_eq!(
            encode_message("chat:1", br#"{"a": 1}"#, Some(9)),
            br#"{"type":"message","channel":"chat:1","data":{"a": 1},"offset":9}"#
        );
        assert_eq!(
            encode_message("a\"b\\", b"null", None),
            br#"{"type":"message","channel":"a\"b\\","data":null}"#
        );
        let (bytes, range) = encode_message_with_data_range("c", b"[1,2]", Some(1));
        assert_eq!(&bytes[range], b"[1,2]");
    }

    #[test]
    fn encoded_message_round_trips_through_the_decoder() {
        let bytes = encode_message("room:x", br#""hi""#, Some(3));
        let frame = decode_frame(std::str::from_utf8(&bytes).unwrap()).unwrap();
        assert_eq!(frame.kind, "message");
        assert_eq!(frame.channel.as_deref(), Some("room:x"));
        assert_eq!(frame.data, Some(r#""hi""#));
    }
}
