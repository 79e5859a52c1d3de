//! The `jac` dialect's decoder of client frames (simd-json parses in place).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut scratch = data.to_vec();
    let _ = rookery::dialect::jac::decode(&mut scratch);
});
