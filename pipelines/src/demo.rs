//! `affect demo`: a generated speech-like recording through the audio stream of the analysis.

use std::f64::consts::PI;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use gst::prelude::*;

/// Sample rate and channel count of the generated file: CD-like, so the pipeline has to
/// convert and resample before the spectrogram, as it would for a real recording.
const FILE_RATE: u32 = 44_100;
const FILE_CHANNELS: u16 = 2;

/// A voice-like signal: syllables of a harmonic source with a gliding pitch, shaped by two
/// moving formants, separated by pauses.
fn speech_like(seconds: f64) -> Vec<f32> {
    let n = (seconds * FILE_RATE as f64) as usize;
    let mut phase = 0.0f64;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t = i as f64 / FILE_RATE as f64;
        // 4 syllables a second, the last quarter of each second silent.
        let syllable = (t * 4.0).fract();
        let voiced = (t.fract() < 0.75) as u8 as f64;
        let envelope = voiced * (PI * syllable).sin().powi(2);
        let f0 = 130.0 + 35.0 * (2.0 * PI * 0.6 * t).sin() + 15.0 * (2.0 * PI * 4.0 * t).sin();
        phase += 2.0 * PI * f0 / FILE_RATE as f64;
        let formant1 = 500.0 + 250.0 * (2.0 * PI * 1.1 * t).sin();
        let formant2 = 1500.0 + 600.0 * (2.0 * PI * 0.7 * t).cos();
        let mut x = 0.0;
        for h in 1..40 {
            let f = f0 * h as f64;
            if f > 7000.0 {
                break;
            }
            let gain = (-((f - formant1) / 200.0).powi(2)).exp()
                + 0.6 * (-((f - formant2) / 300.0).powi(2)).exp()
                + 0.05 / h as f64;
            x += gain * (phase * h as f64).sin();
        }
        out.push((0.25 * envelope * x) as f32);
    }
    out
}

