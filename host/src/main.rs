//! The `wharf` binary: everything happens in `wharf::cli`.

fn main() -> std::process::ExitCode {
    wharf::cli::main()
}
