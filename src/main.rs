//! The `plimsoll` binary: everything lives in the library; see `plimsoll::cli`.

fn main() -> std::process::ExitCode {
    plimsoll::cli::main()
}
