// SPDX-License-Identifier: MPL-2.0
//! `affect bench --real`: the whole analysis on real footage, stage by stage, with ratios
//! measured in the same run.
//!
//! The footage: a group photograph of six real faces (scikit-image's astronaut, NASA, public
//! domain, and matplotlib's Grace Hopper, public domain, scaled and tilted on scikit-image's
//! coffee photograph; made by the set-up's `.venv` Python, nothing downloaded) filmed by a
//! virtual camera with a known slow pan and zoom, 25 frames/s, with a pink-noise sound track,
//! written as Motion-JPEG and PCM in QuickTime at 1280x720 and 1920x1080.
//!
//! Each clip runs through pipelines that add one stage at a time, the best of `runs` each:
//! decode; + `affectfacecrop` (find and track, the bin's defaults); the bin with the default
//! model (+ `affectspectro` and `affectinfer`); + `affectsink` writing CSV. The stage costs
//! are the differences. Against them: the faces/s of the model's runs inside the whole
//! analysis (the shared model's own counters: faces over time in `Session::run`) against the
//! bare ONNX Runtime session's on batches of 16 in the same process (`infer_bench`), and a
//! Python loop of what a user writes instead (facenet-pytorch's MTCNN, a crop per face,
//! onnxruntime per face) on the same frames.

use std::path::Path;
use std::time::Instant;

use affect_core::align::{Affine, RgbImage, warp_rgb8};
use affect_core::testutil::{GROUP_PHOTOGRAPH, run_python};
use gst::prelude::*;

/// The scene: six faces on a 2560x1440 canvas, as packed RGB at `argv[1]`.
const SCENE: &str = r#"
import sys
W, H = 2560, 1440
# Heads of 200-330 px: faces of 100-190 px in the 1280x720 view at the start.
group(W, H, [(130, 150, 150, 0, 0), (350, 165, 125, 12, 1), (565, 260, 110, -15, 0),
             (750, 130, 165, 6, 1), (975, 280, 100, 20, 0), (350, 410, 120, -8, 1)]).tofile(sys.argv[1])
print(W, H)
"#;

/// What a user writes instead: facenet-pytorch's MTCNN on each frame, the face boxes cropped
/// and resized, onnxruntime per face (with the clip's audio window as silence); frames/s.
const PYTHON_LOOP: &str = r#"
import sys, time, numpy as np, cv2, torch, onnxruntime as ort
from facenet_pytorch import MTCNN
clip, model, frames = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.set_num_threads(2)
so = ort.SessionOptions(); so.intra_op_num_threads = 2; so.log_severity_level = 3
session = ort.InferenceSession(model, so, providers=['CPUExecutionProvider'])
inputs = {i.name: i for i in session.get_inputs()}
size = inputs['face'].shape[2]
mtcnn = MTCNN(keep_all=True, min_face_size=40, device='cpu')
cap = cv2.VideoCapture(clip)
state = {}
n = faces = 0
start = time.perf_counter()
while n < frames:
    ok, bgr = cap.read()
    if not ok:
        break
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    boxes, _ = mtcnn.detect(rgb)
    for k, b in enumerate([] if boxes is None else boxes):
        x1, y1, x2, y2 = [int(max(v, 0)) for v in b]
        crop = cv2.resize(rgb[y1:y2, x1:x2], (size, size)).astype(np.float32) / 255.0
        feed = {'face': crop.transpose(2, 0, 1)[None]}
        if 'audio' in inputs:
            feed['audio'] = np.zeros([1] + list(inputs['audio'].shape[1:]), np.float32)
        if 'state_in' in inputs:
            feed['state_in'] = state.get(k, np.zeros([1] + list(inputs['state_in'].shape[1:]), np.float32))
        out = session.run(None, feed)
        if 'state_in' in inputs:
            state[k] = out[0]
        faces += 1
    n += 1
print(n / (time.perf_counter() - start), faces / max(n, 1))
"#;

