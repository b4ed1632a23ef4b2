// Kiki live transcription page: microphone -> AudioWorklet (16 kHz mono s16, ~40 ms frames)
// -> WebSocket /ws (native protocol, docs/protocol.md) -> partial and final text.
// Plain ES module, no dependencies.

/** With auth on, the page is opened as `/?token=…` and passes the token on (a browser's
 * WebSocket cannot send an Authorization header). */
function tokenQuery() {
  const token = new URLSearchParams(location.search).get("token");
  return token ? `?token=${encodeURIComponent(token)}` : "";
}

const RATE = 16000;
const FRAME_MS = 40;
/** Audio kept while the socket is down, replayed on reconnect (older frames are dropped). */
const MAX_QUEUE_MS = 15000;
// Most silence sent in place of audio no longer kept, after a resume (the server keeps 30 s).
const MAX_PAD_S = 30;
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 15000;

const $ = (id) => document.getElementById(id);
const ui = {
  conn: $("conn"),
  connText: $("conn-text"),
  record: $("record"),
  recordLabel: $("record-label"),
  language: $("language"),
  elapsed: $("elapsed"),
  wave: $("wave"),
  alert: $("alert"),
  finals: $("finals"),
  partial: $("partial"),
  empty: $("empty"),
  transcript: $("transcript"),
  copy: $("copy"),
  dlTxt: $("dl-txt"),
  dlSrt: $("dl-srt"),
  clear: $("clear"),
  copyStatus: $("copy-status"),
  drop: $("drop"),
  pick: $("pick"),
  file: $("file"),
  fileStatus: $("file-status"),
  fileError: $("file-error"),
  fileResult: $("file-result"),
};

// ---------------------------------------------------------------- formatting

