//! The REST bodies (observations, space parameters, recall, delete) as their handlers decode
//! them: any bytes give a value or an error that names a field, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else { return };
    if let Err(message) = engram_server::fuzzing::decode_rest_body(which, body) {
        assert!(!message.is_empty());
    }
});
