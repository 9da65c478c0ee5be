//! Fuzz target: `plimsoll::fuzzing::dotenv` (see scripts/fuzz.sh).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plimsoll::fuzzing::dotenv(data));
