//! Batch hygiene before the model runs.

use std::collections::HashMap;

use crate::channels::tasks::Task;
use crate::plugins::CutKind;

/// Drops stale partials: a partial is skipped when the same batch holds the segment's final or a
/// newer partial, since its text would be replaced at once. Returns (to run, ids to ack unrun).
pub fn coalesce(batch: Vec<Task>) -> (Vec<Task>, Vec<String>) {
    // Newest (kind rank, rev) per (session, segment): a final outranks every partial.
    let mut newest: HashMap<(String, u64), (u8, u32)> = HashMap::new();
    for t in &batch {
        let rank = (matches!(t.meta.kind, CutKind::Final) as u8, t.meta.rev);
        let e = newest.entry((t.meta.session.clone(), t.meta.segment)).or_insert(rank);
        *e = (*e).max(rank);
    }
    let mut run = Vec::with_capacity(batch.len());
    let mut skipped = Vec::new();
    for t in batch {
        let rank = (matches!(t.meta.kind, CutKind::Final) as u8, t.meta.rev);
        let best = newest[&(t.meta.session.clone(), t.meta.segment)];
        if t.meta.kind == CutKind::Partial && rank < best {
            skipped.push(t.id);
        } else {
            run.push(t);
        }
    }
    (run, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::tasks::TaskMeta;

    fn task(id: &str, seg: u64, kind: CutKind, rev: u32) -> Task {
        Task {
            id: id.into(),
            meta: TaskMeta { rev, ..TaskMeta::new("s", seg, kind, "c", (0, 1), Default::default()) },
            audio: vec![],
        }
    }

    #[test]
    fn stale_partials_are_skipped() {
        let (run, skipped) = coalesce(vec![
            task("1", 1, CutKind::Partial, 1),
            task("2", 1, CutKind::Partial, 2),
            task("3", 2, CutKind::Partial, 1),
            task("4", 1, CutKind::Final, 0),
        ]);
        let ids: Vec<_> = run.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, vec!["3", "4"]);
        assert_eq!(skipped, vec!["1".to_string(), "2".to_string()]);
    }
}
