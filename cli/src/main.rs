//! The `hotswap` command. Everything lives in the `hotswap_cli` library so that a program
//! can run the very same command line in-process.

fn main() {
    std::process::exit(hotswap_cli::run(std::env::args_os()));
}
