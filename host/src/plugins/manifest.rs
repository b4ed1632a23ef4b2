//! A plugin's manifest: `NAME@VERSION.toml` beside `NAME@VERSION.wasm`, saying what the
//! component is (name, version, kind) and which options it takes (the config schema). The host
//! checks the component against the kind, the operator's `[plugins.config.NAME]` against the
//! schema at load, and each session's options at `start`, so that a typo is a clear error
//! rather than a silently ignored setting.
//!
//! ```toml
//! name = "vad"
//! version = "0.1.0"
//! kind = "segmenter"
//! description = "..."
//! [config]
//! hangover_ms = { type = "u32", default = 400, min = 10, max = 60000, description = "..." }
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::runtime::PluginKind;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub kind: PluginKind,
    #[serde(default)]
    pub description: String,
    /// Options the plugin reads, by key.
    #[serde(default)]
    pub config: BTreeMap<String, OptionSpec>,
}

/// One option of the schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptionSpec {
    #[serde(rename = "type")]
    pub ty: OptionType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<toml::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptionType {
    U32,
    U64,
    I64,
    F32,
    Bool,
    String,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ManifestError {
    #[error("{path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("{path} describes {found}, but the file is {expected}")]
    Mismatch { path: String, found: String, expected: String },
    #[error("unknown option `{key}` (it takes: {known})")]
    UnknownOption { key: String, known: String },
    #[error("option `{key}`: {reason}")]
    BadValue { key: String, reason: String },
}

impl Manifest {
    /// Reads and checks the manifest beside a plugin file, if there is one. `name`, `version`
    /// and `kind` are what the file name and the component say; the manifest must agree.
    pub fn beside(wasm: &Path, name: &str, version: &str) -> Result<Option<Self>, ManifestError> {
        if wasm.extension().is_none_or(|e| e != "wasm") {
            return Ok(None);
        }
        let path = wasm.with_extension("toml");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(ManifestError::Unreadable { path: path.display().to_string(), reason: e.to_string() });
            }
        };
        let m = Self::parse(&text)
            .map_err(|reason| ManifestError::Unreadable { path: path.display().to_string(), reason })?;
        if m.name != name || m.version != version {
            return Err(ManifestError::Mismatch {
                path: path.display().to_string(),
                found: format!("{}@{}", m.name, m.version),
                expected: format!("{name}@{version}"),
            });
        }
        Ok(Some(m))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let m: Manifest = toml::from_str(text).map_err(|e| e.to_string())?;
        for (key, spec) in &m.config {
            if let Some(d) = &spec.default {
                spec.check(&toml_to_string(d)).map_err(|reason| format!("default of `{key}`: {reason}"))?;
            }
        }
        Ok(m)
    }

    /// The manifest must describe a plugin of `kind`.
    pub fn check_kind(&self, kind: PluginKind, path: &str) -> Result<(), ManifestError> {
        if self.kind == kind {
            return Ok(());
        }
        Err(ManifestError::Mismatch {
            path: path.to_string(),
            found: format!("a {} plugin", self.kind),
            expected: format!("a {kind} plugin"),
        })
    }

    /// Checks options (a session's, or the operator's) against the schema.
    pub fn check_options<'a>(
        &self,
        options: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<(), ManifestError> {
        for (key, value) in options {
            let Some(spec) = self.config.get(key) else {
                let known: Vec<&str> = self.config.keys().map(String::as_str).collect();
                return Err(ManifestError::UnknownOption {
                    key: key.to_string(),
                    known: if known.is_empty() { "no options".into() } else { known.join(", ") },
                });
            };
            spec.check(value).map_err(|reason| ManifestError::BadValue { key: key.to_string(), reason })?;
        }
        Ok(())
    }
}

