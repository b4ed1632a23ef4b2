use super::*;
use kiki_plugin_sdk::is_release;

const SR: u32 = 16_000;
const MS: u64 = 16; // samples per ms at 16 kHz
const TOL: u64 = 200 * MS;

/// Deterministic white noise in [-amp, amp].
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, amp: f32) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * amp
    }
}

enum Seg {
    Bg(u32),
    Tone(u32),
    Noise(u32),
    /// A tone with syllable-like gaps (on 150 ms, off 100 ms): speech has dips, a steady tone
    /// that lasts for seconds becomes background.
    Syllables(u32),
}

/// Build a signal: low background noise everywhere, bursts of tone or loud noise on top.
fn signal(parts: &[Seg]) -> Vec<f32> {
    signal_at(parts, 0.001, 0.3)
}

fn signal_at(parts: &[Seg], bg_amp: f32, amp: f32) -> Vec<f32> {
    let mut rng = Lcg(42);
    let mut out = Vec::new();
    for p in parts {
        let (ms, kind) = match p {
            Seg::Bg(ms) => (*ms, 0),
            Seg::Tone(ms) => (*ms, 1),
            Seg::Noise(ms) => (*ms, 2),
            Seg::Syllables(ms) => (*ms, 3),
        };
        for _ in 0..ms as u64 * MS {
            let t = out.len() as f32 / SR as f32;
            let bg = rng.next(bg_amp);
            let x = match kind {
                1 => amp * (2.0 * std::f32::consts::PI * 220.0 * t).sin(),
                2 => rng.next(amp),
                3 if (t * 1000.0) as u32 % 250 < 150 => amp * (2.0 * std::f32::consts::PI * 220.0 * t).sin(),
                _ => 0.0,
            };
            out.push(bg + x);
        }
    }
    out
}

/// The segments (release cuts left out; `run_raw` keeps them).
fn run_with(cfg: VadConfig, samples: &[f32], frame: usize, prob: Option<f32>) -> Vec<Cut> {
    run_raw(cfg, samples, frame, prob).into_iter().filter(|c| !is_release(c)).collect()
}

fn run_raw(cfg: VadConfig, samples: &[f32], frame: usize, prob: Option<f32>) -> Vec<Cut> {
    let mut vad = Vad::new(SR, cfg).unwrap();
    let mut cuts = Vec::new();
    for chunk in samples.chunks(frame) {
        cuts.extend(vad.push(chunk, prob));
    }
    cuts.extend(vad.flush());
    cuts
}

fn no_partials() -> VadConfig {
    VadConfig { partial_ms: 0, ..VadConfig::default() }
}

fn finals(cuts: &[Cut]) -> Vec<(u64, u64)> {
    cuts.iter().filter(|c| c.kind == CutKind::Final).map(|c| (c.start, c.end)).collect()
}

fn near(a: u64, b: u64) -> bool {
    a.abs_diff(b) <= TOL
}

#[test]
fn silence_gives_no_cuts() {
    let zeros = vec![0.0f32; 5 * SR as usize];
    assert!(run_with(VadConfig::default(), &zeros, 320, None).is_empty());
    let bg = signal(&[Seg::Bg(5000)]);
    assert!(run_with(VadConfig::default(), &bg, 320, None).is_empty());
}

#[test]
fn bursts_are_cut_in_the_right_places() {
    let s = signal(&[Seg::Bg(1000), Seg::Tone(1500), Seg::Bg(1500), Seg::Noise(1000), Seg::Bg(2000)]);
    let f = finals(&run_with(no_partials(), &s, 320, None));
    assert_eq!(f.len(), 2, "{f:?}");
    assert!(near(f[0].0, 1000 * MS) && near(f[0].1, 2500 * MS), "{f:?}");
    assert!(near(f[1].0, 4000 * MS) && near(f[1].1, 5000 * MS), "{f:?}");
    // Padding: ~200 ms before the onset, ~150 ms after the end (plus up to 40 ms that the
    // 50 ms power average holds the end).
    assert_eq!(f[0].0, 800 * MS);
    assert!((2650 * MS..=2690 * MS).contains(&f[0].1), "{f:?}");
    assert!(f[0].1 <= f[1].0);
}

