//! Segmenter plugins: where a session's audio is cut into utterances.

use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::ResourceAny;

use super::bindings::segmenter::kiki::plugin::types;
use super::bindings::segmenter::{SegmenterPlugin as Bindings, SegmenterPluginPre};
use super::compiled::Compiled;
use super::host::HostState;
use super::limits::MAX_CUTS_PER_CALL;
use super::runtime::PluginError;

pub use crate::vocab::{Cut, CutKind};

/// A compiled segmenter version, ready to instantiate per session.
pub type SegmenterPlugin = Compiled<SegmenterPluginPre<HostState>>;

impl SegmenterPlugin {
    /// Runs a fresh instance over built-in test audio (a tone burst between silences, in 20 ms
    /// frames) within the sandbox limits: a version that fails this is never activated.
    pub fn self_test(&self) -> Result<usize, PluginError> {
        let mut inst = self.open(16_000, &[])?;
        let mut audio = vec![0.0f32; 16_000];
        audio.extend((0..24_000).map(|i| (i as f32 * 0.07).sin() * 0.4 * (1.0 + (i as f32 * 0.003).sin()) / 2.0));
        audio.extend(std::iter::repeat_n(0.0, 16_000));
        let mut cuts = 0;
        let mut seen = 0u64;
        for frame in audio.chunks(320) {
            let got = inst.push(frame.to_vec(), None)?;
            seen += frame.len() as u64;
            cuts += self.sane_cuts(&got, seen)?;
        }
        let got = inst.flush()?;
        cuts += self.sane_cuts(&got, seen)?;
        Ok(cuts)
    }

    /// Counts the cuts that are not releases, refusing any that runs backwards or reaches past
    /// the `seen` samples pushed so far (the gateway would drop such a cut, and its speech).
    fn sane_cuts(&self, cuts: &[Cut], seen: u64) -> Result<usize, PluginError> {
        if let Some(c) = cuts.iter().find(|c| (!c.is_release() && c.start > c.end) || c.end > seen || c.start > seen) {
            return Err(PluginError::Returned {
                plugin: self.label().to_string(),
                reason: format!(
                    "cut {:?} {}..{} runs backwards or past the {seen} samples pushed",
                    c.kind, c.start, c.end
                ),
            });
        }
        Ok(cuts.iter().filter(|c| !c.is_release()).count())
    }

    /// A fresh instance with one open session. `config` is what the session asked for.
    pub fn open(&self, sample_rate: u32, config: &[(String, String)]) -> Result<SegmenterInstance, PluginError> {
        let fuel = self.runtime().limits().fuel_per_call;
        let mut store = self.store(0)?;
        let bindings = self.pre.instantiate(&mut store).map_err(|e| PluginError::from_call(self.label(), e))?;
        store.set_fuel(fuel).map_err(|e| PluginError::Engine(e.to_string()))?;
        let opened = bindings.kiki_plugin_segmenter().call_open(&mut store, sample_rate, config);
        store.data_mut().drain_stderr();
        let session = match opened.map_err(|e| PluginError::from_call(self.label(), e))? {
            Ok(s) => s,
            Err(types::PluginError::InvalidConfig(reason)) => {
                return Err(PluginError::InvalidConfig { plugin: self.label().to_string(), reason });
            }
            Err(e) => return Err(self.returned(e)),
        };
        Ok(SegmenterInstance { store, bindings, session, label: self.label().into(), fuel })
    }
}

/// One session's live segmenter. After an error the instance is unusable (a trap leaves the
/// component in a state it cannot be re-entered from); the caller drops it.
pub struct SegmenterInstance {
    store: Store<HostState>,
    bindings: Bindings,
    session: ResourceAny,
    label: Arc<str>,
    fuel: u64,
}

impl SegmenterInstance {
    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn push(&mut self, samples: Vec<f32>, speech_prob: Option<f32>) -> Result<Vec<Cut>, PluginError> {
        self.store.set_fuel(self.fuel).map_err(|e| PluginError::Engine(e.to_string()))?;
        let frame = types::Frame { samples, speech_prob };
        let res = self.bindings.kiki_plugin_segmenter().session().call_push(&mut self.store, self.session, &frame);
        self.finish(res)
    }

    pub fn flush(&mut self) -> Result<Vec<Cut>, PluginError> {
        self.store.set_fuel(self.fuel).map_err(|e| PluginError::Engine(e.to_string()))?;
        let res = self.bindings.kiki_plugin_segmenter().session().call_flush(&mut self.store, self.session);
        self.finish(res)
    }

    fn finish(&mut self, res: wasmtime::Result<Vec<types::Cut>>) -> Result<Vec<Cut>, PluginError> {
        self.store.data_mut().drain_stderr();
        let cuts = res.map_err(|e| PluginError::from_call(&self.label, e))?;
        if cuts.len() > MAX_CUTS_PER_CALL {
            return Err(PluginError::Returned {
                plugin: self.label.to_string(),
                reason: format!("returned {} cuts in one call; the limit is {MAX_CUTS_PER_CALL}", cuts.len()),
            });
        }
        Ok(cuts
            .into_iter()
            // Backwards spans are nonsense; empty ones are releases and are kept.
            .filter(|c| c.end >= c.start)
            .map(|c| Cut {
                kind: match c.kind {
                    types::CutKind::Partial => CutKind::Partial,
                    types::CutKind::Final => CutKind::Final,
                },
                start: c.start,
                end: c.end,
            })
            .collect())
    }
}

impl Drop for SegmenterInstance {
    fn drop(&mut self) {
        // Best effort: run the resource destructor so the guest frees its state.
        let _ = self.store.set_fuel(self.fuel);
        let _ = self.session.resource_drop(&mut self.store);
    }
}
