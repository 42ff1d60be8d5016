//! The gRPC messages a client sends (an observation batch, a space's parameters), decoded and
//! converted as the service does: a value or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(b) = engram_server::fuzzing::decode_batch(data) {
        assert!(b.observations.len() <= data.len());
    }
    let _ = engram_server::fuzzing::decode_space_params(data);
});
