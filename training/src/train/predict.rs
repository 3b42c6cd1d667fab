// SPDX-License-Identifier: MPL-2.0
//! Predictions of a network over a split, written as the prediction CSV that
//! `affect-train eval` scores. Temporal networks run as a pipeline runs them: frame by frame
//! along each face track, the recurrent state carried from one frame to the next.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

use affect_core::labels::N_AUS;
use tch::{Device, Kind};

use super::loader::{ClipSet, for_each_batch};
use super::{TrainError, batch_tensors, input_spec};
use crate::data::{AffWild2, Split};
use crate::eval::prediction_header;
use crate::model::{AffectNet, probabilities};

/// Valence/arousal, expression class, AU probabilities.
type FramePrediction = ([f32; 2], usize, [f32; N_AUS]);

/// Frames per forward pass along a track.
const CHUNK: usize = 64;

/// What was written.
pub struct PredictSummary {
    pub rows: usize,
    /// Annotated frames without a crop, given the track's previous prediction.
    pub held: usize,
}

/// Runs `net` over every annotated frame of `split` and writes the prediction CSV to `out`.
pub fn predict(
    net: &AffectNet,
    data: &AffWild2,
    split: Split,
    device: Device,
    out: &Path,
) -> Result<PredictSummary, TrainError> {
    let mut set = ClipSet::open(data, split, 1, net.config.audio, None)?;
    let mut by_track: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, s) in set.samples.iter().enumerate() {
        by_track.entry(s.name.clone()).or_default().push(i);
    }
    let mut chunks = Vec::new();
    for (_, mut idx) in by_track {
        idx.sort_by_key(|&i| set.samples[i].frame);
        chunks.extend(idx.chunks(CHUNK).map(<[usize]>::to_vec));
    }
    set.clips = chunks;
    let spec = input_spec(net);
    let order: Vec<usize> = (0..set.clips.len()).collect();
    let mut preds: HashMap<(String, u32), FramePrediction> = HashMap::new();
    let mut state: Option<(String, tch::Tensor)> = None;
    // One worker and one clip per batch keep the chunks of a track in order.
    for_each_batch::<TrainError>(&set, &order, 1, &spec, None, 1, |b| {
        let name = set.samples[b.rows[0]].name.clone();
        let t = batch_tensors(&b, spec.size, spec.audio_frames, device);
        let h0 = match &state {
            Some((n, h)) if *n == name => Some(h.shallow_clone()),
            _ => None,
        };
        let (out, h) = tch::no_grad(|| {
            net.forward_clips_from(
                &t.face,
                t.audio.as_ref(),
                1,
                b.len as i64,
                h0.as_ref(),
                false,
            )
        });
        state = h.map(|h| (name, h));
        let (va, au, ex) = probabilities(&out);
        let va: Vec<f32> = Vec::try_from(
            va.to_device(Device::Cpu)
                .to_kind(Kind::Float)
                .flatten(0, -1),
        )?;
        let au: Vec<f32> = Vec::try_from(
            au.to_device(Device::Cpu)
                .to_kind(Kind::Float)
                .flatten(0, -1),
        )?;
        let ex: Vec<i64> = Vec::try_from(ex.argmax(1, false).to_device(Device::Cpu))?;
        for (r, &i) in b.rows.iter().enumerate() {
            let s = &set.samples[i];
            let mut a = [0f32; N_AUS];
            a.copy_from_slice(&au[r * N_AUS..(r + 1) * N_AUS]);
            preds.insert(
                (s.name.clone(), s.frame),
                ([va[2 * r], va[2 * r + 1]], ex[r] as usize, a),
            );
        }
        Ok(())
    })?;

    let io_err = |source| TrainError::Io {
        path: out.to_path_buf(),
        source,
    };
    let mut w = std::io::BufWriter::new(std::fs::File::create(out).map_err(io_err)?);
    writeln!(w, "{}", prediction_header()).map_err(io_err)?;
    let mut summary = PredictSummary { rows: 0, held: 0 };
    for name in data.names(split)? {
        let labels = data.labels(split, &name)?;
        // Frames without a crop (the detector missed) keep the track's last prediction, as a
        // pipeline holding its last result would; before any, a neutral prediction.
        let mut last = ([0f32; 2], 0usize, [0f32; N_AUS]);
        for (k, l) in labels.iter().enumerate() {
            let frame = k as u32 + 1;
            match preds.get(&(name.clone(), frame)) {
                Some(p) => last = *p,
                None if !l.is_empty() => summary.held += 1,
                None => {}
            }
            if l.is_empty() {
                continue;
            }
            let (va, ex, au) = &last;
            let aus: Vec<String> = au.iter().map(|p| format!("{p:.4}")).collect();
            writeln!(
                w,
                "{name},{frame},{:.5},{:.5},{ex},{}",
                va[0],
                va[1],
                aus.join(",")
            )
            .map_err(io_err)?;
            summary.rows += 1;
        }
    }
    w.flush().map_err(io_err)?;
    Ok(summary)
}
