//! `bench-parse`: how fast the generator itself parses deliveries and encodes
//! requests, with no network involved (single thread).

use std::time::Instant;

use serde_json::json;

use crate::cli::Opts;
use crate::histogram::Histogram;
use crate::modes::fanout::{push_data, SeqTrack};
use crate::report::{self, emit, Table};
use crate::scan;
use crate::template::{Ctx, Template};
use crate::util::Rng;
use crate::ws::{Event, FrameReader, FrameWriter};

/// A server-side (unmasked) stream of `n` delivery frames.
pub fn delivery_stream(n: u64, payload_bytes: usize) -> Vec<u8> {
    let pad = vec![b'x'; payload_bytes];
    let mut w = FrameWriter::new(false, Rng::new(1));
    let mut msg = Vec::new();
    for s in 0..n {
        msg.clear();
        msg.extend_from_slice(br#"{"type":"message","channel":"loadgen","data":"#);
        push_data(&mut msg, 1_000_000_000 + s * 1000, s, payload_bytes, &pad);
        msg.extend_from_slice(br#","offset":"#);
        crate::util::push_u64(&mut msg, s + 1);
        msg.push(b'}');
        w.text(&msg);
    }
    w.buf
}

pub struct BenchResult {
    pub frames: u64,
    pub bytes: u64,
    pub secs: f64,
}

/// Feed `stream` `rounds` times in 64 KiB reads; parse (and optionally scan) every frame.
pub fn parse_stream(stream: &[u8], rounds: u64, scan_fields: bool) -> BenchResult {
    let mut rd = FrameReader::with_capacity(128 * 1024);
    let mut hist = Histogram::new();
    let mut frames = 0u64;
    let mut track = SeqTrack::new(1);
    let t0 = Instant::now();
    for _ in 0..rounds {
        track.last = -1;
        for chunk in stream.chunks(64 * 1024) {
            rd.feed(chunk);
            while let Some(ev) = rd.next_event().expect("valid stream") {
                if let Event::Text(p) = ev {
                    frames += 1;
                    if scan_fields {
                        let (t, _) = scan::msg_type(p);
                        if t == b"message" {
                            let (_, ts) = track.observe(p);
                            if let Some(ts) = ts {
                                hist.record(2_000_000_000u64.saturating_sub(ts));
                            }
                        }
                    }
                }
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    assert!(!scan_fields || track.unparsable == 0);
    std::hint::black_box(&hist);
    BenchResult {
        frames,
        bytes: stream.len() as u64 * rounds,
        secs,
    }
}

/// Render and mask `n` client request frames from the default ping template.
pub fn encode_requests(n: u64) -> BenchResult {
    let t = Template::parse(crate::cli::DEFAULT_FRAME).bind(
        &Ctx {
            token: "",
            sid: "",
            username: "",
            conn: 0,
        },
        false,
    );
    let mut w = FrameWriter::new(true, Rng::new(9));
    let mut scratch = Vec::new();
    let mut bytes = 0u64;
    let t0 = Instant::now();
    for id in 0..n {
        scratch.clear();
        t.render_id(id, &mut scratch);
        w.text(&scratch);
        if w.buf.len() > 60_000 {
            bytes += w.buf.len() as u64;
            std::hint::black_box(&w.buf);
            w.buf.clear();
        }
    }
    bytes += w.buf.len() as u64;
    BenchResult {
        frames: n,
        bytes,
        secs: t0.elapsed().as_secs_f64(),
    }
}

fn rate_json(r: &BenchResult) -> serde_json::Value {
    json!({
        "frames": r.frames,
        "secs": report::round3(r.secs),
        "frames_per_s": (r.frames as f64 / r.secs).round(),
        "ns_per_frame": report::round1(r.secs * 1e9 / r.frames as f64),
        "mb_per_s": report::round1(r.bytes as f64 / r.secs / 1e6),
    })
}

pub fn run(o: &Opts) -> Result<i32, String> {
    let chunk_frames = 10_000u64.min(o.frames);
    let rounds = o.frames.div_ceil(chunk_frames);
    let stream = delivery_stream(chunk_frames, o.payload_bytes);
    // warm up caches and branch predictors
    parse_stream(&stream, 2, true);
    let parse_only = parse_stream(&stream, rounds, false);
    let parse_scan = parse_stream(&stream, rounds, true);
    let encode = encode_requests(o.frames);
    let mut h = Histogram::new();
    let t0 = Instant::now();
    for i in 0..o.frames {
        h.record(i.wrapping_mul(2_654_435_761) % 50_000_000);
    }
    let hist = BenchResult {
        frames: o.frames,
        bytes: 0,
        secs: t0.elapsed().as_secs_f64(),
    };
    std::hint::black_box(h.percentile(99.0));
    let frame_len = stream.len() / chunk_frames as usize;
    let result = json!({
        "mode": "bench-parse",
        "delivery_frame_bytes": frame_len,
        "parse_only": rate_json(&parse_only),
        "parse_and_scan": rate_json(&parse_scan),
        "encode_masked_requests": rate_json(&encode),
        "histogram_record": rate_json(&hist),
    });
    let line = |r: &BenchResult| {
        format!(
            "{:.2} M frames/s ({:.1} ns/frame, {:.0} MB/s)",
            r.frames as f64 / r.secs / 1e6,
            r.secs * 1e9 / r.frames as f64,
            r.bytes as f64 / r.secs / 1e6
        )
    };
    let mut t = Table::default();
    t.row("delivery frame", format!("{frame_len} bytes"));
    t.row("parse only", line(&parse_only));
    t.row("parse + type/seq/t scan", line(&parse_scan));
    t.row("encode masked ping", line(&encode));
    t.row(
        "histogram record",
        format!("{:.1} ns/value", hist.secs * 1e9 / hist.frames as f64),
    );
    emit(o, result, &t).map_err(|e| e.to_string())?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_parses_fully() {
        let s = delivery_stream(500, 100);
        let r = parse_stream(&s, 3, true);
        assert_eq!(r.frames, 1500);
        let e = encode_requests(1000);
        assert_eq!(e.frames, 1000);
    }
}
