//! Hostile test plugin `loop@0.1.0`: a segmenter whose `push` never returns.
//!
//! `open` and `flush` behave. `push` spins on a volatile counter: no allocation, no host
//! calls, and nothing the optimizer may delete, so only the host's fuel limit ends
//! the call. Expected host outcome: the call traps with out-of-fuel, the instance is dropped
//! and the session falls back to the default segmenter.

use kiki_plugin_sdk::{Config, Cut, Frame, PluginError, Segmenter, export_segmenter};

pub struct Spin {
    counter: u64,
}

impl Segmenter for Spin {
    fn open(_sample_rate: u32, _config: &Config) -> Result<Self, PluginError> {
        Ok(Spin { counter: 0 })
    }

    fn push(&mut self, _frame: Frame) -> Vec<Cut> {
        let p: *mut u64 = &mut self.counter;
        loop {
            // SAFETY: `p` points at a live, aligned field of `self` for the whole loop.
            unsafe { p.write_volatile(p.read_volatile().wrapping_add(1)) };
        }
    }

    fn flush(&mut self) -> Vec<Cut> {
        Vec::new()
    }
}

export_segmenter!(Spin);
