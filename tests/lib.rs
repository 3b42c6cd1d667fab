//! Shared set-up of the end-to-end tests: GStreamer with the affect elements registered, and
//! small synthetic data sets made on the spot.

use std::path::{Path, PathBuf};
use std::sync::Once;

use affect_train::synth::{self, SynthConfig};

/// Initialises GStreamer and registers the affect elements once per process.
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        gstaffect::plugin_register_static().expect("register the affect plugin");
    });
}

/// Generates a synthetic data set into `dir` and returns its root.
pub fn synthetic_set(dir: &Path, videos: usize, seconds: f32, fps: u32, seed: u64) -> PathBuf {
    let root = dir.join("synth");
    synth::generate(&SynthConfig {
        out: root.clone(),
        videos,
        seconds,
        seed,
        faces_per_frame: 2,
        fps,
        width: 320,
        height: 240,
        ..SynthConfig::default()
    })
    .expect("generate the synthetic set");
    root
}
