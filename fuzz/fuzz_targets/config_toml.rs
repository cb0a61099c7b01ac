//! The config loader: any text as a config file, checked against the
//! built-in transports (see `feedvisor::fuzzing::config_toml`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| feedvisor::fuzzing::config_toml(input));
