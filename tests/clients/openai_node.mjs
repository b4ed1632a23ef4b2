// Drives Kiki with OpenAI's own Node SDK (npm `openai`, unchanged; installed by setup.sh into
// .cache/clients/openai-node), as its users do:
//
//   node openai_node.mjs --base-url http://HOST:PORT/v1 --wav FILE
//
// It lists the models, streams a file transcription (SSE), then opens a Realtime transcription
// session with server VAD and streams the WAV in 100 ms pieces. The SDK always opens Realtime
// sockets with wss: (it sets the scheme itself), so this script puts a TLS terminator in front
// of the gateway, as a production deployment has, with a throwaway self-signed certificate.
// Prints one JSON report on stdout; exits 1 when the SDK raised.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import tls from 'node:tls';

const here = path.dirname(new URL(import.meta.url).pathname);
const modules = path.join(here, '../../.cache/clients/openai-node/node_modules');
const require = createRequire(path.join(modules, 'x.js'));
const { OpenAI, toFile } = require('openai');
const { OpenAIRealtimeWS } = require('openai/realtime/ws');

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const version = JSON.parse(fs.readFileSync(path.join(modules, 'openai/package.json'), 'utf8')).version;
const report = { library: `openai ${version}`, error: null };

function readWav(file) {
  const b = fs.readFileSync(file);
  let off = 12;
  let rate = 16000;
  while (off + 8 <= b.length) {
    const id = b.toString('ascii', off, off + 4);
    const size = b.readUInt32LE(off + 4);
    if (id === 'fmt ') rate = b.readUInt32LE(off + 12);
    if (id === 'data') return { pcm: b.subarray(off + 8, off + 8 + size), rate };
    off += 8 + size + (size % 2);
  }
  throw new Error('no data chunk');
}

// Linear interpolation to 24 kHz s16 (what audio/pcm is in OpenAI's API).
function to24k({ pcm, rate }) {
  const n = pcm.length / 2;
  const m = Math.floor((n * 24000) / rate);
  const out = Buffer.alloc(m * 2);
  for (let i = 0; i < m; i++) {
    const x = (i * rate) / 24000;
    const j = Math.min(Math.floor(x), n - 1);
    const k = Math.min(j + 1, n - 1);
    const f = x - j;
    out.writeInt16LE(Math.round(pcm.readInt16LE(j * 2) * (1 - f) + pcm.readInt16LE(k * 2) * f), i * 2);
  }
  return out;
}

function tlsTerminator(target) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiki-tls-'));
  const key = path.join(dir, 'key.pem');
  const cert = path.join(dir, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert,
    '-days', '1', '-subj', '/CN=127.0.0.1'], { stdio: 'ignore' });
  const server = tls.createServer({ key: fs.readFileSync(key), cert: fs.readFileSync(cert) }, (sock) => {
    const up = net.connect(Number(target.port), target.hostname);
    sock.pipe(up).pipe(sock);
    const stop = () => { sock.destroy(); up.destroy(); };
    sock.on('error', stop);
    up.on('error', stop);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

async function realtime(client, wav) {
  const base = new URL(args['base-url']);
  const proxy = await tlsTerminator(base);
  const secure = new OpenAI({ apiKey: client.apiKey, baseURL: `https://127.0.0.1:${proxy.address().port}/v1` });
  const rt = new OpenAIRealtimeWS({ intent: 'transcription', options: { rejectUnauthorized: false } }, secure);
  const events = [];
  const items = {};
  const done = new Promise((resolve, reject) => {
    let quiet;
    rt.on('error', (e) => reject(e));
    rt.on('event', (ev) => {
      events.push(ev.type);
      if (ev.type === 'conversation.item.input_audio_transcription.delta') {
        items[ev.item_id] = items[ev.item_id] ?? { deltas: '', transcript: null };
        items[ev.item_id].deltas += ev.delta ?? '';
      }
      if (ev.type === 'conversation.item.input_audio_transcription.completed') {
        items[ev.item_id] = items[ev.item_id] ?? { deltas: '', transcript: null };
        items[ev.item_id].transcript = ev.transcript;
        clearTimeout(quiet);
        quiet = setTimeout(resolve, 5000);
      }
    });
  });
  await new Promise((resolve, reject) => {
    rt.socket.on('open', resolve);
    rt.socket.on('error', reject);
  });
  rt.send({
    type: 'session.update',
    session: {
      type: 'transcription',
      audio: { input: { format: { type: 'audio/pcm', rate: 24000 }, transcription: { model: 'gpt-4o-transcribe' },
        turn_detection: { type: 'server_vad', silence_duration_ms: 500 } } },
    },
  });
  const audio = Buffer.concat([to24k(wav), Buffer.alloc(24000 * 3)]);
  for (let i = 0; i < audio.length; i += 4800) {
    rt.send({ type: 'input_audio_buffer.append', audio: audio.subarray(i, i + 4800).toString('base64') });
  }
  const deadline = new Promise((_, reject) => setTimeout(() => reject(new Error('no transcripts in time')), 120000));
  await Promise.race([done, deadline]);
  rt.close();
  proxy.close();
  const order = [];
  for (const [id, it] of Object.entries(items)) if (it.transcript !== null) order.push(id);
  return { events, items, text: order.map((id) => items[id].transcript.trim()).join(' ') };
}

try {
  const client = new OpenAI({ apiKey: 'kiki', baseURL: args['base-url'], maxRetries: 0 });
  report.ids = [];
  for await (const m of client.models.list()) report.ids.push(m.id);
  const wav = readWav(args.wav);
  const stream = await client.audio.transcriptions.create({
    model: 'whisper-1',
    file: await toFile(fs.readFileSync(args.wav), 'speech.wav'),
    stream: true,
  });
  report.deltas = [];
  for await (const ev of stream) {
    if (ev.type === 'transcript.text.delta') report.deltas.push(ev.delta);
    if (ev.type === 'transcript.text.done') report.stream_text = ev.text;
  }
  report.realtime = await realtime(client, wav);
} catch (e) {
  report.error = `${e?.name}: ${e?.message}`;
  console.log(JSON.stringify(report));
  process.exit(1);
}
console.log(JSON.stringify(report));
process.exit(0);
