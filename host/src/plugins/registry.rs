//! Finding plugins on disk: `NAME@VERSION.wasm` files in the plugin directory, each with its
//! manifest `NAME@VERSION.toml` beside it.

use std::path::{Path, PathBuf};

use super::manifest::Manifest;
use super::runtime::PluginKind;

/// A plugin file found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginFile {
    pub name: String,
    pub version: String,
    pub path: PathBuf,
}

impl PluginFile {
    /// `NAME@VERSION`, as plugins are named in logs, the admin API and `/readyz`.
    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// Parses `NAME@VERSION.wasm`.
pub fn parse_file_name(path: &Path) -> Option<PluginFile> {
    let stem = path.file_name()?.to_str()?.strip_suffix(".wasm")?;
    let (name, version) = stem.split_once('@')?;
    if !valid_part(name) || !valid_part(version) {
        return None;
    }
    Some(PluginFile { name: name.into(), version: version.into(), path: path.to_path_buf() })
}

/// Whether `s` may be a plugin's name or version: letters, digits, `.`, `_` and `-`, not
/// starting with a dot (so that neither can reach outside the plugin directory).
pub fn valid_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.starts_with('.')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Every plugin file in `dir`.
pub fn scan(dir: &Path) -> std::io::Result<Vec<PluginFile>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        if let Some(p) = parse_file_name(&entry?.path()) {
            out.push(p);
        }
    }
    out.sort_by(|a, b| (&a.name, version_key(&a.version)).cmp(&(&b.name, version_key(&b.version))));
    Ok(out)
}

/// The newest version of `name` whose manifest does not say it is another kind (names are
/// per kind: a router and a segmenter may share one).
pub fn newest_of(dir: &Path, name: &str, kind: PluginKind) -> std::io::Result<Option<PluginFile>> {
    Ok(scan(dir)?
        .into_iter()
        .filter(|p| p.name == name)
        .rfind(|p| !matches!(Manifest::beside(&p.path, &p.name, &p.version), Ok(Some(m)) if m.kind != kind)))
}

/// Whether version `a` sorts after version `b`.
pub fn is_newer(a: &str, b: &str) -> bool {
    version_key(a) > version_key(b)
}

/// Orders versions as SemVer does where they follow it: dotted parts numerically where they are
/// numbers ("0.10.0" after "0.9.1"), and a pre-release before its release ("0.3.0-rc1" before
/// "0.3.0", which the directory watcher must not activate over it). Build metadata (`+…`) is
/// ignored. A total order, for any string.
type VersionKey = (Vec<(u64, String)>, bool, Vec<(u64, String)>);

fn version_key(v: &str) -> VersionKey {
    let v = v.split('+').next().unwrap_or(v);
    let (core, pre) = match v.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (v, None),
    };
    let parts = |s: &str| -> Vec<(u64, String)> {
        s.split('.').map(|p| (p.parse().unwrap_or(u64::MAX), p.to_string())).collect()
    };
    (parts(core), pre.is_none(), pre.map(parts).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions() {
        assert_eq!(parse_file_name(Path::new("/x/vad@0.1.0.wasm")).map(|p| p.version), Some("0.1.0".into()));
        assert!(parse_file_name(Path::new("vad.wasm")).is_none());
        assert!(parse_file_name(Path::new("@1.wasm")).is_none());
        let dir = tempfile::tempdir().unwrap();
        for f in ["vad@0.9.1.wasm", "vad@0.10.0.wasm", "text@1.0.0.wasm", "notes.txt"] {
            std::fs::write(dir.path().join(f), b"").unwrap();
        }
        assert_eq!(newest_of(dir.path(), "vad", PluginKind::Segmenter).unwrap().unwrap().version, "0.10.0");
    }

    #[test]
    fn a_pre_release_sorts_before_its_release() {
        assert!(is_newer("0.3.0", "0.3.0-rc1"));
        assert!(is_newer("0.3.0-rc2", "0.3.0-rc1"));
        assert!(is_newer("0.3.0-rc1", "0.2.9"));
        assert!(is_newer("0.10.0", "0.9.1"));
        assert!(!is_newer("1.0.0+build5", "1.0.0"));
        let dir = tempfile::tempdir().unwrap();
        for f in ["vad@0.3.0-rc1.wasm", "vad@0.3.0.wasm", "vad@0.2.1.wasm"] {
            std::fs::write(dir.path().join(f), b"").unwrap();
        }
        assert_eq!(newest_of(dir.path(), "vad", PluginKind::Segmenter).unwrap().unwrap().version, "0.3.0");
    }
}
