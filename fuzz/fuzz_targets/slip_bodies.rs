//! SLIP: a backend's answer, and a control API body.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = rookery::dialect::slip::parse_events(data);
    let _ = rookery::dialect::slip::parse_control(data);
});
