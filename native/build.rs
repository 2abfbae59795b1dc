//! `cargo test` links the crate's test binaries against libpython (PyO3 is not
//! built as an extension module there). Record libpython's directory as an
//! rpath so those binaries run without `LD_LIBRARY_PATH`. PyO3 emits nothing
//! here when maturin builds the extension module (no libpython linked).
fn main() {
    pyo3_build_config::add_libpython_rpath_link_args();
}
