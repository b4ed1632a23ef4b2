//! Silero VAD (the ONNX model of the `silero-vad` PyPI package, installed by the set-up step):
//! the probability that a 32 ms chunk of 16 kHz audio holds speech, handed to the segmenter as
//! `frame.speech-prob`.
//!
//! The model is recurrent: each stream keeps its own state (LSTM state and the last 64 samples
//! of context), so one loaded model serves every session. A session costs ~0.1-0.3 ms of one
//! core per chunk (31 chunks a second): it is an option (`gateway.speech_prob`), not a default.

use std::path::Path;
use std::sync::Mutex;

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::Tensor;

use super::InferenceError;

/// Samples per chunk at 16 kHz (the model's fixed window).
pub const CHUNK: usize = 512;
/// Samples of the previous chunk the model sees before each chunk.
const CONTEXT: usize = 64;
/// LSTM state: [2, batch, 128].
const STATE: usize = 2 * 128;

/// A loaded Silero model. Runs are serialised per session object; a gateway holds a few of them
/// so that sessions on different threads do not wait for one another.
pub struct SileroVad {
    sessions: Vec<Mutex<Session>>,
}

/// One audio stream's recurrent state.
#[derive(Clone)]
pub struct SileroState {
    state: Vec<f32>,
    context: [f32; CONTEXT],
}

impl Default for SileroState {
    fn default() -> Self {
        Self { state: vec![0.0; STATE], context: [0.0; CONTEXT] }
    }
}

impl SileroVad {
    /// Loads `path` with the ONNX Runtime library at `ort_library`; `copies` sessions (at least 1)
    /// for concurrent callers.
    pub fn load(path: &Path, ort_library: &Path, copies: usize) -> Result<Self, InferenceError> {
        // Created here first (a gateway without a worker), the environment's pool gets ONNX
        // Runtime's default size; Silero itself runs on its caller's thread, never in the pool.
        let (env, _) = super::runtime::environment(ort_library, 0)?;
        if !path.exists() {
            return Err(InferenceError::Missing {
                path: path.display().to_string(),
                reason: "Silero VAD model not found (gateway.speech_prob needs it)".into(),
            });
        }
        let corrupt =
            |e: ort::Error| InferenceError::Corrupt { path: path.display().to_string(), reason: e.to_string() };
        let mut sessions = Vec::new();
        for _ in 0..copies.max(1) {
            let session = Session::builder(env)?
                .with_optimization_level(GraphOptimizationLevel::Level3)
                .map_err(ort::Error::from)?
                .with_independent_thread_pool()
                .map_err(ort::Error::from)?
                .with_intra_threads(1)
                .map_err(ort::Error::from)?
                .with_inter_threads(1)
                .map_err(ort::Error::from)?
                .commit_from_file(path)
                .map_err(corrupt)?;
            let inputs: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
            if inputs != ["input", "state", "sr"] {
                return Err(InferenceError::Corrupt {
                    path: path.display().to_string(),
                    reason: format!("inputs {inputs:?}, expected [input, state, sr] (Silero VAD v5 or later)"),
                });
            }
            sessions.push(Mutex::new(session));
        }
        Ok(Self { sessions })
    }

    /// The speech probability of one chunk of `CHUNK` samples; advances `st`.
    pub fn prob(&self, st: &mut SileroState, chunk: &[f32]) -> Result<f32, InferenceError> {
        if chunk.len() != CHUNK {
            return Err(InferenceError::Input(format!("Silero takes {CHUNK} samples, not {}", chunk.len())));
        }
        let mut input = Vec::with_capacity(CONTEXT + CHUNK);
        input.extend_from_slice(&st.context);
        input.extend_from_slice(chunk);
        let input = Tensor::from_array(([1usize, CONTEXT + CHUNK], input))?;
        let state = Tensor::from_array(([2usize, 1, 128], st.state.clone()))?;
        let sr = Tensor::from_array(((), vec![16_000i64]))?;
        // A free copy if there is one, else wait for the first.
        let mut session = match self.sessions.iter().find_map(|s| s.try_lock().ok()) {
            Some(s) => s,
            None => self.sessions[0].lock().map_err(|_| InferenceError::Input("Silero session poisoned".into()))?,
        };
        let out = session.run(ort::inputs!["input" => input, "state" => state, "sr" => sr])?;
        let (_, prob) = out["output"].try_extract_tensor::<f32>()?;
        let (_, next) = out["stateN"].try_extract_tensor::<f32>()?;
        if next.len() != STATE || prob.is_empty() {
            return Err(InferenceError::Input(format!(
                "Silero gave {} state values, {} outputs",
                next.len(),
                prob.len()
            )));
        }
        st.state.copy_from_slice(next);
        st.context.copy_from_slice(&chunk[CHUNK - CONTEXT..]);
        Ok(prob[0])
    }
}
