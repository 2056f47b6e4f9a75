//! The event record and its framed Cap'n Proto encoding (schema/events.capnp),
//! the format of the spool segments.
//!
//! A frame is checked: a 16-byte header (a marker word, the message's
//! length, the xxh3 of the message) and the capnp message (stream framing).
//! A byte changed on disk (a bit flip, a sector of stale or zeroed data
//! after a crash) is damage, never a different event: without the sum a
//! changed `spendMicros` would replay as a charge nobody made. Frames
//! written before the header existed (a bare capnp message, whose first
//! word, a segment count less one, is never the marker) still read.
//!
//! Decoding treats its input as untrusted: `ReaderOptions` bound traversal and
//! nesting, a frame larger than [`MAX_FRAME_BYTES`] is refused, and a frame
//! cut short is [`Decoded::Partial`] (read more), not an error.

use super::Kind;
use crate::schema::events_capnp::{event, EventKind};
use xxhash_rust::xxh3::xxh3_64;

/// Largest frame accepted from a spool file, header included.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// First word of a checked frame: as a capnp stream's first word it would
/// claim 2^32 segments, which no message has.
const CHECKED: u32 = u32::MAX;

/// Bytes of a checked frame's header: marker, message length, xxh3 (keeps
/// the message 8-byte aligned, as the flat-slice reader wants).
const HEADER: usize = 16;

/// One event, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Unique id (idempotency key).
    pub id: u128,
    /// What happened.
    pub kind: Kind,
    /// Microseconds since the Unix epoch.
    pub ts_micros: i64,
    /// Shard that produced it.
    pub shard: u16,
    /// Auction (bid request) id.
    pub auction_id: String,
    /// Impression id within the auction.
    pub imp_id: String,
    /// Campaign.
    pub campaign_id: u64,
    /// Creative.
    pub creative_id: String,
    /// Price in millionths of `currency`.
    pub price_micros: i64,
    /// ISO 4217 currency.
    pub currency: String,
    /// Spend charged to the campaign by this event, millionths of USD.
    pub spend_micros: i64,
    /// Our bid id (notices are de-duplicated by it).
    pub bid_id: String,
    /// Bids on a frequency-capped campaign: the (user, campaign) key the
    /// cap counted (0: none).
    pub freq_key: u64,
    /// With `freq_key`: the cap's window, seconds.
    pub freq_window: u32,
    /// Test traffic (OpenRTB `test = 1`, or a test notice): stored, never
    /// charged, left out of reports.
    pub test: bool,
}

/// Why a frame did not decode.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// Not a valid capnp message or not an Event.
    #[error("malformed event frame: {0}")]
    Malformed(#[from] capnp::Error),
    /// A field holds an unknown enum value.
    #[error("malformed event frame: unknown event kind {0}")]
    UnknownKind(u16),
    /// Frame over [`MAX_FRAME_BYTES`].
    #[error("event frame of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// A checked frame whose message does not match its sum (or length).
    #[error("event frame does not match its checksum")]
    Checksum,
    /// A message with an empty first segment (zeroed bytes): no event.
    #[error("empty event frame (zeroed bytes?)")]
    Empty,
}

/// Result of decoding from the front of a byte slice.
#[derive(Debug)]
pub enum Decoded {
    /// An event and the bytes its frame used.
    Event(Event, usize),
    /// The frame is incomplete; read more.
    Partial,
}

fn kind_to_capnp(k: Kind) -> EventKind {
    match k {
        Kind::Bid => EventKind::Bid,
        Kind::Win => EventKind::Win,
        Kind::Bill => EventKind::Bill,
        Kind::Loss => EventKind::Loss,
        Kind::Impression => EventKind::Impression,
        Kind::Click => EventKind::Click,
        Kind::InvalidClick => EventKind::InvalidClick,
        Kind::Ivt => EventKind::Ivt,
    }
}

fn kind_from_capnp(k: EventKind) -> Kind {
    match k {
        EventKind::Bid => Kind::Bid,
        EventKind::Win => Kind::Win,
        EventKind::Bill => Kind::Bill,
        EventKind::Loss => Kind::Loss,
        EventKind::Impression => Kind::Impression,
        EventKind::Click => Kind::Click,
        EventKind::InvalidClick => Kind::InvalidClick,
        EventKind::Ivt => Kind::Ivt,
    }
}

/// The first segment of an encoded event's message, in 8-byte words.
const FIRST_SEGMENT_WORDS: u32 = 64;

