// SPDX-License-Identifier: MPL-2.0
//! Measures `affectinfer` against the bare ONNX Runtime session running the same batches of
//! the same preprocessed faces, in the same process and run: throughput (faces/s) with every
//! frame pushed as fast as the element takes it, and per-frame latency with frames paced at a
//! live frame rate.
//!
//! A scenario is `streams` pipelines `appsrc ! affectinfer ! fakesink` sharing one model, each
//! frame carrying `faces` tracked faces (region-of-interest meta with landmarks). The bare
//! baseline runs `Session::run` directly on tensors prepared in advance, frame by frame, the
//! faces of all streams at one frame time in one batch (split at `batch_size`), recurrent
//! state carried per track: the batches the element is meant to form. For a model with state
//! a batch cannot hold two frames of one track, so one stream with 4 faces runs batches of 4
//! in both; 4 streams of 4 faces, or one stream of 16, fill batches of 16.
//!
//! Used by `affect bench` and `cargo bench -p affect-cli --bench infer`. The caller
//! initialises GStreamer and registers the elements (`gstaffect::plugin_register_static`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use affect_core::align::{self, RgbImage};
use gst::prelude::*;

use gstaffect::meta::Face;
use gstaffect::session::{self, FaceRequest, ModelStats, Provider, SessionOptions};

/// Frame size of the synthetic streams.
pub const WIDTH: usize = 640;
pub const HEIGHT: usize = 360;
/// Distinct frame images (and face positions) a stream cycles through.
const DISTINCT_FRAMES: usize = 8;
/// Frames a throughput source may queue ahead of the element.
const SOURCE_QUEUE: u32 = 32;

/// What to run.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: String,
    /// Pipelines sharing the model, each with its own `affectinfer`.
    pub streams: usize,
    /// Faces on every frame (1..=16), each its own track.
    pub faces: usize,
    /// Frames per stream.
    pub frames: usize,
    /// `batch-size` of the elements.
    pub batch_size: usize,
    /// Where the bare session and the elements run (`execution-provider`, `device-id`).
    pub provider: Provider,
}

impl Scenario {
    /// The scenarios of the benchmark: one stream of 4 faces (batches of 4 for a model with
    /// state), 4 streams of 4 faces and one stream of 16 faces (batches of 16).
    pub fn standard(frames: usize, batch_size: usize) -> Vec<Scenario> {
        [(1, 4), (4, 4), (1, 16)]
            .into_iter()
            .map(|(streams, faces)| Scenario {
                name: format!(
                    "{streams} stream{} x {faces} faces",
                    if streams > 1 { "s" } else { "" }
                ),
                streams,
                faces,
                // The same number of faces in every scenario.
                frames: frames * 4 / (streams * faces),
                batch_size,
                provider: Provider::Cpu,
            })
            .collect()
    }

    fn total_faces(&self) -> usize {
        self.streams * self.faces * self.frames
    }

    /// The bare session's options: the scenario's provider, no fallback.
    fn session_options(&self) -> SessionOptions {
        SessionOptions {
            provider: self.provider,
            ..CPU
        }
    }

    /// The elements' `execution-provider` and `device-id`, when not the CPU.
    fn provider_properties(&self) -> String {
        match self.provider {
            Provider::Cpu => String::new(),
            Provider::Cuda { device_id } => {
                format!(" execution-provider=cuda device-id={device_id}")
            }
        }
    }
}

/// The image of frame `i` of stream `stream`.
fn image(stream: usize, i: usize) -> Vec<u8> {
    let k = (i + stream) % DISTINCT_FRAMES;
    (0..WIDTH * HEIGHT * 3)
        .map(|p| ((p * 7 + k * 13 + (p / (WIDTH * 3)) * 3) % 251) as u8)
        .collect()
}

