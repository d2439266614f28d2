//! Frames: a fixed 24-byte header, then one rkyv-archived message.
//!
//! ```text
//!  0        4        6        8        10       12                16                        24
//!  +--------+--------+--------+--------+--------+-----------------+-------------------------+
//!  | magic  |version | kind   | flags  |reserved| payload_len     | correlation             |
//!  | "FJOB" | u16 LE | u16 LE | u16 LE | 0u16   | u32 LE          | u64 LE                  |
//!  +--------+--------+--------+--------+--------+-----------------+-------------------------+
//!  | payload: `payload_len` bytes, the rkyv archive of the message struct named by `kind`  |
//!  | (root object at the end, positions relative to the payload's first byte)              |
//!  +---------------------------------------------------------------------------------------+
//!
//!  flags: bit 0 REQUEST  - the sender waits for a frame with RESPONSE and this correlation
//!         bit 1 RESPONSE - answers the REQUEST frame with this correlation
//!         other bits must be 0; REQUEST and RESPONSE never both.
//!  correlation: 0 on one-way frames; otherwise chosen by the requester, unique per connection.
//! ```
//!
//! The version covers both the message structs and rkyv's format, which the workspace pins
//! (`little_endian`, `pointer_width_32`, rkyv 0.8): a peer built with other rkyv features
//! must speak another version.
//!
//! Decoding is a two-state machine like tokio-util's `LengthDelimitedCodec`
//! (`Head` collecting the header, `Data` collecting the payload). Everything is checked when
//! the header is complete, *before* any payload memory is reserved: magic, version, kind,
//! flags, reserved bits, and `payload_len <= max_payload_len`. The payload is copied into a
//! 16-byte aligned [`AlignedVec`] that grows with the bytes actually received, so a peer that
//! announces 4 MiB and sends 10 bytes costs 10 bytes (plus a small first chunk), not 4 MiB.
//! A payload is read only through [`Frame::message`] / [`Frame::access`], which run rkyv
//! validation (bytecheck) of the archive for its kind first; nothing here ever calls
//! `access_unchecked`.

use rkyv::util::AlignedVec;

use crate::error::{EncodeError, FrameError};
use crate::message::{Message, MessageKind};

/// First four bytes of every frame.
pub const MAGIC: [u8; 4] = *b"FJOB";
/// The protocol version this build speaks (message structs + pinned rkyv format).
pub const PROTOCOL_VERSION: u16 = 6;
/// Header length, bytes.
pub const HEADER_LEN: usize = 24;
/// Default maximum payload length: 4 MiB.
pub const DEFAULT_MAX_PAYLOAD_LEN: u32 = 4 * 1024 * 1024;
/// First allocation for a payload; larger payloads grow as their bytes arrive.
const INITIAL_PAYLOAD_CAPACITY: usize = 64 * 1024;

/// Frame flags (see the module diagram).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u16);

impl Flags {
    /// A one-way frame.
    pub const NONE: Flags = Flags(0);
    /// The sender waits for a response with the same correlation.
    pub const REQUEST: Flags = Flags(1);
    /// This frame answers the request with the same correlation.
    pub const RESPONSE: Flags = Flags(2);
    const KNOWN: u16 = 0b11;

    /// Parses wire flags; unknown bits or REQUEST|RESPONSE are an error.
    pub fn from_bits(bits: u16) -> Result<Flags, FrameError> {
        if bits & !Self::KNOWN != 0 || bits == Self::KNOWN {
            return Err(FrameError::BadFlags { flags: bits });
        }
        Ok(Flags(bits))
    }

    /// The wire bits.
    pub fn bits(self) -> u16 {
        self.0
    }

    /// Whether the REQUEST bit is set.
    pub fn is_request(self) -> bool {
        self.0 & Self::REQUEST.0 != 0
    }

    /// Whether the RESPONSE bit is set.
    pub fn is_response(self) -> bool {
        self.0 & Self::RESPONSE.0 != 0
    }
}

/// A decoded and checked frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// What the payload archives.
    pub kind: MessageKind,
    /// Request/response flags.
    pub flags: Flags,
    /// Payload length, bytes (at most the decoder's maximum).
    pub payload_len: u32,
    /// Request/response correlation; 0 on one-way frames.
    pub correlation: u64,
}

