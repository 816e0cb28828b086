//! With the `tch` feature, binaries, tests and examples find libtorch at run time without
//! `LD_LIBRARY_PATH`: their rpath names the libtorch folder torch-sys linked against
//! (`DEP_TCH_LIBTORCH_LIB`, from its `links = "tch"` metadata).

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let unix = std::env::var("CARGO_CFG_TARGET_FAMILY").is_ok_and(|f| f == "unix");
    if let (true, Ok(dir)) = (unix, std::env::var("DEP_TCH_LIBTORCH_LIB")) {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
