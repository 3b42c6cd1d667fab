// SPDX-License-Identifier: MPL-2.0
//! The log-mel spectrogram equals librosa's, computed in the test from the same signals.

use affect_core::melspec::{MelConfig, MelNorm, MelScale, MelSpectrogram, WindowKind};
use affect_core::testutil::{read_f32, run_python, scratch_dir, write_f32};

/// Tolerance of the issue: 1e-3 absolute on every log-mel value.
const TOLERANCE: f32 = 1e-3;

const LIBROSA: &str = r#"
import sys, numpy as np, librosa
(inp, out, sr, n_fft, win, hop, n_mels, fmin, fmax, power, offset, htk, norm, window) = sys.argv[1:]
y = np.fromfile(inp, dtype='<f4')
S = librosa.feature.melspectrogram(y=y, sr=int(sr), n_fft=int(n_fft), win_length=int(win),
    hop_length=int(hop), n_mels=int(n_mels), fmin=float(fmin), fmax=float(fmax), center=False,
    power=float(power), htk=(htk == 'htk'), norm=('slaney' if norm == 'slaney' else None),
    window=window)
np.log(S + float(offset)).T.astype('<f4').tofile(out)
"#;

struct Lcg(u64);
impl Lcg {
    fn uniform(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn signals(sr: u32) -> Vec<(&'static str, Vec<f32>)> {
    let n = sr as usize * 2;
    let t = |i: usize| i as f64 / sr as f64;
    let mut rng = Lcg(42);
    let noise: Vec<f32> = (0..n).map(|_| (rng.uniform() * 2.0 - 1.0) as f32).collect();
    let tones: Vec<f32> = (0..n)
        .map(|i| {
            let x = 0.5 * (2.0 * std::f64::consts::PI * 440.0 * t(i)).sin()
                + 0.25 * (2.0 * std::f64::consts::PI * 1234.5 * t(i)).sin()
                + 0.1 * (2.0 * std::f64::consts::PI * 3000.0 * t(i)).cos();
            x as f32
        })
        .collect();
    let chirp: Vec<f32> = (0..n)
        .map(|i| {
            let f = 100.0 + 3000.0 * t(i);
            (0.8 * (std::f64::consts::PI * f * t(i)).sin()) as f32
        })
        .collect();
    // Speech-like: bursts of a harmonic tone separated by true silence and very quiet noise.
    let mut rng = Lcg(7);
    let bursts: Vec<f32> = (0..n)
        .map(|i| {
            let on = (t(i) * 3.0).fract() < 0.5;
            if on {
                let f0 = 120.0 + 30.0 * (t(i) * 5.0).sin();
                (1..6)
                    .map(|h| (2.0 * std::f64::consts::PI * f0 * h as f64 * t(i)).sin() / h as f64)
                    .sum::<f64>() as f32
                    * 0.3
            } else if (t(i) * 3.0).fract() < 0.75 {
                0.0
            } else {
                ((rng.uniform() - 0.5) * 1e-4) as f32
            }
        })
        .collect();
    vec![
        ("noise", noise),
        ("tones", tones),
        ("chirp", chirp),
        ("bursts", bursts),
    ]
}

fn compare(cfg: &MelConfig, tag: &str) {
    let dir = scratch_dir(&format!("librosa-{tag}"));
    for (name, signal) in signals(cfg.sample_rate) {
        let inp = dir.join(format!("{name}.f32"));
        let out = dir.join(format!("{name}.mel"));
        write_f32(&inp, &signal);
        let args = [
            inp.to_str().unwrap().to_string(),
            out.to_str().unwrap().to_string(),
            cfg.sample_rate.to_string(),
            cfg.n_fft.to_string(),
            cfg.win_length.to_string(),
            cfg.hop_length.to_string(),
            cfg.n_mels.to_string(),
            cfg.f_min.to_string(),
            cfg.f_max_hz().to_string(),
            cfg.power.to_string(),
            cfg.log_offset.to_string(),
            cfg.mel_scale.to_string(),
            cfg.norm.to_string(),
            match cfg.window {
                WindowKind::Hann => "hann",
                WindowKind::Hamming => "hamming",
                WindowKind::Rectangular => "boxcar",
            }
            .to_string(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_python(LIBROSA, &args);
        let expected = read_f32(&out);
        let got = MelSpectrogram::new(cfg.clone()).unwrap().compute(&signal);
        assert_eq!(
            got.len(),
            expected.len(),
            "{tag}/{name}: frame count differs from librosa"
        );
        assert!(!got.is_empty());
        let (worst_i, worst) = got
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .enumerate()
            .fold(
                (0, 0.0f32),
                |acc, (i, d)| if d > acc.1 { (i, d) } else { acc },
            );
        assert!(
            worst <= TOLERANCE,
            "{tag}/{name}: max |ours - librosa| = {worst} at frame {} mel {} (ours {}, librosa {})",
            worst_i / cfg.n_mels,
            worst_i % cfg.n_mels,
            got[worst_i],
            expected[worst_i]
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn default_features_match_librosa() {
    compare(&MelConfig::default(), "default");
}

#[test]
fn htk_unnormalised_match_librosa() {
    compare(
        &MelConfig {
            sample_rate: 8000,
            n_fft: 400,
            win_length: 256,
            hop_length: 100,
            n_mels: 40,
            mel_scale: MelScale::Htk,
            norm: MelNorm::None,
            ..MelConfig::default()
        },
        "htk",
    );
}

#[test]
fn magnitude_hamming_band_limited_match_librosa() {
    compare(
        &MelConfig {
            sample_rate: 22050,
            n_fft: 1024,
            win_length: 1024,
            hop_length: 256,
            n_mels: 80,
            f_min: 50.0,
            f_max: Some(7600.0),
            power: 1.0,
            log_offset: 1e-5,
            window: WindowKind::Hamming,
            ..MelConfig::default()
        },
        "hamming",
    );
}