impl FrameHeader {
    /// Writes the 24 header bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        write_header(
            &mut out,
            self.kind.code(),
            self.flags.bits(),
            self.payload_len,
            self.correlation,
        );
        out
    }

    /// Parses and checks 24 header bytes against `max_payload_len`.
    pub fn parse(head: &[u8; HEADER_LEN], max_payload_len: u32) -> Result<FrameHeader, FrameError> {
        let [m0, m1, m2, m3, v0, v1, k0, k1, f0, f1, r0, r1, l0, l1, l2, l3, c0, c1, c2, c3, c4, c5, c6, c7] =
            *head;
        let magic = [m0, m1, m2, m3];
        if magic != MAGIC {
            return Err(FrameError::BadMagic { found: magic });
        }
        let version = u16::from_le_bytes([v0, v1]);
        if version != PROTOCOL_VERSION {
            return Err(FrameError::UnsupportedVersion {
                found: version,
                supported: PROTOCOL_VERSION,
            });
        }
        let code = u16::from_le_bytes([k0, k1]);
        let kind = MessageKind::from_code(code).ok_or(FrameError::UnknownKind { code })?;
        let flags = Flags::from_bits(u16::from_le_bytes([f0, f1]))?;
        let reserved = u16::from_le_bytes([r0, r1]);
        if reserved != 0 {
            return Err(FrameError::ReservedNotZero { value: reserved });
        }
        let payload_len = u32::from_le_bytes([l0, l1, l2, l3]);
        if payload_len > max_payload_len {
            return Err(FrameError::TooLarge {
                kind,
                len: u64::from(payload_len),
                max: max_payload_len,
            });
        }
        let correlation = u64::from_le_bytes([c0, c1, c2, c3, c4, c5, c6, c7]);
        Ok(FrameHeader {
            kind,
            flags,
            payload_len,
            correlation,
        })
    }
}

fn write_header(out: &mut [u8; HEADER_LEN], kind: u16, flags: u16, len: u32, correlation: u64) {
    let parts: [(&mut [u8], &[u8]); 6] = {
        let (magic, rest) = out.split_at_mut(4);
        let (version, rest) = rest.split_at_mut(2);
        let (kind_b, rest) = rest.split_at_mut(2);
        let (flags_b, rest) = rest.split_at_mut(2);
        let (reserved, rest) = rest.split_at_mut(2);
        let (len_b, corr) = rest.split_at_mut(4);
        // `reserved` stays zero; the length and correlation follow.
        let _ = reserved;
        [
            (magic, &MAGIC[..]),
            (version, &PROTOCOL_VERSION.to_le_bytes()[..]),
            (kind_b, &kind.to_le_bytes()[..]),
            (flags_b, &flags.to_le_bytes()[..]),
            (len_b, &len.to_le_bytes()[..]),
            (corr, &correlation.to_le_bytes()[..]),
        ]
    };
    for (dst, src) in parts {
        dst.copy_from_slice(src);
    }
}

/// A received frame: its checked header and its payload in a 16-byte aligned buffer.
///
/// Invariant: `payload.len() == header.payload_len`. The payload is *not yet validated*: the
/// only ways to read it as a message, [`Frame::message`] and [`Frame::access`], run rkyv's
/// validation (bytecheck) first, so no archived value is used unchecked.
#[derive(Debug)]
pub struct Frame {
    /// The checked header.
    pub header: FrameHeader,
    payload: AlignedVec<16>,
}

impl Frame {
    /// The raw, unvalidated payload bytes (16-byte aligned); for forwarding or hashing only.
    pub fn raw_payload(&self) -> &[u8] {
        self.payload.as_slice()
    }

    /// Validates the payload (bytecheck) as its kind's archive and deserializes it.
    pub fn message(&self) -> Result<Message, FrameError> {
        Message::decode(self.header.kind, self.payload.as_slice()).map_err(|e| {
            FrameError::InvalidArchive {
                kind: self.header.kind,
                reason: e.to_string(),
            }
        })
    }