/// Writes the clip: `frames` frames of the camera's view of the scene at `width` x `height`.
fn write_clip(
    scene: &[u8],
    scene_size: (usize, usize),
    path: &Path,
    (width, height): (usize, usize),
    frames: usize,
) -> Result<(), String> {
    let pipeline = gst::parse::launch(&format!(
        "appsrc name=src format=time caps=video/x-raw,format=RGB,width={width},height={height},framerate=25/1 \
         ! videoconvert ! jpegenc quality=90 ! queue ! qtmux name=mux ! filesink location={} \
         audiotestsrc wave=pink-noise volume=0.3 num-buffers={} samplesperbuffer=640 \
         ! audio/x-raw,format=S16LE,rate=16000,channels=1 ! queue ! mux.",
        crate::pipeline::quote(path),
        frames
    ))
    .map_err(|e| e.to_string())?
    .downcast::<gst::Pipeline>()
    .map_err(|_| "not a pipeline".to_string())?;
    let src = pipeline
        .by_name("src")
        .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
        .ok_or("no appsrc")?;
    src.set_block(true);
    if pipeline.set_state(gst::State::Playing).is_err() {
        wait(&pipeline)?;
        return Err(format!("cannot write {}", path.display()));
    }
    let (sw, sh) = scene_size;
    let img = RgbImage::new(scene, sw as u32, sh as u32, sw * 3).map_err(|e| e.to_string())?;
    let mut out = vec![0u8; width * height * 3];
    for i in 0..frames {
        // The camera: a view of 0.55 of the scene's width panning left to right while it
        // zooms in to 0.45 of it, centred a little below the middle.
        let t = i as f64 / frames.max(2).saturating_sub(1) as f64;
        let view = sw as f64 * (0.55 - 0.10 * t);
        let cx = sw as f64 * (0.35 + 0.30 * t);
        let cy = sh as f64 * 0.52;
        let scale = width as f64 / view;
        let to_frame = Affine {
            m: [
                [scale, 0.0, width as f64 / 2.0 - cx * scale],
                [0.0, scale, height as f64 / 2.0 - cy * scale],
            ],
        };
        warp_rgb8(&img, &to_frame, &mut out, width as u32, height as u32)
            .map_err(|e| e.to_string())?;
        let mut buffer = gst::Buffer::from_slice(out.clone());
        let b = buffer.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_mseconds(40 * i as u64));
        // With durations the file says 25 frames/s; without, a variable frame rate.
        b.set_duration(gst::ClockTime::from_mseconds(40));
        src.push_buffer(buffer).map_err(|e| e.to_string())?;
    }
    src.end_of_stream().map_err(|e| e.to_string())?;
    wait(&pipeline)?;
    Ok(())
}

/// Runs `pipeline` to its end; the error it posts, if any.
fn wait(pipeline: &gst::Pipeline) -> Result<(), String> {
    let bus = pipeline.bus().ok_or("no bus")?;
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(1800),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .ok_or("the pipeline did not end")?;
    let _ = pipeline.set_state(gst::State::Null);
    match msg.view() {
        gst::MessageView::Error(e) => Err(format!("{} ({:?})", e.error(), e.debug())),
        _ => Ok(()),
    }
}

/// CPU seconds this process has used (user and system, all threads).
fn process_cpu_seconds() -> f64 {
    // Fields 14 and 15 of /proc/self/stat, after the parenthesised command name, in clock
    // ticks of 1/100 s (Linux's USER_HZ).
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
        })
        .unwrap_or(f64::NAN)
}

/// Wall and CPU seconds of the best (by wall time) of `runs` runs of `description`.
fn best_seconds(description: &str, runs: usize) -> Result<(f64, f64), String> {
    let mut best = (f64::INFINITY, f64::NAN);
    for _ in 0..runs.max(1) {
        let pipeline = gst::parse::launch(description)
            .map_err(|e| format!("{description}: {e}"))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| "not a pipeline".to_string())?;
        let (started, cpu) = (Instant::now(), process_cpu_seconds());
        if pipeline.set_state(gst::State::Playing).is_err() {
            // The element that refused posted why.
            wait(&pipeline)?;
            return Err(format!("{description}: the pipeline does not start"));
        }
        wait(&pipeline)?;
        let wall = started.elapsed().as_secs_f64();
        if wall < best.0 {
            best = (wall, process_cpu_seconds() - cpu);
        }
    }
    Ok(best)
}

/// Face rows of a CSV table (its lines but the header).
fn rows(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count().saturating_sub(1))
        .unwrap_or(0)
}

