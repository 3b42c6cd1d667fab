// SPDX-License-Identifier: MPL-2.0
//! Synthetic frames generated per second: rendering alone, and the whole writer (rendering,
//! aligned crops, JPEG crops, annotation and side files, MJPEG/PCM Matroska muxing). The
//! baseline measured in the same run is encoding the same 640x480 frame as JPEG with the
//! `image` crate, so the ratios say what one synthetic frame costs in JPEG encodes.

use std::time::Instant;

use affect_synth::raster::Canvas;
use affect_synth::{SynthConfig, generate};

fn main() {
    let cfg = SynthConfig {
        out: std::env::temp_dir().join(format!("affect-bench-synth-{}", std::process::id())),
        videos: 2,
        seconds: 4.0,
        fps: 30,
        ..SynthConfig::default()
    };
    let mut canvas = Canvas::new(cfg.width, cfg.height);

    // Baseline: JPEG encoding of a rendered frame.
    let plan = cfg.plan(1);
    plan.render(0, &mut canvas);
    let n_jpeg = 60;
    let start = Instant::now();
    for _ in 0..n_jpeg {
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
            .encode(
                &canvas.data,
                cfg.width,
                cfg.height,
                image::ExtendedColorType::Rgb8,
            )
            .unwrap();
        std::hint::black_box(bytes);
    }
    let jpeg_fps = n_jpeg as f64 / start.elapsed().as_secs_f64();

    let mut rows = Vec::new();
    for (label, index) in [("render, 1 face", 0usize), ("render, 2 faces", 1)] {
        let plan = cfg.plan(index);
        let n = 120u32;
        let start = Instant::now();
        for f in 0..n {
            std::hint::black_box(plan.render(f, &mut canvas));
        }
        rows.push((label, n as f64 / start.elapsed().as_secs_f64()));
    }
    let summary = generate(&cfg).unwrap();
    rows.push((
        "whole writer (1-2 faces)",
        summary.frames as f64 / summary.total_seconds,
    ));
    let _ = std::fs::remove_dir_all(&cfg.out);

    println!("synthetic world, {}x{} frames", cfg.width, cfg.height);
    println!("{:<28} {:>12} {:>14}", "what", "frames/s", "x JPEG encode");
    println!(
        "{:<28} {:>12.1} {:>14.2}",
        "baseline: image JPEG encode", jpeg_fps, 1.0
    );
    for (label, fps) in rows {
        println!("{:<28} {:>12.1} {:>14.2}", label, fps, fps / jpeg_fps);
    }
}
