// SPDX-License-Identifier: MPL-2.0
//! `affectinfer` throughput and latency against the bare ONNX Runtime session running the
//! same batches of the same preprocessed faces, in the same run (see `affect_cli::infer_bench`).
//!
//! `cargo bench -p affect-cli --bench infer`: the default model on the CPU, batch-size
//! 16, three scenarios (1 stream x 4 faces, 4 streams x 4 faces, 1 stream x 16 faces), each
//! with the same number of faces. `AFFECT_BENCH_FRAMES` (frames of the 4-face stream, default
//! 400), `AFFECT_BENCH_ROUNDS` (best of, default 3), `AFFECT_BENCH_LIVE_FRAMES` (paced frames
//! per stream, default 150) and `AFFECT_BENCH_FPS` (default 30) change the run.

use std::path::PathBuf;
use std::time::Duration;

use affect_cli::infer_bench::{self as bench, Scenario};
use affect_core::bench::{env_or, percentile};

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The `p` quantile of sorted durations, zero when there are none.
fn quantile(sorted: &[Duration], p: f64) -> Duration {
    percentile(sorted, p).unwrap_or_default()
}

fn main() {
    gst::init().unwrap();
    gstaffect::plugin_register_static().unwrap();
    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/affect-default.onnx");
    let frames: usize = env_or("AFFECT_BENCH_FRAMES", 400);
    let rounds: usize = env_or("AFFECT_BENCH_ROUNDS", 3);
    let live_frames: usize = env_or("AFFECT_BENCH_LIVE_FRAMES", 150);
    let fps = env_or::<usize>("AFFECT_BENCH_FPS", 30) as u32;
    let batch = 16;
    // Held for the whole run: every scenario's elements and worker runs share this session.
    let shared = gstaffect::session::shared_model(
        &model,
        &gstaffect::session::SessionOptions {
            provider: gstaffect::session::Provider::Cpu,
            intra_op_threads: 0,
            fallback_to_cpu: false,
        },
        batch,
    )
    .expect("the default model");

    println!(
        "affectinfer throughput, {}, batch-size {batch}, CPU, {}x{} RGB frames, best of {rounds}",
        model.file_name().unwrap().to_string_lossy(),
        bench::WIDTH,
        bench::HEIGHT
    );
    println!(
        "{:<24} {:>6} {:>11} {:>11} {:>6} {:>11} {:>6} {:>10}",
        "scenario",
        "faces",
        "bare f/s",
        "worker f/s",
        "ratio",
        "element f/s",
        "ratio",
        "elem batch"
    );
    let only = std::env::var("AFFECT_BENCH_ONLY").ok();
    let chosen = |s: &Scenario| only.as_ref().is_none_or(|o| s.name.contains(o.as_str()));
    for scenario in Scenario::standard(frames, batch).into_iter().filter(chosen) {
        let t = bench::throughput(&model, &scenario, rounds).expect("throughput run");
        println!(
            "{:<24} {:>6} {:>11.1} {:>11.1} {:>5.2}x {:>11.1} {:>5.2}x {:>4.1} (bare {})",
            scenario.name,
            scenario.streams * scenario.faces * scenario.frames,
            t.faces_per_second(t.bare),
            t.faces_per_second(t.worker),
            t.bare.as_secs_f64() / t.worker.as_secs_f64(),
            t.faces_per_second(t.element),
            t.ratio(),
            t.element_stats.mean_batch(),
            t.bare_batch
        );
        println!(
            "{:<24} per batch: bare run {:.1} ms, element's Session::run {:.1} ms",
            "",
            t.bare.as_secs_f64() * 1e3 * t.bare_batch as f64
                / (scenario.streams * scenario.faces * scenario.frames) as f64,
            t.element_stats.run_time.as_secs_f64() * 1e3 / t.element_stats.batches.max(1) as f64
        );
        assert_eq!(
            t.element_stats.faces as usize,
            scenario.streams * scenario.faces * scenario.frames,
            "the element ran every face"
        );
    }

    println!();
    println!(
        "affectinfer per-frame latency, live sources paced at {fps} fps, {live_frames} frames per stream, default max-latency"
    );
    // Load: faces/s the sources ask for over what the bare session serves at the same batch
    // size; above 1 frames queue up and latency grows without bound.
    println!(
        "{:<24} {:>10} {:>10} {:>10} {:>14} {:>14} {:>6}",
        "scenario", "elem p50", "elem p99", "elem batch", "bare run p50", "bare run p99", "load"
    );
    for mut scenario in Scenario::standard(frames, batch).into_iter().filter(chosen) {
        scenario.frames = live_frames;
        let l = bench::latency(&model, &scenario, fps).expect("latency run");
        let bare_batch = (scenario.streams * scenario.faces).min(batch) as f64;
        let served = bare_batch / quantile(&l.bare_run, 0.5).as_secs_f64();
        let asked = (scenario.streams * scenario.faces) as f64 * fps as f64;
        println!(
            "{:<24} {:>7.1} ms {:>7.1} ms {:>10.1} {:>11.1} ms {:>11.1} ms {:>6.2}",
            scenario.name,
            ms(quantile(&l.element, 0.5)),
            ms(quantile(&l.element, 0.99)),
            l.element_stats.mean_batch(),
            ms(quantile(&l.bare_run, 0.5)),
            ms(quantile(&l.bare_run, 0.99)),
            asked / served,
        );
    }
    // One shared session per model in the process, whatever ran on it.
    assert_eq!(gstaffect::session::sessions_opened(&model), 1);

    // Two models on the same faces: the synthetic-world model's valence/arousal and AUs, then
    // the FER2013 model's expressions (the README's recipe).
    if only.as_ref().is_none_or(|o| "chain".contains(o.as_str())) {
        let fer = model.with_file_name("fer2013-mini-xception.onnx");
        let chain = [
            (model.clone(), Some("valence_arousal,au".to_string())),
            (fer, None),
        ];
        let scenario = Scenario::standard(frames, batch)
            .into_iter()
            .next()
            .expect("a scenario");
        let c = bench::chain_throughput(&chain, &scenario, rounds).expect("chain run");
        println!();
        println!(
            "two chained affectinfer (affect-default heads=valence_arousal,au ! fer2013-mini-xception), {}, best of {rounds}",
            scenario.name
        );
        println!(
            "  bare sessions of both, same batches  {:>8.1} faces/s (1.00x)",
            c.faces_per_second(c.bare)
        );
        println!(
            "  chained elements                     {:>8.1} faces/s ({:.2}x)",
            c.faces_per_second(c.chain),
            c.bare.as_secs_f64() / c.chain.as_secs_f64()
        );
        for ((m, _), d) in chain.iter().zip(&c.alone) {
            println!(
                "  {:<36} {:>8.1} faces/s alone",
                m.file_name().unwrap().to_string_lossy(),
                c.faces_per_second(*d)
            );
        }
    }
    drop(shared);
}
