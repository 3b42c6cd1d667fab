// SPDX-License-Identifier: MPL-2.0
//! ONNX Runtime for the elements: the models they share, each opened once per process on a
//! worker thread of its own that batches the faces of every element using it. The process's
//! one environment (the library loaded at run time, its global thread pool), sessions and
//! reading a model file's contract are `affect_onnx`'s, re-exported here for the elements.

pub use affect_onnx::{
    Model, Provider, SessionOptions, THREADS_VARIABLE, environment, io_specs, metadata, open,
    thread_budget,
};
use std::path::Path;

use ort::session::Session;

/// One face to run through a model: the normalised crop, the audio window when the model
/// takes audio, and the track whose recurrent state it continues (for models with state).
#[derive(Clone, Debug)]
pub struct FaceRequest {
    pub face: Vec<f32>,
    /// Shared by the faces of one frame, which all hear the same window.
    pub audio: Option<std::sync::Arc<[f32]>>,
    pub track: Option<u64>,
}

/// What a model said of one face.
#[derive(Clone, Debug, PartialEq)]
/// What a model gives for one face: the heads it has (`None` / empty for the others).
pub struct FaceResult {
    pub valence_arousal: Option<[f32; 2]>,
    pub au: Vec<f32>,
    pub expression: Vec<f32>,
}

impl FaceResult {
    /// Whether every output is a number: a model fed something it never saw (or a broken
    /// one) can answer NaN, which must not pass for a result.
    pub fn is_finite(&self) -> bool {
        self.valence_arousal
            .iter()
            .flatten()
            .chain(&self.au)
            .chain(&self.expression)
            .all(|v| v.is_finite())
    }
}

type Reply = std::sync::mpsc::Receiver<Result<Vec<FaceResult>, String>>;

enum Message {
    Run {
        user: u64,
        faces: Vec<FaceRequest>,
        deadline: std::time::Instant,
        reply: std::sync::mpsc::SyncSender<Result<Vec<FaceResult>, String>>,
    },
    /// These tracks of `user` ended: drop their recurrent state.
    Forget { user: u64, tracks: Vec<u64> },
    /// `user` stopped or flushed: drop all its state.
    ForgetUser { user: u64 },
}

/// Counters of a shared model's worker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModelStats {
    pub batches: u64,
    pub faces: u64,
    /// Time spent in `Session::run`.
    pub run_time: std::time::Duration,
}

impl ModelStats {
    /// Faces per run.
    pub fn mean_batch(&self) -> f64 {
        self.faces as f64 / self.batches.max(1) as f64
    }
}

/// A model opened once per process and file (and provider), shared by every element that
/// uses it. Its session runs on a worker thread of its own, which gathers the faces of all
/// its users into batches of up to the largest `batch-size` any user asked for, waiting at most
/// until the earliest request's `max-latency` has passed. For a model with recurrent state a
/// batch holds at most one frame of each track, so one stream fills a batch only with as many
/// faces as it has tracks; several streams (or one with many faces) fill it.
pub struct SharedModel {
    pub path: std::path::PathBuf,
    pub provider: Provider,
    pub contract: affect_core::contract::ModelContract,
    sender: std::sync::mpsc::Sender<Message>,
    batch_limit: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    next_user: std::sync::atomic::AtomicU64,
    stats: std::sync::Arc<std::sync::Mutex<ModelStats>>,
}

impl std::fmt::Debug for SharedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedModel")
            .field("path", &self.path)
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ModelKey {
    path: std::path::PathBuf,
    options: SessionOptions,
}

static REGISTRY: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<ModelKey, std::sync::Weak<SharedModel>>>,
> = std::sync::LazyLock::new(Default::default);

static SESSIONS_OPENED: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<std::path::PathBuf, usize>>,
> = std::sync::LazyLock::new(Default::default);

/// Inference sessions this process has opened on the model file `path` so far.
pub fn sessions_opened(path: &Path) -> usize {
    let Ok(path) = std::fs::canonicalize(path) else {
        return 0;
    };
    SESSIONS_OPENED
        .lock()
        .unwrap()
        .get(&path)
        .copied()
        .unwrap_or(0)
}

