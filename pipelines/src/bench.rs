// SPDX-License-Identifier: MPL-2.0
//! `affect bench`: the elements' costs in one place, each against a baseline measured in
//! the same run, so the ratios hold across machines:
//!
//! - log-mel spectrogram (`affectspectro`'s maths): real-time factor vs the bare real FFT
//!   of the same frames;
//! - aligned face crops (`affectfacecrop mode=crop`, `affectinfer`'s crops): crops/s vs a
//!   plain copy of the face's box;
//! - `affectinfer` vs the bare shared ONNX Runtime session on the same batches
//!   (`infer_bench`);
//! - `affectoverlay`: cost per frame over the same pipeline without it, vs one plain copy
//!   of the frame;
//! - `affectsink`: rows/s vs the same rows formatted and written without GStreamer;
//! - live end-to-end latency at 1, 4 and 16 live streams vs the same pipelines with
//!   `identity` in place of `affectinfer` (`live_bench`); `--soak MINUTES` runs a long live
//!   stream with track churn and reports memory;
//! - `--real`: the whole analysis on real footage, stage by stage (`real_bench`).

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use affect_core::align::{RgbImage, crop_aligned};
use affect_core::bench::try_best_of;
use affect_core::melspec::{MelConfig, MelSpectrogram};
use gst::prelude::*;
use gstaffect::meta::{AffectResult, Face};
use realfft::RealFftPlanner;

/// Options of `affect bench`.
#[derive(clap::Args)]
pub struct BenchOptions {
    /// Longer runs (steadier figures, a few minutes).
    #[arg(long)]
    pub long: bool,
    /// Model for the inference benchmark (default: models/affect-default.onnx).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Only the soak run: a live stream with track churn for this many minutes, reporting
    /// memory at the start and the end.
    #[arg(long, value_name = "MINUTES")]
    pub soak: Option<f64>,
    /// Skip the live latency runs (1, 4 and 16 live streams).
    #[arg(long)]
    pub no_live: bool,
    /// Only the archive benchmark: clips/s of `affect analyze` with --jobs 1 and 2 and as
    /// two shards side by side, against one gst-launch-1.0 process per clip.
    #[arg(long)]
    pub archive: bool,
    /// Clips of the archive benchmark.
    #[arg(long, default_value_t = 8)]
    pub clips: usize,
    /// Only the real-footage benchmark: the whole analysis, stage by stage, on a 1280x720 and
    /// a 1920x1080 clip of six real faces under a known pan and zoom, against the bare
    /// session and a Python loop (needs the set-up's .venv with --train's packages).
    #[arg(long)]
    pub real: bool,
    /// Frames of each real-footage clip.
    #[arg(long, default_value_t = 250)]
    pub frames: usize,
    #[command(flatten)]
    pub elements: crate::pipeline::ElementOptions,
}

fn noise(n: usize) -> Vec<f32> {
    let mut state = 1u32;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as f32 / u32::MAX as f32 - 0.5
        })
        .collect()
}

fn melspec(seconds: f64, runs: usize) -> Result<(), String> {
    let cfg = MelConfig::default();
    let n = (cfg.sample_rate as f64 * seconds) as usize;
    let signal = noise(n);
    let frames = cfg.n_frames(n);
    let fft = RealFftPlanner::<f64>::new().plan_fft_forward(cfg.n_fft);
    let mut frame = vec![0.0f64; cfg.n_fft];
    let mut spectrum = fft.make_output_vec();
    let mut scratch = fft.make_scratch_vec();
    let bare = try_best_of(runs, || {
        for k in 0..frames {
            let start = k * cfg.hop_length;
            for (f, &s) in frame.iter_mut().zip(&signal[start..start + cfg.n_fft]) {
                *f = s as f64;
            }
            fft.process_with_scratch(&mut frame, &mut spectrum, &mut scratch)
                .map_err(|e| e.to_string())?;
            black_box(&spectrum);
        }
        Ok(())
    })?;
    let mut mel = MelSpectrogram::new(cfg.clone()).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(frames * cfg.n_mels);
    let melspec = try_best_of(runs, || {
        out.clear();
        black_box(mel.compute_into(&signal, &mut out));
        Ok(())
    })?;
    println!("log-mel spectrogram, {seconds} s of 16 kHz audio ({frames} frames)");
    row(
        "bare real FFT (baseline)",
        bare,
        seconds,
        "x real time",
        bare,
    );
    row("log-mel", melspec, seconds, "x real time", bare);
    Ok(())
}

/// One line: what, time, `amount / time` in `unit`, time over the baseline's.
fn row(name: &str, d: Duration, amount: f64, unit: &str, baseline: Duration) {
    println!(
        "  {name:<40} {:>10.2} ms {:>12.1} {unit:<14} {:>7.2}x baseline time",
        d.as_secs_f64() * 1e3,
        amount / d.as_secs_f64(),
        d.as_secs_f64() / baseline.as_secs_f64()
    );
}

