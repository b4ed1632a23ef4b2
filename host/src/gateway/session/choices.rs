//! A session's plugin choices from `start.plugins`: per kind, a plugin name (or the kind's
//! default) and options for it, e.g. `{"segmenter": {"name": "vad", "hangover_ms": 250},
//! "postprocessor": {"mask_profanity": false}}` (a bare string names the plugin). Names must be
//! on the operator's allow-list and options must fit the plugin's manifest, so that a typo is an
//! `invalid_option` at `start` rather than a setting silently ignored.

use kiki_protocol::native::{ErrorCode, ServerMessage};

use crate::channels::tasks::PluginChoice;
use crate::config::Config;
use crate::plugins::manifest::Manifest;
use crate::plugins::{PluginKind, registry};

/// The options a session gave, parsed.
#[derive(Debug, Default)]
pub struct Choices {
    pub segmenter: PluginChoice,
    pub postprocessor: Option<PluginChoice>,
    pub router: Option<PluginChoice>,
}

fn invalid(message: String) -> ServerMessage {
    ServerMessage::error(ErrorCode::InvalidOption, message)
}

impl Choices {
    pub fn parse(plugins: &serde_json::Map<String, serde_json::Value>) -> Result<Self, ServerMessage> {
        let mut out = Choices::default();
        for (kind, value) in plugins {
            let choice = match value {
                serde_json::Value::String(name) => PluginChoice { name: name.clone(), options: Vec::new() },
                serde_json::Value::Object(o) => PluginChoice {
                    name: o.get("name").map(json_to_string).unwrap_or_default(),
                    options: o
                        .iter()
                        .filter(|(k, _)| *k != "name")
                        .map(|(k, v)| (k.clone(), json_to_string(v)))
                        .collect(),
                },
                _ => return Err(invalid(format!("plugins.{kind}: expected a name or an object of options"))),
            };
            match kind.as_str() {
                "segmenter" => out.segmenter = choice,
                "postprocessor" => out.postprocessor = Some(choice),
                "router" => out.router = Some(choice),
                other => {
                    return Err(invalid(format!(
                        "plugins.{other}: no such plugin kind (segmenter, postprocessor, router)"
                    )));
                }
            }
        }
        Ok(out)
    }

    /// Checks the result plugins' names against the allow-list (plus the configured default)
    /// and their options against the manifests in this gateway's plugin directory. A default
    /// changed at run time through the admin API is not known here: a session may name it only
    /// when it is in `[plugins.allow]` too (sessions that name no plugin get it regardless).
    pub fn check_result_plugins(&self, cfg: &Config) -> Result<(), ServerMessage> {
        let p = &cfg.plugins;
        for (kind, choice, default, allowed) in [
            (PluginKind::Postprocessor, &self.postprocessor, &p.postprocessor, &p.allow.postprocessor),
            (PluginKind::Router, &self.router, &p.router, &p.allow.router),
        ] {
            let Some(choice) = choice else { continue };
            let key = kind.as_str();
            let name = if choice.name.is_empty() { default } else { &choice.name };
            if !choice.name.is_empty() && choice.name != *default && !allowed.contains(&choice.name) {
                return Err(invalid(format!(
                    "plugins.{key}: `{}` is not allowed here (allowed: {})",
                    choice.name,
                    std::iter::once(default).chain(allowed.iter()).cloned().collect::<Vec<_>>().join(", ")
                )));
            }
            let manifest = registry::newest_of(&cfg.plugin_dir(), name, kind)
                .ok()
                .flatten()
                .and_then(|f| Manifest::beside(&f.path, &f.name, &f.version).ok().flatten());
            if let Some(m) = manifest {
                check_options(&m, key, &choice.options)?;
            }
        }
        Ok(())
    }
}

/// `options` against `manifest`, as an `invalid_option` error naming the kind.
pub fn check_options(manifest: &Manifest, kind: &str, options: &[(String, String)]) -> Result<(), ServerMessage> {
    manifest
        .check_options(options.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(|e| invalid(format!("plugins.{kind} ({}@{}): {e}", manifest.name, manifest.version)))
}

fn json_to_string(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_options_and_unknown_kinds() {
        let parse = |v: serde_json::Value| Choices::parse(v.as_object().unwrap());
        let c = parse(serde_json::json!({"segmenter": {"name": "echo", "every": 1600}, "router": "default"})).unwrap();
        assert_eq!(c.segmenter.name, "echo");
        assert_eq!(c.segmenter.options, vec![("every".to_string(), "1600".to_string())]);
        assert_eq!(c.router.unwrap().name, "default");
        assert!(c.postprocessor.is_none());
        assert!(parse(serde_json::json!({"transcoder": {}})).is_err());
        assert!(parse(serde_json::json!({"segmenter": 3})).is_err());

        let cfg = Config::default();
        let named = |kind: &str, name: &str| parse(serde_json::json!({ kind: {"name": name} })).unwrap();
        assert!(named("postprocessor", "text").check_result_plugins(&cfg).is_ok());
        let err = named("postprocessor", "shout").check_result_plugins(&cfg).unwrap_err();
        assert!(matches!(err, ServerMessage::Error { code: ErrorCode::InvalidOption, .. }), "{err:?}");
    }
}