/// The shared model for `path` and `options`, opened and checked against the model contract
/// on first use. `batch_size` raises the batch limit of an already open model.
pub fn shared_model(
    path: &Path,
    options: &SessionOptions,
    batch_size: usize,
) -> Result<std::sync::Arc<SharedModel>, String> {
    use std::sync::atomic::Ordering;
    let canonical = std::fs::canonicalize(path)
        .map_err(|e| format!("cannot read model file '{}': {e}", path.display()))?;
    let key = ModelKey {
        path: canonical.clone(),
        options: options.clone(),
    };
    let mut registry = REGISTRY.lock().unwrap();
    if let Some(model) = registry.get(&key).and_then(std::sync::Weak::upgrade) {
        model
            .batch_limit
            .fetch_max(batch_size.max(1), Ordering::Relaxed);
        return Ok(model);
    }
    let (session, provider) = open(&canonical, options)?;
    *SESSIONS_OPENED
        .lock()
        .unwrap()
        .entry(canonical.clone())
        .or_default() += 1;
    let model = Model::from_session(session, provider)?;
    let contract = model.contract().map_err(|e| {
        format!(
            "model '{}' breaks the affect model contract: {e}",
            canonical.display()
        )
    })?;
    let Model {
        session, provider, ..
    } = model;
    let (sender, receiver) = std::sync::mpsc::channel();
    let batch_limit = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(batch_size.max(1)));
    let stats = std::sync::Arc::new(std::sync::Mutex::new(ModelStats::default()));
    let worker = Worker {
        session,
        contract: contract.clone(),
        states: Default::default(),
        batch_limit: batch_limit.clone(),
        stats: stats.clone(),
        face_input: Vec::new(),
        audio_input: Vec::new(),
        state_input: Vec::new(),
    };
    let name = canonical
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    std::thread::Builder::new()
        .name(format!("affect-infer:{name}"))
        .spawn(move || worker.run(receiver))
        .map_err(|e| format!("cannot start the inference thread: {e}"))?;
    let model = std::sync::Arc::new(SharedModel {
        path: canonical,
        provider,
        contract,
        sender,
        batch_limit,
        next_user: std::sync::atomic::AtomicU64::new(1),
        stats,
    });
    registry.insert(key, std::sync::Arc::downgrade(&model));
    Ok(model)
}

impl SharedModel {
    /// A new user id, which scopes its tracks' recurrent state.
    pub fn new_user(&self) -> u64 {
        self.next_user
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    pub fn stats(&self) -> ModelStats {
        *self.stats.lock().unwrap()
    }

    /// Queues the faces of one frame; the answer comes on the returned channel once the batch
    /// holding them has run, no later than about `max_latency` plus the run itself.
    pub fn submit(
        &self,
        user: u64,
        faces: Vec<FaceRequest>,
        max_latency: std::time::Duration,
    ) -> Result<Reply, String> {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        self.sender
            .send(Message::Run {
                user,
                faces,
                deadline: std::time::Instant::now() + max_latency,
                reply,
            })
            .map_err(|_| "the inference thread has stopped".to_string())?;
        Ok(answer)
    }

    /// Drops the recurrent state of ended tracks.
    pub fn forget(&self, user: u64, tracks: Vec<u64>) {
        let _ = self.sender.send(Message::Forget { user, tracks });
    }

    /// Drops all recurrent state of `user`.
    pub fn forget_user(&self, user: u64) {
        let _ = self.sender.send(Message::ForgetUser { user });
    }
}

/// A frame's faces waiting in the worker's queue.
struct Pending {
    user: u64,
    faces: Vec<FaceRequest>,
    /// The answer of each face, once its batch ran.
    results: Vec<Option<FaceResult>>,
    /// Faces whose track ended after them: the track's state goes once they ran.
    forget_after: Vec<bool>,
    remaining: usize,
    deadline: std::time::Instant,
    reply: std::sync::mpsc::SyncSender<Result<Vec<FaceResult>, String>>,
}

impl Pending {
    fn key(&self, face: usize) -> Option<(u64, u64)> {
        self.faces[face].track.map(|t| (self.user, t))
    }
}

/// A face of a batch: the request, its track's state key, and whether the track ended with it.
type BatchRow<'a> = (&'a FaceRequest, Option<(u64, u64)>, bool);

/// The requests waiting for the session, oldest first.
#[derive(Default)]
struct Queue {
    requests: std::collections::VecDeque<Pending>,
    /// Faces of `requests` not yet run.
    faces: usize,
}

struct Worker {
    session: Session,
    contract: affect_core::contract::ModelContract,
    /// Recurrent state of each (user, track).
    states: std::collections::HashMap<(u64, u64), Vec<f32>>,
    batch_limit: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stats: std::sync::Arc<std::sync::Mutex<ModelStats>>,
    /// Input buffers, reused from batch to batch.
    face_input: Vec<f32>,
    audio_input: Vec<f32>,
    state_input: Vec<f32>,
}

