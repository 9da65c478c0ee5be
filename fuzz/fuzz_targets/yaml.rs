//! Fuzz target: `plimsoll::fuzzing::yaml` (see scripts/fuzz.sh).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plimsoll::fuzzing::yaml(data));
