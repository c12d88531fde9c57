//! The `bml` binary: everything lives in the library; this only hands over,
//! and picks the allocator.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    bml::cli::main()
}
