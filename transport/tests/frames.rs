//! Frame encoding and decoding: round trips, every split point, and every kind of bad input.

mod common;

use ferrojob_transport::frame::{
    encode_frame, encode_to_vec, Decoder, Flags, FrameHeader, HEADER_LEN, MAGIC, PROTOCOL_VERSION,
};
use ferrojob_transport::message::{samples, Message, MessageKind};
use ferrojob_transport::FrameError;
use proptest::prelude::*;

const MAX: u32 = 4 * 1024 * 1024;

/// Decodes `chunks` in order, collecting frames as messages, stopping at the first error.
fn decode_chunks(chunks: &[&[u8]]) -> Result<Vec<(FrameHeader, Message)>, FrameError> {
    let mut dec = Decoder::new(MAX);
    let mut out = Vec::new();
    for chunk in chunks {
        let mut input = *chunk;
        while let Some(frame) = dec.decode(&mut input)? {
            out.push((frame.header, frame.message()?));
        }
        assert!(input.is_empty());
    }
    Ok(out)
}

fn first_error(bytes: &[u8]) -> FrameError {
    decode_chunks(&[bytes]).expect_err("must fail")
}

#[test]
fn samples_cover_every_kind_in_order() {
    let kinds: Vec<MessageKind> = samples::all().iter().map(Message::kind).collect();
    assert_eq!(kinds, MessageKind::ALL);
    for kind in MessageKind::ALL {
        assert_eq!(MessageKind::from_code(kind.code()), Some(*kind));
    }
}

#[test]
fn every_sample_round_trips_with_its_header() {
    for (i, m) in samples::all().into_iter().enumerate() {
        let flags = [Flags::NONE, Flags::REQUEST, Flags::RESPONSE][i % 3];
        let bytes = encode_to_vec(&m, flags, i as u64 * 7919).unwrap();
        let got = decode_chunks(&[&bytes]).unwrap();
        assert_eq!(got.len(), 1);
        let (h, back) = &got[0];
        assert_eq!(back, &m);
        assert_eq!(h.kind, m.kind());
        assert_eq!(h.flags, flags);
        assert_eq!(h.correlation, i as u64 * 7919);
        assert_eq!(h.payload_len as usize, bytes.len() - HEADER_LEN);
    }
}

#[test]
fn every_frame_split_at_every_byte_boundary() {
    for m in samples::all() {
        let bytes = encode_to_vec(&m, Flags::REQUEST, 42).unwrap();
        for cut in 0..=bytes.len() {
            let (a, b) = bytes.split_at(cut);
            let got = decode_chunks(&[a, b]).unwrap();
            assert_eq!(got.len(), 1, "{} cut at {cut}", m.kind());
            assert_eq!(got[0].1, m, "{} cut at {cut}", m.kind());
        }
    }
}

#[test]
fn a_stream_of_all_kinds_split_at_every_boundary_and_byte_by_byte() {
    let all = samples::all();
    let mut stream = Vec::new();
    for (i, m) in all.iter().enumerate() {
        encode_frame(&mut stream, m, Flags::NONE, i as u64, MAX).unwrap();
    }
    for cut in 0..=stream.len() {
        let (a, b) = stream.split_at(cut);
        let got: Vec<Message> = decode_chunks(&[a, b])
            .unwrap()
            .into_iter()
            .map(|(_, m)| m)
            .collect();
        assert_eq!(got, all, "cut at {cut}");
    }
    let singles: Vec<&[u8]> = stream.chunks(1).collect();
    let got: Vec<Message> = decode_chunks(&singles)
        .unwrap()
        .into_iter()
        .map(|(_, m)| m)
        .collect();
    assert_eq!(got, all);
}

#[test]
fn truncated_frames_wait_for_more_without_error() {
    let bytes = encode_to_vec(&samples::schedule_job().into(), Flags::NONE, 0).unwrap();
    for cut in 0..bytes.len() {
        let mut dec = Decoder::new(MAX);
        let mut input = &bytes[..cut];
        assert!(dec.decode(&mut input).unwrap().is_none());
        assert_eq!(dec.in_frame(), cut > 0);
    }
}

fn valid_frame() -> Vec<u8> {
    encode_to_vec(&samples::report_instance_status().into(), Flags::NONE, 1).unwrap()
}

