//! The `wharf` command line, built inside the test package so integration
//! tests can run it as a separate process (`CARGO_BIN_EXE_wharf-under-test`).

fn main() -> std::process::ExitCode {
    wharf::cli::main()
}
