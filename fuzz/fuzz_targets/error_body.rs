//! Fuzz target: any error body (first two bytes: the HTTP status) parses to an ApiError.
#![no_main]

use dcs_operator::dcs::ApiError;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (status, body) = match data {
        [high, low, body @ ..] => (u16::from_be_bytes([*high, *low]), body),
        _ => (500, data),
    };
    let error = ApiError::from_body(status, body, None);
    // The parser always names a code (the status when the body has none) and the
    // people-facing text is built from whatever it found.
    assert!(error.error_code.is_some());
    let _ = error.describe();
});
