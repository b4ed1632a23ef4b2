//! Segmenter plugins: where a session's audio is cut into utterances.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::ResourceAny;

use super::bindings::segmenter::kiki::plugin::types;
use super::bindings::segmenter::{SegmenterPlugin as Bindings, SegmenterPluginPre};
use super::host::HostState;
use super::manifest::Manifest;
use super::runtime::{PluginError, PluginKind, PluginRuntime};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CutKind {
    Partial,
    Final,
}

/// A cut in absolute samples (16 kHz) from the start of the session's stream. An empty one
/// (`start == end`) is a release: no later cut starts before `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    pub kind: CutKind,
    pub start: u64,
    pub end: u64,
}

impl Cut {
    /// A release, not a segment (see the WIT's `record cut`).
    pub fn is_release(&self) -> bool {
        self.start == self.end
    }
}

/// More cuts than this from one call is a broken plugin, not a segmentation.
const MAX_CUTS_PER_CALL: usize = 1024;

/// A compiled segmenter version, ready to instantiate per session.
pub struct SegmenterPlugin {
    pub name: String,
    pub version: String,
    label: Arc<str>,
    pre: SegmenterPluginPre<HostState>,
    runtime: Arc<PluginRuntime>,
    /// Operator config for this plugin (`[plugins.config.NAME]`), served by `host.config`.
    config: Arc<HashMap<String, String>>,
    pub manifest: Option<Manifest>,
}

impl SegmenterPlugin {
    /// Compiles and links a segmenter component; fails if it does not export the segmenter world
    /// or its manifest (when there is one) disagrees with it or with `config`.
    pub fn load(
        runtime: &Arc<PluginRuntime>,
        path: &Path,
        name: &str,
        version: &str,
        config: HashMap<String, String>,
    ) -> Result<Arc<Self>, PluginError> {
        let manifest = PluginRuntime::manifest(path, name, version, PluginKind::Segmenter, &config)?;
        let component = runtime.compile(path)?;
        let label: Arc<str> = format!("{name}@{version}").into();
        let wrong = |e: wasmtime::Error| PluginError::WrongWorld {
            plugin: label.to_string(),
            kind: PluginKind::Segmenter,
            reason: format!("{e:#}"),
        };
        let pre = runtime.linker().instantiate_pre(&component).map_err(wrong)?;
        let pre = SegmenterPluginPre::new(pre).map_err(wrong)?;
        Ok(Arc::new(Self {
            name: name.into(),
            version: version.into(),
            label,
            pre,
            runtime: runtime.clone(),
            config: Arc::new(config),
            manifest,
        }))
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn runtime(&self) -> &Arc<PluginRuntime> {
        &self.runtime
    }

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
                plugin: self.label.to_string(),
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
        let limits = self.runtime.limits();
        let state = HostState::new(self.label.clone(), self.config.clone(), limits.store_limits());
        let mut store = self.runtime.new_store(state);
        let call = |store: &mut Store<HostState>| store.set_fuel(limits.fuel_per_call);
        call(&mut store).map_err(|e| PluginError::Engine(e.to_string()))?;
        let bindings = self.pre.instantiate(&mut store).map_err(|e| PluginError::from_call(&self.label, e))?;
        call(&mut store).map_err(|e| PluginError::Engine(e.to_string()))?;
        let opened = bindings.kiki_plugin_segmenter().call_open(&mut store, sample_rate, config);
        store.data_mut().drain_stderr();
        let session = match opened.map_err(|e| PluginError::from_call(&self.label, e))? {
            Ok(s) => s,
            Err(types::PluginError::InvalidConfig(reason)) => {
                return Err(PluginError::InvalidConfig { plugin: self.label.to_string(), reason });
            }
            Err(e) => {
                return Err(PluginError::Returned { plugin: self.label.to_string(), reason: plugin_error_text(e) });
            }
        };
        Ok(SegmenterInstance { store, bindings, session, label: self.label.clone(), fuel: limits.fuel_per_call })
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

fn plugin_error_text(e: types::PluginError) -> String {
    match e {
        types::PluginError::InvalidConfig(m) => format!("invalid config: {m}"),
        types::PluginError::Failed(m) => m,
    }
}
