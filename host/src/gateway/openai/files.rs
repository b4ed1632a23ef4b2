//! OpenAI's file endpoints: `POST /v1/audio/transcriptions` and `POST /v1/audio/translations`
//! (multipart `file`, `model`, `language`, `prompt`, `response_format` = json | text | srt | vtt |
//! verbose_json, `timestamp_granularities[]`, `include[]=logprobs`, `stream`). The file is cut by
//! the active segmenter, merged into long windows and goes through the same task channel as live
//! audio. With `stream=true` the text comes as Server-Sent Events (`transcript.text.delta` per
//! window, in order, then `transcript.text.done`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Multipart, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::super::auth::Scope;
use super::super::{AppState, TokenQuery, authorize};
use super::{busy, error, error_with};
use crate::audio::{self, SAMPLE_RATE};
use crate::channels::results;
use crate::channels::subscriber::Delivery;
use crate::channels::tasks::{self, ModelTask as Task, TaskMeta, TaskOptions};
use crate::inference::is_unspaced;
use crate::plugins::{Cut, CutKind};
use crate::{longform, subtitles};
use kiki_protocol::realtime::logprobs;

/// Largest upload accepted (bytes): about 25 minutes of 16 kHz s16 mono WAV.
pub const MAX_UPLOAD: usize = 50 << 20;

struct Request {
    file: Bytes,
    model: Option<String>,
    language: Option<String>,
    prompt: Option<String>,
    format: String,
    stream: bool,
    logprobs: bool,
    /// `timestamp_granularities[]` asked for `word` (verbose_json's `words`).
    words: bool,
}

fn invalid(message: impl Into<String>, param: &str) -> Response {
    error_with(StatusCode::BAD_REQUEST, message, Some(param), Some("invalid_value"))
}

async fn read_form(mut form: Multipart, task: Task) -> Result<Request, Response> {
    let mut req = Request {
        file: Bytes::new(),
        model: None,
        language: None,
        prompt: None,
        format: "json".into(),
        stream: false,
        logprobs: false,
        words: false,
    };
    let mut granularities: Vec<String> = Vec::new();
    // Over the size limit is a 413, a broken form a 400: the rejection knows which.
    let bad = |e: axum::extract::multipart::MultipartError| error(e.status(), e.body_text());
    while let Some(field) = form.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or("").to_string();
        if name == "file" {
            req.file = field.bytes().await.map_err(bad)?;
            continue;
        }
        let value = field.text().await.map_err(bad)?;
        match name.as_str() {
            "model" => req.model = Some(value).filter(|m| !m.is_empty()),
            "language" if task == Task::Transcribe => req.language = Some(value).filter(|l| !l.is_empty()),
            "response_format" => req.format = value,
            "prompt" => req.prompt = Some(value).filter(|p| !p.trim().is_empty()),
            "stream" => req.stream = matches!(value.to_ascii_lowercase().as_str(), "true" | "1"),
            "include[]" | "include" => match value.as_str() {
                "logprobs" => req.logprobs = true,
                other => return Err(invalid(format!("unsupported include value {other:?} (logprobs)"), "include")),
            },
            "timestamp_granularities[]" | "timestamp_granularities" => granularities.push(value),
            // Kiki decodes at temperature 0 with Whisper's fallback to higher ones on a failed
            // window; a request for another temperature cannot be honoured.
            "temperature" => {
                if !value.trim().parse::<f32>().is_ok_and(|t| t == 0.0) {
                    let message = format!(
                        "temperature {value:?} is not supported: Kiki decodes at 0 (with fallback on failed windows); send 0 or leave it out"
                    );
                    return Err(invalid(message, "temperature"));
                }
            }
            // Kiki always cuts a file at pauses with its segmenter; "auto" is what it does.
            "chunking_strategy" => {}
            other => {
                return Err(error_with(
                    StatusCode::BAD_REQUEST,
                    format!("unknown parameter {other:?}"),
                    Some(other),
                    Some("unknown_parameter"),
                ));
            }
        }
    }
    if req.file.is_empty() {
        return Err(error_with(StatusCode::BAD_REQUEST, "missing `file` (multipart form field)", Some("file"), None));
    }
    if req.prompt.as_ref().is_some_and(|p| p.len() > super::super::session::MAX_PROMPT_BYTES) {
        let max = super::super::session::MAX_PROMPT_BYTES;
        return Err(invalid(format!("`prompt` is longer than {max} bytes"), "prompt"));
    }
    if req.language.as_ref().is_some_and(|l| l.len() > super::super::session::MAX_LANGUAGE_BYTES) {
        return Err(invalid("`language` is not a language code", "language"));
    }
    if !["json", "text", "srt", "vtt", "verbose_json"].contains(&req.format.as_str()) {
        return Err(invalid(format!("unsupported response_format {:?}", req.format), "response_format"));
    }
    for g in &granularities {
        match g.as_str() {
            "word" => req.words = true,
            "segment" => {}
            other => {
                return Err(invalid(
                    format!("timestamp granularity {other:?} (word, segment)"),
                    "timestamp_granularities",
                ));
            }
        }
    }
    if !granularities.is_empty() && req.format != "verbose_json" {
        return Err(invalid("timestamp_granularities needs response_format verbose_json", "timestamp_granularities"));
    }
    if req.stream && !["json", "text"].contains(&req.format.as_str()) {
        return Err(invalid(
            format!("stream=true gives text events; response_format {:?} cannot be streamed (json, text)", req.format),
            "stream",
        ));
    }
    Ok(req)
}

