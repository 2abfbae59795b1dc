//! Per-channel history ring buffers (the memory backend's channel streams).
//!
//! A stream numbers its publications 1, 2, 3, ... and keeps the newest
//! `size` of them (younger than `ttl`) as ready-to-send `message` frames.
//! Its random epoch identifies the numbering: a client that recovers with
//! another epoch cannot trust its offset. Streams are never dropped by
//! [`Buffers::prune`], so an epoch stays stable for the process lifetime
//! unless the stream is explicitly removed.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::ops::Range;

use ring::rand::{SecureRandom, SystemRandom};

use crate::codec;

/// One retained publication.
#[derive(Debug)]
struct Publication {
    offset: u64,
    published_at: f64,
    /// The full `message` frame sent to subscribers.
    envelope: Box<[u8]>,
    /// Where the publication's data JSON sits in `envelope`.
    data: Range<usize>,
}

#[derive(Debug)]
struct Stream {
    epoch: String,
    top: u64,
    /// Contiguous offsets, oldest first, ending at `top` when non-empty.
    entries: VecDeque<Publication>,
    /// Seconds; 0 means entries never expire. Set by the latest publish.
    ttl: f64,
}

impl Stream {
    fn new() -> Stream {
        Stream {
            epoch: new_epoch(),
            top: 0,
            entries: VecDeque::new(),
            ttl: 0.0,
        }
    }

    /// Drops entries older than the stream's ttl; returns how many.
    fn expire(&mut self, now: f64) -> usize {
        if self.ttl <= 0.0 {
            return 0;
        }
        let before = self.entries.len();
        while self
            .entries
            .front()
            .is_some_and(|p| p.published_at + self.ttl <= now)
        {
            self.entries.pop_front();
        }
        before - self.entries.len()
    }

    /// Retained entries with an offset greater than `offset`, oldest first.
    fn after(&self, offset: u64) -> impl Iterator<Item = &Publication> {
        let skip = self.entries.front().map_or(0, |first| {
            usize::try_from(offset.saturating_sub(first.offset - 1)).unwrap_or(usize::MAX)
        });
        self.entries.iter().skip(skip)
    }
}

/// 16 random hex digits.
fn new_epoch() -> String {
    let mut bytes = [0u8; 8];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system random generator failed");
    format!("{:016x}", u64::from_ne_bytes(bytes))
}

/// The result of [`Buffers::recover`].
#[derive(Debug, PartialEq, Eq)]
pub struct Recovery<'a> {
    /// Envelopes of the retained publications after the client's offset.
    pub publications: Vec<&'a [u8]>,
    /// Whether the client missed nothing (same epoch, no gap).
    pub recovered: bool,
    pub epoch: &'a str,
    pub top: u64,
}

/// History streams by channel name.
#[derive(Debug, Default)]
pub struct Buffers {
    streams: HashMap<Box<str>, Stream>,
}

impl Buffers {
    pub fn new() -> Buffers {
        Buffers::default()
    }

    fn stream(&mut self, channel: &str) -> &mut Stream {
        if !self.streams.contains_key(channel) {
            self.streams.insert(channel.into(), Stream::new());
        }
        self.streams.get_mut(channel).expect("inserted above")
    }

    /// Appends a publication; returns `(offset, epoch, envelope)`.
    /// `size` 0 retains nothing (offsets still advance); `ttl` 0 never expires.
    pub fn publish(
        &mut self,
        channel: &str,
        data_json: &[u8],
        size: usize,
        ttl: f64,
        now: f64,
    ) -> (u64, &str, Cow<'_, [u8]>) {
        let stream = self.stream(channel);
        stream.top += 1;
        stream.ttl = ttl;
        stream.expire(now);
        let (envelope, data) =
            codec::encode_message_with_data_range(channel, data_json, Some(stream.top));
        if size == 0 {
            stream.entries.clear();
            return (stream.top, &stream.epoch, Cow::Owned(envelope));
        }
        while stream.entries.len() >= size {
            stream.entries.pop_front();
        }
        stream.entries.push_back(Publication {
            offset: stream.top,
            published_at: now,
            envelope: envelope.into_boxed_slice(),
            data,
        });
        let latest = stream.entries.back().expect("just pushed");
        (stream.top, &stream.epoch, Cow::Borrowed(&latest.envelope))
    }