/// The faces of frame `i`: a 4 x 4 grid of cells, moving a little from frame to frame.
fn faces(count: usize, i: usize) -> Vec<Face> {
    (0..count)
        .map(|f| {
            let (cx, cy) = ((f % 4) as f32 * 160.0, (f / 4) as f32 * 90.0);
            let (x, y) = (cx + 40.0 + (i % DISTINCT_FRAMES) as f32 * 3.0, cy + 8.0);
            Face {
                bbox: [x, y, x + 56.0, y + 72.0],
                track_id: f as u64 + 1,
                score: 1.0,
                landmarks: Some([
                    [x + 17.0, y + 27.0],
                    [x + 39.0, y + 27.0],
                    [x + 28.0, y + 40.0],
                    [x + 19.0, y + 54.0],
                    [x + 37.0, y + 54.0],
                ]),
            }
        })
        .collect()
}

/// A frame buffer of stream `stream`, its pixels shared with the other frames of the same
/// image, its face metas its own.
/// Without `timestamped` the live source stamps it when it is pushed.
fn frame_buffer(
    images: &[gst::Memory],
    scenario: &Scenario,
    stream: usize,
    i: usize,
    timestamped: bool,
) -> gst::Buffer {
    let mut buffer = gst::Buffer::new();
    {
        let b = buffer.get_mut().expect("new buffer is writable");
        b.append_memory(images[(i + stream) % DISTINCT_FRAMES].clone());
        if timestamped {
            b.set_pts(gst::ClockTime::from_nseconds(i as u64 * 1_000_000_000 / 30));
        }
        for f in faces(scenario.faces, i) {
            f.attach(b, WIDTH as u32, HEIGHT as u32);
        }
    }
    buffer
}

fn shared_images() -> Vec<gst::Memory> {
    (0..DISTINCT_FRAMES)
        .map(|k| gst::Memory::from_slice(image(0, k)))
        .collect()
}

/// The inputs of one bare batch, concatenated in advance.
struct BareBatch {
    faces: usize,
    face: Vec<f32>,
    audio: Vec<f32>,
    /// State keys (stream, face) of the rows.
    keys: Vec<(usize, usize)>,
}

/// Prepares the faces exactly as the element does (crop per the model's alignment,
/// normalisation, silence for the audio), batched frame by frame.
fn bare_batches(
    contract: &affect_core::contract::ModelContract,
    scenario: &Scenario,
) -> Result<Vec<BareBatch>, String> {
    let spec = &contract.face;
    let plane = spec.tensor_len();
    // The crop is RGB whatever the model takes.
    let rgb_plane = (3 * spec.width * spec.height) as usize;
    let audio_len = contract.audio.as_ref().map(|a| a.frames * a.mel.n_mels);
    let silence = contract
        .audio
        .as_ref()
        .map(|a| a.mel.log_offset.ln() as f32)
        .unwrap_or(0.0);
    // Tensors of every distinct (image, positions) frame of every stream.
    let mut crop = vec![0u8; rgb_plane];
    let mut tensors: Vec<Vec<Vec<f32>>> = Vec::new();
    for k in 0..DISTINCT_FRAMES {
        let mut of_frame = Vec::new();
        for s in 0..scenario.streams {
            // Frame k of stream s, as `frame_buffer` makes it.
            let data = image(s, k);
            let img = RgbImage::new(&data, WIDTH as u32, HEIGHT as u32, WIDTH * 3)
                .map_err(|e| e.to_string())?;
            for f in faces(scenario.faces, k) {
                let t = spec
                    .crop_transform(f.bbox, f.landmarks.as_ref())
                    .map_err(|e| e.to_string())?;
                align::warp_rgb8(&img, &t.affine(), &mut crop, spec.width, spec.height)
                    .map_err(|e| e.to_string())?;
                let mut tensor = vec![0.0; plane];
                spec.normalize_into(&crop, &mut tensor);
                of_frame.push(tensor);
            }
        }
        tensors.push(of_frame);
    }
    let mut batches = Vec::new();
    for i in 0..scenario.frames {
        let keys: Vec<(usize, usize)> = (0..scenario.streams)
            .flat_map(|s| (0..scenario.faces).map(move |f| (s, f)))
            .collect();
        for chunk in keys.chunks(scenario.batch_size.max(1)) {
            let mut face = Vec::with_capacity(chunk.len() * plane);
            for &(s, f) in chunk {
                face.extend_from_slice(&tensors[i % DISTINCT_FRAMES][s * scenario.faces + f]);
            }
            batches.push(BareBatch {
                faces: chunk.len(),
                face,
                audio: audio_len
                    .map(|n| vec![silence; n * chunk.len()])
                    .unwrap_or_default(),
                keys: chunk.to_vec(),
            });
        }
    }
    Ok(batches)
}