pub async fn transcriptions(
    state: State<Arc<AppState>>,
    headers: HeaderMap,
    q: Query<TokenQuery>,
    form: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    handle(state, headers, q, form, Task::Transcribe).await
}

/// Whisper's `translate` task: the speech in English, from a multilingual model.
pub async fn translations(
    state: State<Arc<AppState>>,
    headers: HeaderMap,
    q: Query<TokenQuery>,
    form: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    handle(state, headers, q, form, Task::Translate).await
}

async fn handle(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
    form: Result<Multipart, axum::extract::multipart::MultipartRejection>,
    task: Task,
) -> Response {
    // The token first: an unauthorised caller learns nothing about what it sent.
    if let Err(denied) = authorize(&state, &headers, q.token.as_deref(), Scope::Transcribe) {
        return super::denied(denied);
    }
    let form = match form {
        Ok(f) => f,
        Err(e) => return error(e.status(), e.body_text()),
    };
    if task == Task::Translate
        && let Some(langs) = state.languages.read().unwrap_or_else(|e| e.into_inner()).as_ref()
        && langs.iter().all(|l| l == "en")
    {
        return invalid(
            format!(
                "translation needs a multilingual Whisper model; this deployment's model ({}) is English-only",
                super::model_names(&state).first().cloned().unwrap_or_default()
            ),
            "model",
        );
    }
    // Uploads at once are bounded (each holds its file, then its samples: see
    // `audio::decode_upload`), and so is the wait for a body that trickles in.
    let Ok(slot) = state.uploads.clone().try_acquire_owned() else {
        return busy(format!("{} uploads are being transcribed; retry shortly", state.cfg.gateway.max_uploads));
    };
    let backlog = state.backlog.load(std::sync::atomic::Ordering::Relaxed);
    if backlog > state.cfg.channels.max_backlog {
        return busy(format!("server busy ({backlog} segments queued); retry shortly"));
    }
    let body_timeout = Duration::from_secs(state.cfg.gateway.upload_timeout_s.max(1));
    let mut req = match tokio::time::timeout(body_timeout, read_form(form, task)).await {
        Ok(Ok(r)) => r,
        Ok(Err(resp)) => return resp,
        Err(_) => {
            let secs = body_timeout.as_secs();
            return error(StatusCode::REQUEST_TIMEOUT, format!("the upload did not arrive within {secs} s"));
        }
    };
    if let Some(resp) = super::refuse_model(&state, req.model.as_deref()) {
        return resp;
    }
    if let Err(e) = state.check_language(req.language.as_deref()) {
        return invalid(e, "language");
    }
    let file = std::mem::take(&mut req.file);
    let max_s = state.cfg.gateway.max_upload_s;
    let samples = match tokio::task::spawn_blocking(move || audio::decode_upload(&file, max_s)).await {
        Ok(Ok(s)) => Arc::new(s),
        Ok(Err(e @ audio::AudioError::TooLong { .. })) => {
            return error_with(StatusCode::PAYLOAD_TOO_LARGE, e.to_string(), Some("file"), Some("audio_too_long"));
        }
        Ok(Err(e)) => return invalid(format!("cannot read the file ({e}); send a WAV file"), "file"),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("decoding failed: {e}")),
    };
    let cuts = match segment(&state, samples.clone()).await {
        Ok(c) => c,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("segmenter failed: {e}")),
    };
    // The segmenter finds the speech; the model reads it in long windows (longform.rs).
    let cuts: Vec<Cut> = longform::merge_cuts(&cuts, longform::MAX_WINDOW_MS * SAMPLE_RATE as u64 / 1000)
        .into_iter()
        .map(|(start, end)| Cut { kind: CutKind::Final, start, end })
        .collect();
    let duration = samples.len() as f64 / SAMPLE_RATE as f64;
    let job =
        Job { state: state.clone(), samples, cuts, language: req.language.clone(), prompt: req.prompt.clone(), task };
    if req.stream {
        return stream(job, req.logprobs, duration, slot);
    }
    let segments = match job.run(|_| {}).await {
        Ok(s) => s,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e),
    };
    // Nothing but speech the model cannot read: say so instead of an empty transcript.
    if segments.iter().all(|s| s.text.trim().is_empty())
        && let Some(why) = segments.iter().find_map(|s| s.unsupported_language.clone())
    {
        return error_with(StatusCode::UNPROCESSABLE_ENTITY, why, Some("file"), Some("unsupported_language"));
    }
    let segments: Vec<results::ResultPayload> = segments.into_iter().filter(|s| !s.text.is_empty()).collect();
    // The language the model heard, when it was asked to detect it; a translation is English.
    let heard = segments.iter().find_map(|s| s.language.clone());
    let language = match task {
        Task::Translate => "en".to_string(),
        Task::Transcribe => req.language.clone().filter(|l| l != "auto").or(heard).unwrap_or_else(|| "en".into()),
    };
    render(&req, task, &segments, duration, &language)
}