#[test]
fn partials_follow_the_cadence() {
    let s = signal(&[Seg::Bg(1000), Seg::Tone(3500), Seg::Bg(1000)]);
    let cuts = run_with(VadConfig::default(), &s, 320, None);
    let parts: Vec<&Cut> = cuts.iter().filter(|c| c.kind == CutKind::Partial).collect();
    let f = finals(&cuts);
    assert_eq!(f.len(), 1);
    assert_eq!(parts.len(), 3, "{cuts:?}");
    for (i, p) in parts.iter().enumerate() {
        assert_eq!(p.start, f[0].0, "partials span from the utterance start");
        assert_eq!(p.end, p.start + (i as u64 + 1) * 1000 * MS);
    }
    // The final comes after all partials.
    assert_eq!(cuts.last().unwrap().kind, CutKind::Final);
    // partial_ms = 0 disables partials.
    let cuts = run_with(no_partials(), &s, 320, None);
    assert!(cuts.iter().all(|c| c.kind == CutKind::Final));
}

#[test]
fn max_length_forces_a_cut() {
    let s = signal(&[Seg::Bg(500), Seg::Syllables(30_000), Seg::Bg(1000)]);
    let f = finals(&run_with(no_partials(), &s, 320, None));
    assert_eq!(f.len(), 2, "{f:?}");
    assert_eq!(f[0].1 - f[0].0, 25_000 * MS);
    assert_eq!(f[1].0, f[0].1, "speech continues right where the forced cut ended");
    assert!(near(f[1].1, 30_500 * MS), "{f:?}");
    let cfg = VadConfig { max_segment_ms: 4000, ..no_partials() };
    let f = finals(&run_with(cfg, &s, 320, None));
    assert_eq!(f.len(), 8, "{f:?}");
    assert!(f.iter().all(|(a, b)| b - a <= 4000 * MS));
}

#[test]
fn tiny_clicks_give_nothing() {
    let mut parts = vec![Seg::Bg(500)];
    for _ in 0..6 {
        parts.push(Seg::Tone(60));
        parts.push(Seg::Bg(900));
    }
    parts.push(Seg::Noise(100));
    parts.push(Seg::Bg(1000));
    let s = signal(&parts);
    assert!(run_with(VadConfig::default(), &s, 320, None).is_empty());
    // A click at the very end, closed by flush, is dropped too.
    let s = signal(&[Seg::Bg(500), Seg::Tone(100)]);
    assert!(run_with(VadConfig::default(), &s, 320, None).is_empty());
}

#[test]
fn frame_size_does_not_matter() {
    let s = signal(&[
        Seg::Bg(700),
        Seg::Tone(2300),
        Seg::Bg(600),
        Seg::Noise(1200),
        Seg::Bg(100),
        Seg::Tone(30),
        Seg::Bg(1500),
        Seg::Tone(1234),
    ]);
    let reference = run_with(VadConfig::default(), &s, 320, None);
    assert!(finals(&reference).len() >= 3, "{reference:?}");
    for frame in [1, 7, 160, 333, 480, 1024, 4000] {
        assert_eq!(run_with(VadConfig::default(), &s, frame, None), reference, "frame size {frame}");
    }
}

#[test]
fn flush_closes_open_speech() {
    let s = signal(&[Seg::Bg(500), Seg::Tone(1500)]);
    let mut vad = Vad::new(SR, no_partials()).unwrap();
    assert!(vad.push(&s, None).is_empty());
    let f = vad.flush();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].kind, CutKind::Final);
    assert_eq!((f[0].start, f[0].end), (300 * MS, s.len() as u64));
    assert!(vad.flush().is_empty());
}