pub fn run(
    model: &Path,
    frames: usize,
    runs: usize,
    elements: &crate::pipeline::ElementOptions,
) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("affect-real-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let scene_path = dir.join("scene.rgb");
    let size = run_python(
        &format!("{GROUP_PHOTOGRAPH}{SCENE}"),
        &[scene_path.to_str().unwrap()],
    );
    let dims: Vec<usize> = size
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    let scene = std::fs::read(&scene_path).map_err(|e| e.to_string())?;
    let model_q = crate::pipeline::quote(model);
    let analysis = elements.analysis();
    println!(
        "Real footage: a group photograph of six real faces under a slow pan and zoom, 25 \
         frames/s, Motion-JPEG + PCM; {frames} frames, best of {runs} runs per pipeline, all \
         cores"
    );
    let bare = crate::infer_bench::throughput(
        model,
        &crate::infer_bench::Scenario {
            name: "bare".into(),
            streams: 1,
            faces: 16,
            frames: 64,
            batch_size: 16,
            provider: gstaffect::session::Provider::Cpu,
        },
        runs.min(3),
    )?;
    let bare_faces_per_second = bare.faces_per_second(bare.bare);
    // The model the elements share, held open so its counters span every run.
    let shared = gstaffect::session::shared_model(
        model,
        &gstaffect::session::SessionOptions {
            provider: gstaffect::session::Provider::Cpu,
            intra_op_threads: 0,
            fallback_to_cpu: false,
        },
        16,
    )?;
    for (w, h) in [(1280usize, 720usize), (1920, 1080)] {
        let clip = dir.join(format!("group-{w}x{h}.mov"));
        write_clip(&scene, (dims[0], dims[1]), &clip, (w, h), frames)?;
        let clip_q = crate::pipeline::quote(&clip);
        let table = dir.join(format!("table-{w}x{h}.csv"));
        let decode = format!(
            "filesrc location={clip_q} ! qtdemux ! jpegdec ! videoconvert ! fakesink sync=false"
        );
        let find = format!(
            "filesrc location={clip_q} ! qtdemux ! jpegdec ! videoconvert ! affectfacecrop \
             ! fakesink sync=false"
        );
        let analyse = format!(
            "filesrc location={clip_q} ! affectanalysisbin model={model_q} {analysis} \
             ! fakesink sync=false"
        );
        let write = format!(
            "filesrc location={clip_q} ! affectanalysisbin model={model_q} {analysis} \
             ! affectsink overwrite=true location={}",
            crate::pipeline::quote(&table)
        );
        let (t_decode, _) = best_seconds(&decode, runs)?;
        let (t_find, cpu_find) = best_seconds(&find, runs)?;
        let before = shared.stats();
        let (t_analyse, cpu_analyse) = best_seconds(&analyse, runs)?;
        let after = shared.stats();
        let (t_write, _) = best_seconds(&write, runs)?;
        let faces = rows(&table);
        let fps = |t: f64| frames as f64 / t;
        println!("\n{w}x{h}, {faces} faces in {frames} frames:");
        println!("  stage                          cumulative s   stage ms/frame   frames/s");
        let mut previous = 0.0;
        for (name, t) in [
            ("decode", t_decode),
            ("+ find and track (facecrop)", t_find),
            ("+ spectrogram and models", t_analyse),
            ("+ CSV table", t_write),
        ] {
            println!(
                "  {name:<30} {t:>12.2} {:>16.2} {:>10.1}",
                (t - previous).max(0.0) / frames as f64 * 1e3,
                fps(t)
            );
            previous = t;
        }
        let run_faces = after.faces.saturating_sub(before.faces);
        let run_time = after.run_time.saturating_sub(before.run_time).as_secs_f64();
        let in_pipeline = run_faces as f64 / run_time.max(1e-9);
        let mean_batch =
            run_faces as f64 / after.batches.saturating_sub(before.batches).max(1) as f64;
        // One stream of a recurrent model batches one frame's faces: the bare session on
        // batches of that size too.
        let same_batch = (mean_batch.round() as usize).clamp(1, 16);
        let bare_same = crate::infer_bench::throughput(
            model,
            &crate::infer_bench::Scenario {
                name: "bare".into(),
                streams: 1,
                faces: same_batch,
                frames: 1024 / same_batch,
                batch_size: same_batch,
                provider: gstaffect::session::Provider::Cpu,
            },
            runs.min(3),
        )?;
        let bare_same_per_second = bare_same.faces_per_second(bare_same.bare);
        println!(
            "  the whole analysis: {:.1} frames/s ({:.2}x real time at 25 frames/s); the \
             model inside it: {in_pipeline:.0} faces/s in {mean_batch:.1}-face batches, vs the \
             bare session's {bare_same_per_second:.0} on batches of {same_batch} ({:.2}x) and \
             {bare_faces_per_second:.0} on batches of 16 ({:.2}x)",
            fps(t_write),
            fps(t_write) / 25.0,
            in_pipeline / bare_same_per_second,
            in_pipeline / bare_faces_per_second
        );
        // CPU per face of the model stage (spectrogram included) against what the bare
        // session can use at most: both cores busy for its whole run.
        println!(
            "  CPU per face: {:.2} ms for the spectrogram and models in the analysis (its CPU \
             time less that of finding and tracking alone), vs at most {:.2} ms in the bare \
             session on batches of {same_batch} (2 cores over its faces/s): {:.2}x",
            (cpu_analyse - cpu_find).max(0.0) / faces.max(1) as f64 * 1e3,
            2.0 / bare_same_per_second * 1e3,
            (2.0 / bare_same_per_second)
                / ((cpu_analyse - cpu_find).max(1e-9) / faces.max(1) as f64)
        );
        if w == 1280 {
            let python_frames = frames.min(50);
            let out = run_python(
                PYTHON_LOOP,
                &[
                    clip.to_str().unwrap(),
                    model.to_str().unwrap(),
                    &python_frames.to_string(),
                ],
            );
            let v: Vec<f64> = out
                .split_whitespace()
                .filter_map(|s| s.parse().ok())
                .collect();
            if let [python_fps, python_faces] = v[..] {
                println!(
                    "  a Python loop (facenet-pytorch MTCNN every frame, a crop and onnxruntime \
                     per face; {python_frames} frames, {python_faces:.1} faces/frame): \
                     {python_fps:.1} frames/s; the analysis is {:.1}x faster",
                    fps(t_write) / python_fps
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
