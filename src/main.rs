//! The `feedvisor` command.

fn main() -> std::process::ExitCode {
    feedvisor::cli::main()
}
