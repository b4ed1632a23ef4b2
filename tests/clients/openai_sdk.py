"""Drives Kiki with OpenAI's own Python SDK (PyPI `openai`, unchanged), as its users do.

    openai_sdk.py --base-url http://HOST:PORT/v1 COMMAND [--wav FILE] [options]

Commands:
    realtime   client.realtime.connect(extra_query={"intent": "transcription"}): session.update,
               input_audio_buffer.append in 100 ms pieces, then (--turn manual) one commit per
               --commit-every seconds, or (--turn vad) 1.5 s of silence for the last turn; waits
               for every item's `completed`. --format pcm (24 kHz) | pcmu | pcma (8 kHz G.711).
               --wrong-event sends an event a transcription session does not take first; --pace N
               sends at N times real time (a live microphone is 1); --beta speaks the beta API
               (client.beta.realtime, transcription_session.update).
    models     client.models.list()
    translate  client.audio.translations.create(model="whisper-1", file=...)
    stream     client.audio.transcriptions.create(model="whisper-1", file=..., stream=True)
    secret     client.realtime.client_secrets.create(...), then a realtime session with it

Prints one JSON report on stdout; exits 1 when the SDK raised.
"""

from __future__ import annotations

import argparse
import base64
import json
import queue
import sys
import threading
import time
import wave
import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # G.711 and resampling: in the standard library up to Python 3.12

import openai


def read_wav(path: str) -> tuple[bytes, int]:
    with wave.open(path, "rb") as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2, "mono s16 WAV expected"
        return w.readframes(w.getnframes()), w.getframerate()


def encode(pcm: bytes, rate: int, fmt: str) -> tuple[bytes, int, dict]:
    """The audio as the session's format: bytes, bytes per 100 ms, the format object."""
    if fmt == "pcm":
        out, _ = audioop.ratecv(pcm, 2, 1, rate, 24000, None)
        return out, 4800, {"type": "audio/pcm", "rate": 24000}
    narrow, _ = audioop.ratecv(pcm, 2, 1, rate, 8000, None)
    if fmt == "pcmu":
        return audioop.lin2ulaw(narrow, 2), 800, {"type": "audio/pcmu"}
    return audioop.lin2alaw(narrow, 2), 800, {"type": "audio/pcma"}


