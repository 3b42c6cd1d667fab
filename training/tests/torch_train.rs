// SPDX-License-Identifier: MPL-2.0
//! Training end to end on a small synthetic world (CPU): the validation loss falls and the
//! expression and AU loss terms beat the best guess that ignores the face (the label
//! frequencies of the training split, computed here from the annotation files); resuming
//! continues from `last/`; the trained checkpoint exports to a file that satisfies the
//! contract. Also the errors of bad configurations and missing checkpoints.

#![cfg(feature = "torch")]

use std::path::Path;

use affect_core::labels::EXPRESSION_LABELS;

use affect_core::testutil::scratch_dir;
use affect_train::synth::{self, SynthConfig};
use affect_train::train::config::TrainConfig;
use affect_train::train::{checkpoint, train};

fn config_text(root: &Path, out: &Path, epochs: usize) -> String {
    format!(
        r#"
[data]
root = "{root}"
clip_len = 4
workers = 2

[network]
backbone = "mobilefacenet"
input_size = 32
base_width = 16
embedding = 32
audio = true
audio_frames = 16
audio_width = 4
audio_embedding = 16
temporal = true
state_size = 32

[optimizer]
lr = 3e-3
warmup = 0.05

[train]
out = "{out}"
batch_size = 8
epochs = {epochs}
seed = 3
threads = 2
progress = false
"#,
        root = root.display(),
        out = out.display()
    )
}

/// Epochs of the whole run (the first run stops after 2, the resumed one goes on to this).
const EPOCHS: usize = 20;

/// Frame labels of one task and split: one line per frame after the header, `-1` (or a row
/// holding one) unlabelled, as Aff-Wild2's annotation files.
fn read_labels(root: &Path, task: &str, split: &str) -> Vec<Vec<i64>> {
    let mut rows = Vec::new();
    for entry in std::fs::read_dir(root.join(task).join(split)).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in text.lines().skip(1) {
            let row: Vec<i64> = line.split(',').map(|v| v.trim().parse().unwrap()).collect();
            if !row.contains(&-1) {
                rows.push(row);
            }
        }
    }
    assert!(!rows.is_empty(), "no labels in {task}/{split}");
    rows
}

/// Validation cross-entropy (expressions) and mean binary cross-entropy (AUs) of predicting
/// every frame with the training split's label frequencies.
fn prior_losses(root: &Path) -> (f64, f64) {
    let train = read_labels(root, "EXPR_Recognition_Challenge", "Train_Set");
    let valid = read_labels(root, "EXPR_Recognition_Challenge", "Validation_Set");
    let mut counts = vec![0usize; EXPRESSION_LABELS.len()];
    for row in &train {
        counts[row[0] as usize] += 1;
    }
    let expression = valid
        .iter()
        .map(|row| -((counts[row[0] as usize].max(1)) as f64 / train.len() as f64).ln())
        .sum::<f64>()
        / valid.len() as f64;

    let train = read_labels(root, "AU_Detection_Challenge", "Train_Set");
    let valid = read_labels(root, "AU_Detection_Challenge", "Validation_Set");
    let n_aus = train[0].len();
    let mut au = 0.0;
    for k in 0..n_aus {
        let p = train.iter().filter(|r| r[k] == 1).count() as f64 / train.len() as f64;
        let p = p.clamp(1e-3, 1.0 - 1e-3);
        let bce: f64 = valid
            .iter()
            .map(|r| if r[k] == 1 { -p.ln() } else { -(1.0 - p).ln() })
            .sum();
        au += bce / valid.len() as f64;
    }
    (expression, au / n_aus as f64)
}