#[test]
fn wrong_magic_is_refused() {
    let mut b = valid_frame();
    b[0] = b'X';
    assert_eq!(first_error(&b), FrameError::BadMagic { found: *b"XJOB" });
    assert!(matches!(
        first_error(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        FrameError::BadMagic { .. }
    ));
}

#[test]
fn wrong_version_is_refused() {
    let mut b = valid_frame();
    b[4] = 9;
    assert_eq!(
        first_error(&b),
        FrameError::UnsupportedVersion {
            found: 9,
            supported: PROTOCOL_VERSION
        }
    );
}

#[test]
fn unknown_kind_is_refused() {
    let mut b = valid_frame();
    b[6..8].copy_from_slice(&999u16.to_le_bytes());
    assert_eq!(first_error(&b), FrameError::UnknownKind { code: 999 });
}

#[test]
fn bad_flags_and_reserved_bits_are_refused() {
    let mut b = valid_frame();
    b[8] = 3;
    assert_eq!(first_error(&b), FrameError::BadFlags { flags: 3 });
    let mut b = valid_frame();
    b[8] = 4;
    assert_eq!(first_error(&b), FrameError::BadFlags { flags: 4 });
    let mut b = valid_frame();
    b[10] = 1;
    assert_eq!(first_error(&b), FrameError::ReservedNotZero { value: 1 });
}

#[test]
fn oversized_frame_is_refused_from_the_header_alone() {
    let mut head = [0u8; HEADER_LEN];
    head[..4].copy_from_slice(&MAGIC);
    head[4..6].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    head[6..8].copy_from_slice(&MessageKind::LogBatch.code().to_le_bytes());
    head[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut dec = Decoder::new(1024);
    let mut input = &head[..];
    assert_eq!(
        dec.decode(&mut input).unwrap_err(),
        FrameError::TooLarge {
            kind: MessageKind::LogBatch,
            len: u32::MAX as u64,
            max: 1024
        }
    );
    assert_eq!(
        dec.buffered(),
        HEADER_LEN,
        "nothing beyond the header was reserved"
    );
    // The decoder stays failed.
    let mut more = &b"x"[..];
    assert_eq!(
        dec.decode(&mut more).unwrap_err(),
        FrameError::DecoderFailed
    );
}

#[test]
fn announced_length_costs_only_what_arrives() {
    let mut head = FrameHeader {
        kind: MessageKind::LogBatch,
        flags: Flags::NONE,
        payload_len: MAX,
        correlation: 0,
    }
    .to_bytes()
    .to_vec();
    head.extend_from_slice(&[0u8; 10]);
    let mut dec = Decoder::new(MAX);
    let mut input = &head[..];
    assert!(dec.decode(&mut input).unwrap().is_none());
    assert!(dec.buffered() <= HEADER_LEN + 64 * 1024);
}

#[test]
fn a_raised_limit_applies_from_the_next_header_and_a_small_one_reserves_little() {
    let pre_auth = ferrojob_transport::DEFAULT_MAX_HANDSHAKE_PAYLOAD_LEN;
    let announce = |len: u32| {
        FrameHeader {
            kind: MessageKind::LogBatch,
            flags: Flags::NONE,
            payload_len: len,
            correlation: 0,
        }
        .to_bytes()
    };
    // Under the small limit a frame at the limit reserves at most the limit.
    let mut dec = Decoder::new(pre_auth);
    let at_limit = announce(pre_auth);
    let mut input = &at_limit[..];
    assert!(dec.decode(&mut input).unwrap().is_none());
    assert!(dec.buffered() <= HEADER_LEN + pre_auth as usize);
    // One byte more is refused from the header.
    let mut dec = Decoder::new(pre_auth);
    let over = announce(pre_auth + 1);
    let mut input = &over[..];
    assert!(matches!(
        dec.decode(&mut input),
        Err(FrameError::TooLarge { max, .. }) if max == pre_auth
    ));
    assert_eq!(dec.buffered(), HEADER_LEN);

    // Raised between frames: the next frame may be as large as the new limit.
    let mut dec = Decoder::new(pre_auth);
    let small = encode_to_vec(&samples::all().remove(0), Flags::NONE, 0).unwrap();
    let mut big_msg = samples::schedule_job();
    big_msg.job_params = "p".repeat(64 * 1024);
    let big = encode_to_vec(&big_msg.clone().into(), Flags::NONE, 0).unwrap();
    let mut input = &small[..];
    assert!(dec.decode_message(&mut input).unwrap().is_some());
    dec.set_max_payload_len(MAX);
    assert_eq!(dec.max_payload_len(), MAX);
    let mut input = &big[..];
    let (_, m) = dec.decode_message(&mut input).unwrap().unwrap();
    assert_eq!(m, big_msg.into());
}

#[test]
fn encoder_refuses_payloads_over_the_maximum() {
    let m: Message = samples::schedule_job().into();
    let mut out = vec![1, 2, 3];
    let err = encode_frame(&mut out, &m, Flags::NONE, 0, 16).unwrap_err();
    assert!(matches!(
        err,
        ferrojob_transport::EncodeError::TooLarge { max: 16, .. }
    ));
    assert_eq!(out, [1, 2, 3], "buffer left as it was");
}

#[test]
fn invalid_archives_are_refused_not_trusted() {
    // A StopInstance payload (8 bytes) announced as every other kind, and a ScheduleJob
    // payload with its tail corrupted: validation fails or yields a valid value, never panics.
    let all = samples::all();
    for m in &all {
        let bytes = encode_to_vec(m, Flags::NONE, 0).unwrap();
        for kind in MessageKind::ALL {
            let mut b = bytes.clone();
            b[6..8].copy_from_slice(&kind.code().to_le_bytes());
            let _ = decode_chunks(&[&b]);
        }
    }
    // An enum discriminant out of range: InstanceStatusReply.status is 1..=10 with gaps.
    let m: Message = ferrojob_transport::message::InstanceStatusReply {
        instance_id: 1,
        status: ferrojob_transport::message::InstanceStatus::Running,
        result: None,
        total_tasks: 0,
        succeeded_tasks: 0,
        failed_tasks: 0,
        running_tasks: 0,
        start_time_ms: 0,
    }
    .into();
    let b = encode_to_vec(&m, Flags::NONE, 0).unwrap();
    let pos = (HEADER_LEN..b.len()).find(|&i| b[i] == 3).unwrap();
    let mut bad = b.clone();
    bad[pos] = 6;
    assert!(matches!(
        first_error(&bad),
        FrameError::InvalidArchive {
            kind: MessageKind::InstanceStatusReply,
            ..
        }
    ));
    // A string pointer past the end of the buffer.
    let b = encode_to_vec(
        &Message::from(ferrojob_transport::message::ExecutorCluster {
            worker_addresses: vec!["a".repeat(40)],
        }),
        Flags::NONE,
        0,
    )
    .unwrap();
    let mut bad = b.clone();
    let n = bad.len();
    bad[n - 8..n - 4].copy_from_slice(&0x7fff_0000u32.to_le_bytes());
    assert!(matches!(
        first_error(&bad),
        FrameError::InvalidArchive { .. }
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_message_round_trips(m in common::message(), corr in any::<u64>(), cut in any::<prop::sample::Index>()) {
        let bytes = encode_to_vec(&m, Flags::RESPONSE, corr).unwrap();
        let cut = cut.index(bytes.len() + 1);
        let got = decode_chunks(&[&bytes[..cut], &bytes[cut..]]).unwrap();
        prop_assert_eq!(got.len(), 1);
        prop_assert_eq!(got[0].0.correlation, corr);
        prop_assert_eq!(&got[0].1, &m);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512), chunk in 1usize..64) {
        let mut dec = Decoder::new(256);
        for c in data.chunks(chunk) {
            let mut input = c;
            while let Ok(Some(f)) = dec.decode(&mut input) {
                let _ = f.message();
            }
        }
    }

    #[test]
    fn flipped_bytes_in_valid_frames_never_panic(m in common::message(), pos in any::<prop::sample::Index>(), val in any::<u8>()) {
        let mut bytes = encode_to_vec(&m, Flags::NONE, 0).unwrap();
        let i = pos.index(bytes.len());
        bytes[i] = val;
        let _ = decode_chunks(&[&bytes]);
    }
}

#[test]
fn decode_message_reuses_its_buffer_and_agrees_with_decode() {
    let all = samples::all();
    let mut stream = Vec::new();
    for (i, m) in all.iter().enumerate() {
        encode_frame(&mut stream, m, Flags::NONE, i as u64, MAX).unwrap();
    }
    for cut in 0..=stream.len() {
        let mut dec = Decoder::new(MAX);
        let mut got = Vec::new();
        for chunk in [&stream[..cut], &stream[cut..]] {
            let mut input = chunk;
            while let Some((h, m)) = dec.decode_message(&mut input).unwrap() {
                assert_eq!(h.correlation as usize, got.len());
                got.push(m);
            }
        }
        assert_eq!(got, all, "cut at {cut}");
    }
    // An invalid archive through decode_message is an error, and the decoder stays failed.
    let cluster = ferrojob_transport::message::ExecutorCluster {
        worker_addresses: vec!["a".repeat(40)],
    };
    let mut bad = encode_to_vec(&cluster.into(), Flags::NONE, 0).unwrap();
    let n = bad.len();
    bad[n - 8..n - 4].copy_from_slice(&0x7fff_0000u32.to_le_bytes());
    let mut dec = Decoder::new(MAX);
    assert!(matches!(
        dec.decode_message(&mut &bad[..]),
        Err(FrameError::InvalidArchive { .. })
    ));
    assert_eq!(
        dec.decode_message(&mut &b""[..]).unwrap_err(),
        FrameError::DecoderFailed
    );
}