/// Appends `ev` as one checked frame.
pub fn encode(ev: &Event, out: &mut Vec<u8>) {
    let at = out.len();
    out.extend_from_slice(&[0; HEADER]);
    encode_message(ev, out);
    let len = (out.len() - at - HEADER) as u32;
    let sum = xxh3_64(&out[at + HEADER..]);
    out[at..at + 4].copy_from_slice(&CHECKED.to_le_bytes());
    out[at + 4..at + 8].copy_from_slice(&len.to_le_bytes());
    out[at + 8..at + HEADER].copy_from_slice(&sum.to_le_bytes());
}

/// Appends `ev` as a bare capnp message (the frame before checked frames).
fn encode_message(ev: &Event, out: &mut Vec<u8>) {
    // The default first segment is 8 KB, allocated zeroed for every event;
    // an event takes about 170 bytes (longer ids get a second segment).
    let mut msg = capnp::message::Builder::new(
        capnp::message::HeapAllocator::new().first_segment_words(FIRST_SEGMENT_WORDS),
    );
    let mut b = msg.init_root::<event::Builder>();
    b.set_id_hi((ev.id >> 64) as u64);
    b.set_id_lo(ev.id as u64);
    b.set_kind(kind_to_capnp(ev.kind));
    b.set_ts_micros(ev.ts_micros);
    b.set_shard(ev.shard);
    b.set_auction_id(ev.auction_id.as_str());
    b.set_imp_id(ev.imp_id.as_str());
    b.set_campaign_id(ev.campaign_id);
    b.set_creative_id(ev.creative_id.as_str());
    b.set_price_micros(ev.price_micros);
    b.set_currency(ev.currency.as_str());
    b.set_spend_micros(ev.spend_micros);
    b.set_bid_id(ev.bid_id.as_str());
    b.set_frequency_key(ev.freq_key);
    b.set_frequency_window(ev.freq_window);
    b.set_test(ev.test);
    // Writing into a Vec cannot fail.
    let _ = capnp::serialize::write_message(out, &msg);
}

/// A bid that counted a frequency cap, as a start-up restores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CappedBid {
    /// The bid event's id (the same bid read from the spool and the
    /// database is counted once).
    pub id: u128,
    /// Shard that counted it.
    pub shard: u16,
    /// Campaign.
    pub campaign: u64,
    /// The (user, campaign) key.
    pub key: u64,
    /// Unix seconds.
    pub secs: u64,
}

/// What a start-up scan needs of a notice event: its kind, our bid id,
/// when it happened and what it charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoticeRef<'a> {
    /// Kind (`Bid` only for a bid that counted a frequency cap).
    pub kind: Kind,
    /// Our bid id.
    pub bid_id: &'a str,
    /// Microseconds since the Unix epoch.
    pub ts_micros: i64,
    /// Spend charged, micro-USD.
    pub spend_micros: i64,
    /// Campaign charged.
    pub campaign_id: u64,
    /// Shard that recorded it.
    pub shard: u16,
    /// The (user, campaign) key a bid counted against its frequency cap.
    pub freq_key: u64,
    /// The event's id.
    pub id: u128,
}

