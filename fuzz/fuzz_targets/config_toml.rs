//! The config loader: any text as a config file, checked against the
//! built-in transports (no environment variable is set).
#![no_main]

use std::path::Path;

use feedvisor::config::Config;
use feedvisor::transports::TransportRegistry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else { return };
    let transports = TransportRegistry::with_defaults();
    let _ = Config::from_toml_str(text, Path::new("fuzz.toml"), &transports);
});