function clock(ms) {
  const t = Math.max(0, Math.round(ms / 100)) / 10; // tenths of a second
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const s = (t % 60).toFixed(1).padStart(4, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

function srtTime(ms) {
  ms = Math.max(0, Math.round(ms));
  const p = (n, w = 2) => String(n).padStart(w, "0");
  const h = Math.floor(ms / 3600000);
  const m = Math.floor((ms % 3600000) / 60000);
  const s = Math.floor((ms % 60000) / 1000);
  return `${p(h)}:${p(m)}:${p(s)},${p(ms % 1000, 3)}`;
}

function stamp() {
  const d = new Date();
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

// ---------------------------------------------------------------- messages to the user

function showAlert(text, kind = "error") {
  ui.alert.textContent = text;
  ui.alert.dataset.kind = kind;
  ui.alert.hidden = false;
}

function clearAlert() {
  ui.alert.hidden = true;
  ui.alert.textContent = "";
}

const CONN_TEXT = {
  idle: "Idle",
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
  finishing: "Finishing…",
  error: "Error",
};

function setConn(state, text) {
  ui.conn.dataset.state = state;
  ui.connText.textContent = text || CONN_TEXT[state] || state;
}

// ---------------------------------------------------------------- transcript

/** Final segments, in arrival order: {id, startMs, endMs, text}. Times are on the recording's clock. */
const finals = [];
let partial = null; // {key, startMs, endMs, text}

function updateEmpty() {
  const has = finals.length > 0;
  ui.empty.hidden = has || partial !== null;
  for (const b of [ui.copy, ui.dlTxt, ui.dlSrt, ui.clear]) b.disabled = !has;
}

function nearBottom(el) {
  return el.scrollHeight - el.scrollTop - el.clientHeight < 40;
}

function segmentItem(startMs, endMs, text, cls) {
  const li = document.createElement("li");
  li.className = cls;
  const time = document.createElement("span");
  time.className = "time";
  time.textContent = `${clock(startMs)} – ${clock(endMs)}`;
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  li.append(time, body);
  return li;
}

function addFinal(startMs, endMs, text) {
  const stick = nearBottom(ui.transcript);
  text = text.trim();
  if (text) {
    finals.push({ startMs, endMs, text });
    ui.finals.append(segmentItem(startMs, endMs, text, "seg"));
  }
  if (stick) ui.transcript.scrollTop = ui.transcript.scrollHeight;
  updateEmpty();
}

function addFailed(startMs, message) {
  const li = document.createElement("li");
  li.className = "seg failed";
  li.textContent = `Segment at ${clock(startMs)} could not be transcribed: ${message}`;
  ui.finals.append(li);
}

function setPartial(p) {
  partial = p;
  if (!p || !p.text.trim()) {
    ui.partial.hidden = true;
    ui.partial.textContent = "";
  } else {
    const stick = nearBottom(ui.transcript);
    ui.partial.textContent = "";
    const time = document.createElement("span");
    time.className = "time";
    time.textContent = `${clock(p.startMs)} – …`;
    const body = document.createElement("span");
    body.className = "text";
    body.textContent = p.text.trim();
    ui.partial.append(time, body);
    ui.partial.hidden = false;
    if (stick) ui.transcript.scrollTop = ui.transcript.scrollHeight;
  }
  updateEmpty();
}

function transcriptText() {
  return finals.map((f) => f.text).join("\n") + (finals.length ? "\n" : "");
}

function transcriptSrt() {
  return finals
    .map((f, i) => `${i + 1}\n${srtTime(f.startMs)} --> ${srtTime(Math.max(f.endMs, f.startMs + 1))}\n${f.text}\n`)
    .join("\n");
}

function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // Fallback for contexts without the async clipboard (plain http on a LAN address).
    const ta = document.createElement("textarea");
    ta.value = text;
    ta.setAttribute("readonly", "");
    ta.style.position = "fixed";
    ta.style.opacity = "0";
    document.body.append(ta);
    ta.select();
    let ok = false;
    try {
      ok = document.execCommand("copy");
    } catch {
      ok = false;
    }
    ta.remove();
    return ok;
  }
}

ui.copy.addEventListener("click", async () => {
  const ok = await copyText(transcriptText());
  ui.copyStatus.textContent = ok ? `Copied ${finals.length} line(s) to the clipboard.` : "Copying failed: select the text and copy it by hand.";
});
ui.dlTxt.addEventListener("click", () => download(`kiki-${stamp()}.txt`, transcriptText(), "text/plain;charset=utf-8"));
ui.dlSrt.addEventListener("click", () => download(`kiki-${stamp()}.srt`, transcriptSrt(), "application/x-subrip;charset=utf-8"));
ui.clear.addEventListener("click", () => {
  finals.length = 0;
  ui.finals.textContent = "";
  setPartial(null);
  ui.copyStatus.textContent = "Transcript cleared.";
});

// ---------------------------------------------------------------- streaming client

/**
 * One logical recording over one or more WebSocket connections. On an unexpected close it
 * reconnects with exponential backoff and sends `resume: {token, last_seq}` in `start`.
 * When the server answers `ready` with `recovered: true`, the same session goes on: the
 * transcript and the clock stay as they are, and the results missed meanwhile follow with their
 * own `seq` and times. Otherwise (`recovered: false`) a new session has started: the client says
 * so and places the new session's times after the audio already sent.
 */
class Stream {
  constructor(language, handlers) {
    this.language = language;
    this.h = handlers;
    this.ws = null;
    this.ready = false;
    this.wanted = true; // the user still records
    this.stopSent = false;
    this.stopping = false;
    this.ended = false;
    this.queue = [];
    this.attempt = 0;
    this.timer = null;
    this.session = null; // {session, epoch, token}
    this.lastSeq = 0;
    this.offsetMs = 0; // recording time at which the current session's audio starts
    this.sentSamples = 0; // samples sent in the current session
    this.sent = []; // recent frames sent, {at, buf}: resent after a resume (see `ready`)
    this.onOnline = () => {
      if (this.timer) {
        clearTimeout(this.timer);
        this.timer = null;
        this.connect();
      }
    };
    window.addEventListener("online", this.onOnline);
    this.connect();
  }

  url() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    return `${proto}//${location.host}/ws${tokenQuery()}`;
  }

  connect() {
    this.timer = null;
    this.ready = false;
    const resuming = this.session !== null;
    setConn(resuming ? "reconnecting" : "connecting");
    let ws;
    try {
      ws = new WebSocket(this.url());
    } catch (e) {
      this.h.onError(`Cannot open the connection: ${e.message}`);
      this.scheduleReconnect();
      return;
    }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      const start = {
        type: "start",
        sample_rate: RATE,
        format: "pcm_s16le",
        language: this.language === "auto" ? null : this.language,
      };
      if (resuming) start.resume = { token: this.session.token, last_seq: this.lastSeq };
      ws.send(JSON.stringify(start));
    };
    ws.onmessage = (e) => {
      if (typeof e.data !== "string") return;
      let msg;
      try {
        msg = JSON.parse(e.data);
      } catch {
        this.h.onError("The server sent a message that is not JSON.");
        return;
      }
      this.onMessage(ws, msg);
    };
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.ready = false;
      this.onClose(e);
    };
  }

  onMessage(ws, msg) {
    switch (msg.type) {
      case "ready": {
        const previous = this.session;
        const fresh = !previous || msg.recovered !== true;
        if (previous && fresh) {
          // Not resumed: a fresh session whose clock starts at zero.
          this.offsetMs += (this.sentSamples * 1000) / RATE;
          this.lastSeq = 0;
          this.h.onNotice(
            "Reconnected as a new session: the server could not resume the old one, so the results still pending when the connection dropped are missing.",
          );
        }
        if (fresh) {
          this.sentSamples = 0;
          this.sent = [];
        } else if (typeof msg.position_ms === "number") {
          // The server goes on from the end of the last final: what the lost connection carried
          // after it is sent again, so no word is lost and both clocks agree.
          const from = Math.round((msg.position_ms * RATE) / 1000);
          const kept = this.sent.filter((f) => f.at + f.buf.byteLength / 2 > from);
          const again = [];
          // What this tab no longer keeps (a long pause after the last final) goes as silence,
          // so that the server's clock and ours still agree.
          let gap = Math.min((kept.length ? kept[0].at : this.sentSamples) - from, MAX_PAD_S * RATE);
          while (gap > 0) {
            const n = Math.min(gap, RATE);
            again.push(new ArrayBuffer(n * 2));
            gap -= n;
          }
          // The frame the resume point falls in is cut there.
          for (const f of kept) again.push(f.at < from ? f.buf.slice((from - f.at) * 2) : f.buf);
          this.sent = [];
          this.sentSamples = from;
          this.queue = again.concat(this.queue);
        }
        this.session = { session: msg.session, epoch: msg.epoch, token: msg.resume_token };
        this.ready = true;
        this.attempt = 0;
        setConn("live", `Live · ${msg.session.slice(0, 8)}`);
        const queued = this.queue;
        this.queue = [];
        for (const buf of queued) this.sendNow(buf);
        if (this.stopping) this.sendStop();
        break;
      }
      case "partial":
      case "final":
        if (typeof msg.seq === "number" && msg.seq > this.lastSeq) this.lastSeq = msg.seq;
        this.h.onSegment(msg, this.offsetMs);
        break;
      case "error":
        if (typeof msg.segment === "number" && (msg.code === "plugin_failed" || msg.code === "language_unsupported")) {
          // A plugin failed on that segment, or its speech was not in the model's language, but
          // its final comes all the same (unprocessed, shortened, or without that text): a
          // notice, not a failed segment.
          this.h.onNotice(`Segment ${msg.segment}: ${msg.message}`);
        } else if (typeof msg.segment === "number") {
          this.h.onSegmentError(msg, this.offsetMs);
        } else {
          this.h.onError(`Server error (${msg.code}): ${msg.message}`);
        }
        if (!this.ready) {
          // `start` was refused. Retry what the server calls retryable, give up on the rest.
          if (!msg.retryable) this.wanted = false;
          ws.close();
        }
        break;
      case "end":
        this.ended = true;
        this.h.onEnd(msg.segments);
        break;
      default:
        // Unknown message types are ignored (forward compatibility).
        break;
    }
  }

  onClose(e) {
    if (this.disposed) return;
    if (this.ended) {
      setConn("idle", "Idle · done");
      this.dispose();
      return;
    }
    if (this.stopSent) {
      this.h.onError(`The connection closed before the last results arrived (code ${e.code}).`);
      setConn("error", "Closed early");
      this.dispose();
      return;
    }
    if (!this.wanted) {
      // `start` was refused for good; the error is on screen already.
      setConn("error", "Stopped");
      this.dispose();
      this.h.onGiveUp();
      return;
    }
    // Still recording, or stopping with audio not yet delivered: try again.
    this.scheduleReconnect();
  }

  scheduleReconnect() {
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** this.attempt) * (0.75 + Math.random() * 0.5);
    this.attempt += 1;
    setConn("reconnecting", `Reconnecting in ${Math.ceil(delay / 1000)} s…`);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  sendNow(buf) {
    // A socket the server (or the network) is closing takes nothing: the frame waits for the
    // next connection, as while reconnecting.
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
      this.queue.push(buf);
      return;
    }
    this.ws.send(buf);
    this.sent.push({ at: this.sentSamples, buf });
    if (this.sent.length > Math.ceil(MAX_QUEUE_MS / FRAME_MS)) this.sent.shift();
    this.sentSamples += buf.byteLength / 2;
  }

  /** One frame of s16le audio (ArrayBuffer). */
  send(buf) {
    if (this.stopping) return;
    if (this.ready && this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.sendNow(buf);
      return;
    }
    this.queue.push(buf);
    const max = Math.ceil(MAX_QUEUE_MS / FRAME_MS);
    if (this.queue.length > max) this.queue.splice(0, this.queue.length - max);
  }

  sendStop() {
    // Closing under us: `stop` goes out after the next `ready` (see onMessage).
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    this.stopSent = true;
    this.ws.send(JSON.stringify({ type: "stop" }));
    setConn("finishing");
  }

  /** After the last frame: ask for the remaining finals; `end` follows. */
  stop() {
    this.stopping = true;
    if (this.ready && this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.sendStop();
    } else if (this.ws && this.ws.readyState <= WebSocket.OPEN) {
      setConn("finishing"); // `stop` goes out after `ready` and the queued audio
    } else {
      // Disconnected and waiting to retry: nothing can deliver the queued audio any more.
      if (this.timer) clearTimeout(this.timer);
      this.timer = null;
      if (this.queue.length) this.h.onError("Stopped while disconnected: the audio since the connection dropped was not transcribed.");
      setConn("idle");
      this.dispose();
    }
  }

  /** Drops the connection at once (page leaving). */
  abort() {
    this.wanted = false;
    this.ended = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.ws) this.ws.close();
    this.dispose();
  }

  dispose() {
    if (this.disposed) return;
    this.disposed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    window.removeEventListener("online", this.onOnline);
    this.queue = [];
    this.h.onClosed();
  }
}