/// Transcription as Server-Sent Events: a `transcript.text.delta` per window as it is decoded
/// (in order), then `transcript.text.done`; an error ends the stream with `{"error": ...}`, which
/// the SDKs raise.
fn stream(job: Job, with_logprobs: bool, duration: f64, slot: tokio::sync::OwnedSemaphorePermit) -> Response {
    let (tx, rx) = mpsc::unbounded_channel::<Value>();
    tokio::spawn(async move {
        let _slot = slot;
        let mut first = true;
        // Text is joined by the language asked for, else the one the model heard (Chinese
        // detected in a file sent without `language` is joined without spaces).
        let asked = job.language.clone().filter(|l| l != "auto");
        let unspaced = move |heard: Option<&str>| is_unspaced(asked.as_deref().or(heard).unwrap_or("en"));
        let deltas = tx.clone();
        let outcome = job
            .run(|s| {
                let text = s.text.trim();
                if text.is_empty() {
                    return;
                }
                let delta =
                    if first || unspaced(s.language.as_deref()) { text.to_string() } else { format!(" {text}") };
                first = false;
                let mut ev = json!({"type": "transcript.text.delta", "delta": delta});
                if with_logprobs {
                    ev["logprobs"] = logprobs(&s.words);
                }
                let _ = deltas.send(ev);
            })
            .await;
        let last = match outcome {
            Ok(segments) => {
                let sep = if unspaced(segments.iter().find_map(|s| s.language.as_deref())) { "" } else { " " };
                let text =
                    segments.iter().map(|s| s.text.trim()).filter(|t| !t.is_empty()).collect::<Vec<_>>().join(sep);
                let mut ev = json!({
                    "type": "transcript.text.done",
                    "text": text,
                    "usage": {"type": "duration", "seconds": duration.ceil()},
                });
                if with_logprobs {
                    ev["logprobs"] = logprobs(segments.iter().flat_map(|s| &s.words));
                }
                ev
            }
            Err(e) => json!({"error": {"message": e, "type": "server_error", "param": null, "code": null}}),
        };
        let _ = tx.send(last);
    });
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        let ev = rx.recv().await?;
        Some((Ok::<_, std::convert::Infallible>(Bytes::from(format!("data: {ev}\n\n"))), rx))
    });
    let mut resp = Response::new(Body::from_stream(events));
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, axum::http::HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-cache"));
    resp
}