    /// Zero-copy, validated view of the payload as `T`'s archive. Fails if `T` is not the
    /// struct of this frame's kind or the bytes do not validate as `T`.
    pub fn access<T>(&self) -> Result<&T::Archived, FrameError>
    where
        T: rkyv::Archive,
        T::Archived: rkyv::Portable
            + for<'a> rkyv::bytecheck::CheckBytes<
                rkyv::api::low::LowValidator<'a, rkyv::rancor::Error>,
            >,
    {
        rkyv::api::low::access::<T::Archived, rkyv::rancor::Error>(self.payload.as_slice()).map_err(
            |e| FrameError::InvalidArchive {
                kind: self.header.kind,
                reason: e.to_string(),
            },
        )
    }
}

/// An rkyv writer appending to a byte buffer, with positions relative to `base` (where the
/// payload starts) so the archive is laid out as if it began at offset 0: the receiver copies
/// it to offset 0 of an aligned buffer.
#[derive(Debug)]
pub struct PayloadWriter<'a> {
    buf: &'a mut Vec<u8>,
    base: usize,
}

impl rkyv::ser::Positional for PayloadWriter<'_> {
    fn pos(&self) -> usize {
        self.buf.len().saturating_sub(self.base)
    }
}

impl<E> rkyv::ser::Writer<E> for PayloadWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), E> {
        self.buf.extend_from_slice(bytes);
        Ok(())
    }
}

/// Appends one frame carrying `message` to `out`. On error `out` is left as it was.
pub fn encode_frame(
    out: &mut Vec<u8>,
    message: &Message,
    flags: Flags,
    correlation: u64,
    max_payload_len: u32,
) -> Result<(), EncodeError> {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER_LEN]);
    let base = out.len();
    let kind = message.kind();
    if let Err(e) = message.archive_into(PayloadWriter { buf: out, base }) {
        out.truncate(start);
        return Err(EncodeError::Archive {
            kind,
            reason: e.to_string(),
        });
    }
    let len = out.len().saturating_sub(base);
    let len32 = match u32::try_from(len) {
        Ok(l) if l <= max_payload_len => l,
        _ => {
            out.truncate(start);
            return Err(EncodeError::TooLarge {
                kind,
                len: len as u64,
                max: max_payload_len,
            });
        }
    };
    let mut head = [0u8; HEADER_LEN];
    write_header(&mut head, kind.code(), flags.bits(), len32, correlation);
    if let Some(dst) = out.get_mut(start..base) {
        dst.copy_from_slice(&head);
    }
    Ok(())
}

/// Encodes one frame into a fresh buffer (convenience for tests and tools).
pub fn encode_to_vec(
    message: &Message,
    flags: Flags,
    correlation: u64,
) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    encode_frame(&mut out, message, flags, correlation, u32::MAX)?;
    Ok(out)
}

#[derive(Debug)]
enum DecodeState {
    /// Collecting the header: `filled` of its bytes are in `head`.
    Head {
        head: [u8; HEADER_LEN],
        filled: usize,
    },
    /// Collecting the payload of a checked header into `Decoder::payload`.
    Data { header: FrameHeader },
}

/// Incremental frame decoder: feed it byte slices of any size; it yields checked frames.
///
/// Call order: `decode(&mut input)` (or `decode_message`) repeatedly until it returns
/// `Ok(None)` (then `input` is empty and a frame may be in progress). After an `Err` the
/// stream is unusable: the decoder stays failed and the connection must be closed.
#[derive(Debug)]
pub struct Decoder {
    state: DecodeState,
    /// The payload in progress; reused across frames by `decode_message`.
    payload: AlignedVec<16>,
    max_payload_len: u32,
    failed: bool,
}

impl Decoder {
    /// A decoder refusing payloads longer than `max_payload_len` bytes.
    pub fn new(max_payload_len: u32) -> Decoder {
        Decoder {
            state: DecodeState::Head {
                head: [0; HEADER_LEN],
                filled: 0,
            },
            payload: AlignedVec::new(),
            max_payload_len,
            failed: false,
        }
    }

    /// The payload limit, bytes.
    pub fn max_payload_len(&self) -> u32 {
        self.max_payload_len
    }