// ---------------------------------------------------------------- microphone capture

class Recorder {
  async start(onFrame) {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new Error("This browser cannot capture audio here (a microphone needs https or localhost).");
    }
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
    this.ctx = new AudioContext();
    await this.ctx.audioWorklet.addModule(new URL("capture-worklet.js", import.meta.url));
    this.source = this.ctx.createMediaStreamSource(this.stream);
    this.node = new AudioWorkletNode(this.ctx, "kiki-capture", {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      outputChannelCount: [1],
      processorOptions: { targetRate: RATE, frameMs: FRAME_MS },
    });
    this.flushed = null;
    this.node.port.onmessage = (e) => {
      const m = e.data;
      if (m.type === "frame") onFrame(m.pcm, m.peak);
      else if (m.type === "flushed" && this.flushed) this.flushed();
    };
    // The node writes silence; routing it to the destination keeps the graph pulling it.
    this.mute = this.ctx.createGain();
    this.mute.gain.value = 0;
    this.source.connect(this.node).connect(this.mute).connect(this.ctx.destination);
    if (this.ctx.state === "suspended") await this.ctx.resume();
    this.inputRate = this.ctx.sampleRate;
  }

  /** Posts the last short frame, then releases the microphone. */
  async stop() {
    if (!this.ctx) return;
    if (this.node) {
      await Promise.race([
        new Promise((resolve) => {
          this.flushed = resolve;
          this.node.port.postMessage("flush");
        }),
        new Promise((resolve) => setTimeout(resolve, 500)),
      ]);
    }
    for (const t of this.stream.getTracks()) t.stop();
    try {
      this.source.disconnect();
      this.node.disconnect();
    } catch {
      /* already disconnected */
    }
    await this.ctx.close().catch(() => {});
    this.ctx = null;
  }
}

