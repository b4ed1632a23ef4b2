//! Safe wrappers for the `kiki:plugin/host` imports.
//!
//! On `wasm32` these call the host. Elsewhere (unit tests on the build machine) `log` writes to
//! stderr, `now_ms` counts from the first call, and `config` returns `None`.

pub use crate::bindings::segmenter::kiki::plugin::host::Level;

/// Write a line to the host's log (tagged by the host with the plugin's name and version).
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::segmenter::kiki::plugin::host::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{level:?}] {message}");
}

/// Milliseconds on the host's monotonic clock (not wall time).
pub fn now_ms() -> u64 {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::segmenter::kiki::plugin::host::now_ms()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        use std::sync::OnceLock;
        use std::time::Instant;
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_millis() as u64
    }
}

/// The operator's value for `key` (from `[plugins.config.NAME]` in kiki.toml), if set.
pub fn config(key: &str) -> Option<String> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::segmenter::kiki::plugin::host::config(key)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = key;
        None
    }
}

#[doc(hidden)]
#[macro_export]
macro_rules! __kiki_log {
    ($level:ident, $($arg:tt)+) => {
        $crate::host::log($crate::Level::$level, &::std::format!($($arg)+))
    };
}

/// `trace!("fmt", args..)`: format and log at trace level.
#[macro_export]
macro_rules! trace { ($($arg:tt)+) => { $crate::__kiki_log!(Trace, $($arg)+) }; }
/// `debug!("fmt", args..)`: format and log at debug level.
#[macro_export]
macro_rules! debug { ($($arg:tt)+) => { $crate::__kiki_log!(Debug, $($arg)+) }; }
/// `info!("fmt", args..)`: format and log at info level.
#[macro_export]
macro_rules! info { ($($arg:tt)+) => { $crate::__kiki_log!(Info, $($arg)+) }; }
/// `warn!("fmt", args..)`: format and log at warn level.
#[macro_export]
macro_rules! warn { ($($arg:tt)+) => { $crate::__kiki_log!(Warn, $($arg)+) }; }
/// `error!("fmt", args..)`: format and log at error level.
#[macro_export]
macro_rules! error { ($($arg:tt)+) => { $crate::__kiki_log!(Error, $($arg)+) }; }
