//! feedvisor's integration tests, in one binary: real servers on 127.0.0.1,
//! ports chosen at run time, every wait bounded.

mod admin_limits;
mod binary;
mod broadcast;
mod churn;
mod cluster;
mod compression;
mod config_examples;
mod conflate;
mod conformance;
mod credentials;
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
mod subscriptions;
mod support;
mod switchover;
mod tcp;
mod tidy;
mod tls;
mod transports;
mod venue_limits;
mod zero_gap;
