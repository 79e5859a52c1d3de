//! The HTTP request head parser, and what the router reads from a parsed head.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((req, len))) = rookery::http::parse_head(data) {
        assert!(len <= data.len());
        let _ = req.content_length();
        let _ = req.bearer();
        let _ = req.wants_upgrade();
        let _ = req.query_param("room");
        for segment in req.path.split('/') {
            let _ = rookery::http::decode_segment(segment);
        }
    }
});
