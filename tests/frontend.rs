//! The Rust log-mel front end against the numpy reference (`tools/mel_ref.py`).

use crate::common::*;
use kiki::inference::{FULL_FRAMES, MelFrontEnd, N_MELS};

fn reference_mel(wav: &std::path::Path) -> Vec<f32> {
    let out = wav.with_extension("f32");
    let python = repo_root().join(".cache/venv/bin/python");
    let st = std::process::Command::new(python)
        .arg(repo_root().join("tools/mel_ref.py"))
        .arg(wav)
        .arg(&out)
        .status()
        .expect("python runs");
    assert!(st.success());
    std::fs::read(&out).unwrap().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

#[test]
fn log_mel_matches_the_reference_within_1e_3() {
    let dir = tempfile::tempdir().unwrap();
    let speech = speak_sentences(&["The quick brown fox jumps over the lazy dog.", "She sells sea shells."], 500);
    let wav = dir.path().join("s.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&wav, spec).unwrap();
    // Quantise exactly as the file will hold it, so both sides see the same samples.
    let quantised: Vec<f32> = speech
        .iter()
        .map(|s| {
            let v = (s.clamp(-1.0, 1.0) * 32767.0).round() as i16;
            w.write_sample(v).unwrap();
            v as f32 / 32768.0
        })
        .collect();
    w.finalize().unwrap();
    let reference = reference_mel(&wav);
    assert_eq!(reference.len(), N_MELS * FULL_FRAMES);
    let fe = MelFrontEnd::new();
    let full = fe.compute(&quantised, FULL_FRAMES);
    let max_diff = full.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    eprintln!("full window: max |rust - reference| = {max_diff:.2e}");
    assert!(max_diff < 1e-3, "{max_diff}");

    // A shortened window equals the first columns of the full one.
    let frames = quantised.len().div_ceil(160) + 100;
    let short = fe.compute(&quantised, frames);
    let mut worst = 0.0f32;
    for m in 0..N_MELS {
        for t in 0..frames {
            worst = worst.max((short[m * frames + t] - reference[m * FULL_FRAMES + t]).abs());
        }
    }
    eprintln!("short window ({frames} frames): max diff = {worst:.2e}");
    assert!(worst < 1e-3, "{worst}");
}