#[test]
fn host_speech_prob_only_vetoes() {
    // The host hearing speech does not make silence speech (it hears background talkers too).
    let zeros = vec![0.0f32; 2 * SR as usize];
    assert!(run_with(no_partials(), &zeros, 320, Some(0.9)).is_empty());
    let bg = signal(&[Seg::Bg(3000)]);
    assert!(run_with(no_partials(), &bg, 320, Some(1.0)).is_empty());
    // The host is confident there is no speech: a loud tone is vetoed.
    let s = signal(&[Seg::Bg(500), Seg::Tone(2000), Seg::Bg(1000)]);
    assert!(run_with(no_partials(), &s, 320, Some(0.05)).is_empty());
    // Undecided or confident host: energy decides.
    assert_eq!(finals(&run_with(no_partials(), &s, 320, Some(0.5))).len(), 1);
    assert_eq!(finals(&run_with(no_partials(), &s, 320, Some(0.99))).len(), 1);
    // A probability that is not a number is ignored.
    assert_eq!(finals(&run_with(no_partials(), &s, 320, Some(f32::NAN))).len(), 1);
}

#[test]
fn a_steady_sound_becomes_background() {
    // A fan switched on: loud for 12 s. It opens an utterance, which closes once the sound has
    // filled most of the floor's window, and later speech-like bursts above it are cut again.
    let mut s = signal(&[Seg::Bg(1000), Seg::Noise(12_000)]);
    let fan: Vec<f32> = s[2 * SR as usize..4 * SR as usize].to_vec();
    // Speech over the fan (~11 dB above it), then the fan goes on.
    let speech = signal_at(&[Seg::Syllables(1500)], 0.0, 0.9);
    s.extend(speech.iter().zip(&fan).map(|(a, b)| a + b));
    s.extend(&fan);
    let f = finals(&run_with(no_partials(), &s, 320, None));
    assert_eq!(f.len(), 2, "{f:?}");
    assert!(f[0].1 < 7 * SR as u64, "the fan stops being speech within ~5 s: {f:?}");
    assert!(near(f[1].0, 13_000 * MS) && near(f[1].1, 14_500 * MS), "{f:?}");
}

#[test]
fn babble_like_background_does_not_bridge_pauses() {
    // A background whose level swings by 3.5 dB (far talkers), a talker well above it:
    // the pauses between the talker's phrases are found.
    let mut rng = Lcg(5);
    let mut s = Vec::new();
    let phrase = signal_at(&[Seg::Syllables(1800)], 0.0, 0.25);
    for k in 0..6 {
        let (n_bg, talk) = (if k == 0 { 2000 } else { 800 } * MS as usize, k > 0);
        let mut part = if talk { phrase.clone() } else { Vec::new() };
        part.extend(std::iter::repeat_n(0.0, n_bg));
        for (i, x) in part.iter().enumerate() {
            // Slowly varying envelope (250 ms period) on white noise.
            let t = (s.len() + i) as f32 / SR as f32;
            let env = 0.03 * (1.0 + 0.2 * (2.0 * std::f32::consts::PI * 4.0 * t).sin());
            s.push(x + rng.next(env));
        }
    }
    let f = finals(&run_with(no_partials(), &s, 320, None));
    assert_eq!(f.len(), 5, "{f:?}");
}

#[test]
fn pre_roll_never_overlaps_the_previous_final() {
    let cfg = VadConfig { hangover_ms: 100, ..no_partials() };
    let s = signal(&[Seg::Bg(500), Seg::Tone(500), Seg::Bg(160), Seg::Tone(500), Seg::Bg(500)]);
    let f = finals(&run_with(cfg, &s, 320, None));
    assert_eq!(f.len(), 2, "{f:?}");
    assert!(f[0].1 <= f[1].0, "{f:?}");
}

#[test]
fn other_sample_rates_scale() {
    let s16 = signal(&[Seg::Bg(500), Seg::Tone(1000), Seg::Bg(1000)]);
    // Naive 2x upsampling to 32 kHz.
    let s32: Vec<f32> = s16.iter().flat_map(|&x| [x, x]).collect();
    let mut vad = Vad::new(32_000, no_partials()).unwrap();
    let mut cuts = vad.push(&s32, None);
    cuts.extend(vad.flush());
    let f = finals(&cuts);
    assert_eq!(f.len(), 1);
    assert!(near(f[0].0 / 2, 500 * MS) && near(f[0].1 / 2, 1500 * MS), "{f:?}");
}