#[test]
fn short_run_learns_resumes_and_exports() {
    let dir = scratch_dir("train-learn");
    let root = dir.join("world");
    let cfg = SynthConfig {
        out: root.clone(),
        // Many people, briefly, at 10 frames/s: what a network learns to generalise from is
        // the number of different faces and expression episodes, not the number of nearly
        // identical consecutive frames. With ten longer videos (about ten people) the tiny
        // network memorises its training faces and stays at the label prior on new ones.
        videos: 80,
        seconds: 3.0,
        seed: 5,
        fps: 10,
        width: 320,
        height: 240,
        ..SynthConfig::default()
    };
    synth::generate(&cfg).unwrap();
    let out = dir.join("run");
    let path = dir.join("train.toml");

    // Interrupted after 2 epochs...
    let first = TrainConfig::parse(&config_text(&root, &out, 2), &path).unwrap();
    let s = train(&first, false, None).unwrap();
    assert_eq!(s.epochs, 2);
    let untrained = s.first_val.clone().unwrap();
    // ...and resumed to the end.
    let resumed = TrainConfig::parse(&config_text(&root, &out, EPOCHS), &path).unwrap();
    let s = train(&resumed, true, None).unwrap();
    assert_eq!(s.epochs, EPOCHS);
    assert!(
        s.first_val.is_none(),
        "a resumed run restarted from scratch"
    );
    let log: Vec<serde_json::Value> = std::fs::read_to_string(out.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let epochs: Vec<u64> = log.iter().map(|l| l["epoch"].as_u64().unwrap()).collect();
    assert_eq!(epochs, (1..=EPOCHS as u64).collect::<Vec<_>>());

    // Validation on people never seen in training: judge the best epoch, as the best
    // checkpoint does.
    let val = |l: &serde_json::Value, key: &str| l["val"][key].as_f64().unwrap();
    let best_loss = log
        .iter()
        .map(|l| val(l, "loss"))
        .fold(f64::INFINITY, f64::min);
    let best = log
        .iter()
        .max_by(|a, b| val(a, "score").total_cmp(&val(b, "score")))
        .unwrap();
    eprintln!(
        "untrained: loss {:.3} P_VA {:.3} P_EXPR {:.3} P_AU {:.3}; best epoch {}: loss {:.3} P_VA {:.3} P_EXPR {:.3} P_AU {:.3}; lowest loss {best_loss:.3}",
        untrained.loss,
        untrained.p_va.unwrap(),
        untrained.p_expr.unwrap(),
        untrained.p_au.unwrap(),
        best["epoch"],
        val(best, "loss"),
        val(best, "p_va"),
        val(best, "p_expr"),
        val(best, "p_au"),
    );
    assert!(
        best_loss < 0.7 * untrained.loss,
        "validation loss {:.3} -> {best_loss:.3}",
        untrained.loss
    );
    // The face-blind baseline: predict every validation frame with the training split's label
    // frequencies. Its cross-entropy is what a network that learned only the priors scores
    // (well below the ln 8 of a uniform guess, since most frames are Neutral). The trained
    // network must beat it on people it never saw. On this world, six training seeds landed
    // at 0.70-0.86 of it for expressions and 0.78-0.88 for AUs (three other worlds: up to
    // 0.91 and 0.95); the spread is the chaos of a short run, which differs between CPUs.
    let (expr_prior, au_prior) = prior_losses(&root);
    let lowest = |key: &str| {
        log.iter()
            .map(|l| val(l, key))
            .fold(f64::INFINITY, f64::min)
    };
    let (expression, au) = (lowest("expression"), lowest("au"));
    eprintln!(
        "expression loss {expression:.3} vs prior {expr_prior:.3} ({:.2}); AU loss {au:.3} vs prior {au_prior:.3} ({:.2})",
        expression / expr_prior,
        au / au_prior
    );
    assert!(
        expression < 0.92 * expr_prior,
        "validation expression loss {expression:.3}, label prior {expr_prior:.3}"
    );
    assert!(
        au < 0.95 * au_prior,
        "validation AU loss {au:.3}, label prior {au_prior:.3}"
    );
    // Valence and arousal: a prior-only prediction (a constant) has CCC 0.
    let p_va = log
        .iter()
        .map(|l| val(l, "p_va"))
        .fold(f64::NEG_INFINITY, f64::max);
    assert!(p_va > 0.25, "validation P_VA {p_va:.3}");
    assert!((s.best_score - val(best, "score")).abs() < 1e-9);

    // The best checkpoint exports to a contract model.
    let onnx = dir.join("model.onnx");
    affect_train::export::export_checkpoint(&out.join("best"), &onnx, false, Some("test".into()))
        .unwrap();
    assert!(std::fs::metadata(&onnx).unwrap().len() > 10_000);
}

#[test]
fn bad_configs_name_the_key() {
    let path = Path::new("bad.toml");
    let good = config_text(Path::new("/data"), Path::new("/out"), 1);
    let cases = [
        (
            good.replace("clip_len = 4", "clip_len = 4\nclip_lenght = 3"),
            "clip_lenght",
        ),
        (
            good.replace("backbone = \"mobilefacenet\"", "backbone = \"alexnet\""),
            "alexnet",
        ),
        (good.replace("lr = 3e-3", "lr = -1.0"), "optimizer.lr"),
        (
            good.replace("batch_size = 8", "batch_size = 0"),
            "train.batch_size",
        ),
        (
            good.replace("input_size = 32", "input_size = 8"),
            "network.input_size",
        ),
        (good.replace("[data]\nroot = \"/data\"", "[data]"), "root"),
        (good.replace("seed = 3", "seed = \"three\""), "seed"),
        (
            good.replace("temporal = true", "temporal = false\nframe_skip = true"),
            "network.frame_skip",
        ),
    ];
    for (text, needle) in cases {
        let err = TrainConfig::parse(&text, path).unwrap_err().to_string();
        assert!(
            err.contains(needle) && err.contains("bad.toml"),
            "{needle}: {err}"
        );
    }
    TrainConfig::parse(&good, path).unwrap();
}

#[test]
fn missing_checkpoint_names_the_path() {
    let dir = scratch_dir("missing-checkpoint");
    let missing = dir.join("nowhere");
    let err = checkpoint::load(&missing, tch::Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains(&missing.display().to_string()), "{err}");
    let err = affect_train::export::export_checkpoint(&missing, &dir.join("m.onnx"), false, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("nowhere"), "{err}");
}
