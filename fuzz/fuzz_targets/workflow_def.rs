#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrojob_fuzz::workflow_def::run(data));
