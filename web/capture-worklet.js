// AudioWorklet processor: microphone input (any rate, any channel count) to 16 kHz mono
// little-endian s16 frames of ~40 ms, posted to the main thread as transferable ArrayBuffers.
//
// Down-sampling: a windowed-sinc low-pass FIR at the input rate (cut-off a little under the
// target Nyquist frequency) followed by linear interpolation at the target rate. Cheap enough
// for the audio thread (48 kHz x 48 taps) and free of the aliasing a plain decimation gives.
//
// Messages in:  "flush" -> posts what is buffered (a short last frame), then {type: "flushed"}.
// Messages out: {type: "frame", pcm: ArrayBuffer (Int16, little-endian), peak: number}
//               {type: "flushed"}

const TAPS = 48;

function lowpass(cutoff /* cycles per input sample, < 0.5 */, taps) {
  const h = new Float32Array(taps);
  const mid = (taps - 1) / 2;
  let sum = 0;
  for (let i = 0; i < taps; i++) {
    const x = i - mid;
    const sinc = x === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * x) / (Math.PI * x);
    // Blackman window.
    const w = 0.42 - 0.5 * Math.cos((2 * Math.PI * i) / (taps - 1)) + 0.08 * Math.cos((4 * Math.PI * i) / (taps - 1));
    h[i] = sinc * w;
    sum += h[i];
  }
  for (let i = 0; i < taps; i++) h[i] /= sum;
  return h;
}

class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = (options && options.processorOptions) || {};
    this.target = o.targetRate || 16000;
    this.frameSamples = Math.max(1, Math.round((this.target * (o.frameMs || 40)) / 1000));
    // `sampleRate` is the AudioWorkletGlobalScope's rate (the context's).
    this.step = sampleRate / this.target;
    this.fir = this.step > 1 ? lowpass((0.45 * this.target) / sampleRate, TAPS) : null;
    this.ring = new Float32Array(TAPS);
    this.ringPos = 0;
    this.t = 1; // position of the next output sample, in input samples after `prev`
    this.prev = 0;
    this.out = new Int16Array(this.frameSamples);
    this.n = 0;
    this.peak = 0;
    this.port.onmessage = (e) => {
      if (e.data === "flush") {
        if (this.n > 0) this.post(this.n);
        this.port.postMessage({ type: "flushed" });
      }
    };
  }

  post(n) {
    const pcm = this.out.slice(0, n).buffer;
    this.port.postMessage({ type: "frame", pcm, peak: this.peak }, [pcm]);
    this.n = 0;
    this.peak = 0;
  }

  emit(y) {
    if (y > 1) y = 1;
    else if (y < -1) y = -1;
    const a = Math.abs(y);
    if (a > this.peak) this.peak = a;
    this.out[this.n++] = y < 0 ? Math.round(y * 32768) : Math.round(y * 32767);
    if (this.n === this.frameSamples) this.post(this.n);
  }

  filter(x) {
    if (!this.fir) return x;
    this.ring[this.ringPos] = x;
    this.ringPos = (this.ringPos + 1) % TAPS;
    let acc = 0;
    let j = this.ringPos; // oldest sample
    for (let i = 0; i < TAPS; i++) {
      acc += this.fir[i] * this.ring[j];
      j = j + 1 === TAPS ? 0 : j + 1;
    }
    return acc;
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0 || !input[0]) return true;
    const channels = input.length;
    const len = input[0].length;
    for (let i = 0; i < len; i++) {
      let x = 0;
      for (let c = 0; c < channels; c++) x += input[c][i];
      x = this.filter(x / channels);
      // Output samples that fall between `prev` (at 0) and `x` (at 1).
      while (this.t <= 1) {
        this.emit(this.prev + (x - this.prev) * this.t);
        this.t += this.step;
      }
      this.t -= 1;
      this.prev = x;
    }
    return true;
  }
}

registerProcessor("kiki-capture", CaptureProcessor);
