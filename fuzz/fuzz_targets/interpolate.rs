//! Fuzz target: `plimsoll::fuzzing::interpolate` (see scripts/fuzz.sh).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plimsoll::fuzzing::interpolate(data));
