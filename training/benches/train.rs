//! Training throughput per backbone: images/s of one AdamW step (forward, masked multi-task
//! loss, backward, update) on synthetic tensors, on the CPU (and CUDA when libtorch sees it),
//! with the ratio to ResNet-18 measured in the same run.
//!
//! `AFFECT_BENCH_SIZE` (default 112), `AFFECT_BENCH_BATCH` (default 32) and
//! `AFFECT_BENCH_STEPS` (default 5) change the workload.

use std::time::Instant;

use affect_train::loss::{LossWeights, Targets, multitask_loss};
use affect_train::model::{AffectNet, BackboneKind, NetworkConfig};
use affect_train::train::AdamW;
use affect_train::train::config::OptimizerConfig;
use tch::{Device, Kind, Tensor, nn};

fn env_or(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn images_per_s(cfg: &NetworkConfig, batch: i64, steps: usize, device: Device) -> f64 {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let net = AffectNet::new(&vs.root(), cfg);
    let mut opt = AdamW::new(&vs, &OptimizerConfig::default());
    let s = cfg.input_size;
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
            net.forward_clips(&face, audio.as_ref(), batch, 1, true)
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

fn main() {
    let size = env_or("AFFECT_BENCH_SIZE", 112);
    let batch = env_or("AFFECT_BENCH_BATCH", 32);
    let steps = env_or("AFFECT_BENCH_STEPS", 5) as usize;
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
}
