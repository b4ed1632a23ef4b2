//! The words both sides of the task channel and the plugins share: what a cut is and of which
//! kind. Kept apart so that channels and plugins both depend on it and not on each other.

/// A provisional cut (its result may change) or a final one (its result is delivered once).
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
