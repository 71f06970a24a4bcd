//! `cargo xtask`: the command line (see the library for the two builds).

fn main() -> std::process::ExitCode {
    xtask::main()
}
