//! Bench group `codec`: encode, and validate + decode, of the two hottest messages
//! (`ScheduleJob`, server → worker; `ReportInstanceStatus`, worker → server), side by side:
//!
//! - `ferrojob_rkyv`: our frame encoder (header + rkyv archive) and `Message::decode`
//!   (bytecheck validation, then deserialization to owned structs) on an aligned buffer;
//! - `ferrojob_rkyv_access`: validation only, then reading the archived value in place
//!   (zero-copy; what a handler that only inspects a few fields pays);
//! - `bincode`: bincode 1.3 through serde, same structs;
//! - `serde_json`: JSON through serde, same structs (what PowerJob's HTTP transport sends).
//!
//! Besides criterion's times, `target/bench-reports/codec.json` gets `ops_per_s` and
//! `encoded_bytes` per function and case, and `decode_speedup_vs_serde_json`.

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ferrojob_benches::{Report, Row};
use ferrojob_transport::frame::{encode_frame, Flags, HEADER_LEN};
use ferrojob_transport::message::{
    samples, Message, MessageKind, ReportInstanceStatus, ScheduleJob,
};
use rkyv::util::AlignedVec;

fn cases() -> Vec<(&'static str, Message)> {
    vec![
        ("schedule_job", samples::schedule_job().into()),
        (
            "report_instance_status",
            samples::report_instance_status().into(),
        ),
    ]
}

fn rkyv_payload(m: &Message) -> AlignedVec<16> {
    let mut frame = Vec::new();
    encode_frame(&mut frame, m, Flags::NONE, 1, u32::MAX).expect("encode");
    let mut payload = AlignedVec::<16>::new();
    payload.extend_from_slice(&frame[HEADER_LEN..]);
    payload
}

fn serde_decode_bincode(kind: MessageKind, bytes: &[u8]) -> Message {
    match kind {
        MessageKind::ScheduleJob => bincode::deserialize::<ScheduleJob>(bytes)
            .expect("bincode")
            .into(),
        _ => bincode::deserialize::<ReportInstanceStatus>(bytes)
            .expect("bincode")
            .into(),
    }
}

fn serde_decode_json(kind: MessageKind, bytes: &[u8]) -> Message {
    match kind {
        MessageKind::ScheduleJob => serde_json::from_slice::<ScheduleJob>(bytes)
            .expect("json")
            .into(),
        _ => serde_json::from_slice::<ReportInstanceStatus>(bytes)
            .expect("json")
            .into(),
    }
}

fn serde_encode_bincode(m: &Message, out: &mut Vec<u8>) {
    match m {
        Message::ScheduleJob(j) => bincode::serialize_into(out, j),
        Message::ReportInstanceStatus(r) => bincode::serialize_into(out, r),
        _ => unreachable!("only the two benched kinds"),
    }
    .expect("bincode");
}

fn serde_encode_json(m: &Message, out: &mut Vec<u8>) {
    match m {
        Message::ScheduleJob(j) => serde_json::to_writer(out, j),
        Message::ReportInstanceStatus(r) => serde_json::to_writer(out, r),
        _ => unreachable!("only the two benched kinds"),
    }
    .expect("json");
}

fn access_only(kind: MessageKind, payload: &[u8]) -> u64 {
    match kind {
        MessageKind::ScheduleJob => {
            let a =
                rkyv::api::low::access::<rkyv::Archived<ScheduleJob>, rkyv::rancor::Error>(payload)
                    .expect("valid");
            a.instance_id.to_native()
        }
        _ => {
            let a = rkyv::api::low::access::<
                rkyv::Archived<ReportInstanceStatus>,
                rkyv::rancor::Error,
            >(payload)
            .expect("valid");
            a.instance_id.to_native()
        }
    }
}