/// Runs the batches on `session`, carrying the state per key; the time of each run.
fn run_bare(
    session: &mut ort::session::Session,
    contract: &affect_core::contract::ModelContract,
    batches: &[BareBatch],
) -> Result<Vec<Duration>, String> {
    use affect_core::contract::io;
    use ort::value::TensorRef;
    let (h, w) = (contract.face.height as usize, contract.face.width as usize);
    let channels = contract.face.channels as usize;
    let mut states: std::collections::HashMap<(usize, usize), Vec<f32>> = Default::default();
    let mut state_input = Vec::new();
    let mut times = Vec::with_capacity(batches.len());
    for b in batches {
        let start = Instant::now();
        let n = b.faces;
        let mut inputs: Vec<(
            std::borrow::Cow<'_, str>,
            ort::session::SessionInputValue<'_>,
        )> = Vec::with_capacity(3);
        let t = TensorRef::from_array_view(([n, channels, h, w], b.face.as_slice()))
            .map_err(|e| e.to_string())?;
        inputs.push((io::FACE.into(), t.into()));
        if let Some(a) = &contract.audio {
            let t =
                TensorRef::from_array_view(([n, 1, a.frames, a.mel.n_mels], b.audio.as_slice()))
                    .map_err(|e| e.to_string())?;
            inputs.push((io::AUDIO.into(), t.into()));
        }
        if let Some(s) = contract.state_size {
            state_input.clear();
            for k in &b.keys {
                match states.get(k) {
                    Some(v) => state_input.extend_from_slice(v),
                    None => state_input.extend(std::iter::repeat_n(0.0, s)),
                }
            }
            let t = TensorRef::from_array_view(([n, s], state_input.as_slice()))
                .map_err(|e| e.to_string())?;
            inputs.push((io::STATE_IN.into(), t.into()));
        }
        let outputs = session.run(inputs).map_err(|e| e.to_string())?;
        if let Some(s) = contract.state_size {
            let (_, next) = outputs[io::STATE_OUT]
                .try_extract_tensor::<f32>()
                .map_err(|e| e.to_string())?;
            for (r, k) in b.keys.iter().enumerate() {
                let state = states.entry(*k).or_default();
                state.clear();
                state.extend_from_slice(&next[r * s..(r + 1) * s]);
            }
        }
        // Read the answers as any user would.
        for head in contract.heads.iter() {
            let (_, v) = outputs[head.name()]
                .try_extract_tensor::<f32>()
                .map_err(|e| e.to_string())?;
            std::hint::black_box(v);
        }
        drop(outputs);
        times.push(start.elapsed());
    }
    Ok(times)
}

/// The same batches submitted one by one to the shared model's worker (its queue, state
/// table and reply channels, without the element).
fn run_worker(
    model: &session::SharedModel,
    contract: &affect_core::contract::ModelContract,
    batches: &[BareBatch],
    faces_per_stream: usize,
) -> Result<(), String> {
    let user = model.new_user();
    let plane = contract.face.tensor_len();
    let audio_len = contract.audio.as_ref().map(|a| a.frames * a.mel.n_mels);
    for b in batches {
        let requests = (0..b.faces)
            .map(|r| FaceRequest {
                face: b.face[r * plane..(r + 1) * plane].to_vec(),
                audio: audio_len.map(|n| Arc::from(&b.audio[r * n..(r + 1) * n])),
                track: Some((b.keys[r].0 * faces_per_stream + b.keys[r].1) as u64),
            })
            .collect();
        model
            .submit(user, requests, Duration::ZERO)?
            .recv()
            .map_err(|_| "the inference thread stopped".to_string())??;
    }
    model.forget_user(user);
    Ok(())
}

