//! A session's segmenter: one plugin instance fed the session's audio, with its failure
//! policy, its hot switch and the replay both need. It returns cuts (absolute samples) and
//! what the client should be told; it never touches Redis, so it is tested on its own.
//!
//! - **Failure.** An instance that traps, runs out of fuel or memory is unusable. By
//!   `plugins.on_failure` the session moves to the default segmenter (a fresh instance of it,
//!   if that was the one) fed the audio since the last final boundary, or ends. Once a fresh
//!   instance has failed on the same audio, that audio is skipped rather than fed again; three
//!   failures in a row end the session.
//! - **Hot switch.** When the operator activates another version, the session moves to it at
//!   its next final boundary; the new instance is fed the audio since that boundary, so no
//!   frame is lost and every segment comes from one version.

use std::sync::Arc;

use super::super::protocol::{ErrorCode, ServerMessage};
use super::audio_in::AudioIn;
use super::choices;
use crate::audio::SAMPLE_RATE;
use crate::config::OnFailure;
use crate::metrics::Metrics;
use crate::plugins::{Catalog, Cut, CutKind, PluginError, SegmenterInstance, SegmenterPlugin};

/// Where the driver finds plugins and its policy.
pub struct SegmenterEnv<'a> {
    pub catalog: &'a Catalog<SegmenterPlugin>,
    pub on_failure: OnFailure,
    pub metrics: &'a Metrics,
}

/// What one step of the segmenter gave.
#[derive(Debug, Default)]
pub struct Fed {
    /// Cuts in order, in absolute samples.
    pub cuts: Vec<Cut>,
    /// What the client is told (`plugin_failed`).
    pub notices: Vec<ServerMessage>,
    /// Audio up to here was skipped after failing twice: a resumed session must not be fed it.
    pub skipped_to: Option<u64>,
}

pub struct SegmenterDriver {
    instance: SegmenterInstance,
    /// The segmenter the session runs, by name (its live version may change at a boundary).
    name: String,
    /// Options the client gave the segmenter, reused when the instance is replaced.
    options: Vec<(String, String)>,
    /// Failures since it last handled audio: bounds the restart-and-replay loop when the audio
    /// itself makes the plugin fail every time.
    failures: u32,
    /// Failed for good (`on_failure = "error"`, or failing on): the session ends.
    failed: bool,
    /// Absolute sample at which the current instance started.
    offset: u64,
    /// Absolute sample up to which the current instance has been fed.
    fed: u64,
    /// End of the last final cut (or a later release): where a replacement takes over.
    boundary: u64,
    /// For logs.
    session: String,
}

impl SegmenterDriver {
    /// A driver for `instance` of the plugin `name`, on a clock at `position`.
    pub fn new(
        instance: SegmenterInstance,
        name: String,
        options: Vec<(String, String)>,
        position: u64,
        session: String,
    ) -> Self {
        Self {
            instance,
            name,
            options,
            failures: 0,
            failed: false,
            offset: position,
            fed: position,
            boundary: position,
            session,
        }
    }

    /// The segmenter failed and the session is to end.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Audio the client cut itself went into the buffer: the segmenter's clock skips it (and
    /// anything it had not been fed yet).
    pub fn skip_to(&mut self, end: u64) {
        self.offset += end.saturating_sub(self.fed);
        self.fed = end;
        // Nor is a replacement instance fed it.
        self.boundary = self.boundary.max(end);
    }

    /// Feeds the audio after what the instance has seen, up to `to`.
    pub fn feed(&mut self, env: &SegmenterEnv, audio: &AudioIn, to: u64) -> Fed {
        let pushed = self.push(audio, to);
        self.settle(env, audio, pushed)
    }

    /// The end of the session: the rest of the audio (also what waits for a speech
    /// probability), then a flush. A flush that fails hands the audio to a fresh instance,
    /// which is flushed in turn (twice at most: a plugin may fail at every flush).
    pub fn finish(&mut self, env: &SegmenterEnv, audio: &AudioIn) -> Fed {
        let mut fed = Fed::default();
        for _ in 0..3 {
            if self.failed {
                break;
            }
            let pushed = self.push(audio, audio.buf.end());
            let ok = pushed.is_ok();
            fed.append(self.settle(env, audio, pushed));
            if self.failed {
                break;
            }
            if !ok {
                // Replaced and replayed: the new instance's tail, then its flush.
                continue;
            }
            let offset = self.offset;
            let flushed = self.instance.flush().map(|c| shift(c, offset));
            let ok = flushed.is_ok();
            fed.append(self.settle(env, audio, flushed));
            if ok {
                break;
            }
        }
        fed
    }

    /// At a final boundary: moves to the live version of the session's segmenter if the
    /// operator activated another, fed the audio since the boundary.
    pub fn switch_if_newer(&mut self, env: &SegmenterEnv, audio: &AudioIn) -> Option<Fed> {
        let live = env.catalog.live(&self.name).filter(|p| p.label() != self.instance.label())?;
        let mut fed = Fed::default();
        self.replace(env, audio, live, true, &mut fed);
        Some(fed)
    }