impl OptionSpec {
    /// Whether `value` (as the host passes options: a string) is of this type and range.
    fn check(&self, value: &str) -> Result<(), String> {
        let v = value.trim();
        let number = match self.ty {
            OptionType::U32 => v.parse::<u32>().map(f64::from).map_err(|_| "expected a whole number 0..=4294967295"),
            OptionType::U64 => v.parse::<u64>().map(|n| n as f64).map_err(|_| "expected a whole number >= 0"),
            OptionType::I64 => v.parse::<i64>().map(|n| n as f64).map_err(|_| "expected a whole number"),
            OptionType::F32 => match v.parse::<f32>() {
                Ok(f) if f.is_finite() => Ok(f64::from(f)),
                _ => Err("expected a finite number"),
            },
            OptionType::Bool => {
                return match v {
                    "true" | "false" | "1" | "0" | "yes" | "no" | "on" | "off" => Ok(()),
                    _ => Err(format!("expected true or false, got {value:?}")),
                };
            }
            OptionType::String => return Ok(()),
        }
        .map_err(|e| format!("{e}, got {value:?}"))?;
        if self.min.is_some_and(|min| number < min) || self.max.is_some_and(|max| number > max) {
            let bound = |b: Option<f64>| b.map_or(String::new(), |b| b.to_string());
            return Err(format!("{value} is outside {}..={}", bound(self.min), bound(self.max)));
        }
        Ok(())
    }
}

/// A TOML value as the string a plugin would be given.
fn toml_to_string(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VAD: &str = r#"
name = "vad"
version = "0.1.0"
kind = "segmenter"
description = "energy VAD"
[config]
hangover_ms = { type = "u32", default = 400, min = 10, max = 60000, description = "pause that ends an utterance" }
threshold_ratio = { type = "f32", default = 4.0 }
mask = { type = "bool", default = true }
"#;

    #[test]
    fn parses_and_checks_options() {
        let m = Manifest::parse(VAD).unwrap();
        assert_eq!((m.kind, m.config.len()), (PluginKind::Segmenter, 3));
        assert!(m.check_options([("hangover_ms", "250"), ("mask", "false"), ("threshold_ratio", "2.5")]).is_ok());
        assert!(matches!(m.check_options([("hangover", "250")]), Err(ManifestError::UnknownOption { .. })));
        let err = m.check_options([("hangover_ms", "5")]).unwrap_err().to_string();
        assert!(err.contains("outside 10..=60000"), "{err}");
        assert!(m.check_options([("hangover_ms", "soon")]).unwrap_err().to_string().contains("whole number"));
        assert!(m.check_options([("threshold_ratio", "NaN")]).is_err());
        assert!(m.check_options([("mask", "maybe")]).is_err());
        assert!(m.check_kind(PluginKind::Segmenter, "x").is_ok());
        assert!(m.check_kind(PluginKind::Router, "x").unwrap_err().to_string().contains("a segmenter plugin"));
    }

    #[test]
    fn rejects_bad_manifests() {
        assert!(Manifest::parse("name = 'x'").is_err());
        assert!(Manifest::parse(&VAD.replace("segmenter", "transcoder")).is_err());
        assert!(Manifest::parse(&VAD.replace("default = 400", "default = 4")).unwrap_err().contains("hangover_ms"));
        assert!(Manifest::parse(&VAD.replace("description = \"energy VAD\"", "colour = 'red'")).is_err());
    }

    #[test]
    fn the_file_must_agree_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let wasm = dir.path().join("vad@0.1.0.wasm");
        assert_eq!(Manifest::beside(&wasm, "vad", "0.1.0"), Ok(None));
        std::fs::write(dir.path().join("vad@0.1.0.toml"), VAD).unwrap();
        assert!(Manifest::beside(&wasm, "vad", "0.1.0").unwrap().is_some());
        std::fs::write(dir.path().join("vad@0.2.0.toml"), VAD).unwrap();
        let err = Manifest::beside(&dir.path().join("vad@0.2.0.wasm"), "vad", "0.2.0").unwrap_err();
        assert!(matches!(err, ManifestError::Mismatch { .. }), "{err}");
    }
}
