//! Fuzz target: any bytes as a DCS query answer decode to an Instance or an error, never a panic.
#![no_main]

use dcs_operator::dcs::client::decode_json;
use dcs_operator::dcs::model::{Instance, InstanceList};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(instance) = decode_json::<Instance>(data) {
        // What reconcile derives from a decoded instance must not panic either.
        let _ = instance.addresses();
        let _ = instance.capacity_bytes();
        let _ = instance.max_memory_bytes();
        let _ = instance.status().map(|s| s.class());
    }
    let _ = decode_json::<InstanceList>(data);
});