    /// One push of `[fed, to)` (in pieces with their speech probabilities); cuts come back
    /// absolute.
    fn push(&mut self, audio: &AudioIn, to: u64) -> Result<Vec<Cut>, PluginError> {
        let (from, to) = audio.buf.clamp(self.fed, to);
        if from >= to {
            return Ok(Vec::new());
        }
        self.fed = to;
        let pieces = match &audio.speech {
            Some(sp) => sp.pieces(from, to),
            None => vec![(from, to, None)],
        };
        let mut cuts = Vec::new();
        for (a, b, prob) in pieces {
            cuts.extend(self.instance.push(audio.buf.f32(a, b), prob)?);
        }
        Ok(shift(cuts, self.offset))
    }

    /// Takes a push's outcome: cuts move the boundary; a failure is handled by policy, which
    /// may replace the instance and feed it again (that push settled in turn: the failure
    /// count bounds the recursion).
    fn settle(&mut self, env: &SegmenterEnv, audio: &AudioIn, outcome: Result<Vec<Cut>, PluginError>) -> Fed {
        let mut fed = Fed::default();
        match outcome {
            Ok(cuts) => {
                self.failures = 0;
                for c in &cuts {
                    if c.is_release() {
                        self.boundary = self.boundary.max(c.start);
                    } else if c.kind == CutKind::Final {
                        self.boundary = self.boundary.max(c.end);
                    }
                }
                fed.cuts = cuts;
            }
            Err(e) => self.failover(env, audio, e, &mut fed),
        }
        fed
    }

    /// The failure policy: end the session, or replace the instance (fed the audio since the
    /// boundary, or skipping it after a second failure on it).
    fn failover(&mut self, env: &SegmenterEnv, audio: &AudioIn, e: PluginError, fed: &mut Fed) {
        env.metrics.plugin_errors.inc();
        tracing::warn!(session = %self.session, "segmenter failed: {e}");
        self.failures += 1;
        let notice = |m: String| ServerMessage::error(ErrorCode::PluginFailed, m);
        if self.failures > 2 {
            self.failed = true;
            fed.notices
                .push(notice(format!("{e}; the segmenter failed {} times in a row, the session ends", self.failures)));
            return;
        }
        if env.on_failure == OnFailure::Error {
            self.failed = true;
            fed.notices.push(notice(format!("{e}; the session ends")));
            return;
        }
        let default = env.catalog.default_name();
        let next = match (self.name != default).then(|| env.catalog.default_plugin()).flatten() {
            Some(d) => {
                // The session's options were for the plugin that failed.
                if d.manifest.as_ref().is_some_and(|m| choices::check_options(m, "segmenter", &self.options).is_err()) {
                    self.options.clear();
                }
                self.name = default;
                fed.notices.push(notice(format!("{e}; this session continues with {}", d.label())));
                Some(d)
            }
            None => {
                fed.notices.push(notice(format!("{e}; restarted it")));
                env.catalog.live(&self.name)
            }
        };
        let Some(next) = next else { return };
        let replay = self.failures < 2;
        if !replay {
            let (from, to) = audio.buf.clamp(self.boundary, audio.buf.end());
            fed.notices.push(notice(format!(
                "the segmenter failed twice on the audio from {} ms to {} ms; that audio is skipped",
                from * 1000 / u64::from(SAMPLE_RATE),
                to * 1000 / u64::from(SAMPLE_RATE)
            )));
            self.boundary = self.boundary.max(to);
            fed.skipped_to = Some(to);
        }
        self.replace(env, audio, next, replay, fed);
    }

    /// Replaces the instance with a fresh one of `plugin`; with `replay`, the new one is fed
    /// the audio since the boundary (from what is still kept, if the old instance released
    /// audio after it). A new instance that cannot be opened leaves the old one in place.
    fn replace(
        &mut self,
        env: &SegmenterEnv,
        audio: &AudioIn,
        plugin: Arc<SegmenterPlugin>,
        replay: bool,
        fed: &mut Fed,
    ) {
        let fresh = match plugin.open(SAMPLE_RATE, &self.options) {
            Ok(f) => f,
            Err(e) => {
                env.metrics.plugin_errors.inc();
                tracing::error!(session = %self.session, "cannot open segmenter {}: {e}", plugin.label());
                return;
            }
        };
        tracing::debug!(session = %self.session, from = %self.instance.label(), to = %fresh.label(), "segmenter switched");
        self.instance = fresh;
        if !replay {
            let end = audio.buf.end();
            (self.offset, self.fed, self.boundary) = (end, end, end);
            return;
        }
        let (from, _) = audio.buf.clamp(self.boundary, audio.buf.end());
        self.offset = from;
        self.fed = from;
        let pushed = self.push(audio, audio.feedable());
        fed.append(self.settle(env, audio, pushed));
    }
}

impl Fed {
    fn append(&mut self, mut other: Fed) {
        self.cuts.append(&mut other.cuts);
        self.notices.append(&mut other.notices);
        self.skipped_to = other.skipped_to.max(self.skipped_to);
    }
}

fn shift(cuts: Vec<Cut>, offset: u64) -> Vec<Cut> {
    cuts.into_iter().map(|c| Cut { start: c.start + offset, end: c.end + offset, ..c }).collect()
}
