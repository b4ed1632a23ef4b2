//! `kiki transcribe` as a user runs it: the real binary, the real model.

use std::process::Command;

use crate::common::*;

fn kiki() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiki"));
    c.env("KIKI_DATA_DIR", repo_root().join(".cache")).env("KIKI_LOG", "warn");
    c
}

#[test]
fn transcribes_wav_files_at_any_rate_and_layout() {
    let dir = tempfile::tempdir().unwrap();
    let text = "Please call Stella and ask her to bring these things with her from the store.";
    let speech = speak(text);
    let mono16 = dir.path().join("mono16.wav");
    write_wav(&mono16, &speech, 16_000, 1);
    let stereo44 = dir.path().join("stereo44.wav");
    write_wav(&stereo44, &kiki::audio::resample(&speech, 16_000, 44_100).unwrap(), 44_100, 2);
    let out = kiki().arg("transcribe").arg(&mono16).arg(&stereo44).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    for line in lines {
        let (_, hyp) = line.split_once(": ").unwrap();
        assert!(wer(text, hyp) <= 0.35, "{line}");
    }

    let out = kiki().args(["transcribe", "--srt"]).arg(&mono16).output().unwrap();
    let srt = String::from_utf8_lossy(&out.stdout);
    // Cues follow the word times: the first starts where speech starts, near 0.
    assert!(srt.starts_with("1\n00:00:00,") && srt.contains(" --> 00:00:0") && srt.contains("call"), "{srt}");
    let out = kiki().args(["transcribe", "--vtt"]).arg(&mono16).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("WEBVTT\n\n00:00:00."));

    let out = kiki().args(["transcribe", "--json", "--beam-size", "5"]).arg(&mono16).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    let segments = v["segments"].as_array().unwrap();
    assert!(segments.last().unwrap()["end_ms"].as_u64().unwrap() > 3000, "{v}");
    let words: Vec<&serde_json::Value> = segments.iter().flat_map(|s| s["words"].as_array().unwrap()).collect();
    assert!(words.len() >= 10, "word times: {v}");
    assert!(words.windows(2).all(|w| w[0]["start_ms"].as_u64() <= w[1]["start_ms"].as_u64()), "{v}");
}

#[test]
fn bad_files_get_a_clear_error_and_a_failing_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.wav");
    std::fs::write(&empty, b"").unwrap();
    let text = dir.path().join("notes.wav");
    std::fs::write(&text, b"this is plainly not a RIFF file").unwrap();
    let out = kiki().arg("transcribe").arg(&empty).arg(&text).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("empty.wav: empty audio"), "{stderr}");
    assert!(stderr.contains("notes.wav: not a WAV file"), "{stderr}");
}

#[test]
fn a_missing_model_names_the_file_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("a.wav");
    write_wav(&wav, &[0.0; 16_000], 16_000, 1);
    let out = kiki().env("KIKI_MODEL__DIR", dir.path()).arg("transcribe").arg(&wav).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("config.json") && stderr.contains("make setup"), "{stderr}");
}

#[test]
fn cuda_that_cannot_load_is_an_error_not_a_silent_cpu_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("a.wav");
    write_wav(&wav, &speak("Hello there."), 16_000, 1);
    // The CPU-only ONNX Runtime from the set-up has no CUDA provider.
    let out = kiki().env("KIKI_MODEL__PROVIDER", "cuda").arg("transcribe").arg(&wav).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "it must not run on the CPU instead: {stderr}");
    assert!(stderr.contains("CUDA could not be loaded"), "{stderr}");
}

#[test]
fn model_and_language_flags_are_honoured_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("a.wav");
    write_wav(&wav, &speak("Hello there."), 16_000, 1);
    let out = kiki().args(["transcribe", "--model", "tiny.en", "--language", "en"]).arg(&wav).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = kiki().args(["transcribe", "--language", "de"]).arg(&wav).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("English-only"));
    let out = kiki().args(["transcribe", "--model", "no-such-model"]).arg(&wav).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-model/config.json"));
}

/// What users install (`make dist`): the binary without line tables, a fraction of the build's
/// size (186 MB, 155 MB of it line tables), that still runs; the tables stay beside it.
#[test]
fn the_shipped_binary_is_stripped_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/dist.sh"))
        .arg(env!("CARGO_BIN_EXE_kiki"))
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let size = |p: &std::path::Path| std::fs::metadata(p).unwrap().len();
    let (built, shipped) = (size(std::path::Path::new(env!("CARGO_BIN_EXE_kiki"))), size(&dir.path().join("kiki")));
    eprintln!("built {} MB, shipped {} MB", built >> 20, shipped >> 20);
    assert!(shipped * 3 < built, "shipped {shipped} bytes of {built}");
    assert!(size(&dir.path().join("kiki.debug")) > 0);
    let run = Command::new(dir.path().join("kiki")).arg("--version").output().unwrap();
    assert!(run.status.success() && String::from_utf8_lossy(&run.stdout).contains("kiki"));
}