impl Worker {
    fn run(mut self, receiver: std::sync::mpsc::Receiver<Message>) {
        use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
        let mut queue = Queue::default();
        loop {
            // Everything that has arrived joins the queue before a batch is chosen: while
            // the session runs, other users' frames wait in the channel.
            loop {
                match receiver.try_recv() {
                    Ok(m) => self.receive(m, &mut queue),
                    Err(TryRecvError::Empty) => break,
                    // Users are gone; whatever is queued has nobody to answer.
                    Err(TryRecvError::Disconnected) => return,
                }
            }
            let limit = self
                .batch_limit
                .load(std::sync::atomic::Ordering::Relaxed)
                .max(1);
            let now = std::time::Instant::now();
            let due = queue.requests.iter().map(|p| p.deadline).min();
            if queue.faces > 0 && (queue.faces >= limit || due.is_some_and(|d| d <= now)) {
                self.run_batch(&mut queue, limit);
                continue;
            }
            let message = match due {
                None => match receiver.recv() {
                    Ok(m) => m,
                    Err(_) => return,
                },
                Some(d) => match receiver.recv_timeout(d.saturating_duration_since(now)) {
                    Ok(m) => m,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => return,
                },
            };
            self.receive(message, &mut queue);
        }
    }

    fn receive(&mut self, message: Message, queue: &mut Queue) {
        match message {
            Message::Run {
                user,
                faces,
                deadline,
                reply,
            } => {
                if faces.is_empty() {
                    let _ = reply.send(Ok(Vec::new()));
                } else {
                    queue.faces += faces.len();
                    queue.requests.push_back(Pending {
                        user,
                        results: vec![None; faces.len()],
                        forget_after: vec![false; faces.len()],
                        remaining: faces.len(),
                        faces,
                        deadline,
                        reply,
                    });
                }
            }
            Message::Forget { user, tracks } => {
                // Queued frames of these tracks still need their state: it goes after the
                // last of them has run.
                for t in tracks {
                    let last = queue.requests.iter_mut().rev().find_map(|p| {
                        let i = (0..p.faces.len())
                            .rev()
                            .find(|&i| p.results[i].is_none() && p.key(i) == Some((user, t)))?;
                        Some((p, i))
                    });
                    match last {
                        Some((p, i)) => p.forget_after[i] = true,
                        None => {
                            self.states.remove(&(user, t));
                        }
                    }
                }
            }
            Message::ForgetUser { user } => {
                // Its queued frames were flushed away: nobody waits for them.
                queue.requests.retain(|p| p.user != user);
                queue.faces = queue.requests.iter().map(|p| p.remaining).sum();
                self.states.retain(|(u, _), _| *u != user);
            }
        }
    }

