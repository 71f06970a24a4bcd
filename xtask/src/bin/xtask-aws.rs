//! `xtask-aws`: the same command line built with the `aws` feature, which `cargo xtask` hands the
//! commands that talk to AWS (its emulator) or run builds.

fn main() -> std::process::ExitCode {
    xtask::main()
}