#[test]
fn config_parsing() {
    assert_eq!(VadConfig::from_config(&Config::default()).unwrap(), VadConfig::default());
    let c = VadConfig::from_config(&Config::from_pairs(&[
        ("partial_ms", "500"),
        ("hangover_ms", "300"),
        ("min_speech_ms", "100"),
        ("max_segment_ms", "10000"),
        ("threshold_ratio", "4.5"),
        ("pad_ms", "100"),
    ]))
    .unwrap();
    assert_eq!(
        c,
        VadConfig {
            partial_ms: 500,
            hangover_ms: 300,
            min_speech_ms: 100,
            max_segment_ms: 10_000,
            threshold_ratio: 4.5,
            pad_ms: 100
        }
    );
    for bad in [
        ("partial_ms", "-1"),
        ("hangover_ms", "abc"),
        ("threshold_ratio", "0.5"),
        ("max_segment_ms", "100"),
        ("pad_ms", "6000"),
        ("max_segment_ms", "600"),
    ] {
        let r = VadConfig::from_config(&Config::from_pairs(&[bad]));
        assert!(matches!(r, Err(PluginError::InvalidConfig(_))), "{bad:?}: {r:?}");
    }
    assert!(Vad::new(0, VadConfig::default()).is_err());
    assert!(VadSegmenter::open(16_000, &Config::default()).is_ok());
}

#[test]
fn adapts_to_a_noisy_background() {
    // -35 dBFS-ish background noise, bursts ~15 dB above it.
    let s = signal_at(&[Seg::Bg(2000), Seg::Tone(1500), Seg::Bg(1500), Seg::Noise(1000), Seg::Bg(3000)], 0.03, 0.15);
    let f = finals(&run_with(no_partials(), &s, 320, None));
    assert_eq!(f.len(), 2, "{f:?}");
    assert!(near(f[0].0, 2000 * MS) && near(f[0].1, 3500 * MS), "{f:?}");
    assert!(near(f[1].0, 5000 * MS) && near(f[1].1, 6000 * MS), "{f:?}");
}

#[test]
fn idle_audio_is_released_and_never_cut_later() {
    let s = signal(&[Seg::Bg(3500), Seg::Tone(1200), Seg::Bg(3000)]);
    let cuts = run_raw(VadConfig::default(), &s, 320, None);
    let releases: Vec<u64> = cuts.iter().filter(|c| is_release(c)).map(|c| c.start).collect();
    // Once a second while idle: three before the speech, two or more after it.
    assert!(releases.len() >= 5, "{cuts:?}");
    assert!(releases.windows(2).all(|w| w[0] <= w[1]), "{releases:?}");
    // A promise kept: no segment after a release starts before it.
    for (i, c) in cuts.iter().enumerate() {
        if is_release(c) {
            assert!(cuts[i..].iter().filter(|l| !is_release(l)).all(|l| l.start >= c.start), "{cuts:?}");
        }
    }
    assert_eq!(finals(&cuts).len(), 1);
}

/// `features` against the definition, computed plainly in f64: every length from empty to a
/// few blocks (whole blocks, ragged tails read in place, slices shorter than a block), with a
/// DC offset so that the mean matters.
#[test]
fn features_match_the_definition() {
    let mut rng = Lcg(7);
    for len in (0..=70).chain([159, 160, 161, 441]) {
        let buf: Vec<f32> = (0..len).map(|_| 0.05 + rng.next(0.2)).collect();
        let (power, crossings) = features(&buf);
        let n = len.max(1) as f64;
        let mean = buf.iter().map(|&x| x as f64).sum::<f64>() / n;
        let want_power = buf.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        let mean32 = super::mean(&buf);
        assert!((mean32 as f64 - mean).abs() <= 1e-6, "len {len}: mean {mean32} vs {mean}");
        // Crossings about the f32 mean the function uses (a sample within an ulp of the mean
        // could go either way about the f64 one).
        let want_crossings = buf.windows(2).filter(|w| (w[0] >= mean32) != (w[1] >= mean32)).count() as u32;
        assert!((power as f64 - want_power).abs() <= 1e-5 * want_power + 1e-12, "len {len}: {power} vs {want_power}");
        assert_eq!(crossings, want_crossings, "len {len}");
        if len > 16 {
            assert!(crossings > 0, "len {len}: noise has crossings");
        }
    }
}
