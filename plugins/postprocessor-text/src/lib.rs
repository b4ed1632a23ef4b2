//! Default Kiki text post-processor.
//!
//! Steps, in order: hotword replacement, inverse text normalisation (Chinese and English, with
//! WeTextProcessing's grammars: [`itn`]), spoken-number normalisation, profanity masking,
//! sentence casing, a final period for finals, and full-width punctuation in Chinese and
//! Japanese text.
//!
//! Config (session `extra` first, then the operator's `[plugins.config.text]`):
//! - `itn` (bool, default true)
//! - `mask_profanity` (bool, default true)
//! - `normalize_numbers` (bool, default true)
//! - `cjk_punctuation` (bool, default true)
//!
//! Words: when `words` is non-empty and has exactly one entry per whitespace-separated token
//! of `text`, the words are rewritten in step with the text (a merge, e.g. "twenty five" ->
//! "25", becomes one word spanning the merged ones, with the lowest probability, and keeps the
//! first word's leading whitespace). When the counts differ, the texts do not align and
//! `words` is returned untouched.

mod cjk;
pub mod itn;
mod numbers;
mod textops;

use kiki_plugin_sdk::{
    Config, CutKind, PluginError, Postprocessor, SessionOptions, Transcript, Word, export_postprocessor,
};

pub use textops::{Item, edit_distance};

/// Post-processor settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TextConfig {
    pub itn: bool,
    pub mask_profanity: bool,
    pub normalize_numbers: bool,
    pub cjk_punctuation: bool,
}

impl Default for TextConfig {
    fn default() -> Self {
        TextConfig { itn: true, mask_profanity: true, normalize_numbers: true, cjk_punctuation: true }
    }
}

impl TextConfig {
    pub fn from_config(c: &Config) -> Result<Self, PluginError> {
        let d = TextConfig::default();
        Ok(TextConfig {
            itn: c.get_bool("itn", d.itn)?,
            mask_profanity: c.get_bool("mask_profanity", d.mask_profanity)?,
            normalize_numbers: c.get_bool("normalize_numbers", d.normalize_numbers)?,
            cjk_punctuation: c.get_bool("cjk_punctuation", d.cjk_punctuation)?,
        })
    }
}

/// The whole rewrite, as plain Rust.
pub fn process_with(cfg: &TextConfig, mut input: Transcript, hotwords: &[String]) -> Transcript {
    let tokens: Vec<&str> = input.text.split_whitespace().collect();
    let aligned = !input.words.is_empty() && input.words.len() == tokens.len();
    let mut items: Vec<Item> =
        tokens.iter().enumerate().map(|(i, t)| Item::new(t, aligned.then_some((i, i + 1)))).collect();

    textops::replace_hotwords(&mut items, hotwords);
    let cjk = cfg.cjk_punctuation && cjk::has_cjk(&input.text);
    if cjk {
        // Before ITN, while the marks still sit beside the Han characters that ITN may turn
        // into digits (十二月八日,下午 -> 12/08，3:50).
        cjk::punctuate_items(&mut items);
    }
    if let Some(lang) = itn::Lang::for_code(&input.language).filter(|_| cfg.itn) {
        itn::apply(&mut items, lang);
    }
    if cfg.normalize_numbers {
        numbers::normalize(&mut items);
    }
    if cfg.mask_profanity {
        textops::mask_profanity(&mut items);
    }
    textops::sentence_case(&mut items);
    if input.kind == CutKind::Final {
        textops::final_period(&mut items);
    }

    if cjk {
        cjk::punctuate_items(&mut items);
    }
    input.text = items.iter().map(|i| i.text.as_str()).collect::<Vec<_>>().join(" ");
    if cjk {
        input.text = cjk::punctuate(&input.text);
    }
    if aligned {
        input.words = rebuild_words(&input.words, &items);
    }
    input
}

fn rebuild_words(words: &[Word], items: &[Item]) -> Vec<Word> {
    items
        .iter()
        .filter_map(|item| {
            let (a, b) = item.words?;
            let first = &words[a];
            let lead: String = first.text.chars().take_while(|c| c.is_whitespace()).collect();
            Some(Word {
                text: format!("{lead}{}", item.text),
                start_ms: first.start_ms,
                end_ms: words[b - 1].end_ms,
                probability: words[a..b].iter().map(|w| w.probability).fold(f32::INFINITY, f32::min),
            })
        })
        .collect()
}

/// The exported post-processor.
pub struct TextPostprocessor;

impl Postprocessor for TextPostprocessor {
    fn process(input: Transcript, options: &SessionOptions) -> Result<Transcript, PluginError> {
        let cfg = TextConfig::from_config(&Config::new(options.extra.clone()).with_host_fallback())?;
        Ok(process_with(&cfg, input, &options.hotwords))
    }
}

export_postprocessor!(TextPostprocessor);

#[cfg(test)]
mod tests;