/// Calls `f` for every whole notice event, and every bid that counted a
/// frequency cap, at the front of `buf`, reading only the fields a start-up
/// scan needs (other bids, the bulk of a spool, are skipped after their kind
/// and key). Returns the bytes of a cut-short
/// tail, like [`super::read_spool`].
pub fn scan_notices(buf: &[u8], mut f: impl FnMut(NoticeRef<'_>)) -> Result<usize, EventError> {
    let opts = *capnp::message::ReaderOptions::new()
        .traversal_limit_in_words(Some(MAX_FRAME_BYTES / 8))
        .nesting_limit(8);
    let mut at = 0;
    while at < buf.len() {
        let Some((body, used)) = frame(&buf[at..])? else {
            break;
        };
        let mut slice = &buf[at + body..at + used];
        at += used;
        let msg = capnp::serialize::read_message_from_flat_slice(&mut slice, opts)?;
        let r = msg.get_root::<event::Reader>()?;
        let kind = kind_from_capnp(
            r.get_kind()
                .map_err(|capnp::NotInSchema(n)| EventError::UnknownKind(n))?,
        );
        let freq_key = r.get_frequency_key();
        if kind == Kind::Bid && freq_key == 0 {
            continue;
        }
        let bid = r.get_bid_id()?;
        let Ok(bid_id) = bid.to_str() else { continue };
        f(NoticeRef {
            kind,
            bid_id,
            ts_micros: r.get_ts_micros(),
            spend_micros: r.get_spend_micros(),
            campaign_id: r.get_campaign_id(),
            shard: r.get_shard(),
            freq_key,
            id: ((r.get_id_hi() as u128) << 64) | r.get_id_lo() as u128,
        });
    }
    Ok(buf.len() - at)
}

/// Decodes one framed event from the front of `buf`.
pub fn decode(buf: &[u8]) -> Result<Decoded, EventError> {
    let opts = *capnp::message::ReaderOptions::new()
        .traversal_limit_in_words(Some(MAX_FRAME_BYTES / 8))
        .nesting_limit(8);
    let (body, used) = match frame(buf)? {
        Some(f) => f,
        None => return Ok(Decoded::Partial),
    };
    let mut slice = &buf[body..used];
    let msg = capnp::serialize::read_message(&mut slice, opts)?;
    let r = msg.get_root::<event::Reader>()?;
    let kind = r
        .get_kind()
        .map_err(|capnp::NotInSchema(n)| EventError::UnknownKind(n))?;
    let text = |t: capnp::Result<capnp::text::Reader<'_>>| -> Result<String, EventError> {
        Ok(t?
            .to_string()
            .map_err(|e| capnp::Error::failed(e.to_string()))?)
    };
    Ok(Decoded::Event(
        Event {
            id: ((r.get_id_hi() as u128) << 64) | r.get_id_lo() as u128,
            kind: kind_from_capnp(kind),
            ts_micros: r.get_ts_micros(),
            shard: r.get_shard(),
            auction_id: text(r.get_auction_id())?,
            imp_id: text(r.get_imp_id())?,
            campaign_id: r.get_campaign_id(),
            creative_id: text(r.get_creative_id())?,
            price_micros: r.get_price_micros(),
            currency: text(r.get_currency())?,
            spend_micros: r.get_spend_micros(),
            bid_id: text(r.get_bid_id())?,
            freq_key: r.get_frequency_key(),
            freq_window: r.get_frequency_window(),
            test: r.get_test(),
        },
        used,
    ))
}

