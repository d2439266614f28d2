#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrojob_fuzz::ownership::run(data));
