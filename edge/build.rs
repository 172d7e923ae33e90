//! Passes the target triple to the crate, for `opmas-edge --version`: a
//! router's binary says which architecture it was built for.

fn main() {
    // Cargo sets TARGET for build scripts only; the compiled crate reads the
    // copy through env!("OPMAS_TARGET").
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=OPMAS_TARGET={target}");
    println!("cargo:rerun-if-changed=build.rs");
}
