#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrojob_fuzz::frame_decode::run(data));