    /// Runs one batch of at most `limit` queued faces, the oldest first, and answers the
    /// requests it completes. A batch never holds two frames of one track (the later needs
    /// the earlier's state), but it does take the faces of other tracks and other users
    /// queued behind them, so that streams sharing the model fill the batch.
    fn run_batch(&mut self, queue: &mut Queue, limit: usize) {
        let requests = &mut queue.requests;
        let mut keys = std::collections::HashSet::new();
        let mut chosen: Vec<(usize, usize)> = Vec::with_capacity(limit);
        'requests: for (r, p) in requests.iter().enumerate() {
            for i in 0..p.faces.len() {
                if p.results[i].is_some() {
                    continue;
                }
                if let Some(k) = p.key(i)
                    && !keys.insert(k)
                {
                    continue;
                }
                chosen.push((r, i));
                if chosen.len() == limit {
                    break 'requests;
                }
            }
        }
        let batch: Vec<BatchRow<'_>> = chosen
            .iter()
            .map(|&(r, i)| {
                let p = &requests[r];
                (&p.faces[i], p.key(i), p.forget_after[i])
            })
            .collect();
        match self.infer(&batch) {
            Ok(out) => {
                for (&(r, i), res) in chosen.iter().zip(out) {
                    requests[r].results[i] = Some(res);
                    requests[r].remaining -= 1;
                }
                queue.faces -= chosen.len();
                let mut r = 0;
                while r < requests.len() {
                    if requests[r].remaining == 0 {
                        let p = requests.remove(r).expect("index is in range");
                        let results = p.results.into_iter().flatten().collect();
                        let _ = p.reply.send(Ok(results));
                    } else {
                        r += 1;
                    }
                }
            }
            Err(e) => {
                // The requests of the failed batch are answered with the error; the rest
                // stay queued.
                let mut failed: Vec<usize> = chosen.iter().map(|&(r, _)| r).collect();
                failed.dedup();
                for &r in failed.iter().rev() {
                    let p = requests.remove(r).expect("index is in range");
                    queue.faces -= p.remaining;
                    let _ = p.reply.send(Err(e.clone()));
                }
            }
        }
    }

    fn infer(&mut self, batch: &[BatchRow<'_>]) -> Result<Vec<FaceResult>, String> {
        use affect_core::contract::io;
        use ort::value::TensorRef;
        let n = batch.len();
        let c = &self.contract;
        let (h, w) = (c.face.height as usize, c.face.width as usize);
        let channels = c.face.channels as usize;
        let face_len = channels * h * w;
        self.face_input.clear();
        for (f, _, _) in batch {
            if f.face.len() != face_len {
                return Err(format!(
                    "face tensor of {} values, the model needs {channels}x{h}x{w}",
                    f.face.len()
                ));
            }
            self.face_input.extend_from_slice(&f.face);
        }
        let mut inputs: Vec<(
            std::borrow::Cow<'_, str>,
            ort::session::SessionInputValue<'_>,
        )> = Vec::with_capacity(3);
        let face_tensor =
            TensorRef::from_array_view(([n, channels, h, w], self.face_input.as_slice()))
                .map_err(|e| format!("cannot make the face input: {e}"))?;
        inputs.push((io::FACE.into(), face_tensor.into()));

        if let Some(a) = &c.audio {
            let len = a.frames * a.mel.n_mels;
            let silence = a.mel.log_offset.ln() as f32;
            self.audio_input.clear();
            for (f, _, _) in batch {
                match &f.audio {
                    Some(v) if v.len() == len => self.audio_input.extend_from_slice(v),
                    _ => self.audio_input.extend(std::iter::repeat_n(silence, len)),
                }
            }
            let t = TensorRef::from_array_view((
                [n, 1, a.frames, a.mel.n_mels],
                self.audio_input.as_slice(),
            ))
            .map_err(|e| format!("cannot make the audio input: {e}"))?;
            inputs.push((io::AUDIO.into(), t.into()));
        }

        if let Some(s) = c.state_size {
            self.state_input.clear();
            for (_, key, _) in batch {
                match key.and_then(|k| self.states.get(&k)) {
                    Some(v) => self.state_input.extend_from_slice(v),
                    None => self.state_input.extend(std::iter::repeat_n(0.0, s)),
                }
            }
            let t = TensorRef::from_array_view(([n, s], self.state_input.as_slice()))
                .map_err(|e| format!("cannot make the state input: {e}"))?;
            inputs.push((io::STATE_IN.into(), t.into()));
        }

        let started = std::time::Instant::now();
        let outputs = self
            .session
            .run(inputs)
            .map_err(|e| format!("inference failed: {e}"))?;
        let run_time = started.elapsed();
        let take = |name: &str, width: usize| -> Result<&[f32], String> {
            let v = outputs
                .get(name)
                .ok_or_else(|| format!("the model gave no '{name}' output"))?;
            let (_, values) = v
                .try_extract_tensor::<f32>()
                .map_err(|e| format!("output '{name}': {e}"))?;
            if values.len() != n * width {
                return Err(format!(
                    "output '{name}' holds {} values for {n} faces, {} expected",
                    values.len(),
                    n * width
                ));
            }
            Ok(values)
        };
        // Only the heads the model has.
        let heads = c.heads;
        let va = if heads.valence_arousal {
            take(io::VALENCE_AROUSAL, 2)?
        } else {
            &[]
        };
        let n_au = c.au_labels.len();
        let n_expr = c.expression_labels.len();
        let au = if heads.au { take(io::AU, n_au)? } else { &[] };
        let expr = if heads.expression {
            take(io::EXPRESSION, n_expr)?
        } else {
            &[]
        };
        if let Some(s) = c.state_size {
            let next = take(io::STATE_OUT, s)?;
            for (i, (_, key, forget)) in batch.iter().enumerate() {
                match key {
                    Some(k) if *forget => {
                        self.states.remove(k);
                    }
                    Some(k) => {
                        let state = self.states.entry(*k).or_default();
                        state.clear();
                        state.extend_from_slice(&next[i * s..(i + 1) * s]);
                    }
                    None => {}
                }
            }
        }
        let results = (0..n)
            .map(|i| FaceResult {
                valence_arousal: heads.valence_arousal.then(|| [va[2 * i], va[2 * i + 1]]),
                au: if heads.au {
                    au[i * n_au..(i + 1) * n_au].to_vec()
                } else {
                    Vec::new()
                },
                expression: if heads.expression {
                    expr[i * n_expr..(i + 1) * n_expr].to_vec()
                } else {
                    Vec::new()
                },
            })
            .collect();
        {
            let mut stats = self.stats.lock().unwrap();
            stats.batches += 1;
            stats.faces += n as u64;
            stats.run_time += run_time;
        }
        Ok(results)
    }
}
