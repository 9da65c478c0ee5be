//! Fuzz target: `plimsoll::fuzzing::webhook` (see scripts/fuzz.sh).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plimsoll::fuzzing::webhook(data));
