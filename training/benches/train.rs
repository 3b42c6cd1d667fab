// SPDX-License-Identifier: MPL-2.0
//! Training throughput per backbone: images/s of one AdamW step (forward, masked multi-task
//! loss, backward, update) on synthetic tensors, on the CPU (and CUDA when libtorch sees it),
//! with the ratio to ResNet-18 measured in the same run.
//!
//! Then the data loader: the default model's network (`training/configs/default.toml`)
//! trained on real JPEG crops of a generated world through the loader's worker threads
//! (first pass: decoding the JPEGs; second pass: crops cached in memory, as from the second
//! epoch on), against the same steps on synthetic tensors of the same shapes in the same run.
//! A ratio near 1 means the loader keeps the network busy.
//!
//! On the CPU, ResNet-18 is also trained by PyTorch eager (Python, `pytorch_resnet18.py`:
//! the same network, loss, optimiser, batch and thread count), alternating with this crate
//! twice, best of each.
//!
//! `AFFECT_BENCH_SIZE` (default 112), `AFFECT_BENCH_BATCH` (default 32) and
//! `AFFECT_BENCH_STEPS` (default 5) change the per-backbone workload;
//! `AFFECT_BENCH_LOADER=0` skips the loader part, `AFFECT_BENCH_PYTORCH=0` the PyTorch one.

use std::path::Path;
use std::time::Instant;

use affect_core::bench::env_or;
use affect_train::data::{AffWild2, Split};
use affect_train::synth::{self, SynthConfig};
use affect_train::train::config::TrainConfig;
use affect_train::train::loader::{ClipSet, for_each_batch};
use affect_train::train::{batch_tensors, input_spec, train_step};

use affect_train::loss::{LossWeights, Targets, multitask_loss};
use affect_train::model::{AffectNet, BackboneKind, NetworkConfig};
use affect_train::train::AdamW;
use affect_train::train::config::OptimizerConfig;
use tch::{Device, Kind, Tensor, nn};

/// Images/s of training steps on random tensors: `batch` clips of `len` frames.
fn images_per_s(cfg: &NetworkConfig, batch: i64, steps: usize, device: Device) -> f64 {
    clip_images_per_s(cfg, 1, batch, steps, device)
}

fn clip_images_per_s(
    cfg: &NetworkConfig,
    len: i64,
    clips: i64,
    steps: usize,
    device: Device,
) -> f64 {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let net = AffectNet::new(&vs.root(), cfg);
    let mut opt = AdamW::new(&vs, &OptimizerConfig::default());
    let s = cfg.input_size;
    let batch = clips * len;
    let face = Tensor::randn([batch, 3, s, s], (Kind::Float, device));
    let audio = cfg
        .audio
        .then(|| Tensor::randn([batch, 1, cfg.audio_frames, 64], (Kind::Float, device)));
    let targets = Targets {
        va: Tensor::rand([batch, 2], (Kind::Float, device)) * 2.0 - 1.0,
        expression: Tensor::randint(8, [batch], (Kind::Int64, device)),
        au: Tensor::randint(2, [batch, 12], (Kind::Float, device)),
    };
    let weights = LossWeights::default();
    let mut step = || {
        let out = tch::autocast(device.is_cuda(), || {
            net.forward_clips(&face, audio.as_ref(), clips, len, true)
        });
        let l = multitask_loss(&out, &targets, &weights, None);
        opt.zero_grad();
        l.total.backward();
        opt.step(1e-4);
    };
    step(); // warm-up: allocations, cuDNN algorithm choice
    if device.is_cuda() {
        tch::Cuda::synchronize(0);
    }
    let t = Instant::now();
    for _ in 0..steps {
        step();
    }
    if device.is_cuda() {
        tch::Cuda::synchronize(0);
    }
    (batch as usize * steps) as f64 / t.elapsed().as_secs_f64()
}

/// Images/s of training `cfg`'s network over `set` through the loader, one pass; also the
/// number of steps taken.
fn loader_images_per_s(cfg: &TrainConfig, set: &ClipSet, device: Device) -> (f64, usize) {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let net = AffectNet::new(&vs.root(), &cfg.network);
    let mut opt = AdamW::new(&vs, &cfg.optimizer);
    let spec = input_spec(&net);
    let order: Vec<usize> = (0..set.clips.len()).collect();
    let batch = cfg.train.batch_size;
    let order = &order[..order.len() / batch * batch];
    let (mut images, mut steps) = (0usize, 0usize);
    let t = Instant::now();
    for_each_batch::<affect_train::data::DataError>(
        set,
        order,
        batch,
        &spec,
        Some((&cfg.augment, 1)),
        cfg.data.workers,
        |b| {
            let bt = batch_tensors(&b, spec.size, spec.audio_frames, device);
            train_step(&net, &mut opt, &bt, &b, &cfg.loss, None, false, 1e-4);
            images += b.clips * b.len;
            steps += 1;
            Ok(())
        },
    )
    .expect("loader pass");
    if device.is_cuda() {
        tch::Cuda::synchronize(0);
    }
    (images as f64 / t.elapsed().as_secs_f64(), steps)
}

