//! Hostile test plugin `huge@0.1.0`: a segmenter whose `push` returns millions of cuts.
//!
//! Every `push` returns `count` partial cuts (config key `count`, u32, default 5,000,000),
//! each over all the audio seen so far, `[0, seen)`; `flush` returns nothing.
//!
//! Memory: a cut is 24 bytes in the canonical ABI, and the guest holds the Rust vector and the
//! lowered list at once, so a reply needs about `48 * count` bytes of linear memory (240 MB
//! for the default). Under a small memory limit (e.g. 16 MiB) the guest cannot even build it
//! and traps with "memory allocation of ... bytes failed" before the host sees a list; pass a
//! smaller `count` (at most about 300,000 fits in 16 MiB) or raise the limit to get the list
//! across to the host.

use kiki_plugin_sdk::{Config, Cut, CutKind, Frame, PluginError, Segmenter, export_segmenter};

/// Cuts per push unless the `count` option says otherwise.
pub const DEFAULT_COUNT: u32 = 5_000_000;

pub struct Flood {
    count: usize,
    seen: u64,
}

impl Segmenter for Flood {
    fn open(_sample_rate: u32, config: &Config) -> Result<Self, PluginError> {
        Ok(Flood { count: config.get_u32("count", DEFAULT_COUNT)? as usize, seen: 0 })
    }

    fn push(&mut self, frame: Frame) -> Vec<Cut> {
        self.seen += frame.samples.len() as u64;
        let cut = Cut { kind: CutKind::Partial, start: 0, end: self.seen };
        vec![cut; self.count]
    }

    fn flush(&mut self) -> Vec<Cut> {
        Vec::new()
    }
}

export_segmenter!(Flood);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_is_configurable() {
        let mut s = Flood::open(16_000, &Config::from_pairs(&[("count", "7")])).unwrap();
        let cuts = s.push(Frame { samples: vec![0.0; 160], speech_prob: None });
        assert_eq!(cuts.len(), 7);
        assert!(cuts.iter().all(|c| c.start == 0 && c.end == 160 && c.kind == CutKind::Partial));
        assert_eq!(Flood::open(16_000, &Config::default()).unwrap().count, DEFAULT_COUNT as usize);
    }
}
