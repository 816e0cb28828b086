//! Gives the shared library the soname `liblungseg.so.<major>`, so a program linked against one
//! release records the ABI it was built for, not the unversioned file name (the C ABI only grows
//! within a major version, docs/c-abi.md).
fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets the package version");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" || os == "android" || os.ends_with("bsd") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,liblungseg.so.{major}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
