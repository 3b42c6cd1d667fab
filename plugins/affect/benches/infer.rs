//! `affectinfer` throughput and latency against the bare ONNX Runtime session running the
//! same batches of the same preprocessed faces, in the same run.
//!
//! `cargo bench -p gst-plugin-affect --bench infer` (the default model, 4 faces per frame,
//! batch 16 on the CPU; `AFFECT_BENCH_FRAMES` sets the frame count).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use affect_core::align::{self, RgbImage};
use gst::prelude::*;
use gstaffect::meta::Face;
use gstaffect::session::{self, FaceRequest, Provider, SessionOptions};

const W: usize = 320;
const H: usize = 240;
const FACES: usize = 4;
const BATCH: usize = 16;

fn frame(i: usize) -> Vec<u8> {
    (0..W * H * 3)
        .map(|k| ((k * 7 + i * 13 + (k / (W * 3)) * 3) % 251) as u8)
        .collect()
}

fn faces(i: usize) -> Vec<Face> {
    (0..FACES)
        .map(|f| {
            let (x, y) = (10.0 + 75.0 * f as f32 + (i % 5) as f32, 60.0);
            Face {
                bbox: [x, y, x + 64.0, y + 80.0],
                track_id: f as u64 + 1,
                score: 1.0,
                landmarks: Some([
                    [x + 20.0, y + 30.0],
                    [x + 44.0, y + 30.0],
                    [x + 32.0, y + 45.0],
                    [x + 22.0, y + 60.0],
                    [x + 42.0, y + 60.0],
                ]),
            }
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    gst::init().unwrap();
    gstaffect::plugin_register_static().unwrap();
    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/affect-default.onnx");
    let frames: usize = std::env::var("AFFECT_BENCH_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);

    // Baseline: the shared session fed directly with the faces the element would cut, in
    // batches of 16, one request per batch.
    let options = SessionOptions {
        provider: Provider::Cpu,
        intra_op_threads: 0,
        fallback_to_cpu: false,
    };
    let shared = session::shared_model(&model, &options, BATCH).expect("the default model");
    let spec = shared.contract.face.clone();
    let audio_len = shared
        .contract
        .audio
        .as_ref()
        .map(|a| a.frames * a.mel.n_mels);
    let mut requests = Vec::new();
    let mut crop = vec![0u8; (spec.width * spec.height * 3) as usize];
    for i in 0..frames {
        let data = frame(i);
        let image = RgbImage::new(&data, W as u32, H as u32, W * 3).unwrap();
        for f in faces(i) {
            let t = spec.crop_transform(f.bbox, f.landmarks.as_ref()).unwrap();
            align::warp_rgb8(&image, &t.affine(), &mut crop, spec.width, spec.height).unwrap();
            let mut tensor = vec![0.0; crop.len()];
            spec.normalize_into(&crop, &mut tensor);
            requests.push(FaceRequest {
                face: tensor,
                audio: audio_len.map(|n| vec![(1e-6f32).ln(); n]),
                track: None,
            });
        }
    }
    let user = shared.new_user();
    let start = Instant::now();
    for batch in requests.chunks(BATCH) {
        let reply = shared.submit(user, batch.to_vec(), Duration::ZERO).unwrap();
        reply.recv().unwrap().unwrap();
    }
    let bare = start.elapsed();

    // The element, on the same shared session: appsrc frames with their faces, 4 frames make
    // a batch of 16.
    let pipeline = gst::parse::launch(&format!(
        "appsrc name=src format=time caps=video/x-raw,format=RGB,width={W},height={H},framerate=30/1 \
         ! affectinfer model={} batch-size={BATCH} max-latency=1000 ! appsink name=sink sync=false",
        model.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    let pushed: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let arrived: Arc<Mutex<Vec<Instant>>> = Arc::default();
    {
        let arrived = arrived.clone();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    arrived.lock().unwrap().push(Instant::now());
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }
    let buffers: Vec<gst::Buffer> = (0..frames)
        .map(|i| {
            let mut b = gst::Buffer::from_mut_slice(frame(i));
            let r = b.get_mut().unwrap();
            r.set_pts(gst::ClockTime::from_mseconds(33 * i as u64));
            for f in faces(i) {
                f.attach(r, W as u32, H as u32);
            }
            b
        })
        .collect();
    pipeline.set_state(gst::State::Playing).unwrap();
    let start = Instant::now();
    for b in buffers {
        pushed.lock().unwrap().push(Instant::now());
        src.push_buffer(b).unwrap();
    }
    src.end_of_stream().unwrap();
    let bus = pipeline.bus().unwrap();
    for msg in bus.iter_timed(gst::ClockTime::from_seconds(600)) {
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => panic!("{}", e.error()),
            _ => {}
        }
    }
    let element = start.elapsed();
    pipeline.set_state(gst::State::Null).unwrap();
    // The element ran on the same, already warm session.
    assert_eq!(session::sessions_opened(&model), 1);
    drop(shared);
    let pushed = pushed.lock().unwrap();
    let arrived = arrived.lock().unwrap();
    assert_eq!(arrived.len(), frames, "every frame comes out");
    let mut latency: Vec<Duration> = pushed
        .iter()
        .zip(arrived.iter())
        .map(|(p, a)| *a - *p)
        .collect();
    latency.sort();

    let n_faces = (frames * FACES) as f64;
    let fps = |d: Duration| n_faces / d.as_secs_f64();
    println!(
        "affectinfer, {} ({}x{} faces), {frames} frames x {FACES} faces, batch {BATCH}, CPU",
        model.file_name().unwrap().to_string_lossy(),
        spec.width,
        spec.height
    );
    println!("{:<40} {:>10} {:>12}", "run", "faces/s", "vs bare");
    println!(
        "{:<40} {:>10.1} {:>11.2}x",
        "bare session, same batches (baseline)",
        fps(bare),
        1.0
    );
    println!(
        "{:<40} {:>10.1} {:>11.2}x",
        "element (crop, audio, batching, meta)",
        fps(element),
        bare.as_secs_f64() / element.as_secs_f64()
    );
    println!(
        "element per-frame latency: p50 {:.1} ms, p99 {:.1} ms (includes waiting for the batch)",
        percentile(&latency, 0.5).as_secs_f64() * 1e3,
        percentile(&latency, 0.99).as_secs_f64() * 1e3
    );
}
