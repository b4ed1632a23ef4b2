//! The converted model's `config.json`: dimensions and special token ids.

use std::path::Path;

use serde::Deserialize;

use super::InferenceError;

#[derive(Debug, Clone, Deserialize)]
pub struct ModelInfo {
    pub n_mels: usize,
    pub n_audio_ctx: usize,
    pub n_text_ctx: usize,
    pub n_vocab: usize,
    pub n_text_layer: usize,
    pub n_state: usize,
    #[serde(default)]
    pub multilingual: bool,
    pub sot: u32,
    pub eot: u32,
    pub no_timestamps: u32,
    pub no_speech: u32,
    pub timestamp_begin: u32,
    #[serde(default)]
    pub transcribe: Option<u32>,
    /// `<|translate|>` (multilingual models).
    #[serde(default)]
    pub translate: Option<u32>,
    #[serde(default)]
    pub suppress_tokens: Vec<u32>,
    #[serde(default)]
    pub suppress_blank: Vec<u32>,
    /// `<|startofprev|>`: starts the text prompt that conditions decoding.
    #[serde(default)]
    pub sot_prev: Option<u32>,
    /// Language code -> language token (multilingual models only).
    #[serde(default)]
    pub languages: std::collections::BTreeMap<String, u32>,
    /// (layer, head) pairs whose cross-attention follows the audio in time; their weights
    /// come out of the decoder as `cross_qk` and give word times.
    #[serde(default)]
    pub alignment_heads: Vec<[usize; 2]>,
    /// The decoder's graph layout (`tools/convert_ct2.py`); see [`DECODER_LAYOUT`].
    #[serde(default)]
    pub decoder_layout: String,
}

/// The decoder layout this host drives: cross K/V once per window, each window's decoder rows
/// grouped after one another. Graphs converted before it took K/V per row.
pub const DECODER_LAYOUT: &str = "cross-per-window";

impl ModelInfo {
    pub fn load(dir: &Path) -> Result<Self, InferenceError> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| InferenceError::model_file(&path, e))?;
        let corrupt = |reason: String| InferenceError::Corrupt { path: path.display().to_string(), reason };
        let info: Self = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        if info.decoder_layout != DECODER_LAYOUT {
            return Err(corrupt(format!(
                "converted for decoder layout {:?}, this kiki needs {DECODER_LAYOUT:?} (converted by an older set-up)",
                info.decoder_layout
            )));
        }
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"{"n_mels": 80, "n_audio_ctx": 1500, "n_text_ctx": 448, "n_vocab": 51864,
        "n_text_layer": 4, "n_state": 384, "sot": 50257, "eot": 50256, "no_timestamps": 50362,
        "no_speech": 50361, "timestamp_begin": 50363"#;

    fn load(extra: &str) -> Result<ModelInfo, InferenceError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), format!("{CONFIG}{extra}}}")).unwrap();
        ModelInfo::load(dir.path())
    }

    #[test]
    fn graphs_of_an_older_layout_are_refused_with_the_fix() {
        assert!(load(r#", "decoder_layout": "cross-per-window""#).is_ok());
        for extra in ["", r#", "decoder_layout": "per-row""#] {
            let err = load(extra).unwrap_err().to_string();
            assert!(err.contains("cross-per-window") && err.contains("make setup"), "{err}");
        }
    }
}