/// When each frame of each stream went in and came out.
struct ElementRun {
    elapsed: Duration,
    pushed: Vec<Vec<Instant>>,
    arrived: Vec<Vec<Instant>>,
    stats: ModelStats,
}

/// Runs the scenario through `streams` pipelines; `fps` paces the sources as live ones
/// (`None`: push as fast as the element takes frames).
fn run_element(model: &Path, scenario: &Scenario, fps: Option<u32>) -> Result<ElementRun, String> {
    run_chain(&[(model.to_path_buf(), None)], scenario, fps)
}

/// [`run_element`] with one `affectinfer` per model, one after the other on the same faces,
/// each writing the heads given with its model (`None`: all).
fn run_chain(
    models: &[(PathBuf, Option<String>)],
    scenario: &Scenario,
    fps: Option<u32>,
) -> Result<ElementRun, String> {
    let model = &models.first().ok_or("no model")?.0;
    let chain: String = models
        .iter()
        .map(|(m, heads)| {
            format!(
                "! affectinfer model=\"{}\" batch-size={}{}{} ",
                m.display(),
                scenario.batch_size,
                scenario.provider_properties(),
                heads
                    .as_ref()
                    .map_or(String::new(), |h| format!(" heads={h}"))
            )
        })
        .collect();
    let images = shared_images();
    let live = match fps {
        Some(_) => "is-live=true do-timestamp=true".to_string(),
        None => format!("block=true max-buffers={SOURCE_QUEUE} max-bytes=0"),
    };
    let mut pipelines = Vec::new();
    let arrived: Vec<Arc<Mutex<Vec<Instant>>>> =
        (0..scenario.streams).map(|_| Arc::default()).collect();
    for times in &arrived {
        let pipeline = gst::parse::launch(&format!(
            "appsrc name=src format=time {live} \
             caps=video/x-raw,format=RGB,width={WIDTH},height={HEIGHT},framerate=30/1 \
             {chain} ! fakesink name=sink sync=false signal-handoffs=true"
        ))
        .map_err(|e| e.to_string())?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline".to_string())?;
        let sink = pipeline.by_name("sink").ok_or("no sink")?;
        let times = times.clone();
        sink.connect("handoff", false, move |_| {
            times.lock().unwrap().push(Instant::now());
            None
        });
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| format!("cannot start the pipeline: {e}"))?;
        pipelines.push(pipeline);
    }
    let shared = session::shared_model(model, &scenario.session_options(), scenario.batch_size)?;
    let before = shared.stats();
    let start = Instant::now();
    let feeders: Vec<_> = pipelines
        .iter()
        .enumerate()
        .map(|(s, p)| {
            let src = p.by_name("src").expect("appsrc is in the pipeline");
            let buffers: Vec<gst::Buffer> = (0..scenario.frames)
                .map(|i| frame_buffer(&images, scenario, s, i, fps.is_none()))
                .collect();
            std::thread::spawn(move || {
                let mut pushed = Vec::with_capacity(buffers.len());
                for (i, b) in buffers.into_iter().enumerate() {
                    if let Some(fps) = fps {
                        let due = start + Duration::from_secs_f64(i as f64 / fps as f64);
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                    }
                    pushed.push(Instant::now());
                    let _: gst::FlowReturn = src.emit_by_name("push-buffer", &[&b]);
                }
                let _: gst::FlowReturn = src.emit_by_name("end-of-stream", &[]);
                pushed
            })
        })
        .collect();
    let pushed: Vec<Vec<Instant>> = feeders
        .into_iter()
        .map(|f| f.join().expect("the feeder does not panic"))
        .collect();
    let mut error = None;
    for p in &pipelines {
        let bus = p.bus().expect("a pipeline has a bus");
        for msg in bus.iter_timed(gst::ClockTime::from_seconds(600)) {
            match msg.view() {
                gst::MessageView::Eos(_) => break,
                gst::MessageView::Error(e) => {
                    error = Some(format!("{}: {:?}", e.error(), e.debug()));
                    break;
                }
                _ => {}
            }
        }
    }
    let elapsed = start.elapsed();
    for p in &pipelines {
        let _ = p.set_state(gst::State::Null);
    }
    if let Some(e) = error {
        return Err(e);
    }
    let after = shared.stats();
    let arrived: Vec<Vec<Instant>> = arrived.iter().map(|a| a.lock().unwrap().clone()).collect();
    for (s, a) in arrived.iter().enumerate() {
        if a.len() != scenario.frames {
            return Err(format!(
                "stream {s}: {} of {} frames came out",
                a.len(),
                scenario.frames
            ));
        }
    }
    Ok(ElementRun {
        elapsed,
        pushed,
        arrived,
        stats: ModelStats {
            batches: after.batches - before.batches,
            faces: after.faces - before.faces,
            run_time: after.run_time - before.run_time,
        },
    })
}

