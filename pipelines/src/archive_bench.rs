// SPDX-License-Identifier: MPL-2.0
//! `affect bench --archive`: how fast an archive goes through `affect analyze`, in clips per
//! second, against the way it is done without it (one `gst-launch-1.0` process per clip,
//! running the same pipeline description), all on the same synthetic clips in the same run:
//!
//! - `gst-launch-1.0`, one process per clip, one after the other (the baseline);
//! - `affect analyze --jobs 1` and `--jobs 2`;
//! - two shards side by side (`--shard 0/2` and `--shard 1/2`, two processes), as two tasks
//!   of a job array on one machine run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use affect_synth::{self as synth, SynthConfig};

use crate::archive::Source;
use crate::pipeline::{Detector, ElementOptions, Format, Job, ModelStage};

/// The plugin `gst-launch-1.0` loads: beside the `affect` executable (cargo's target folder).
fn plugin_dir() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the executable: {e}"))?;
    let dir = exe.parent().ok_or("the executable has no folder")?;
    if dir.join("libgstaffect.so").is_file() {
        Ok(dir.to_path_buf())
    } else {
        Err(format!(
            "the baseline runs gst-launch-1.0 with the plugin, and {} holds no libgstaffect.so: \
             build it with cargo build --release -p gst-plugin-affect",
            dir.display()
        ))
    }
}

fn check(status: std::io::Result<std::process::ExitStatus>, what: &str) -> Result<(), String> {
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("{what} failed ({s})")),
        Err(e) => Err(format!("cannot run {what}: {e}")),
    }
}

fn analyze(
    exe: &Path,
    manifest: &Path,
    out: &Path,
    model: &Path,
    elements: &ElementOptions,
    extra: &[&str],
) -> Command {
    let mut c = Command::new(exe);
    c.arg("analyze")
        .arg("--manifest")
        .arg(manifest)
        .arg("-o")
        .arg(out)
        .arg("--model")
        .arg(model)
        .args(extra)
        .args([
            "--provider",
            if elements.provider == crate::pipeline::ProviderChoice::Cuda {
                "cuda"
            } else {
                "cpu"
            },
        ])
        .args(["--device", &elements.device.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(n) = elements.detect_interval {
        c.args(["--detect-interval", &n.to_string()]);
    }
    if let Some(n) = elements.batch_size {
        c.args(["--batch-size", &n.to_string()]);
    }
    c
}

fn rate_row(name: &str, clips: usize, d: Duration, baseline: Duration) {
    println!(
        "  {name:<44} {:>8.2} s {:>9.2} clips/s {:>7.2}x the baseline's rate",
        d.as_secs_f64(),
        clips as f64 / d.as_secs_f64(),
        baseline.as_secs_f64() / d.as_secs_f64()
    );
}

pub fn run(model: &Path, clips: usize, elements: &ElementOptions) -> Result<(), String> {
    if clips < 2 {
        return Err("--clips must be at least 2 (two shards)".into());
    }
    let plugins = plugin_dir()?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = std::env::temp_dir().join(format!("affect-archive-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (seconds, fps) = (4.0, 15);
    synth::generate(&SynthConfig {
        out: dir.join("world"),
        videos: clips,
        seconds,
        seed: 11,
        faces_per_frame: 1,
        fps,
        width: 320,
        height: 240,
        ..SynthConfig::default()
    })
    .map_err(|e| format!("cannot make the clips: {e}"))?;
    let videos: Vec<PathBuf> = (0..clips)
        .map(|i| dir.join(format!("world/videos/synth-{i:03}.mkv")))
        .collect();
    let manifest = dir.join("manifest.txt");
    std::fs::write(
        &manifest,
        videos
            .iter()
            .map(|v| format!("{}\n", v.display()))
            .collect::<String>(),
    )
    .map_err(|e| e.to_string())?;
    println!(
        "archive: {clips} clips of {seconds} s ({}x240 at {fps} fps, one face, with audio), the \
         default detector, model {}",
        320,
        model.display()
    );

    // Baseline: the pipeline affect analyze runs, as gst-launch-1.0 lines, one per clip.
    let registry = dir.join("registry.bin");
    let launch = |i: usize, video: &Path| -> Result<(), String> {
        let job = Job {
            elements: elements.clone(),
            input: Source::File(video.to_path_buf()),
            models: vec![ModelStage::all(model)],
            detector: Detector::Auto,
            tables: vec![(Format::Csv, dir.join(format!("launch-{i}.csv")))],
            annotated: None,
        };
        // gst-launch-1.0 takes the description as its arguments, split at spaces outside
        // quotes; one string through `sh -c` keeps the quoting the description has.
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("exec gst-launch-1.0 -q {}", job.description()))
            .env("GST_PLUGIN_PATH", &plugins)
            .env("GST_REGISTRY", &registry)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        check(status, "gst-launch-1.0")
    };
    // The first run builds the plugin registry; it is not timed.
    launch(0, &videos[0])?;
    let started = Instant::now();
    for (i, v) in videos.iter().enumerate() {
        launch(i, v)?;
    }
    let baseline = started.elapsed();
    rate_row(
        "gst-launch-1.0, a process per clip (baseline)",
        clips,
        baseline,
        baseline,
    );
    for jobs in [1, 2] {
        let out = dir.join(format!("jobs-{jobs}"));
        let started = Instant::now();
        check(
            analyze(
                &exe,
                &manifest,
                &out,
                model,
                elements,
                &["--jobs", &jobs.to_string()],
            )
            .status(),
            "affect analyze",
        )?;
        rate_row(
            &format!("affect analyze --jobs {jobs}"),
            clips,
            started.elapsed(),
            baseline,
        );
    }
    let out = dir.join("shards");
    let started = Instant::now();
    let mut children = Vec::new();
    for k in 0..2 {
        children.push(
            analyze(
                &exe,
                &manifest,
                &out,
                model,
                elements,
                &["--shard", &format!("{k}/2")],
            )
            .spawn()
            .map_err(|e| format!("cannot run affect analyze: {e}"))?,
        );
    }
    for mut child in children {
        check(child.wait(), "affect analyze --shard")?;
    }
    rate_row(
        "two shards side by side (--shard 0/2, 1/2)",
        clips,
        started.elapsed(),
        baseline,
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
