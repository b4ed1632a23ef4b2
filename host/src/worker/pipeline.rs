//! What happens to a transcript after the model: the post-processor plugin rewrites its text,
//! the router plugin decides where it goes. A failing plugin never loses a result: the raw text
//! goes to its owner, and the failure is logged and counted.

use std::path::Path;
use std::sync::Arc;

use crate::channels::tasks::Task;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::plugins::{
    CutKind, PluginRuntime, PostprocessorPlugin, Route, RouterPlugin, SessionOptions, Transcript, registry,
};

pub struct Pipeline {
    post: Option<Arc<PostprocessorPlugin>>,
    router: Option<Arc<RouterPlugin>>,
    metrics: Arc<Metrics>,
}

impl Pipeline {
    /// No plugins: raw text to the owner.
    pub fn none() -> Self {
        Self { post: None, router: None, metrics: Metrics::new() }
    }

    /// Compiles the configured plugins; an empty name means "none".
    pub fn load(cfg: &Config, runtime: &Arc<PluginRuntime>, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let dir = cfg.plugin_dir();
        let settings = |name: &str| cfg.plugins.config.get(name).cloned().unwrap_or_default();
        let post = match find(&dir, &cfg.plugins.postprocessor)? {
            Some(f) => Some(PostprocessorPlugin::load(runtime, &f.path, &f.name, &f.version, settings(&f.name))?),
            None => None,
        };
        let router = match find(&dir, &cfg.plugins.router)? {
            Some(f) => Some(RouterPlugin::load(runtime, &f.path, &f.name, &f.version, settings(&f.name))?),
            None => None,
        };
        for p in post.iter().map(|p| p.label()).chain(router.iter().map(|r| r.label())) {
            tracing::info!(plugin = %p, "result plugin loaded");
        }
        Ok(Self { post, router, metrics })
    }

    /// The loaded plugins as (kind, "name@version").
    pub fn labels(&self) -> Vec<(String, String)> {
        let post = self.post.iter().map(|p| ("postprocessor".to_string(), p.label().to_string()));
        post.chain(self.router.iter().map(|r| ("router".to_string(), r.label().to_string()))).collect()
    }

    /// Post-processes `text` (and its word times) and routes it. Returns the text and words to
    /// deliver and the destinations.
    pub fn run(
        &self,
        task: &Task,
        text: String,
        words: &[crate::channels::results::Word],
        language: &str,
        room_members: Vec<String>,
    ) -> (String, Vec<crate::channels::results::Word>, Vec<Route>) {
        let options = SessionOptions {
            session_id: task.meta.session.clone(),
            language: task.meta.language.clone(),
            hotwords: task.meta.hotwords.clone(),
            room: task.meta.room.clone(),
            extra: Vec::new(),
        };
        let mut transcript = Transcript {
            session_id: task.meta.session.clone(),
            segment_id: task.meta.segment,
            kind: match task.meta.kind {
                CutKind::Partial => crate::plugins::bindings_types::CutKind::Partial,
                CutKind::Final => crate::plugins::bindings_types::CutKind::Final,
            },
            text,
            start_ms: task.meta.start_ms,
            end_ms: task.meta.end_ms,
            words: words
                .iter()
                .map(|w| crate::plugins::Word {
                    text: w.text.clone(),
                    start_ms: w.start_ms,
                    end_ms: w.end_ms,
                    probability: w.probability,
                })
                .collect(),
            language: language.to_string(),
        };
        if let Some(post) = &self.post
            && !transcript.text.is_empty()
        {
            match post.process(&transcript, &options) {
                Ok(t) => {
                    transcript.text = t.text;
                    transcript.words = t.words;
                }
                Err(e) => self.failed(&e),
            }
        }
        let routes = match &self.router {
            Some(router) => match router.route(&transcript, &options, 0, room_members) {
                Ok(r) => r,
                Err(e) => {
                    self.failed(&e);
                    vec![Route::Owner]
                }
            },
            None => vec![Route::Owner],
        };
        let words = transcript
            .words
            .into_iter()
            .map(|w| crate::channels::results::Word {
                text: w.text,
                start_ms: w.start_ms,
                end_ms: w.end_ms,
                probability: w.probability,
            })
            .collect();
        (transcript.text, words, routes)
    }

    fn failed(&self, e: &crate::plugins::PluginError) {
        self.metrics.plugin_errors.inc();
        tracing::warn!("result plugin failed, falling back to the raw result: {e}");
    }
}

fn find(dir: &Path, name: &str) -> anyhow::Result<Option<registry::PluginFile>> {
    if name.is_empty() {
        return Ok(None);
    }
    let found = registry::newest(dir, name).map_err(|e| anyhow::anyhow!("reading {}: {e}", dir.display()))?;
    if found.is_none() {
        tracing::warn!("plugin {name} not found in {}; results go out unprocessed", dir.display());
    }
    Ok(found)
}
