//! OpenAI-compatible file transcription: `POST /v1/audio/transcriptions` (multipart `file`,
//! `model`, `language`, `response_format` = json | text | srt | vtt | verbose_json). The file
//! is cut by the active segmenter and goes through the same task channel as live audio.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Multipart, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::auth::Scope;
use crate::audio::{self, SAMPLE_RATE};
use crate::channels::results;
use crate::channels::subscriber::Delivery;
use crate::channels::tasks::{self, TaskMeta};
use crate::channels::workers::now_ms;
use crate::inference::is_unspaced;
use crate::plugins::{Cut, CutKind};
use crate::{longform, subtitles};

/// Largest upload accepted (bytes): about 25 minutes of 16 kHz s16 mono WAV.
pub const MAX_UPLOAD: usize = 50 << 20;

/// A retryable refusal: 429 with `Retry-After`.
fn busy(message: String) -> Response {
    let mut resp = error(StatusCode::TOO_MANY_REQUESTS, message);
    resp.headers_mut().insert(header::RETRY_AFTER, axum::http::HeaderValue::from_static("5"));
    resp
}

fn error(code: StatusCode, message: impl Into<String>) -> Response {
    (code, Json(json!({"error": {"message": message.into(), "type": "invalid_request_error"}}))).into_response()
}

struct Request {
    file: Vec<u8>,
    language: Option<String>,
    prompt: Option<String>,
    format: String,
}

async fn read_form(mut form: Multipart) -> Result<Request, Response> {
    let mut req = Request { file: Vec::new(), language: None, prompt: None, format: "json".into() };
    // Over the size limit is a 413, a broken form a 400: the rejection knows which.
    let bad = |e: axum::extract::multipart::MultipartError| error(e.status(), e.body_text());
    while let Some(field) = form.next_field().await.map_err(bad)? {
        match field.name().unwrap_or("") {
            "file" => req.file = field.bytes().await.map_err(bad)?.to_vec(),
            "language" => req.language = Some(field.text().await.map_err(bad)?).filter(|l| !l.is_empty()),
            "response_format" => req.format = field.text().await.map_err(bad)?,
            "prompt" => req.prompt = Some(field.text().await.map_err(bad)?).filter(|p| !p.trim().is_empty()),
            // `model`, `temperature`, `timestamp_granularities[]`: accepted; the deployment's
            // model and decoding settings are used, and word times come whenever the model has them.
            _ => {}
        }
    }
    if req.file.is_empty() {
        return Err(error(StatusCode::BAD_REQUEST, "missing `file` (multipart form field)"));
    }
    if req.prompt.as_ref().is_some_and(|p| p.len() > super::session::MAX_PROMPT_BYTES) {
        let max = super::session::MAX_PROMPT_BYTES;
        return Err(error(StatusCode::BAD_REQUEST, format!("`prompt` is longer than {max} bytes")));
    }
    if req.language.as_ref().is_some_and(|l| l.len() > super::session::MAX_LANGUAGE_BYTES) {
        return Err(error(StatusCode::BAD_REQUEST, "`language` is not a language code"));
    }
    if !["json", "text", "srt", "vtt", "verbose_json"].contains(&req.format.as_str()) {
        return Err(error(StatusCode::BAD_REQUEST, format!("unsupported response_format {:?}", req.format)));
    }
    Ok(req)
}

