//! Build script shared by the crates whose binaries or tests link DuckDB: records the directory of
//! the prebuilt libduckdb.so as an rpath, so the binaries run without LD_LIBRARY_PATH.
// Build scripts talk to cargo on stdout.
#[allow(clippy::print_stdout)]
fn main() {
    println!("cargo:rerun-if-env-changed=DUCKDB_LIB_DIR");
    if let Ok(dir) = std::env::var("DUCKDB_LIB_DIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