/// Throughput of one scenario: the best of `rounds` interleaved runs of each path.
#[derive(Clone, Debug)]
pub struct Throughput {
    pub scenario: Scenario,
    /// Bare `Session::run` on the prepared batches.
    pub bare: Duration,
    /// The same batches through the shared model's worker.
    pub worker: Duration,
    /// The element, frames pushed through `streams` pipelines.
    pub element: Duration,
    /// Faces per bare batch.
    pub bare_batch: usize,
    /// What the worker ran during the element's best run.
    pub element_stats: ModelStats,
}

impl Throughput {
    pub fn faces_per_second(&self, d: Duration) -> f64 {
        self.scenario.total_faces() as f64 / d.as_secs_f64()
    }

    /// Element throughput over bare throughput.
    pub fn ratio(&self) -> f64 {
        self.bare.as_secs_f64() / self.element.as_secs_f64()
    }
}

const CPU: SessionOptions = SessionOptions {
    provider: Provider::Cpu,
    intra_op_threads: 0,
    fallback_to_cpu: false,
};

/// What both measurements start from: the model the elements share (opened on first use;
/// holding it keeps it open from one scenario to the next), a bare session of its own on the
/// same file, warmed up on a batch of each size, the contract and the scenario's batches.
struct Prepared {
    bare: ort::session::Session,
    shared: Arc<session::SharedModel>,
    contract: affect_core::contract::ModelContract,
    batches: Vec<BareBatch>,
}

fn prepare(model: &Path, scenario: &Scenario) -> Result<Prepared, String> {
    let options = scenario.session_options();
    let shared = session::shared_model(model, &options, scenario.batch_size)?;
    let (mut bare, _) = session::open(model, &options)?;
    let contract = shared.contract.clone();
    let batches = bare_batches(&contract, scenario)?;
    run_bare(&mut bare, &contract, &batches[..batches.len().min(2)])?;
    Ok(Prepared {
        bare,
        shared,
        contract,
        batches,
    })
}

