//! HTTP API bodies and parameters: emit, admin broadcast, notify.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = rookery::api::broadcast_body(data);
    let _ = rookery::api::notify_body(data);
    let _ = rookery::api::emit_payload(true, &[], data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = rookery::api::targets(Some(text));
        let _ = rookery::api::boolean(Some(text));
        let query: Vec<(String, String)> = text
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let _ = rookery::api::emit_payload(false, &query, b"");
    }
});
