// SPDX-License-Identifier: MPL-2.0
//! Reader throughput: samples (annotation parsing, masks, crop pairing) and their decoded
//! crops per second, against plain JPEG decoding of the same crop files with the `image`
//! crate measured in the same run.

use std::time::Instant;

use affect_synth::data::{AffWild2, Split, load_crop};
use affect_synth::{SynthConfig, generate};

fn main() {
    let cfg = SynthConfig {
        out: std::env::temp_dir().join(format!("affect-bench-reader-{}", std::process::id())),
        videos: 4,
        seconds: 6.0,
        fps: 30,
        ..SynthConfig::default()
    };
    generate(&cfg).unwrap();
    let data = AffWild2::open(&cfg.out).unwrap();
    let (samples, _) = data.samples(Split::Train).unwrap();
    let paths: Vec<_> = samples.iter().map(|s| s.crop.clone()).collect();

    // Warm the page cache so both runs read from memory.
    for p in &paths {
        std::hint::black_box(std::fs::read(p).unwrap());
    }
    let start = Instant::now();
    for p in &paths {
        let bytes = std::fs::read(p).unwrap();
        let img = image::load_from_memory(&bytes).unwrap().into_rgb8();
        std::hint::black_box(img);
    }
    let plain = paths.len() as f64 / start.elapsed().as_secs_f64();

    let start = Instant::now();
    let (samples, _) = data.samples(Split::Train).unwrap();
    let listing = start.elapsed().as_secs_f64();
    for s in &samples {
        std::hint::black_box(load_crop(&s.crop).unwrap());
    }
    let total = start.elapsed().as_secs_f64();
    let reader = samples.len() as f64 / total;
    let _ = std::fs::remove_dir_all(&cfg.out);

    println!("reader over {} crops of 112x112", samples.len());
    println!("{:<40} {:>12} {:>10}", "what", "crops/s", "ratio");
    println!(
        "{:<40} {:>12.0} {:>10.2}",
        "baseline: plain image JPEG decode", plain, 1.0
    );
    println!(
        "{:<40} {:>12.0} {:>10.2}",
        "reader: samples + load_crop",
        reader,
        reader / plain
    );
    println!(
        "{:<40} {:>12.1}",
        "  of which listing/parsing (ms)",
        listing * 1e3
    );
}