// ---------------------------------------------------------------- waveform

const levels = new Float32Array(600);
let levelHead = 0;
let levelCount = 0;

function pushLevel(peak) {
  levels[levelHead] = peak;
  levelHead = (levelHead + 1) % levels.length;
  levelCount = Math.min(levelCount + 1, levels.length);
}

function drawWave() {
  const c = ui.wave;
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(c.clientWidth * dpr));
  const h = Math.max(1, Math.round(c.clientHeight * dpr));
  if (c.width !== w || c.height !== h) {
    c.width = w;
    c.height = h;
  }
  const g = c.getContext("2d");
  const css = getComputedStyle(c);
  g.clearRect(0, 0, w, h);
  const mid = h / 2;
  g.fillStyle = css.getPropertyValue("--wave-axis").trim() || "#ccc";
  g.fillRect(0, Math.floor(mid), w, Math.max(1, Math.round(dpr)));
  const bar = 3 * dpr;
  const n = Math.min(levelCount, Math.floor(w / bar));
  g.fillStyle = css.getPropertyValue("--wave").trim() || "#2563eb";
  for (let i = 0; i < n; i++) {
    const v = levels[(levelHead - 1 - i + levels.length) % levels.length];
    // Square-root scale so quiet speech is still visible.
    const a = Math.max(dpr, Math.sqrt(Math.min(1, v)) * (mid - 2 * dpr));
    const x = w - (i + 1) * bar;
    g.fillRect(x, mid - a, bar - dpr, 2 * a);
  }
}

