//! What happens to a transcript after the model: the post-processor plugin rewrites its text,
//! the router plugin decides where it goes. Each session may name its own (within the
//! operator's allow-list); the rest get the kind's default. A failing plugin never loses a
//! result: by `plugins.on_failure` the default plugin takes over (`fallback`), or the raw result
//! goes to its owner with a `plugin_failed` error (`error`); either way the failure is logged
//! and counted.

use std::sync::Arc;
use std::time::Duration;

use crate::channels::results::Word as ResultWord;
use crate::channels::tasks::{PluginChoice, Task};
use crate::channels::{Conn, Keys};
use crate::config::OnFailure;
use crate::metrics::Metrics;
use crate::plugins::{
    Catalog, CatalogError, CutKind, Plugin, PluginError, PostprocessorPlugin, Route, RouterPlugin, SessionOptions,
    Transcript, sync,
};
use crate::shutdown::Shutdown;

pub struct Pipeline {
    post: Option<Arc<Catalog<PostprocessorPlugin>>>,
    router: Option<Arc<Catalog<RouterPlugin>>>,
    on_failure: OnFailure,
    metrics: Arc<Metrics>,
}

/// A result after the plugins: what to deliver, where, and what went wrong on the way.
pub struct Outcome {
    pub text: String,
    pub words: Vec<ResultWord>,
    pub routes: Vec<Route>,
    /// Set when a plugin failed and `on_failure = "error"`, or the session named a plugin this
    /// worker cannot run: the session is told with a `plugin_failed` error.
    pub plugin_error: Option<String>,
}

impl Pipeline {
    /// No plugins: raw text to the owner.
    pub fn none() -> Self {
        Self { post: None, router: None, on_failure: OnFailure::Fallback, metrics: Metrics::new() }
    }

    pub fn new(
        post: Arc<Catalog<PostprocessorPlugin>>,
        router: Arc<Catalog<RouterPlugin>>,
        on_failure: OnFailure,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self { post: Some(post), router: Some(router), on_failure, metrics }
    }

    /// Keeps both catalogs in line with the deployment's record and the plugin directory.
    pub fn spawn_sync(&self, conn: Conn, keys: Keys, every: Duration, shutdown: Shutdown) {
        if let Some(p) = &self.post {
            tokio::spawn(sync::run(p.clone(), conn.clone(), keys.clone(), every, shutdown.clone()));
        }
        if let Some(r) = &self.router {
            tokio::spawn(sync::run(r.clone(), conn, keys, every, shutdown));
        }
    }

    /// The live plugins as (kind, "name@version"), defaults first.
    pub fn labels(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(p) = &self.post {
            out.extend(p.info().live.into_iter().map(|l| ("postprocessor".to_string(), l)));
        }
        if let Some(r) = &self.router {
            out.extend(r.info().live.into_iter().map(|l| ("router".to_string(), l)));
        }
        out
    }

    /// Post-processes `text` (and its word times) and routes it.
    pub async fn run(
        &self,
        task: &Task,
        text: String,
        words: &[ResultWord],
        language: &str,
        room_members: Vec<String>,
    ) -> Outcome {
        let options = |choice: Option<&PluginChoice>| SessionOptions {
            session_id: task.meta.session.clone(),
            language: task.meta.options.language.clone(),
            hotwords: task.meta.options.hotwords.clone(),
            room: task.meta.options.room.clone(),
            extra: choice.map(|c| c.options.clone()).unwrap_or_default(),
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
        let mut errors = Vec::new();
        if let Some(catalog) = &self.post
            && !transcript.text.is_empty()
        {
            let choice = task.meta.options.postprocessor.as_ref();
            let out = self
                .call(catalog, choice, &mut errors, |p, fallback| {
                    p.process(&transcript, &options(if fallback { None } else { choice }))
                })
                .await;
            if let Some(t) = out {
                transcript.text = t.text;
                transcript.words = t.words;
            }
        }
        let routes = match &self.router {
            Some(catalog) => {
                let choice = task.meta.options.router.as_ref();
                self.call(catalog, choice, &mut errors, |r, fallback| {
                    let options = options(if fallback { None } else { choice });
                    r.route(&transcript, &options, task.meta.owner_backlog, room_members.clone())
                })
                .await
                .unwrap_or_else(|| vec![Route::Owner])
            }
            None => vec![Route::Owner],
        };
        let words = transcript
            .words
            .into_iter()
            .map(|w| ResultWord { text: w.text, start_ms: w.start_ms, end_ms: w.end_ms, probability: w.probability })
            .collect();
        let plugin_error = (!errors.is_empty()).then(|| errors.join("; "));
        Outcome { text: transcript.text, words, routes, plugin_error }
    }

    /// Runs `f` on the session's plugin of a kind; on failure, by policy, on the kind's default.
    /// `f`'s flag is set when it runs a plugin other than the one the session asked for (so the
    /// session's options, meant for that plugin, are not passed on). `None`: no plugin gave an
    /// answer (the caller uses the raw result).
    async fn call<P: Plugin, T>(
        &self,
        catalog: &Catalog<P>,
        choice: Option<&PluginChoice>,
        errors: &mut Vec<String>,
        f: impl Fn(&P, bool) -> Result<T, PluginError>,
    ) -> Option<T> {
        let name = choice.map(|c| c.name.as_str()).filter(|n| !n.is_empty());
        let (chosen, swapped) = match catalog.get(name).await {
            Ok(p) => (p, false),
            // No default deployed: warned at start, results go out unprocessed, not as errors.
            Err(CatalogError::NotFound { .. }) if name.is_none() => (None, false),
            Err(e) => {
                // Named, but not runnable here: say so, and serve the default.
                self.metrics.plugin_errors.inc();
                errors.push(e.to_string());
                (catalog.default_plugin(), true)
            }
        };
        let chosen = chosen?;
        let is_default = chosen.name() == catalog.default_name();
        let err = match f(&chosen, swapped) {
            Ok(v) => return Some(v),
            Err(e) => e,
        };
        self.metrics.plugin_errors.inc();
        tracing::warn!(plugin = %chosen.label(), kind = catalog.kind(), "result plugin failed: {err}");
        match self.on_failure {
            OnFailure::Error => {
                errors.push(format!("{} {} failed: {err}; the result is unprocessed", catalog.kind(), chosen.label()));
                None
            }
            OnFailure::Fallback if !is_default => {
                let default = catalog.default_plugin()?;
                match f(&default, true) {
                    Ok(v) => Some(v),
                    Err(e) => {
                        self.metrics.plugin_errors.inc();
                        tracing::warn!(plugin = %default.label(), "default {} failed too: {e}", catalog.kind());
                        errors.push(format!(
                            "{} {} failed ({err}), and so did the default {} ({e}); the result is unprocessed",
                            catalog.kind(),
                            chosen.label(),
                            default.label()
                        ));
                        None
                    }
                }
            }
            // The default itself failed: nothing to fall back to, and the session is told.
            OnFailure::Fallback => {
                errors.push(format!("{} {} failed: {err}; the result is unprocessed", catalog.kind(), chosen.label()));
                None
            }
        }
    }
}