/// Final cuts of the whole file by a fresh instance of the active segmenter (no partials).
async fn segment(state: &AppState, samples: Arc<Vec<i16>>) -> Result<Vec<Cut>, crate::plugins::PluginError> {
    let plugin = state
        .segmenters
        .default_plugin()
        .ok_or_else(|| crate::plugins::PluginError::Engine("no segmenter is loaded".into()))?;
    tokio::task::spawn_blocking(move || {
        let mut inst = plugin.open(SAMPLE_RATE, &[("partial_ms".into(), "0".into())])?;
        let mut cuts = Vec::new();
        for frame in samples.chunks(320) {
            cuts.extend(inst.push(frame.iter().map(|s| audio::s16_to_f32(*s)).collect(), None)?);
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

/// One file's windows to transcribe.
struct Job {
    state: Arc<AppState>,
    /// The file at 16 kHz, dropped once every window is queued.
    samples: Arc<Vec<i16>>,
    cuts: Vec<Cut>,
    language: Option<String>,
    prompt: Option<String>,
    task: Task,
}

impl Job {
    /// Queues every window and gathers their finals; `on_segment` sees each in order as soon as
    /// it and all before it are in (the SSE stream's deltas).
    async fn run(self, mut on_segment: impl FnMut(&results::ResultPayload)) -> Result<Segments, String> {
        let Job { state, samples, cuts, language, prompt, task } = self;
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
                let span = (cut.start * 1000 / SAMPLE_RATE as u64, e as u64 * 1000 / SAMPLE_RATE as u64);
                let options =
                    TaskOptions { language: language.clone(), prompt: prompt.clone(), task, ..Default::default() };
                let meta = TaskMeta::new(&id, i as u64, CutKind::Final, &state.channel, span, options);
                let pcm: Vec<u8> = samples[s.min(e)..e].iter().flat_map(|v| v.to_le_bytes()).collect();
                tasks::enqueue(&mut conn, &state.keys, &meta, &pcm)
                    .await
                    .map_err(|e| format!("cannot queue the file: {e}"))?;
            }
            drop(samples);
            let mut got: BTreeMap<u64, results::ResultPayload> = BTreeMap::new();
            let mut told = 0u64;
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
                while let Some(s) = got.get(&told) {
                    on_segment(s);
                    told += 1;
                }
            }
            // Segments without text go, except those that say the language was not the model's.
            Ok(got.into_values().filter(|s| !s.text.is_empty() || s.unsupported_language.is_some()).collect())
        }
        .await;
        state.dispatcher.unregister(&id);
        outcome
    }
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

fn render(req: &Request, task: Task, segments: &Segments, duration: f64, language: &str) -> Response {
    let sep = if is_unspaced(language) { "" } else { " " };
    let text = segments.iter().map(|s| s.text.trim()).collect::<Vec<_>>().join(sep);
    let cues = cues(segments);
    let timed = || cues.iter().map(|(s, e, t)| (*s, *e, t.as_str()));
    let plain = |body: String, mime: &'static str| ([(header::CONTENT_TYPE, mime)], body).into_response();
    match req.format.as_str() {
        "text" => plain(text + "\n", "text/plain; charset=utf-8"),
        "srt" => plain(subtitles::srt(timed()), "application/x-subrip; charset=utf-8"),
        "vtt" => plain(subtitles::vtt(timed()), "text/vtt; charset=utf-8"),
        "verbose_json" => {
            let mut body = json!({
                "task": match task { Task::Transcribe => "transcribe", Task::Translate => "translate" },
                "language": language,
                "duration": duration,
                "text": text,
                "segments": cues.iter().enumerate().map(|(i, (s, e, t))| json!({
                    "id": i, "start": *s as f64 / 1e3, "end": *e as f64 / 1e3, "text": t,
                })).collect::<Vec<_>>(),
            });
            if req.words {
                body["words"] = segments
                    .iter()
                    .flat_map(|s| &s.words)
                    .map(|w| json!({"word": w.text, "start": w.start_ms as f64 / 1e3, "end": w.end_ms as f64 / 1e3}))
                    .collect();
            }
            Json(body).into_response()
        }
        _ => {
            let mut body = json!({ "text": text, "usage": {"type": "duration", "seconds": duration.ceil()} });
            if req.logprobs {
                body["logprobs"] = logprobs(segments.iter().flat_map(|s| &s.words));
            }
            Json(body).into_response()
        }
    }
}
