// SPDX-License-Identifier: MPL-2.0
//! A voice-like signal for each video: harmonics of a glottal pitch shaped by moving vowel
//! formants, spoken in syllables with pauses between turns. Arousal raises loudness, pitch and
//! pitch variability; valence tilts the spectrum brighter. The speaker's labels at each
//! instant drive it, so an audio model has the same signal to learn as a face model.

use super::world::VideoPlan;

/// Sample rate of the written audio (the model contract's rate).
pub const SAMPLE_RATE: u32 = 16_000;

/// First and second formants of five vowels (Hz).
const VOWELS: [[f32; 2]; 5] = [
    [730.0, 1090.0],
    [530.0, 1840.0],
    [270.0, 2290.0],
    [570.0, 840.0],
    [300.0, 870.0],
];
const F3: f32 = 2500.0;
/// Samples per control update (10 ms): pitch, formants and loudness move in steps this fine.
const BLOCK: usize = 160;
const MAX_HARMONIC_HZ: f32 = 5000.0;

fn formant_gain(f: f32, centre: f32, bandwidth: f32) -> f32 {
    let x = (f - centre) / bandwidth;
    1.0 / (1.0 + x * x)
}

/// Cheap deterministic hash noise in [-1, 1].
fn hash_noise(i: u64) -> f32 {
    let mut z = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z ^= z >> 31;
    (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
}

/// The whole audio track of a video, mono f32 at [`SAMPLE_RATE`], in [-1, 1].
pub fn synthesize(plan: &VideoPlan) -> Vec<f32> {
    let seconds = plan.n_frames as f32 / plan.fps as f32;
    let n = (seconds * SAMPLE_RATE as f32).round() as usize;
    let mut out = vec![0.0f32; n];
    let sr = SAMPLE_RATE as f32;
    for (p_index, person) in plan.people.iter().enumerate() {
        let voice = person.voice;
        let mut phases = vec![0.0f32; 64];
        let mut prev_amp = vec![0.0f32; 64];
        for block_start in (0..n).step_by(BLOCK) {
            let t = block_start as f32 / sr;
            let block = &mut out[block_start..(block_start + BLOCK).min(n)];
            let speaking = person.speaking(t);
            let state = person.state(t);
            let arousal01 = 0.5 * (state.arousal + 1.0);
            let valence01 = 0.5 * (state.valence + 1.0);
            // Syllables: a raised-cosine envelope at the speaker's rate, each with its vowel.
            let phase = voice.syllable_rate * t;
            let syllable = phase.floor() as u64;
            let within = phase.fract();
            let env = if speaking && within < 0.8 {
                (std::f32::consts::PI * within / 0.8).sin().powf(0.7)
            } else {
                0.0
            };
            let loudness = (0.06 + 0.3 * arousal01) * env;
            let vowel = VOWELS[(hash_noise(syllable * 31 + p_index as u64).abs() * 4.99) as usize];
            let variability = 0.04 + 0.22 * arousal01;
            let f0 = voice.pitch_hz
                * (1.0 + 0.25 * (arousal01 - 0.5))
                * (1.0
                    + variability
                        * ((1.3 * std::f32::consts::TAU * t).sin()
                            + 0.5 * hash_noise(syllable * 7 + 1)));
            let tilt = 1.7 - 0.9 * valence01;
            let n_harmonics = ((MAX_HARMONIC_HZ / f0) as usize).min(phases.len());
            for k in 0..n_harmonics {
                let f = f0 * (k + 1) as f32;
                let shape = formant_gain(f, vowel[0], 90.0)
                    + 0.7 * formant_gain(f, vowel[1], 120.0)
                    + 0.3 * formant_gain(f, F3, 200.0)
                    + 0.02;
                let target = loudness * shape / ((k + 1) as f32).powf(tilt);
                let step = std::f32::consts::TAU * f / sr;
                let (a0, a1) = (prev_amp[k], target);
                let len = block.len() as f32;
                let mut ph = phases[k];
                for (i, s) in block.iter_mut().enumerate() {
                    let a = a0 + (a1 - a0) * (i as f32 / len);
                    *s += a * ph.sin();
                    ph += step;
                }
                phases[k] = ph % std::f32::consts::TAU;
                prev_amp[k] = target;
            }
            for a in prev_amp.iter_mut().skip(n_harmonics) {
                *a = 0.0;
            }
            // Breath noise while speaking, a faint room hiss always.
            for (i, s) in block.iter_mut().enumerate() {
                let idx = (block_start + i) as u64 ^ ((p_index as u64) << 40);
                *s += (0.01 * loudness + 0.0015) * hash_noise(idx);
            }
        }
    }
    for s in &mut out {
        *s = s.clamp(-1.0, 1.0);
    }
    out
}

/// Quantises to signed 16-bit PCM (what the video file stores).
pub fn to_s16(samples: &[f32]) -> Vec<i16> {
    samples
        .iter()
        .map(|&s| (s * 32767.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn louder_when_aroused_and_silent_in_pauses() {
        let plan = VideoPlan::new(9, 0, 1, 8.0, 15, 160, 120);
        let audio = synthesize(&plan);
        assert_eq!(audio.len(), 8 * SAMPLE_RATE as usize);
        let p = &plan.people[0];
        let rms = |t: f32| {
            let i = (t * SAMPLE_RATE as f32) as usize;
            let w = &audio[i..i + 1600];
            (w.iter().map(|s| s * s).sum::<f32>() / w.len() as f32).sqrt()
        };
        let mut speaking = Vec::new();
        let mut silent = Vec::new();
        let mut t = 0.0;
        while t < 7.8 {
            if p.speaking(t) && p.speaking(t + 0.1) {
                speaking.push(rms(t));
            } else if !p.speaking(t) && !p.speaking(t + 0.1) {
                silent.push(rms(t));
            }
            t += 0.1;
        }
        let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len().max(1) as f32;
        assert!(!speaking.is_empty() && !silent.is_empty());
        assert!(
            mean(&speaking) > 5.0 * mean(&silent),
            "{} vs {}",
            mean(&speaking),
            mean(&silent)
        );
    }
}