fn crops(count: usize, runs: usize) -> Result<(), String> {
    let (w, h, size) = (640u32, 480u32, 112u32);
    let frame: Vec<u8> = (0..(w * h * 3) as usize)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let image = RgbImage::new(&frame, w, h, w as usize * 3).map_err(|e| e.to_string())?;
    // A slightly rolled face of about 150 pixels.
    let landmarks = [
        [280.0, 200.0],
        [345.0, 196.0],
        [313.0, 238.0],
        [287.0, 278.0],
        [340.0, 275.0],
    ];
    let mut crop = vec![0u8; (size * size * 3) as usize];
    let copy = try_best_of(runs, || {
        for i in 0..count {
            let x0 = 250 + i % 8;
            for row in 0..size as usize {
                let src = ((150 + row) * w as usize + x0) * 3;
                let dst = row * size as usize * 3;
                crop[dst..dst + size as usize * 3]
                    .copy_from_slice(&frame[src..src + size as usize * 3]);
            }
            black_box(&crop);
        }
        Ok(())
    })?;
    let aligned = try_best_of(runs, || {
        for _ in 0..count {
            crop_aligned(&image, &landmarks, size, &mut crop).map_err(|e| e.to_string())?;
            black_box(&crop);
        }
        Ok(())
    })?;
    println!("face crops, {size}x{size} out of {w}x{h}, {count} crops");
    row(
        "plain box copy (baseline)",
        copy,
        count as f64,
        "crops/s",
        copy,
    );
    row(
        "ArcFace 5-point aligned crop",
        aligned,
        count as f64,
        "crops/s",
        copy,
    );
    Ok(())
}

fn infer(
    model: &Path,
    frames: usize,
    rounds: usize,
    elements: &crate::pipeline::ElementOptions,
) -> Result<(), String> {
    use crate::pipeline::ProviderChoice;
    use gstaffect::session::Provider;
    let provider = match elements.provider {
        ProviderChoice::Cpu => Provider::Cpu,
        ProviderChoice::Cuda => Provider::Cuda {
            device_id: elements.device as i32,
        },
    };
    println!(
        "affectinfer vs the bare shared ONNX Runtime session, {} on {provider}",
        model.display()
    );
    let batch_size = elements.batch_size.map_or(16, |b| b as usize);
    for mut scenario in crate::infer_bench::Scenario::standard(frames, batch_size) {
        scenario.provider = provider;
        let t = crate::infer_bench::throughput(model, &scenario, rounds)?;
        println!(
            "  {:<22} bare {:>8.1} faces/s  element {:>8.1} faces/s  element/bare {:>5.2}",
            scenario.name,
            t.faces_per_second(t.bare),
            t.faces_per_second(t.element),
            t.ratio()
        );
    }
    Ok(())
}

/// Two analysed faces, as `affectinfer` leaves them on a buffer.
fn attach_faces(buffer: &mut gst::BufferRef, width: u32, height: u32) {
    let labels = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let expressions = labels(&affect_core::labels::EXPRESSION_LABELS);
    let aus = labels(&affect_core::labels::AU_LABELS);
    for (k, x) in [(1u64, 80.0f32), (2, 360.0)] {
        let face = Face {
            bbox: [x, 120.0, x + 180.0, 320.0],
            track_id: k,
            score: 0.9,
            landmarks: None,
        };
        let mut meta = gst_video::VideoRegionOfInterestMeta::add(
            buffer,
            gstaffect::meta::FACE_ROI_TYPE,
            face.roi_rect(width, height),
        );
        meta.set_id(k as i32);
        meta.add_param(face.params());
        let result = AffectResult::new(
            Some([0.4, -0.2]),
            &[0.1, 0.05, 0.05, 0.05, 0.6, 0.05, 0.05, 0.05],
            &[0.9, 0.1, 0.2, 0.8, 0.7, 0.1, 0.9, 0.1, 0.1, 0.1, 0.6, 0.2],
            &expressions,
            &aus,
            "bench".into(),
        );
        meta.add_param(result.to_structure());
    }
}

/// Runs `videotestsrc ! RGBA 640x480 ! (faces added) ! {tail}` over `frames` frames.
fn pipeline_time(tail: &str, frames: usize) -> Result<Duration, String> {
    let (w, h) = (640u32, 480u32);
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers={frames} pattern=smpte \
         ! video/x-raw,format=RGBA,width={w},height={h},framerate=30/1 \
         ! identity name=faces ! {tail}"
    ))
    .map_err(|e| format!("cannot build the benchmark pipeline: {e}"))?
    .downcast::<gst::Pipeline>()
    .map_err(|_| "not a pipeline")?;
    let pad = pipeline
        .by_name("faces")
        .and_then(|e| e.static_pad("src"))
        .ok_or("no identity")?;
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(gst::PadProbeData::Buffer(buffer)) = info.data.as_mut() {
            attach_faces(buffer.make_mut(), w, h);
        }
        gst::PadProbeReturn::Ok
    });
    let bus = pipeline.bus().ok_or("no bus")?;
    let started = Instant::now();
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|_| "the benchmark pipeline does not start")?;
    let result = match bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(300),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    ) {
        Some(m) => match m.view() {
            gst::MessageView::Error(e) => Err(format!("{}", e.error())),
            _ => Ok(started.elapsed()),
        },
        None => Err("the benchmark pipeline did not finish".into()),
    };
    let _ = pipeline.set_state(gst::State::Null);
    result
}

