//! The config file: any text gives a validated config or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(c) = engram_server::fuzzing::config(text) {
        assert!(c.validate().is_ok());
    }
});