/// Operations per second of `f` over a fixed wall-clock budget (for the JSON report).
fn rate(mut f: impl FnMut()) -> f64 {
    for _ in 0..1000 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_millis() < 300 {
        for _ in 0..1000 {
            f();
        }
        n += 1000;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(1));
    let mut report = Report::new("codec");
    for (name, m) in cases() {
        let kind = m.kind();
        let payload = rkyv_payload(&m);
        let mut bin = Vec::new();
        serde_encode_bincode(&m, &mut bin);
        let mut json = Vec::new();
        serde_encode_json(&m, &mut json);
        assert_eq!(Message::decode(kind, &payload).expect("rkyv"), m);
        assert_eq!(serde_decode_bincode(kind, &bin), m);
        assert_eq!(serde_decode_json(kind, &json), m);

        let mut out = Vec::with_capacity(4096);
        let encode_param = format!("encode/{name}");
        group.bench_function(BenchmarkId::new("ferrojob_rkyv", &encode_param), |b| {
            b.iter(|| {
                out.clear();
                encode_frame(&mut out, black_box(&m), Flags::NONE, 1, u32::MAX).expect("encode");
                black_box(out.len())
            })
        });
        group.bench_function(BenchmarkId::new("bincode", &encode_param), |b| {
            b.iter(|| {
                out.clear();
                serde_encode_bincode(black_box(&m), &mut out);
                black_box(out.len())
            })
        });
        group.bench_function(BenchmarkId::new("serde_json", &encode_param), |b| {
            b.iter(|| {
                out.clear();
                serde_encode_json(black_box(&m), &mut out);
                black_box(out.len())
            })
        });

        let decode_param = format!("decode/{name}");
        group.bench_function(BenchmarkId::new("ferrojob_rkyv", &decode_param), |b| {
            b.iter(|| Message::decode(kind, black_box(&payload)).expect("rkyv"))
        });
        group.bench_function(
            BenchmarkId::new("ferrojob_rkyv_access", &decode_param),
            |b| b.iter(|| access_only(kind, black_box(&payload))),
        );
        group.bench_function(BenchmarkId::new("bincode", &decode_param), |b| {
            b.iter(|| serde_decode_bincode(kind, black_box(&bin)))
        });
        group.bench_function(BenchmarkId::new("serde_json", &decode_param), |b| {
            b.iter(|| serde_decode_json(kind, black_box(&json)))
        });

        // Figures for the report, measured side by side in this run.
        let enc = [
            (
                "ferrojob_rkyv",
                rate(|| {
                    out.clear();
                    encode_frame(&mut out, black_box(&m), Flags::NONE, 1, u32::MAX)
                        .expect("encode");
                }),
                payload.len() + HEADER_LEN,
            ),
            (
                "bincode",
                rate(|| {
                    out.clear();
                    serde_encode_bincode(black_box(&m), &mut out);
                }),
                bin.len(),
            ),
            (
                "serde_json",
                rate(|| {
                    out.clear();
                    serde_encode_json(black_box(&m), &mut out);
                }),
                json.len(),
            ),
        ];
        for (f, per_s, bytes) in enc {
            report.push(
                Row::new(f, &encode_param)
                    .with("ops_per_s", per_s)
                    .with("encoded_bytes", bytes as u64),
            );
        }
        let json_rate = rate(|| {
            black_box(serde_decode_json(kind, black_box(&json)));
        });
        let dec = [
            (
                "ferrojob_rkyv",
                rate(|| {
                    black_box(Message::decode(kind, black_box(&payload)).expect("rkyv"));
                }),
            ),
            (
                "ferrojob_rkyv_access",
                rate(|| {
                    black_box(access_only(kind, black_box(&payload)));
                }),
            ),
            (
                "bincode",
                rate(|| {
                    black_box(serde_decode_bincode(kind, black_box(&bin)));
                }),
            ),
            ("serde_json", json_rate),
        ];
        for (f, per_s) in dec {
            report.push(
                Row::new(f, &decode_param)
                    .with("ops_per_s", per_s)
                    .with("decode_speedup_vs_serde_json", per_s / json_rate),
            );
        }
    }
    group.finish();
    if let Err(e) = report.write() {
        eprintln!("codec report not written: {e}");
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
