//! The OpenAI-compatible file endpoint, through the same task channel and workers.

mod common;

use common::*;

fn wav_bytes(samples: &[f32]) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut cur = std::io::Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut cur, spec).unwrap();
    for s in samples {
        w.write_sample((s * 32767.0) as i16).unwrap();
    }
    w.finalize().unwrap();
    cur.into_inner()
}

fn multipart(file: &[u8], fields: &[(&str, &str)]) -> (String, Vec<u8>) {
    let boundary = "kikiboundary7d3f";
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").as_bytes());
    }
    body.extend(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n")
            .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn post(addr: std::net::SocketAddr, content_type: &str, body: &[u8]) -> (u16, String) {
    http_with(addr, "POST", "/v1/audio/transcriptions", &[("Content-Type", content_type)], body).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wav_file_comes_back_in_every_response_format() {
    let _g = serial().await;
    let stack = Stack::start().await;
    let sentences =
        ["The quick brown fox jumps over the lazy dog.", "I would like a cup of coffee with milk and sugar."];
    let wav = wav_bytes(&speak_sentences(&sentences, 900));

    let (ct, body) = multipart(&wav, &[("model", "whisper-1"), ("response_format", "verbose_json")]);
    let (code, resp) = post(stack.addr, &ct, &body).await;
    assert_eq!(code, 200, "{resp}");
    let v: serde_json::Value = serde_json::from_str(&resp).unwrap();
    eprintln!("{v}");
    assert!(v["segments"].as_array().unwrap().len() >= 2, "{v}");
    assert!(wer(&sentences.join(" "), v["text"].as_str().unwrap()) < 0.5, "{v}");
    assert!(v["duration"].as_f64().unwrap() > 4.0);
    let words = v["words"].as_array().unwrap();
    assert!(words.len() >= 15, "word times: {v}");
    assert!(words.iter().all(|w| w["start"].as_f64() <= w["end"].as_f64()), "{v}");

    for (format, needle) in [("srt", " --> "), ("vtt", "WEBVTT"), ("text", "coffee"), ("json", "\"text\"")] {
        let (ct, body) = multipart(&wav, &[("response_format", format)]);
        let (code, resp) = post(stack.addr, &ct, &body).await;
        assert_eq!(code, 200, "{format}: {resp}");
        assert!(resp.to_lowercase().contains(&needle.to_lowercase()), "{format}: {resp}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_get_a_clear_400() {
    let stack = Stack::start().await;
    let (ct, body) = multipart(b"definitely not audio", &[]);
    let (code, resp) = post(stack.addr, &ct, &body).await;
    assert_eq!(code, 400, "{resp}");
    assert!(resp.contains("WAV"), "{resp}");
    let (code, resp) = post(
        stack.addr,
        "multipart/form-data; boundary=x",
        b"--x\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nw\r\n--x--\r\n",
    )
    .await;
    assert_eq!(code, 400);
    assert!(resp.contains("missing `file`"), "{resp}");
    let (ct, body) = multipart(&wav_bytes(&[0.0; 16_000]), &[("response_format", "yaml")]);
    let (code, _) = post(stack.addr, &ct, &body).await;
    assert_eq!(code, 400);
    // A language no live worker's model transcribes (tiny.en here).
    stack.wait_for_worker_reports().await;
    let (ct, body) = multipart(&wav_bytes(&[0.0; 16_000]), &[("language", "zh")]);
    let (code, resp) = post(stack.addr, &ct, &body).await;
    assert_eq!(code, 400, "{resp}");
    assert!(resp.contains("no live worker's model transcribes it"), "{resp}");

    // A header that claims an absurd sample rate once aborted the process (a resampler sized
    // like the rate: 128 GB for 1 Hz). Refused, and the server goes on serving.
    for rate in [1u32, 10_000_019] {
        let mut wav = wav_bytes(&[0.1; 32_000]);
        wav[24..28].copy_from_slice(&rate.to_le_bytes());
        wav[28..32].copy_from_slice(&(rate * 2).to_le_bytes());
        let (ct, body) = multipart(&wav, &[]);
        let (code, resp) = post(stack.addr, &ct, &body).await;
        assert_eq!(code, 400, "{rate} Hz: {resp}");
        assert!(resp.contains("sample rate"), "{resp}");
    }
    let (ct, body) = multipart(&wav_bytes(&[0.0; 16_000]), &[("response_format", "json")]);
    assert_eq!(post(stack.addr, &ct, &body).await.0, 200, "still serving");
}
