//! The `feedvisor` command: the library's sidecar behind a command line,
//! with the offline demo and the `/subscribe` client that only the command needs.

mod cli;
mod demo;
mod tail;

fn main() -> std::process::ExitCode {
    cli::main()
}