/// Measures one scenario's throughput on the scenario's provider.
pub fn throughput(model: &Path, scenario: &Scenario, rounds: usize) -> Result<Throughput, String> {
    let Prepared {
        bare: mut bare_session,
        shared,
        contract,
        batches,
    } = prepare(model, scenario)?;
    // Warm the shared worker up too.
    run_worker(
        &shared,
        &contract,
        &batches[..batches.len().min(2)],
        scenario.faces,
    )?;
    let mut best = Throughput {
        scenario: scenario.clone(),
        bare: Duration::MAX,
        worker: Duration::MAX,
        element: Duration::MAX,
        bare_batch: batches.first().map(|b| b.faces).unwrap_or(0),
        element_stats: ModelStats::default(),
    };
    for _ in 0..rounds.max(1) {
        let start = Instant::now();
        run_bare(&mut bare_session, &contract, &batches)?;
        best.bare = best.bare.min(start.elapsed());
        let start = Instant::now();
        run_worker(&shared, &contract, &batches, scenario.faces)?;
        best.worker = best.worker.min(start.elapsed());
        let run = run_element(model, scenario, None)?;
        if run.elapsed < best.element {
            best.element = run.elapsed;
            best.element_stats = run.stats;
        }
    }
    Ok(best)
}

/// Two models chained on the same faces against the bare sessions of both on the same
/// batches, and against each model alone in one element.
#[derive(Clone, Debug)]
pub struct ChainThroughput {
    pub scenario: Scenario,
    /// Bare `Session::run` of every model on its prepared batches, one model after the other.
    pub bare: Duration,
    /// The chained elements.
    pub chain: Duration,
    /// Each model alone in one element.
    pub alone: Vec<Duration>,
}

impl ChainThroughput {
    pub fn faces_per_second(&self, d: Duration) -> f64 {
        self.scenario.total_faces() as f64 / d.as_secs_f64()
    }
}

/// Measures [`ChainThroughput`] on the scenario's provider: the best of `rounds` interleaved runs.
pub fn chain_throughput(
    models: &[(PathBuf, Option<String>)],
    scenario: &Scenario,
    rounds: usize,
) -> Result<ChainThroughput, String> {
    let mut bare = Vec::new();
    for (m, _) in models {
        let p = prepare(m, scenario)?;
        bare.push((p.bare, p.contract, p.batches, p.shared));
    }
    let mut best = ChainThroughput {
        scenario: scenario.clone(),
        bare: Duration::MAX,
        chain: Duration::MAX,
        alone: vec![Duration::MAX; models.len()],
    };
    for _ in 0..rounds.max(1) {
        let start = Instant::now();
        for (session, contract, batches, _) in &mut bare {
            run_bare(session, contract, batches)?;
        }
        best.bare = best.bare.min(start.elapsed());
        best.chain = best.chain.min(run_chain(models, scenario, None)?.elapsed);
        for (k, (m, heads)) in models.iter().enumerate() {
            let run = run_chain(&[(m.clone(), heads.clone())], scenario, None)?;
            best.alone[k] = best.alone[k].min(run.elapsed);
        }
    }
    Ok(best)
}

/// Per-frame latency of one scenario with live sources paced at `fps`.
#[derive(Clone, Debug)]
pub struct Latency {
    pub scenario: Scenario,
    pub fps: u32,
    /// From a frame's push into the source to its arrival at the sink, all streams, sorted.
    pub element: Vec<Duration>,
    /// Bare `Session::run` time of each batch of the same frames, sorted.
    pub bare_run: Vec<Duration>,
    pub element_stats: ModelStats,
}

/// Measures one scenario's per-frame latency with live sources.
pub fn latency(model: &Path, scenario: &Scenario, fps: u32) -> Result<Latency, String> {
    let Prepared {
        bare: mut bare_session,
        contract,
        batches,
        ..
    } = prepare(model, scenario)?;
    let mut bare_run = run_bare(&mut bare_session, &contract, &batches)?;
    bare_run.sort();
    let run = run_element(model, scenario, Some(fps))?;
    let mut element: Vec<Duration> = run
        .pushed
        .iter()
        .zip(&run.arrived)
        .flat_map(|(p, a)| {
            p.iter()
                .zip(a)
                .map(|(p, a)| a.saturating_duration_since(*p))
        })
        .collect();
    element.sort();
    Ok(Latency {
        scenario: scenario.clone(),
        fps,
        element,
        bare_run,
        element_stats: run.stats,
    })
}