pub async fn transcriptions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<super::TokenQuery>,
    form: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    // The token first: an unauthorised caller learns nothing about what it sent.
    if let Err(denied) = super::authorize(&state, &headers, q.token.as_deref(), Scope::Transcribe) {
        return denied.into_response();
    }
    let form = match form {
        Ok(f) => f,
        Err(e) => return error(e.status(), e.body_text()),
    };
    // Uploads at once are bounded (each holds its file and its samples, ~17x a file of 8-bit
    // samples), and so is the wait for a body that trickles in.
    let Ok(_slot) = state.uploads.clone().try_acquire_owned() else {
        return busy(format!("{} uploads are being transcribed; retry shortly", state.cfg.gateway.max_uploads));
    };
    let backlog = state.backlog.load(std::sync::atomic::Ordering::Relaxed);
    if backlog > state.cfg.channels.max_backlog {
        return busy(format!("server busy ({backlog} segments queued); retry shortly"));
    }
    let body_timeout = Duration::from_secs(state.cfg.gateway.upload_timeout_s.max(1));
    let req = match tokio::time::timeout(body_timeout, read_form(form)).await {
        Ok(Ok(r)) => r,
        Ok(Err(resp)) => return resp,
        Err(_) => {
            let secs = body_timeout.as_secs();
            return error(StatusCode::REQUEST_TIMEOUT, format!("the upload did not arrive within {secs} s"));
        }
    };
    if let Err(e) = state.check_language(req.language.as_deref()) {
        return error(StatusCode::BAD_REQUEST, e);
    }
    let samples = match audio::decode_wav(&req.file) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("cannot read the file ({e}); send a WAV file")),
    };
    let cuts = match segment(&state, &samples).await {
        Ok(c) => c,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("segmenter failed: {e}")),
    };
    // The segmenter finds the speech; the model reads it in long windows (longform.rs).
    let windows: Vec<Cut> = longform::merge_cuts(&cuts, longform::MAX_WINDOW_MS * SAMPLE_RATE as u64 / 1000)
        .into_iter()
        .map(|(start, end)| Cut { kind: CutKind::Final, start, end })
        .collect();
    let cuts = windows;
    let segments = match transcribe(&state, &samples, &cuts, req.language.clone(), req.prompt.clone()).await {
        Ok(s) => s,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e),
    };
    let duration = samples.len() as f64 / SAMPLE_RATE as f64;
    // The language the model heard, when it was asked to detect it.
    let heard = segments.iter().find_map(|s| s.language.clone());
    let language = req.language.clone().filter(|l| l != "auto").or(heard).unwrap_or_else(|| "en".into());
    render(&req.format, &segments, duration, &language)
}

/// Final cuts of the whole file by a fresh instance of the active segmenter (no partials).
async fn segment(state: &Arc<AppState>, samples: &[f32]) -> Result<Vec<Cut>, crate::plugins::PluginError> {
    let plugin = state
        .segmenters
        .default_plugin()
        .ok_or_else(|| crate::plugins::PluginError::Engine("no segmenter is loaded".into()))?;
    let samples = samples.to_vec();
    tokio::task::spawn_blocking(move || {
        let mut inst = plugin.open(SAMPLE_RATE, &[("partial_ms".into(), "0".into())])?;
        let mut cuts = Vec::new();
        for frame in samples.chunks(320) {
            cuts.extend(inst.push(frame.to_vec(), None)?);
        }
        cuts.extend(inst.flush()?);
        cuts.retain(|c| c.kind == CutKind::Final);
        Ok(cuts)
    })
    .await
    .map_err(|e| crate::plugins::PluginError::Engine(e.to_string()))?
}

/// The file's segments (their finals), in order.
type Segments = Vec<results::ResultPayload>;

