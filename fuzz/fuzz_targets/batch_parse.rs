//! Record batch parsing: iterate the batches of arbitrary bytes, validate each, and decode the
//! records of uncompressed ones, as the broker does for produce requests and its internal logs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for item in wire::batch::Batches::new(data) {
        let Ok((_, view)) = item else { break };
        let _ = view.validate();
        let _ = view.compression();
        let _ = view.last_offset();
        if let Ok(records) = view.records() {
            for record in records {
                let _ = (record.key, record.value);
            }
        }
    }
});