    /// Changes the payload limit from the next header on (a header already checked keeps
    /// the limit it passed). The connection core starts with a small limit and raises it once
    /// the peer has authenticated.
    pub fn set_max_payload_len(&mut self, max_payload_len: u32) {
        self.max_payload_len = max_payload_len;
    }

    /// Whether part of a frame has been received but not all of it.
    pub fn in_frame(&self) -> bool {
        match &self.state {
            DecodeState::Head { filled, .. } => *filled > 0,
            DecodeState::Data { .. } => true,
        }
    }

    /// Bytes currently held for the frame in progress (header bytes, or the header plus the
    /// payload buffer's capacity).
    pub fn buffered(&self) -> usize {
        match &self.state {
            DecodeState::Head { filled, .. } => *filled,
            DecodeState::Data { .. } => HEADER_LEN.saturating_add(self.payload.capacity()),
        }
    }

    /// Consumes bytes from the front of `input` and returns the next complete frame (its
    /// payload not yet validated: see [`Frame`]), or `Ok(None)` once `input` is exhausted
    /// without completing one.
    pub fn decode(&mut self, input: &mut &[u8]) -> Result<Option<Frame>, FrameError> {
        Ok(self.next_payload(input)?.map(|header| Frame {
            header,
            payload: std::mem::take(&mut self.payload),
        }))
    }

    /// Like [`decode`](Self::decode), but validates and deserializes the payload in place
    /// and keeps the payload buffer for the next frame (no allocation per frame beyond the
    /// message's own fields). An invalid archive is an error like any other.
    pub fn decode_message(
        &mut self,
        input: &mut &[u8],
    ) -> Result<Option<(FrameHeader, Message)>, FrameError> {
        let Some(header) = self.next_payload(input)? else {
            return Ok(None);
        };
        let result = Message::decode(header.kind, self.payload.as_slice());
        self.payload.clear();
        if self.payload.capacity() > INITIAL_PAYLOAD_CAPACITY {
            // Do not keep a large frame's buffer alive on an idle connection.
            self.payload = AlignedVec::new();
        }
        match result {
            Ok(message) => Ok(Some((header, message))),
            Err(e) => {
                self.failed = true;
                Err(FrameError::InvalidArchive {
                    kind: header.kind,
                    reason: e.to_string(),
                })
            }
        }
    }

    fn next_payload(&mut self, input: &mut &[u8]) -> Result<Option<FrameHeader>, FrameError> {
        if self.failed {
            return Err(FrameError::DecoderFailed);
        }
        let result = self.fill(input);
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    /// Fills the header, then the payload; returns the header once `self.payload` holds the
    /// whole payload.
    fn fill(&mut self, input: &mut &[u8]) -> Result<Option<FrameHeader>, FrameError> {
        loop {
            match &mut self.state {
                DecodeState::Head { head, filled } => {
                    let want = HEADER_LEN.saturating_sub(*filled);
                    let take = want.min(input.len());
                    let (now, rest) = input.split_at(take);
                    if let Some(dst) = head.get_mut(*filled..*filled + take) {
                        dst.copy_from_slice(now);
                    }
                    *filled += take;
                    *input = rest;
                    if *filled < HEADER_LEN {
                        return Ok(None);
                    }
                    let header = FrameHeader::parse(head, self.max_payload_len)?;
                    let len = header.payload_len as usize;
                    self.payload.clear();
                    self.payload.reserve(len.min(INITIAL_PAYLOAD_CAPACITY));
                    self.state = DecodeState::Data { header };
                }
                DecodeState::Data { header } => {
                    let header = *header;
                    let len = header.payload_len as usize;
                    let want = len.saturating_sub(self.payload.len());
                    let take = want.min(input.len());
                    let (now, rest) = input.split_at(take);
                    self.payload.extend_from_slice(now);
                    *input = rest;
                    if self.payload.len() < len {
                        return Ok(None);
                    }
                    self.state = DecodeState::Head {
                        head: [0; HEADER_LEN],
                        filled: 0,
                    };
                    return Ok(Some(header));
                }
            }
        }
    }
}