/// Writes interleaved 16-bit PCM WAV with the same signal on every channel.
fn write_wav(path: &Path, mono: &[f32]) -> std::io::Result<()> {
    let block_align = 2 * FILE_CHANNELS as u32;
    let data_len = mono.len() as u32 * block_align;
    let mut bytes = Vec::with_capacity(44 + data_len as usize);
    bytes.extend_from_slice(b"RIFF");
    bytes.extend_from_slice(&(36 + data_len).to_le_bytes());
    bytes.extend_from_slice(b"WAVEfmt ");
    bytes.extend_from_slice(&16u32.to_le_bytes());
    bytes.extend_from_slice(&1u16.to_le_bytes()); // PCM
    bytes.extend_from_slice(&FILE_CHANNELS.to_le_bytes());
    bytes.extend_from_slice(&FILE_RATE.to_le_bytes());
    bytes.extend_from_slice(&(FILE_RATE * block_align).to_le_bytes());
    bytes.extend_from_slice(&(block_align as u16).to_le_bytes());
    bytes.extend_from_slice(&16u16.to_le_bytes());
    bytes.extend_from_slice(b"data");
    bytes.extend_from_slice(&data_len.to_le_bytes());
    for &s in mono {
        let v = (s.clamp(-1.0, 1.0) * 32767.0).round() as i16;
        for _ in 0..FILE_CHANNELS {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
    }
    fs::File::create(path)?.write_all(&bytes)
}

struct Spectrogram {
    caps: String,
    n_mels: usize,
    frames: Vec<f32>,
    first_pts: Option<gst::ClockTime>,
    end: Option<gst::ClockTime>,
    /// Output buffers whose timestamp did not continue the previous one exactly.
    gaps: usize,
}

fn analyse(path: &Path) -> Result<Spectrogram, String> {
    let description = format!(
        "filesrc location=\"{}\" ! decodebin ! audioconvert ! audioresample \
         ! affectspectro ! appsink name=sink sync=false",
        path.display()
    );
    let pipeline = gst::parse::launch(&description)
        .map_err(|e| format!("cannot build the pipeline: {e}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "the description is not a pipeline".to_string())?;
    let sink = pipeline
        .by_name("sink")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or("no appsink in the pipeline")?;
    let bus = pipeline.bus().ok_or("pipeline without bus")?;
    let _ = pipeline.set_state(gst::State::Playing);

    let mut spec = Spectrogram {
        caps: String::new(),
        n_mels: 0,
        frames: Vec::new(),
        first_pts: None,
        end: None,
        gaps: 0,
    };
    let result = loop {
        // Errors are checked between samples so a failing pipeline never blocks the loop.
        if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error])
            && let gst::MessageView::Error(e) = msg.view()
        {
            break Err(format!("{} ({:?})", e.error(), e.debug()));
        }
        match sink.try_pull_sample(gst::ClockTime::from_mseconds(100)) {
            Some(sample) => {
                if spec.n_mels == 0
                    && let Some(caps) = sample.caps()
                {
                    spec.caps = caps.to_string();
                    let s = caps.structure(0).ok_or("caps without structure")?;
                    spec.n_mels = s.get::<i32>("n-mels").map_err(|e| e.to_string())? as usize;
                }
                let buf = sample.buffer().ok_or("sample without buffer")?;
                if let (Some(end), Some(pts)) = (spec.end, buf.pts())
                    && end != pts
                {
                    spec.gaps += 1;
                }
                spec.first_pts = spec.first_pts.or(buf.pts());
                spec.end = buf.pts().zip(buf.duration()).map(|(p, d)| p + d);
                let map = buf.map_readable().map_err(|e| e.to_string())?;
                spec.frames.extend(
                    map.as_slice()
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                );
            }
            None if sink.is_eos() => break Ok(()),
            None => {}
        }
    };
    let _ = pipeline.set_state(gst::State::Null);
    result.map(|()| spec)
}

/// The spectrogram in the terminal: time left to right, low mels at the bottom.
fn draw(spec: &Spectrogram, columns: usize, rows: usize) -> String {
    const RAMP: &[u8] = b" .:-=+*#%@";
    let n_frames = spec.frames.len() / spec.n_mels;
    let mut sorted = spec.frames.clone();
    sorted.sort_by(f32::total_cmp);
    let lo = sorted[sorted.len() / 20];
    let hi = sorted[sorted.len() - 1 - sorted.len() / 100];
    let mut text = String::new();
    for row in (0..rows).rev() {
        let (m0, m1) = (row * spec.n_mels / rows, (row + 1) * spec.n_mels / rows);
        for col in 0..columns {
            let (f0, f1) = (
                col * n_frames / columns,
                ((col + 1) * n_frames / columns).max(col * n_frames / columns + 1),
            );
            let mut sum = 0.0;
            let mut count = 0;
            for f in f0..f1.min(n_frames) {
                for m in m0..m1 {
                    sum += spec.frames[f * spec.n_mels + m];
                    count += 1;
                }
            }
            let v = if count > 0 { sum / count as f32 } else { lo };
            let level = ((v - lo) / (hi - lo)).clamp(0.0, 1.0);
            text.push(RAMP[(level * (RAMP.len() - 1) as f32).round() as usize] as char);
        }
        text.push('\n');
    }
    text
}

pub fn run(out: &Path, seconds: f64) -> Result<(), String> {
    if !(seconds.is_finite() && seconds >= 0.1) {
        return Err(format!("--seconds must be at least 0.1, got {seconds}"));
    }
    fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let wav = out.join("speech.wav");
    println!(
        "Generating {seconds} s of speech-like audio ({FILE_RATE} Hz stereo) -> {}",
        wav.display()
    );
    write_wav(&wav, &speech_like(seconds))
        .map_err(|e| format!("cannot write {}: {e}", wav.display()))?;

    println!(
        "Running filesrc ! decodebin ! audioconvert ! audioresample ! affectspectro ! appsink"
    );
    let started = Instant::now();
    let spec = analyse(&wav)?;
    let elapsed = started.elapsed().as_secs_f64();
    if spec.n_mels == 0 || spec.frames.is_empty() {
        return Err("the pipeline produced no spectrogram frames".into());
    }
    let n_frames = spec.frames.len() / spec.n_mels;
    let expected =
        affect_core::melspec::MelConfig::default().n_frames((seconds * 16_000.0) as usize);

    let raw = out.join("spectrogram.f32");
    let bytes: Vec<u8> = spec.frames.iter().flat_map(|v| v.to_le_bytes()).collect();
    fs::write(&raw, bytes).map_err(|e| format!("cannot write {}: {e}", raw.display()))?;

    println!();
    println!("Output caps      {}", spec.caps);
    println!(
        "Frames           {n_frames} x {} mels (expected {expected} for {seconds} s)",
        spec.n_mels
    );
    println!(
        "Time covered     {} .. {}",
        spec.first_pts.map_or("?".into(), |t| t.to_string()),
        spec.end.map_or("?".into(), |t| t.to_string())
    );
    println!("Timestamp gaps   {}", spec.gaps);
    println!(
        "Wall time        {:.3} s ({:.0}x real time, decode + resample + spectrogram)",
        elapsed,
        seconds / elapsed
    );
    println!(
        "Frames written   {} (little-endian f32, frame-major)",
        raw.display()
    );
    println!();
    println!("Log-mel spectrogram (time ->, mel bands ^):");
    print!("{}", draw(&spec, 72, 16));
    if n_frames.abs_diff(expected) > 2 || spec.gaps > 0 {
        return Err(format!(
            "unexpected output: {n_frames} frames (expected {expected}), {} gaps",
            spec.gaps
        ));
    }
    Ok(())
}
