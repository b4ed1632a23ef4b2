//! What a session hears back from the workers: results in `seq` order (the [`Sequencer`]),
//! rendered as the client's `partial`, `final` and per-segment errors. A final is delivered
//! once, while the outbox's ledger holds it; a partial for a segment already final is stale; a
//! partial says how much of its text settled since the last one.

use super::super::AppState;
use super::super::protocol::{ErrorCode, Segment, ServerMessage};
use super::outbox::Outbox;
use super::sequencer::{Admit, Sequencer};
use super::settled::settled_chars;
use crate::channels::results::Sequenced;
use crate::channels::subscriber::Delivery;
use crate::channels::workers::now_ms;
use crate::plugins::CutKind;

pub struct Inbox {
    session: String,
    seq: Sequencer,
    /// First segment id of this connection; lower ids belong to earlier connections (resume).
    first_segment: u64,
    /// The last partial delivered (segment, text): the next one's settled prefix is measured
    /// against it.
    last_partial: Option<(u64, String)>,
    /// Finals delivered on this connection.
    finals_delivered: u64,
    /// Whether the session was told its speech is in a language the model does not transcribe
    /// (once is enough).
    told_language: bool,
}

impl Inbox {
    pub fn new(session: String, epoch: String, last_seq: u64, first_segment: u64) -> Self {
        Self {
            session,
            seq: Sequencer::new(epoch, last_seq),
            first_segment,
            last_partial: None,
            finals_delivered: 0,
            told_language: false,
        }
    }

    pub fn epoch(&self) -> &str {
        self.seq.epoch()
    }

    pub fn last_seq(&self) -> u64 {
        self.seq.last_seq()
    }

    pub fn finals_delivered(&self) -> u64 {
        self.finals_delivered
    }

    /// A final answered without a task (a client-cut utterance too short for words).
    pub fn count_final(&mut self) {
        self.finals_delivered += 1;
    }

    /// Applies a result in sequence order: duplicates are dropped, a gap is filled from the
    /// replay stream first.
    pub async fn on_delivery(&mut self, state: &AppState, outbox: &mut Outbox, d: Delivery) -> Vec<ServerMessage> {
        let mut out = Vec::new();
        let msg = match d {
            Delivery::Resync => {
                self.replay(state, outbox, &mut out).await;
                return out;
            }
            Delivery::Result(msg) => *msg,
        };
        match self.seq.admit(&msg.epoch, msg.seq) {
            Admit::Next => {
                self.seq.advance(msg.seq);
                self.apply(state, outbox, msg, &mut out);
            }
            // Published before Redis lost the session's state: applied as it comes (a final
            // still only once, while outstanding).
            Admit::Retired => self.apply(state, outbox, msg, &mut out),
            Admit::Duplicate => {
                state.metrics.duplicates_dropped.inc();
            }
            Admit::Gap => {
                self.replay(state, outbox, &mut out).await;
                if self.seq.advance(msg.seq) {
                    self.apply(state, outbox, msg, &mut out);
                } else if msg.seq <= self.seq.last_seq() {
                    state.metrics.duplicates_dropped.inc();
                }
            }
        }
        out
    }

    /// Reads what this session missed from its replay stream (batched with other sessions').
    pub async fn replay(&mut self, state: &AppState, outbox: &mut Outbox, out: &mut Vec<ServerMessage>) {
        match state.replayer.replay(&self.session, self.seq.last_seq()).await {
            Ok(msgs) => {
                for m in msgs {
                    if self.seq.advance(m.seq) {
                        self.apply(state, outbox, m, out);
                    }
                }
            }
            Err(e) => tracing::warn!(session = %self.session, "replay failed: {e}"),
        }
    }

    fn apply(&mut self, state: &AppState, outbox: &mut Outbox, msg: Sequenced, out: &mut Vec<ServerMessage>) {
        let p = msg.payload;
        let seg = Segment {
            seq: msg.seq,
            segment: p.segment,
            text: p.text,
            start_ms: p.start_ms,
            end_ms: p.end_ms,
            words: p.words,
            origin: p.origin.clone(),
            stable: None,
        };
        // Another room member's result: pass it on, it is not one of ours to track.
        if p.origin.is_some() {
            out.push(match p.kind {
                CutKind::Final => ServerMessage::Final(seg),
                CutKind::Partial => ServerMessage::Partial(seg),
            });
            return;
        }
        let failed = |code, message: String, segment| ServerMessage::segment_error(code, message, segment, false);
        if let Some(err) = p.error {
            if p.kind == CutKind::Final {
                outbox.ledger.delivered(p.segment);
            }
            out.push(failed(ErrorCode::SegmentFailed, err, p.segment));
            return;
        }
        // A result plugin failed on this final (or could not run): the text comes unprocessed.
        if let (CutKind::Final, Some(why)) = (p.kind, &p.plugin_error) {
            out.push(failed(ErrorCode::PluginFailed, why.clone(), p.segment));
        }
        // Speech the model cannot read: its text was withheld; say why, once per session.
        if let (CutKind::Final, Some(why), false) = (p.kind, &p.unsupported_language, self.told_language) {
            self.told_language = true;
            out.push(failed(ErrorCode::LanguageUnsupported, why.clone(), p.segment));
        }
        match p.kind {
            CutKind::Final => {
                // Finals of earlier connections (resume) are delivered once, as seq ordering
                // already guarantees; finals of this one must be outstanding.
                if outbox.ledger.delivered(p.segment) || p.segment < self.first_segment {
                    self.finals_delivered += 1;
                    state.metrics.finals_delivered.inc();
                    if p.enqueued_ms > 0 {
                        state.metrics.observe_final_latency(now_ms().saturating_sub(p.enqueued_ms));
                    }
                    if p.published_ms > 0 {
                        let delivery = now_ms().saturating_sub(p.published_ms) as f64 / 1e3;
                        state.metrics.final_delivery_seconds.observe(delivery);
                    }
                    out.push(ServerMessage::Final(seg));
                }
            }
            // A partial for a segment already final is stale.
            CutKind::Partial if p.segment >= outbox.segment() => {
                state.metrics.partials_delivered.inc();
                let mut seg = seg;
                let prev = self.last_partial.take().filter(|(s, _)| *s == p.segment).map(|(_, t)| t);
                let stable = settled_chars(prev.as_deref().unwrap_or(""), &seg.text);
                seg.stable = Some(u32::try_from(stable).unwrap_or(u32::MAX));
                self.last_partial = Some((p.segment, seg.text.clone()));
                out.push(ServerMessage::Partial(seg));
            }
            CutKind::Partial => {}
        }
    }
}
