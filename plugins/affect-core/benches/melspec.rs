// SPDX-License-Identifier: MPL-2.0
//! Log-mel throughput on one core, as a real-time factor, against the bare real FFT of the
//! same frames measured in the same run (the part no implementation can avoid; f64, the
//! precision the spectrogram computes in).
//!
//! `cargo bench -p affect-core --bench melspec`

use std::hint::black_box;

use affect_core::bench::best_of;
use affect_core::melspec::{MelConfig, MelSpectrogram, StreamingMelSpectrogram};
use realfft::RealFftPlanner;

fn main() {
    let cfg = MelConfig::default();
    let seconds = 60.0;
    let n = (cfg.sample_rate as f64 * seconds) as usize;
    let mut state = 1u32;
    let signal: Vec<f32> = (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as f32 / u32::MAX as f32 - 0.5
        })
        .collect();
    let frames = cfg.n_frames(n);

    let fft = RealFftPlanner::<f64>::new().plan_fft_forward(cfg.n_fft);
    let mut frame = vec![0.0f64; cfg.n_fft];
    let mut spectrum = fft.make_output_vec();
    let mut scratch = fft.make_scratch_vec();
    let fft_only = best_of(5, || {
        for k in 0..frames {
            for (f, &s) in frame
                .iter_mut()
                .zip(&signal[k * cfg.hop_length..k * cfg.hop_length + cfg.n_fft])
            {
                *f = s as f64;
            }
            fft.process_with_scratch(&mut frame, &mut spectrum, &mut scratch)
                .unwrap();
            black_box(&spectrum);
        }
    });

    let mut mel = MelSpectrogram::new(cfg.clone()).unwrap();
    let mut out = Vec::with_capacity(frames * cfg.n_mels);
    let batch = best_of(5, || {
        out.clear();
        black_box(mel.compute_into(&signal, &mut out));
    });

    // 10 ms input buffers, as a live audio source delivers them.
    let streaming = best_of(5, || {
        let mut stream = StreamingMelSpectrogram::new(cfg.clone()).unwrap();
        out.clear();
        for piece in signal.chunks(160) {
            black_box(stream.push(piece, &mut out));
        }
    });

    println!("log-mel spectrogram, {seconds} s of 16 kHz audio ({frames} frames), one core");
    println!(
        "{:<28} {:>12} {:>14} {:>16}",
        "run", "time (ms)", "real-time x", "vs bare FFT"
    );
    for (name, d) in [
        ("bare real FFT (baseline)", fft_only),
        ("melspec, whole signal", batch),
        ("melspec, 10 ms buffers", streaming),
    ] {
        println!(
            "{:<28} {:>12.2} {:>14.0} {:>15.2}x",
            name,
            d.as_secs_f64() * 1e3,
            seconds / d.as_secs_f64(),
            d.as_secs_f64() / fft_only.as_secs_f64()
        );
    }
}