    /// Retained publications after `offset` and whether that is everything
    /// the client missed. An unknown channel gets a stream (top 0) so its
    /// epoch stays stable from now on.
    pub fn recover(&mut self, channel: &str, epoch: &str, offset: u64, now: f64) -> Recovery<'_> {
        let stream = self.stream(channel);
        stream.expire(now);
        let (publications, recovered) = if epoch != stream.epoch || offset > stream.top {
            (Vec::new(), false)
        } else {
            let missed: Vec<&[u8]> = stream.after(offset).map(|p| &p.envelope[..]).collect();
            let complete = missed.len() as u64 == stream.top - offset;
            (missed, complete)
        };
        Recovery {
            publications,
            recovered,
            epoch: &stream.epoch,
            top: stream.top,
        }
    }

    /// `(epoch, top offset)`, creating the stream if needed.
    pub fn top(&mut self, channel: &str) -> (&str, u64) {
        let stream = self.stream(channel);
        (&stream.epoch, stream.top)
    }

    /// Up to `limit` retained `(offset, data_json)` after `since`, oldest
    /// first. Does not create a stream.
    pub fn history(
        &mut self,
        channel: &str,
        since: u64,
        limit: usize,
        now: f64,
    ) -> Vec<(u64, &[u8])> {
        let Some(stream) = self.streams.get_mut(channel) else {
            return Vec::new();
        };
        stream.expire(now);
        stream
            .after(since)
            .take(limit)
            .map(|p| (p.offset, &p.envelope[p.data.clone()]))
            .collect()
    }

    pub fn remove(&mut self, channel: &str) {
        self.streams.remove(channel);
    }

    /// Number of streams.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Drops expired publications everywhere; returns how many. Streams are
    /// kept (dropping one would change its epoch and fail recoveries).
    pub fn prune(&mut self, now: f64) -> usize {
        self.streams.values_mut().map(|s| s.expire(now)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(buffers: &mut Buffers, channel: &str, n: u64, size: usize, ttl: f64, now: f64) {
        let data = format!("{{\"n\":{n}}}");
        let (offset, _, envelope) = buffers.publish(channel, data.as_bytes(), size, ttl, now);
        assert_eq!(offset, n);
        assert_eq!(
            envelope.as_ref(),
            codec::encode_message(channel, data.as_bytes(), Some(n))
        );
    }

    fn offsets(buffers: &mut Buffers, channel: &str, since: u64) -> Vec<u64> {
        buffers
            .history(channel, since, 100, 0.0)
            .into_iter()
            .map(|(offset, _)| offset)
            .collect()
    }

    #[test]
    fn offsets_count_up_and_size_bounds_retention() {
        let mut b = Buffers::new();
        for n in 1..=5 {
            publish(&mut b, "c", n, 3, 0.0, 0.0);
        }
        assert_eq!(offsets(&mut b, "c", 0), [3, 4, 5]);
        assert_eq!(offsets(&mut b, "c", 3), [4, 5]);
        assert_eq!(offsets(&mut b, "c", 9), Vec::<u64>::new());
        let history = b.history("c", 0, 2, 0.0);
        assert_eq!(history, [(3, &b"{\"n\":3}"[..]), (4, &b"{\"n\":4}"[..])]);
        assert_eq!(b.top("c").1, 5);
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn size_zero_counts_offsets_but_keeps_nothing() {
        let mut b = Buffers::new();
        publish(&mut b, "c", 1, 2, 0.0, 0.0);
        publish(&mut b, "c", 2, 0, 0.0, 0.0);
        assert!(b.history("c", 0, 10, 0.0).is_empty());
        let (epoch, top) = b.top("c");
        let epoch = epoch.to_owned();
        assert_eq!(top, 2);
        let r = b.recover("c", &epoch, 1, 0.0);
        assert!(!r.recovered);
        assert!(b.recover("c", &epoch, 2, 0.0).recovered);
    }

    #[test]
    fn ttl_expires_old_publications() {
        let mut b = Buffers::new();
        publish(&mut b, "c", 1, 10, 5.0, 100.0);
        publish(&mut b, "c", 2, 10, 5.0, 103.0);
        assert_eq!(b.history("c", 0, 10, 104.9).len(), 2);
        assert_eq!(b.history("c", 0, 10, 105.0).len(), 1);
        assert_eq!(b.prune(200.0), 1);
        assert_eq!(b.len(), 1, "streams survive pruning");
        assert_eq!(b.top("c").1, 2);
    }

    #[test]
    fn recovery() {
        let mut b = Buffers::new();
        for n in 1..=4 {
            publish(&mut b, "c", n, 3, 0.0, 0.0);
        }
        let epoch = b.top("c").0.to_owned();
        assert_eq!(epoch.len(), 16);
        assert!(epoch.bytes().all(|c| c.is_ascii_hexdigit()));

        let r = b.recover("c", &epoch, 1, 0.0);
        assert_eq!((r.publications.len(), r.recovered, r.top), (3, true, 4));
        assert!(r.publications[0].ends_with(b",\"offset\":2}"));
        let r = b.recover("c", &epoch, 0, 0.0);
        assert_eq!(
            (r.publications.len(), r.recovered),
            (3, false),
            "offset 1 is gone"
        );
        let r = b.recover("c", &epoch, 4, 0.0);
        assert_eq!((r.publications.len(), r.recovered), (0, true));
        let r = b.recover("c", &epoch, 5, 0.0);
        assert!(!r.recovered, "a client ahead of the stream");
        let r = b.recover("c", "other", 4, 0.0);
        assert_eq!(
            (r.publications.len(), r.recovered, r.epoch),
            (0, false, &epoch[..])
        );
    }

    #[test]
    fn unknown_channels_get_a_stable_epoch() {
        let mut b = Buffers::new();
        let r = b.recover("new", "whatever", 0, 0.0);
        assert_eq!((r.recovered, r.top), (false, 0));
        let epoch = r.epoch.to_owned();
        assert_eq!(b.top("new"), (&epoch[..], 0));
        assert!(b.recover("new", &epoch, 0, 0.0).recovered);
        publish(&mut b, "new", 1, 1, 0.0, 0.0);
        assert_eq!(b.top("new").0, epoch);
        b.remove("new");
        assert!(b.is_empty());
        assert_ne!(b.top("new").0, epoch, "a removed stream starts a new epoch");
        assert!(b.history("absent", 0, 10, 0.0).is_empty());
        assert_eq!(b.len(), 1, "history() does not create streams");
    }
}