def realtime(client: openai.OpenAI, args) -> dict:
    pcm, rate = read_wav(args.wav)
    audio, piece, fmt = encode(pcm, rate, args.format)
    silence_byte = {"pcm": b"\x00", "pcmu": b"\xff", "pcma": b"\xd5"}[args.format]
    turn = None if args.turn == "manual" else {"type": "server_vad", "silence_duration_ms": args.silence_ms}
    events: list[dict] = []
    items: dict[str, dict] = {}
    commits = 0
    if args.beta:
        # The beta API (OpenAI-Beta: realtime=v1), as clients written for it in 2025 use it.
        connection = client.beta.realtime.connect(model="gpt-4o-transcribe", extra_query={"intent": "transcription"})
    else:
        connection = client.realtime.connect(extra_query={"intent": "transcription"})
    with connection as conn:
        first = conn.recv()
        events.append({"type": first.type})
        if args.wrong_event:
            conn.send({"type": "response.create", "event_id": "wrong-1"})
            err = conn.recv()
            events.append({"type": err.type, "code": getattr(err.error, "code", None),
                           "event_id": getattr(err.error, "event_id", None)})
        if args.beta:
            beta_format = {"pcm": "pcm16", "pcmu": "g711_ulaw", "pcma": "g711_alaw"}[args.format]
            conn.transcription_session.update(session={
                "input_audio_format": beta_format,
                "input_audio_transcription": {"model": "gpt-4o-transcribe", "language": "en"},
                "turn_detection": turn,
                "include": ["item.input_audio_transcription.logprobs"],
            })
        else:
            conn.session.update(session={
                "type": "transcription",
                "audio": {"input": {
                    "format": fmt,
                    "transcription": {"model": "whisper-1", "language": "en"},
                    "turn_detection": turn,
                }},
                "include": ["item.input_audio_transcription.logprobs"],
            })
        updated = conn.recv()
        events.append({"type": updated.type})
        # The SDK's recv blocks without a timeout: a reader thread lets this loop wait with one.
        inbox: queue.Queue = queue.Queue()

        def reader() -> None:
            try:
                while True:
                    inbox.put(conn.recv())
            except Exception as e:  # the connection closed (or broke): the main loop decides
                inbox.put(e if not stopping.is_set() else StopIteration())

        stopping = threading.Event()
        threading.Thread(target=reader, daemon=True).start()
        bytes_per_s = piece * 10
        every = int(args.commit_every * bytes_per_s) if args.turn == "manual" else 0
        sent = 0
        for i in range(0, len(audio), piece):
            chunk = audio[i:i + piece]
            conn.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())
            if args.pace:
                time.sleep(0.1 / args.pace)
            sent += len(chunk)
            if every and sent >= every:
                conn.input_audio_buffer.commit()
                commits += 1
                sent = 0
        if args.turn == "manual":
            if sent:
                conn.input_audio_buffer.commit()
                commits += 1
        else:
            tail = silence_byte * (bytes_per_s * 3 // 2)
            for i in range(0, len(tail), piece):
                conn.input_audio_buffer.append(audio=base64.b64encode(tail[i:i + piece]).decode())
        deadline = time.time() + args.deadline
        done = 0
        expected = commits if args.turn == "manual" else None
        quiet_until = None
        while time.time() < deadline:
            try:
                ev = inbox.get(timeout=1.0)
            except queue.Empty:
                # Server VAD: every turn is in once nothing has come for a while after the last one.
                if expected is None and done and quiet_until and time.time() > quiet_until:
                    break
                continue
            if isinstance(ev, Exception):
                raise ev
            rec = {"type": ev.type}
            item = getattr(ev, "item_id", None)
            if item:
                rec["item_id"] = item
                items.setdefault(item, {"deltas": "", "transcript": None})
            if ev.type == "conversation.item.input_audio_transcription.delta":
                items[item]["deltas"] += ev.delta or ""
                rec["delta"] = ev.delta
            elif ev.type == "conversation.item.input_audio_transcription.completed":
                items[item]["transcript"] = ev.transcript
                items[item]["logprobs"] = len(ev.logprobs or [])
                done += 1
                quiet_until = time.time() + 5
            elif ev.type == "input_audio_buffer.committed":
                rec["previous_item_id"] = ev.previous_item_id
            elif ev.type == "input_audio_buffer.speech_started":
                rec["audio_start_ms"] = ev.audio_start_ms
            elif ev.type == "input_audio_buffer.speech_stopped":
                rec["audio_end_ms"] = ev.audio_end_ms
            elif ev.type == "error":
                rec["code"] = ev.error.code
                rec["message"] = ev.error.message
            events.append(rec)
            if expected is not None and done >= expected:
                break
        stopping.set()
    order = [e["item_id"] for e in events if e["type"] == "input_audio_buffer.committed"]
    text = " ".join((items[i]["transcript"] or "").strip() for i in order if i in items).strip()
    return {"events": events, "items": items, "order": order, "text": text, "commits": commits}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--base-url", required=True)
    p.add_argument("--api-key", default="kiki")
    p.add_argument("command", choices=["realtime", "models", "translate", "stream", "secret"])
    p.add_argument("--wav")
    p.add_argument("--format", default="pcm", choices=["pcm", "pcmu", "pcma"])
    p.add_argument("--turn", default="vad", choices=["vad", "manual"])
    p.add_argument("--commit-every", type=float, default=4.0)
    p.add_argument("--silence-ms", type=int, default=500)
    p.add_argument("--wrong-event", action="store_true")
    p.add_argument("--beta", action="store_true", help="client.beta.realtime (OpenAI-Beta: realtime=v1)")
    p.add_argument("--pace", type=float, default=0.0, help="send at this many times real time (0: at once)")
    p.add_argument("--deadline", type=float, default=120)
    args = p.parse_args()
    # The beta Realtime client always opens wss: unless told the WebSocket address, which is an
    # ordinary client option (the GA one derives ws: from an http: base URL).
    ws_url = args.base_url.replace("http://", "ws://", 1) if args.beta else None
    client = openai.OpenAI(base_url=args.base_url, api_key=args.api_key, max_retries=0, websocket_base_url=ws_url)
    report: dict = {"library": f"openai {openai.__version__}", "error": None}
    try:
        if args.command == "realtime":
            report.update(realtime(client, args))
        elif args.command == "models":
            report["ids"] = [m.id for m in client.models.list()]
        elif args.command == "translate":
            with open(args.wav, "rb") as f:
                report["text"] = client.audio.translations.create(model="whisper-1", file=f).text
        elif args.command == "stream":
            deltas, done = [], None
            with open(args.wav, "rb") as f:
                for ev in client.audio.transcriptions.create(model="whisper-1", file=f, stream=True):
                    if ev.type == "transcript.text.delta":
                        deltas.append(ev.delta)
                    elif ev.type == "transcript.text.done":
                        done = ev.text
            report.update({"deltas": deltas, "text": done})
        elif args.command == "secret":
            secret = client.realtime.client_secrets.create(session={"type": "transcription"})
            report["secret_expires_at"] = secret.expires_at
            keyed = openai.OpenAI(base_url=args.base_url, api_key=secret.value, max_retries=0)
            report.update(realtime(keyed, args))
    except Exception as e:  # the report says what the SDK raised
        report["error"] = f"{type(e).__name__}: {e}"
        print(json.dumps(report))
        return 1
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
