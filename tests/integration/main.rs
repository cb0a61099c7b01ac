//! feedvisor's integration tests, in one binary: real servers on 127.0.0.1,
//! ports chosen at run time, every wait bounded.

mod admin_limits;
mod binary;
mod churn;
mod cluster;
mod compression;
mod config_examples;
mod conformance;
mod deployment;
mod faults;
mod fuzz_regressions;
mod library;
mod lockdown;
mod operations;
mod prometheus;
mod proxy;
mod send;
mod sinks;
mod stream;
mod subscribe;
mod support;
mod switchover;
mod tcp;
mod tidy;
mod tls;
mod transports;
