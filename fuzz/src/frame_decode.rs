//! Fuzz target `frame_decode`: arbitrary bytes in arbitrary chunks through the frame decoder.
//!
//! Input: byte 0 = chunk size seed, byte 1 = maximum payload length seed (its top bit picks
//! `decode_message` instead of `decode`), the rest = the stream. Every decoded frame is validated and deserialized; every message that decodes must
//! re-encode and decode to itself (the codec round-trips against itself).

use ferrojob_transport::frame::{encode_to_vec, Decoder};
use ferrojob_transport::message::Message;

/// Feeds one fuzz input to the code under test; must never panic.
pub fn run(data: &[u8]) {
    let (chunk_seed, max_seed, stream) = match data {
        [a, b, rest @ ..] => (*a, *b, rest),
        _ => return,
    };
    let chunk = usize::from(chunk_seed).max(1);
    let max_payload_len = 64u32 << (max_seed % 12);
    let mut decoder = Decoder::new(max_payload_len);
    if max_seed & 0x80 != 0 {
        // The connection core's path: validate and deserialize in the reused buffer.
        for piece in stream.chunks(chunk) {
            let mut input = piece;
            loop {
                match decoder.decode_message(&mut input) {
                    Ok(Some((header, message))) => {
                        check_round_trip(&message, header.flags, header.correlation)
                    }
                    Ok(None) => {
                        assert!(input.is_empty(), "decoder returned None with input left");
                        break;
                    }
                    Err(_) => return,
                }
            }
        }
        return;
    }
    for piece in stream.chunks(chunk) {
        let mut input = piece;
        loop {
            match decoder.decode(&mut input) {
                Ok(Some(frame)) => {
                    assert!(frame.raw_payload().len() <= max_payload_len as usize);
                    if let Ok(message) = frame.message() {
                        check_round_trip(&message, frame.header.flags, frame.header.correlation);
                    }
                }
                Ok(None) => {
                    assert!(input.is_empty(), "decoder returned None with input left");
                    break;
                }
                Err(_) => return,
            }
        }
    }
}

fn check_round_trip(message: &Message, flags: ferrojob_transport::Flags, correlation: u64) {
    let bytes = match encode_to_vec(message, flags, correlation) {
        Ok(b) => b,
        Err(e) => panic!("a decoded message must re-encode: {e}"),
    };
    let mut decoder = Decoder::new(u32::MAX);
    let mut input = &bytes[..];
    let frame = match decoder.decode(&mut input) {
        Ok(Some(f)) => f,
        other => panic!("re-encoded frame must decode: {other:?}"),
    };
    let again = match frame.message() {
        Ok(m) => m,
        Err(e) => panic!("re-encoded message must validate: {e}"),
    };
    // Floats may be NaN (NaN != NaN); compare their debug text instead.
    assert_eq!(format!("{again:?}"), format!("{message:?}"));
}
