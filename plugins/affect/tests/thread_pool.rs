// SPDX-License-Identifier: MPL-2.0
//! Every ONNX Runtime session of the process runs on one thread pool: opening more models (or
//! the detector's networks) adds no threads, while a session asked for threads of its own
//! (`intra-op-threads`) gets a pool of its own.

use std::path::Path;

use gstaffect::session::{self, Provider, SessionOptions};

/// Threads of this process.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[test]
fn sessions_share_the_process_pool_unless_they_ask_for_their_own() {
    // Three threads in the pool, whatever the machine: a pool of its own per session would
    // add two threads for each.
    // SAFETY: set before any thread of this test binary reads the environment (this file has
    // one test, and ONNX Runtime is loaded below).
    unsafe { std::env::set_var(session::THREADS_VARIABLE, "3") };
    assert_eq!(session::thread_budget().unwrap(), 3);
    session::environment().unwrap();
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
    let shared = SessionOptions {
        provider: Provider::Cpu,
        intra_op_threads: 0,
        fallback_to_cpu: false,
    };
    // One session first: whatever ONNX Runtime starts once per process is started by then.
    let first = session::open(&models.join("affect-default.onnx"), &shared).unwrap();
    let before = threads();
    let mut more = Vec::new();
    for name in [
        "affect-default.onnx",
        "fer2013-mini-xception.onnx",
        "mtcnn-pnet.onnx",
        "mtcnn-rnet.onnx",
        "mtcnn-onet.onnx",
    ] {
        more.push(session::open(&models.join(name), &shared).unwrap());
    }
    assert_eq!(threads(), before, "five more sessions on the shared pool");

    let own = SessionOptions {
        intra_op_threads: 3,
        ..shared
    };
    let alone = session::open(&models.join("affect-default.onnx"), &own).unwrap();
    assert!(
        threads() >= before + 2,
        "a session with intra_op_threads 3 has a pool of its own ({} threads, {before} before)",
        threads()
    );
    drop((first, more, alone));
}