fn loader_bench() {
    let root_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config_path = root_dir.join("configs/default.toml");
    let text = std::fs::read_to_string(&config_path).expect("default config");
    let cfg = TrainConfig::parse(&text, &config_path).expect("default config parses");
    let world = std::env::temp_dir().join(format!("affect-bench-loader-{}", std::process::id()));
    let t = Instant::now();
    synth::generate(&SynthConfig {
        out: world.clone(),
        videos: 5,
        seconds: 8.0,
        seed: 3,
        width: 320,
        height: 240,
        ..SynthConfig::default()
    })
    .expect("synthetic world");
    let data = AffWild2::open(&world).expect("world opens");
    let set = ClipSet::open(
        &data,
        Split::Train,
        cfg.data.clip_len,
        cfg.network.audio,
        None,
    )
    .expect("train split");
    println!(
        "data loader: default network ({} {}px, clips of {} frames, batch {} clips, {} workers), {} clips of JPEG crops ({:.1} s to generate)",
        cfg.network.backbone.as_str(),
        cfg.network.input_size,
        cfg.data.clip_len,
        cfg.train.batch_size,
        cfg.data.workers,
        set.clips.len(),
        t.elapsed().as_secs_f64()
    );
    let device = Device::Cpu;
    let (cold, steps) = loader_images_per_s(&cfg, &set, device);
    let (warm, _) = loader_images_per_s(&cfg, &set, device);
    let tensors = clip_images_per_s(
        &cfg.network,
        cfg.data.clip_len as i64,
        cfg.train.batch_size as i64,
        steps,
        device,
    );
    println!("  synthetic tensors          {tensors:>9.1} images/s   1.00x (baseline, same steps)");
    println!(
        "  loader, decoding JPEGs     {cold:>9.1} images/s   {:>5.2}x",
        cold / tensors
    );
    println!(
        "  loader, crops in memory    {warm:>9.1} images/s   {:>5.2}x",
        warm / tensors
    );
    let _ = std::fs::remove_dir_all(&world);
}

/// ResNet-18 training images/s of this crate and of PyTorch eager on the CPU, best of two
/// alternating runs each.
fn pytorch_comparison(size: i64, batch: i64, steps: usize) {
    let script = include_str!("pytorch_resnet18.py");
    let mut cfg = NetworkConfig::new(BackboneKind::Resnet18);
    cfg.input_size = size;
    let threads = tch::get_num_threads().to_string();
    let args = [
        size.to_string(),
        batch.to_string(),
        steps.to_string(),
        threads,
        cfg.width().to_string(),
        cfg.embedding.to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (mut ours, mut theirs) = (0f64, 0f64);
    for _ in 0..2 {
        ours = ours.max(images_per_s(&cfg, batch, steps, Device::Cpu));
        let out = affect_core::testutil::run_python(script, &args);
        let ips: f64 = out
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("PyTorch printed {out:?}"));
        theirs = theirs.max(ips);
    }
    println!(
        "resnet18 training against PyTorch {} eager on the CPU, same network, loss, AdamW, batch {batch}, {size}x{size}:",
        torch_version()
    );
    println!("  PyTorch eager              {theirs:>9.1} images/s   1.00x (baseline)");
    println!(
        "  affect-train (tch)         {ours:>9.1} images/s   {:>5.2}x",
        ours / theirs
    );
}

fn torch_version() -> String {
    affect_core::testutil::run_python("import torch; print(torch.__version__)", &[])
        .trim()
        .to_string()
}

fn main() {
    let size = env_or("AFFECT_BENCH_SIZE", 112i64);
    let batch = env_or("AFFECT_BENCH_BATCH", 32i64);
    let steps = env_or("AFFECT_BENCH_STEPS", 5i64) as usize;
    let mut devices = vec![Device::Cpu];
    if tch::Cuda::is_available() {
        devices.push(Device::Cuda(0));
    }
    for device in devices {
        println!(
            "training throughput on {device:?} ({} threads), {size}x{size}, batch {batch}, {steps} steps, fp32 on CPU / autocast on CUDA",
            tch::get_num_threads()
        );
        let mut baseline = None;
        let mut configs: Vec<(String, NetworkConfig)> = BackboneKind::ALL
            .iter()
            .map(|&b| {
                let mut c = NetworkConfig::new(b);
                c.input_size = size;
                (b.as_str().to_string(), c)
            })
            .collect();
        let mut av = NetworkConfig::new(BackboneKind::Mobilefacenet);
        av.input_size = size;
        av.audio = true;
        configs.push(("mobilefacenet+audio".into(), av));
        for (name, cfg) in configs {
            let ips = images_per_s(&cfg, batch, steps, device);
            let base = *baseline.get_or_insert(ips);
            println!(
                "  {name:<22} {ips:>9.1} images/s   {:>5.2}x resnet18",
                ips / base
            );
        }
    }
    if env_or("AFFECT_BENCH_PYTORCH", 1i64) != 0 {
        pytorch_comparison(size, batch, steps);
    }
    if env_or("AFFECT_BENCH_LOADER", 1i64) != 0 {
        loader_bench();
    }
}