let waveRaf = 0;
function waveLoop() {
  drawWave();
  waveRaf = requestAnimationFrame(waveLoop);
}

// ---------------------------------------------------------------- recording control

let stream = null;
let recorder = null;
let busy = false;
let startedAt = 0;
let elapsedTimer = 0;

function setRecording(on) {
  ui.record.setAttribute("aria-pressed", on ? "true" : "false");
  ui.record.classList.toggle("recording", on);
  ui.recordLabel.textContent = on ? "Stop recording" : "Start recording";
  ui.language.disabled = on;
}

function tickElapsed() {
  ui.elapsed.textContent = clock(performance.now() - startedAt).replace(/\.\d$/, "");
}

async function startRecording() {
  clearAlert();
  busy = true;
  ui.record.disabled = true;
  levelCount = 0;
  const language = ui.language.value;
  recorder = new Recorder();
  try {
    // The socket opens while the microphone starts; frames queue until `ready`.
    stream = new Stream(language, {
      onSegment(msg, offsetMs) {
        const startMs = offsetMs + msg.start_ms;
        const endMs = offsetMs + msg.end_ms;
        if (msg.type === "final") {
          if (partial && partial.key === `${offsetMs}/${msg.segment}`) setPartial(null);
          addFinal(startMs, endMs, msg.text || "");
        } else {
          setPartial({ key: `${offsetMs}/${msg.segment}`, startMs, endMs, text: msg.text || "" });
        }
      },
      onSegmentError(msg, offsetMs) {
        if (partial && partial.key === `${offsetMs}/${msg.segment}`) setPartial(null);
        addFailed(partial ? partial.startMs : offsetMs, `${msg.code}: ${msg.message}`);
        showAlert(`Segment ${msg.segment} failed (${msg.code}): ${msg.message}`);
      },
      onError(text) {
        showAlert(text);
      },
      onNotice(text) {
        showAlert(text, "notice");
      },
      onEnd() {
        setPartial(null);
      },
      onGiveUp() {
        if (recorder) stopRecording();
      },
      onClosed() {
        stream = null;
      },
    });
    await recorder.start((pcm, peak) => {
      pushLevel(peak);
      if (stream) stream.send(pcm);
    });
  } catch (e) {
    const text =
      e && e.name === "NotAllowedError"
        ? "Microphone access was refused. Allow the microphone for this site and try again."
        : e && e.name === "NotFoundError"
          ? "No microphone was found."
          : `Cannot start recording: ${e && e.message ? e.message : e}`;
    showAlert(text);
    if (stream) stream.abort();
    stream = null;
    await recorder.stop().catch(() => {});
    recorder = null;
    setConn("error", "No microphone");
    busy = false;
    ui.record.disabled = false;
    return;
  }
  startedAt = performance.now();
  tickElapsed();
  elapsedTimer = setInterval(tickElapsed, 250);
  setRecording(true);
  if (!waveRaf) waveLoop();
  busy = false;
  ui.record.disabled = false;
  ui.record.focus();
}

