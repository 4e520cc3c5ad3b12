//! Passes the target triple on to the crate, for `--version`: a bug report
//! then says which build (x86_64 or aarch64, musl or glibc) misbehaved.
fn main() {
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown-target".into());
    println!("cargo:rustc-env=PRESTOP_WAIT_TARGET={target}");
    println!("cargo:rerun-if-changed=build.rs");
}