async fn transcribe(
    state: &Arc<AppState>,
    samples: &[f32],
    cuts: &[Cut],
    language: Option<String>,
    prompt: Option<String>,
) -> Result<Segments, String> {
    if cuts.is_empty() {
        return Ok(Vec::new());
    }
    let id = format!("file-{}", crate::ids::long());
    let mut conn = state.redis.clone();
    let ttl = state.cfg.channels.replay_ttl_s;
    results::open_session(&mut conn, &state.keys, &id, &crate::ids::short(), &state.channel, ttl)
        .await
        .map_err(|e| format!("cannot reach Redis: {e}"))?;
    let (tx, mut inbox) = tokio::sync::mpsc::unbounded_channel();
    state.dispatcher.register(&id, tx);
    let outcome = async {
        for (i, cut) in cuts.iter().enumerate() {
            let (s, e) = (cut.start as usize, (cut.end as usize).min(samples.len()));
            let meta = TaskMeta {
                session: id.clone(),
                segment: i as u64,
                kind: CutKind::Final,
                rev: 0,
                reply: state.channel.clone(),
                start_ms: cut.start * 1000 / SAMPLE_RATE as u64,
                end_ms: e as u64 * 1000 / SAMPLE_RATE as u64,
                enqueued_ms: now_ms(),
                language: language.clone(),
                hotwords: Vec::new(),
                prompt: prompt.clone(),
                beam_size: None,
                postprocessor: None,
                router: None,
                room: None,
            };
            tasks::enqueue(&mut conn, &state.keys, &meta, &audio::to_s16le(&samples[s.min(e)..e]))
                .await
                .map_err(|e| format!("cannot queue the file: {e}"))?;
        }
        let mut got: BTreeMap<u64, results::ResultPayload> = BTreeMap::new();
        let deadline = tokio::time::sleep(Duration::from_secs(state.cfg.gateway.final_timeout_s.max(1) * 5));
        tokio::pin!(deadline);
        while got.len() < cuts.len() {
            tokio::select! {
                _ = &mut deadline => return Err(format!("{} of {} segments not transcribed in time", cuts.len() - got.len(), cuts.len())),
                d = inbox.recv() => match d.map(|(_, d)| d) {
                    Some(Delivery::Result(m)) if m.payload.kind == CutKind::Final => {
                        if let Some(err) = m.payload.error {
                            return Err(format!("segment {} failed: {err}", m.payload.segment));
                        }
                        got.insert(m.payload.segment, m.payload);
                    }
                    Some(Delivery::Resync) => {
                        for m in results::replay(&mut conn, &state.keys, &id, 0).await.map_err(|e| e.to_string())? {
                            if m.payload.kind == CutKind::Final && m.payload.error.is_none() {
                                got.insert(m.payload.segment, m.payload);
                            }
                        }
                    }
                    Some(_) => {}
                    None => return Err("gateway shutting down".into()),
                },
            }
        }
        Ok(got.into_values().filter(|s| !s.text.is_empty()).collect())
    }
    .await;
    state.dispatcher.unregister(&id);
    outcome
}

/// Subtitle-sized segments as (start ms, end ms, text): cues cut from the word times (a window
/// without them is one cue).
fn cues(segments: &Segments) -> Vec<(u64, u64, String)> {
    let mut out = Vec::new();
    for s in segments {
        if s.words.is_empty() {
            out.push((s.start_ms, s.end_ms, s.text.trim().to_string()));
            continue;
        }
        let sep = if is_unspaced(s.language.as_deref().unwrap_or("en")) { "" } else { " " };
        for range in longform::cue_ranges(&s.words, |w| (w.text.as_str(), w.start_ms, w.end_ms)) {
            let cue = &s.words[range];
            let (Some(first), Some(last)) = (cue.first(), cue.last()) else { continue };
            let text = cue.iter().map(|w| w.text.trim()).collect::<Vec<_>>().join(sep);
            out.push((first.start_ms, last.end_ms, text));
        }
    }
    out
}

fn render(format: &str, segments: &Segments, duration: f64, language: &str) -> Response {
    let sep = if is_unspaced(language) { "" } else { " " };
    let text = segments.iter().map(|s| s.text.trim()).collect::<Vec<_>>().join(sep);
    let cues = cues(segments);
    let timed = || cues.iter().map(|(s, e, t)| (*s, *e, t.as_str()));
    let plain = |body: String, mime: &'static str| ([(header::CONTENT_TYPE, mime)], body).into_response();
    match format {
        "text" => plain(text + "\n", "text/plain; charset=utf-8"),
        "srt" => plain(subtitles::srt(timed()), "application/x-subrip; charset=utf-8"),
        "vtt" => plain(subtitles::vtt(timed()), "text/vtt; charset=utf-8"),
        "verbose_json" => Json(json!({
            "task": "transcribe",
            "language": language,
            "duration": duration,
            "text": text,
            "segments": cues.iter().enumerate().map(|(i, (s, e, t))| json!({
                "id": i, "start": *s as f64 / 1e3, "end": *e as f64 / 1e3, "text": t,
            })).collect::<Vec<_>>(),
            "words": segments.iter().flat_map(|s| &s.words).map(|w| json!({
                "word": w.text, "start": w.start_ms as f64 / 1e3, "end": w.end_ms as f64 / 1e3,
                "probability": w.probability,
            })).collect::<Vec<_>>(),
        }))
        .into_response(),
        _ => Json(json!({ "text": text })).into_response(),
    }
}
