// SPDX-License-Identifier: MPL-2.0
//! Link settings for the `torch` feature.
//!
//! The linker drops `libtorch_cuda.so` from binaries that name no symbol of it directly
//! (`--as-needed`), and libtorch then reports CUDA as unavailable on GPU machines: force it in
//! when the library exists. An rpath to the torch library folder lets the binaries run without
//! `LD_LIBRARY_PATH`.

use std::path::PathBuf;
use std::process::Command;

fn torch_lib_dir() -> Option<PathBuf> {
    if let Some(root) = std::env::var_os("LIBTORCH") {
        return Some(PathBuf::from(root).join("lib"));
    }
    // LIBTORCH_USE_PYTORCH: the torch package of the Python found first on PATH, as torch-sys
    // itself looks it up.
    let python = std::env::var("PYTHON_SYS_EXECUTABLE").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .args([
            "-c",
            "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    dir.is_dir().then_some(dir)
}

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    println!("cargo:rerun-if-env-changed=PYTHON_SYS_EXECUTABLE");
    if std::env::var_os("CARGO_FEATURE_TORCH").is_none() {
        return;
    }
    let Some(lib) = torch_lib_dir() else {
        println!(
            "cargo:warning=torch library folder not found (set LIBTORCH or LIBTORCH_USE_PYTORCH=1 with torch installed); no rpath set"
        );
        return;
    };
    let lib = lib.display().to_string();
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    if std::path::Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-L{lib}");
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