async function stopRecording() {
  if (!recorder) return;
  busy = true;
  ui.record.disabled = true;
  const r = recorder;
  recorder = null;
  await r.stop(); // the last short frame goes out through the handler before this resolves
  if (stream) stream.stop();
  clearInterval(elapsedTimer);
  cancelAnimationFrame(waveRaf);
  waveRaf = 0;
  drawWave();
  setRecording(false);
  busy = false;
  ui.record.disabled = false;
}

ui.record.addEventListener("click", () => {
  if (busy) return;
  if (recorder) stopRecording();
  else if (stream) showAlert("Still finishing the previous recording: wait for its last results.", "notice");
  else startRecording();
});

window.addEventListener("pagehide", () => {
  if (stream) stream.abort();
});
window.addEventListener("resize", drawWave);

// ---------------------------------------------------------------- file transcription

function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

async function transcribeFile(file) {
  ui.fileError.hidden = true;
  ui.fileResult.textContent = "";
  ui.fileStatus.textContent = `Uploading ${file.name} (${fmtBytes(file.size)})…`;
  ui.pick.disabled = true;
  const form = new FormData();
  form.append("file", file, file.name);
  form.append("response_format", "verbose_json");
  if (ui.language.value !== "auto") form.append("language", ui.language.value);
  const fail = (text) => {
    ui.fileStatus.textContent = `${file.name}: failed.`;
    ui.fileError.textContent = text;
    ui.fileError.hidden = false;
  };
  try {
    let res;
    try {
      res = await fetch(`/v1/audio/transcriptions${tokenQuery()}`, { method: "POST", body: form });
    } catch (e) {
      fail(`Could not reach the server: ${e.message}`);
      return;
    }
    const body = await res.text();
    let data = null;
    try {
      data = body ? JSON.parse(body) : null;
    } catch {
      data = null;
    }
    if (!res.ok) {
      const status = `HTTP ${res.status}${res.statusText ? " " + res.statusText : ""}`;
      let detail = "";
      if (data && data.error) detail = typeof data.error === "string" ? data.error : data.error.message || JSON.stringify(data.error);
      else if (data && data.message) detail = data.message;
      else if (body.trim()) detail = body.trim().slice(0, 500);
      const lead =
        res.status === 404 || res.status === 405
          ? `This server does not offer file transcription at /v1/audio/transcriptions (${status}).`
          : `The server could not transcribe the file (${status}).`;
      fail(detail ? `${lead} ${detail}` : lead);
      return;
    }
    if (!data) {
      fail("The server answered, but not with JSON.");
      return;
    }
    const segs = Array.isArray(data.segments) ? data.segments : [];
    if (segs.length) {
      for (const s of segs) {
        ui.fileResult.append(segmentItem((s.start || 0) * 1000, (s.end || 0) * 1000, String(s.text || "").trim(), "seg"));
      }
    } else {
      const li = document.createElement("li");
      li.className = "seg";
      li.textContent = String(data.text || "").trim() || "(no speech found)";
      ui.fileResult.append(li);
    }
    const dur = typeof data.duration === "number" ? `, ${data.duration.toFixed(1)} s of audio` : "";
    ui.fileStatus.textContent = `${file.name}: done${dur}.`;
  } finally {
    ui.pick.disabled = false;
  }
}

ui.pick.addEventListener("click", () => ui.file.click());
ui.file.addEventListener("change", () => {
  const f = ui.file.files && ui.file.files[0];
  if (f) transcribeFile(f);
  ui.file.value = "";
});
for (const ev of ["dragenter", "dragover"]) {
  ui.drop.addEventListener(ev, (e) => {
    e.preventDefault();
    ui.drop.classList.add("over");
  });
}
for (const ev of ["dragleave", "drop"]) {
  ui.drop.addEventListener(ev, () => ui.drop.classList.remove("over"));
}
ui.drop.addEventListener("drop", (e) => {
  e.preventDefault();
  const f = e.dataTransfer && e.dataTransfer.files && e.dataTransfer.files[0];
  if (f) transcribeFile(f);
});
// A file dropped outside the zone would navigate away from the page.
window.addEventListener("dragover", (e) => e.preventDefault());
window.addEventListener("drop", (e) => e.preventDefault());

// ---------------------------------------------------------------- init

updateEmpty();
setConn("idle");
drawWave();
