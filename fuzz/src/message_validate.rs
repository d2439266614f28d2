//! Fuzz target `message_validate`: arbitrary bytes validated as each message kind.
//!
//! Input: byte 0 picks the kind (modulo the number of kinds), the rest is the payload. The
//! payload is framed with a valid header so it goes through the real decoder (which copies it
//! into an aligned buffer), then validated and deserialized. Bytes that validate must
//! deserialize, and the message must round-trip.

use ferrojob_transport::frame::{encode_to_vec, Decoder, Flags, FrameHeader};
use ferrojob_transport::message::MessageKind;

/// Feeds one fuzz input to the code under test; must never panic.
pub fn run(data: &[u8]) {
    let Some((&pick, payload)) = data.split_first() else {
        return;
    };
    let kinds = MessageKind::ALL;
    let Some(&kind) = kinds.get(usize::from(pick) % kinds.len()) else {
        return;
    };
    let Ok(payload_len) = u32::try_from(payload.len()) else {
        return;
    };
    let header = FrameHeader {
        kind,
        flags: Flags::NONE,
        payload_len,
        correlation: 0,
    };
    let mut bytes = header.to_bytes().to_vec();
    bytes.extend_from_slice(payload);
    let mut decoder = Decoder::new(u32::MAX);
    let mut input = &bytes[..];
    let frame = match decoder.decode(&mut input) {
        Ok(Some(f)) => f,
        other => panic!("a well-framed payload must come out of the decoder: {other:?}"),
    };
    let validated = kind.validate(frame.raw_payload()).is_ok();
    match frame.message() {
        Ok(message) => {
            assert!(validated, "deserialized without validating");
            assert_eq!(message.kind(), kind);
            let re = match encode_to_vec(&message, Flags::NONE, 0) {
                Ok(b) => b,
                Err(e) => panic!("must re-encode: {e}"),
            };
            let mut d = Decoder::new(u32::MAX);
            let mut input = &re[..];
            match d.decode(&mut input) {
                Ok(Some(f)) => match f.message() {
                    Ok(m) => assert_eq!(format!("{m:?}"), format!("{message:?}")),
                    Err(e) => panic!("re-encoded message must validate: {e}"),
                },
                other => panic!("re-encoded frame must decode: {other:?}"),
            }
        }
        Err(_) => assert!(!validated, "validated but failed to deserialize"),
    }
}