/// The little-endian `u32` at word `i` of `buf`, if `buf` holds it.
fn word(buf: &[u8], i: usize) -> Option<u32> {
    buf.get(i * 4..i * 4 + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// The frame at the front of `buf`: where its message starts and the bytes
/// the frame takes; `None` while it is incomplete. A checked frame's sum
/// is verified here.
fn frame(buf: &[u8]) -> Result<Option<(usize, usize)>, EventError> {
    let word = |i: usize| word(buf, i);
    if word(0) != Some(CHECKED) {
        return Ok(frame_len(buf)?.map(|n| (0, n)));
    }
    let (Some(len), Some(lo), Some(hi)) = (word(1), word(2), word(3)) else {
        return Ok(None);
    };
    let used = HEADER + len as usize;
    if used > MAX_FRAME_BYTES {
        return Err(EventError::TooLarge(used));
    }
    let Some(msg) = buf.get(HEADER..used) else {
        return Ok(None);
    };
    if xxh3_64(msg) != (u64::from(hi) << 32 | u64::from(lo)) {
        return Err(EventError::Checksum);
    }
    // The message fills the frame exactly.
    if frame_len(msg)? != Some(msg.len()) {
        return Err(EventError::Checksum);
    }
    Ok(Some((HEADER, used)))
}

/// Length of the bare capnp message at the front of `buf` from its segment
/// table (stream framing), `None` while the table or body is incomplete.
/// A first segment of no words (what a zeroed region reads as) is refused:
/// every event has a root.
fn frame_len(buf: &[u8]) -> Result<Option<usize>, EventError> {
    let word = |i: usize| word(buf, i);
    let Some(n) = word(0) else { return Ok(None) };
    let segments = n as usize + 1;
    // Table: one u32 count, one u32 per segment, padded to 8 bytes.
    let table = (4 + 4 * segments).div_ceil(8) * 8;
    if table > MAX_FRAME_BYTES {
        return Err(EventError::TooLarge(table));
    }
    let mut total = table;
    for i in 0..segments {
        let Some(words) = word(1 + i) else {
            return Ok(None);
        };
        if i == 0 && words == 0 {
            return Err(EventError::Empty);
        }
        total = total.saturating_add(words as usize * 8);
        if total > MAX_FRAME_BYTES {
            return Err(EventError::TooLarge(total));
        }
    }
    Ok(if buf.len() >= total {
        Some(total)
    } else {
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::events::win as sample;

    #[test]
    fn roundtrip_stream_of_frames() {
        let mut buf = Vec::new();
        for i in 0..3 {
            encode(&sample(i), &mut buf);
        }
        let mut at = 0;
        for i in 0..3 {
            match decode(&buf[at..]).unwrap() {
                Decoded::Event(ev, used) => {
                    assert_eq!(ev, sample(i));
                    at += used;
                }
                Decoded::Partial => panic!("frame {i} should be whole"),
            }
        }
        assert_eq!(at, buf.len());
    }

    #[test]
    fn an_event_longer_than_the_first_segment_roundtrips() {
        // Ids past 512 bytes (the first segment) make a second segment;
        // both readers take the frame whole.
        let mut ev = sample(9);
        ev.auction_id = "a".repeat(700);
        ev.bid_id = "b".repeat(300);
        let mut buf = Vec::new();
        encode(&ev, &mut buf);
        assert!(
            u32::from_le_bytes([
                buf[HEADER],
                buf[HEADER + 1],
                buf[HEADER + 2],
                buf[HEADER + 3]
            ]) >= 1,
            "one segment only"
        );
        match decode(&buf).unwrap() {
            Decoded::Event(got, used) => {
                assert_eq!(got, ev);
                assert_eq!(used, buf.len());
            }
            Decoded::Partial => panic!("whole frame read as partial"),
        }
        let mut seen = Vec::new();
        assert_eq!(
            scan_notices(&buf, |n| seen.push(n.bid_id.to_string())).unwrap(),
            0
        );
        assert_eq!(seen, [ev.bid_id.clone()]);
    }

    #[test]
    fn every_truncation_is_partial() {
        let mut buf = Vec::new();
        encode(&sample(1), &mut buf);
        for cut in 0..buf.len() {
            assert!(
                matches!(decode(&buf[..cut]), Ok(Decoded::Partial)),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_changed_byte_is_damage_never_another_event() {
        // Two frames: any byte of the first changed reads as an error (or,
        // in its length, as a frame still to come), never as an event.
        let mut buf = Vec::new();
        encode(&sample(1), &mut buf);
        let first = buf.len();
        encode(&sample(2), &mut buf);
        for i in 0..first {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = buf.clone();
                bad[i] ^= flip;
                match decode(&bad) {
                    Ok(Decoded::Event(ev, _)) => panic!("byte {i} ^ {flip:#x} read as {ev:?}"),
                    Ok(Decoded::Partial) | Err(_) => {}
                }
                assert!(
                    scan_notices(&bad, |_| {}).map_or(true, |tail| tail > 0),
                    "byte {i}"
                );
            }
        }
        // A region of zeros (stale blocks after a crash) is damage too.
        let mut zeroed = buf.clone();
        zeroed.extend_from_slice(&[0; 64]);
        let s = crate::events::salvage_spool(&zeroed);
        assert_eq!(s.events, [sample(1), sample(2)]);
        assert!(
            matches!(s.damage, Some((at, EventError::Empty)) if at == buf.len()),
            "{:?}",
            s.damage
        );
    }

    #[test]
    fn frames_written_before_the_checksum_still_read() {
        // A spool written by an older build: bare messages, then (after an
        // upgrade) checked frames in the same directory or segment.
        let mut buf = Vec::new();
        encode_message(&sample(1), &mut buf);
        encode(&sample(2), &mut buf);
        encode_message(&sample(3), &mut buf);
        let s = crate::events::salvage_spool(&buf);
        assert!(s.damage.is_none(), "{:?}", s.damage);
        assert_eq!(s.events, [sample(1), sample(2), sample(3)]);
        let mut bids = Vec::new();
        assert_eq!(
            scan_notices(&buf, |n| bids.push(n.bid_id.to_string())).unwrap(),
            0
        );
        assert_eq!(bids.len(), 3);
    }

    #[test]
    fn hostile_frames_are_refused() {
        // One segment claiming 2^28 words: refused from the table alone.
        let huge = [0u8, 0, 0, 0, 0, 0, 0, 16];
        assert!(matches!(decode(&huge), Err(EventError::TooLarge(_))));
        // A frame whose root pointer is garbage.
        let garbage = [
            0u8, 0, 0, 0, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ];
        assert!(decode(&garbage).is_err());
    }
}
