//! Typed access to a plugin's key/value options.

use crate::PluginError;

/// Key/value options for a plugin, with typed getters that report bad values as
/// [`PluginError::InvalidConfig`].
///
/// Lookup order: the explicit pairs (e.g. the session's options), then, when enabled with
/// [`Config::with_host_fallback`], the operator's values via the host's `config` import.
/// Keys are matched exactly; when a key appears twice among the pairs, the last one wins.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    pairs: Vec<(String, String)>,
    host_fallback: bool,
}

impl Config {
    /// Options from explicit key/value pairs only.
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Config { pairs, host_fallback: false }
    }

    /// Options from string slices (handy in tests).
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Self {
        Self::new(pairs.iter().map(|(k, v)| (k.as_ref().to_string(), v.as_ref().to_string())).collect())
    }

    /// Only the operator's values (host `config` import).
    pub fn host() -> Self {
        Self::new(Vec::new()).with_host_fallback()
    }

    /// Also consult the operator's values for keys the pairs do not set.
    pub fn with_host_fallback(mut self) -> Self {
        self.host_fallback = true;
        self
    }

    /// The raw value for `key`, if set (empty/whitespace-only values count as unset).
    pub fn get(&self, key: &str) -> Option<String> {
        let local = self.pairs.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.trim().to_string());
        let value = match local {
            Some(v) => Some(v),
            None if self.host_fallback => crate::host::config(key).map(|v| v.trim().to_string()),
            None => None,
        };
        value.filter(|v| !v.is_empty())
    }

    /// A string value, or `default`.
    pub fn get_str(&self, key: &str, default: &str) -> String {
        self.get(key).unwrap_or_else(|| default.to_string())
    }

    /// Parse `key` with `FromStr`, or return `default` when unset.
    pub fn get_parsed<T: std::str::FromStr>(&self, key: &str, default: T, what: &str) -> Result<T, PluginError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => {
                v.parse::<T>().map_err(|_| PluginError::InvalidConfig(format!("`{key}` must be {what}, got {v:?}")))
            }
        }
    }

    /// An unsigned 32-bit integer, or `default`.
    pub fn get_u32(&self, key: &str, default: u32) -> Result<u32, PluginError> {
        self.get_parsed(key, default, "a non-negative integer")
    }

    /// An unsigned 64-bit integer, or `default`.
    pub fn get_u64(&self, key: &str, default: u64) -> Result<u64, PluginError> {
        self.get_parsed(key, default, "a non-negative integer")
    }

    /// A finite float, or `default`.
    pub fn get_f32(&self, key: &str, default: f32) -> Result<f32, PluginError> {
        let v: f32 = self.get_parsed(key, default, "a number")?;
        if v.is_finite() { Ok(v) } else { Err(PluginError::InvalidConfig(format!("`{key}` must be a finite number"))) }
    }

    /// A boolean (`true/false`, `yes/no`, `on/off`, `1/0`), or `default`.
    pub fn get_bool(&self, key: &str, default: bool) -> Result<bool, PluginError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => Ok(true),
                "false" | "no" | "off" | "0" => Ok(false),
                _ => Err(PluginError::InvalidConfig(format!("`{key}` must be true or false, got {v:?}"))),
            },
        }
    }

    /// A u32 within `min..=max`, or `default`.
    pub fn get_u32_in(&self, key: &str, default: u32, min: u32, max: u32) -> Result<u32, PluginError> {
        let v = self.get_u32(key, default)?;
        if (min..=max).contains(&v) {
            Ok(v)
        } else {
            Err(PluginError::InvalidConfig(format!("`{key}` must be between {min} and {max}, got {v}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_parsing() {
        let c = Config::from_pairs(&[("a", "5"), ("b", " 2.5 "), ("c", "yes"), ("a", "7")]);
        assert_eq!(c.get_u32("a", 1).unwrap(), 7, "last value wins");
        assert_eq!(c.get_u32("missing", 9).unwrap(), 9);
        assert_eq!(c.get_f32("b", 0.0).unwrap(), 2.5);
        assert!(c.get_bool("c", false).unwrap());
        assert_eq!(c.get_str("zz", "d"), "d");
    }

    #[test]
    fn bad_values_are_invalid_config() {
        let c = Config::from_pairs(&[("n", "-3"), ("f", "nan"), ("b", "maybe"), ("r", "99")]);
        match c.get_u32("n", 0) {
            Err(PluginError::InvalidConfig(m)) => assert!(m.contains("`n`") && m.contains("-3")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(c.get_f32("f", 0.0), Err(PluginError::InvalidConfig(_))));
        assert!(matches!(c.get_bool("b", true), Err(PluginError::InvalidConfig(_))));
        assert!(matches!(c.get_u32_in("r", 1, 0, 10), Err(PluginError::InvalidConfig(_))));
    }
}