fn overlay_and_sink(frames: usize, runs: usize) -> Result<(), String> {
    let frame = vec![7u8; 640 * 480 * 4];
    let mut copy = vec![0u8; frame.len()];
    let frame_copy = try_best_of(runs * 20, || {
        copy.copy_from_slice(black_box(&frame));
        black_box(&copy);
        Ok(())
    })?;
    // The first pipeline of the process pays for loading the plugins and caps set-up.
    pipeline_time("fakesink sync=false", 10)?;
    let plain = try_best_of(runs + 1, || {
        pipeline_time("fakesink sync=false", frames).map(|_| ())
    })?;
    let overlay = try_best_of(runs + 1, || {
        pipeline_time("affectoverlay ! fakesink sync=false", frames).map(|_| ())
    })?;
    let per_frame = overlay.saturating_sub(plain) / frames as u32;
    println!("affectoverlay, 640x480 RGBA, 2 faces per frame, {frames} frames");
    println!(
        "  plain copy of one frame (baseline) {:>9.3} ms   overlay per frame {:>8.3} ms   {:>6.1}x a frame copy",
        frame_copy.as_secs_f64() * 1e3,
        per_frame.as_secs_f64() * 1e3,
        per_frame.as_secs_f64() / frame_copy.as_secs_f64()
    );

    let dir = std::env::temp_dir().join(format!("affect-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let rows = (2 * frames) as f64;
    // Baseline: the same number of rows of 60 numbers formatted and written by hand, the
    // least any CSV writer does.
    let bare_path = dir.join("bare.csv");
    let bare = try_best_of(runs + 1, || {
        use std::io::Write;
        let file = std::fs::File::create(&bare_path).map_err(|e| e.to_string())?;
        let mut w = std::io::BufWriter::new(file);
        for r in 0..2 * frames {
            let values: Vec<String> = (0..60)
                .map(|k| format!("{}", (r * 60 + k) as f64 * 0.001))
                .collect();
            writeln!(w, "{}", values.join(",")).map_err(|e| e.to_string())?;
        }
        w.flush().map_err(|e| e.to_string())
    })?;
    println!(
        "affectsink, 2 faces per frame, {frames} frames ({rows} rows; the sink's rate includes the source)"
    );
    row(
        "bare formatted CSV writes (baseline)",
        bare,
        rows,
        "rows/s",
        bare,
    );
    for format in ["csv", "jsonl"] {
        let path = dir.join(format!("rows.{format}"));
        let sink = try_best_of(runs + 1, || {
            pipeline_time(
                &format!(
                    "affectsink format={format} overwrite=true location=\"{}\"",
                    path.display()
                ),
                frames,
            )
            .map(|_| ())
        })?;
        row(
            &format!("affectsink format={format}"),
            sink,
            rows,
            "rows/s",
            bare,
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

pub fn run(options: &BenchOptions) -> Result<(), String> {
    let model = match &options.model {
        Some(m) => m.clone(),
        None => crate::pipeline::default_model()?,
    };
    if let Some(minutes) = options.soak {
        if !(minutes.is_finite() && minutes > 0.0) {
            return Err(format!(
                "--soak takes a positive number of minutes, not {minutes}"
            ));
        }
        return crate::live_bench::soak(&model, minutes, &options.elements.infer());
    }
    if options.archive {
        return crate::archive_bench::run(&model, options.clips, &options.elements);
    }
    if options.real {
        return crate::real_bench::run(
            &model,
            options.frames,
            if options.long { 3 } else { 1 },
            &options.elements,
        );
    }
    let (seconds, crops_n, frames, runs) = if options.long {
        (60.0, 2000, 600, 5)
    } else {
        (10.0, 300, 120, 2)
    };
    let started = Instant::now();
    melspec(seconds, runs)?;
    crops(crops_n, runs)?;
    overlay_and_sink(frames, runs)?;
    infer(
        &model,
        if options.long { 256 } else { 32 },
        runs.min(3),
        &options.elements,
    )?;
    if !options.no_live {
        crate::live_bench::live_latency(
            &model,
            if options.long { 20.0 } else { 4.0 },
            &options.elements.infer(),
        )?;
    }
    println!(
        "({:.1} s in all; --long for longer runs)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
