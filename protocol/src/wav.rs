//! WAV parsing from bytes (any common rate, mono or stereo, int or float) to mono f32 at the
//! file's own rate; resampling is the caller's. The header is read first ([`wav_info`]), so a
//! caller can refuse a file by its duration before decoding it, and samples are handed out in
//! chunks ([`decode_wav_chunks`]), so decoding needs no buffer the size of the file.

use std::io::Cursor;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WavError {
    #[error("not a WAV file: {0}")]
    NotWav(String),
    #[error("empty audio")]
    Empty,
    #[error("unsupported audio: {0}")]
    Unsupported(String),
}

/// Mono samples and their rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Pcm {
    pub samples: Vec<f32>,
    pub rate: u32,
}

/// What a WAV file holds, from its header (for a streaming or truncated file, from the bytes
/// present).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WavInfo {
    pub rate: u32,
    pub channels: u16,
    /// Whole frames in the data.
    pub frames: u64,
}

impl WavInfo {
    /// Seconds of audio.
    pub fn seconds(&self) -> f64 {
        self.frames as f64 / f64::from(self.rate.max(1))
    }
}

/// Decodes WAV bytes: channels are averaged; non-finite samples become 0.
pub fn parse_wav(bytes: &[u8]) -> Result<Pcm, WavError> {
    let info = wav_info(bytes)?;
    // The header's frame count is bounded by the bytes present (see `open`).
    let mut samples = Vec::with_capacity(usize::try_from(info.frames).unwrap_or(0).min(bytes.len()));
    decode_wav_chunks(bytes, 8192, |chunk| samples.extend_from_slice(chunk))?;
    Ok(Pcm { samples, rate: info.rate })
}

/// Reads the header only.
pub fn wav_info(bytes: &[u8]) -> Result<WavInfo, WavError> {
    Ok(open(bytes)?.info())
}

/// Decodes the file in order, handing `sink` mono samples at the file's rate, at most
/// `chunk_frames` at a time.
pub fn decode_wav_chunks(bytes: &[u8], chunk_frames: usize, mut sink: impl FnMut(&[f32])) -> Result<WavInfo, WavError> {
    let source = open(bytes)?;
    let info = source.info();
    let channels = usize::from(info.channels);
    let mut chunk = Vec::with_capacity(chunk_frames.max(1));
    let mut frame = Vec::with_capacity(channels);
    let mut total = 0u64;
    let mut take = |v: f32, chunk: &mut Vec<f32>, frame: &mut Vec<f32>| {
        frame.push(v);
        if frame.len() == channels {
            let v = frame.iter().sum::<f32>() / channels as f32;
            frame.clear();
            chunk.push(if v.is_finite() { v.clamp(-1.0, 1.0) } else { 0.0 });
            if chunk.len() >= chunk_frames.max(1) {
                total += chunk.len() as u64;
                sink(chunk);
                chunk.clear();
            }
        }
    };
    match source {
        Source::Hound(reader) => {
            let spec = reader.spec();
            let broken = |e: hound::Error| WavError::NotWav(e.to_string());
            match spec.sample_format {
                hound::SampleFormat::Float => {
                    for s in reader.into_samples::<f32>() {
                        take(s.map_err(broken)?, &mut chunk, &mut frame);
                    }
                }
                hound::SampleFormat::Int => {
                    let scale = 1.0 / (1u64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
                    for s in reader.into_samples::<i32>() {
                        take(s.map_err(broken)? as f32 * scale, &mut chunk, &mut frame);
                    }
                }
            }
        }
        Source::Raw { tag, bits, data, .. } => {
            let width = usize::from(bits / 8);
            for b in data.chunks_exact(width) {
                // `open` checked that the format is one `raw_sample` reads.
                take(raw_sample(tag, bits, b).unwrap_or(0.0), &mut chunk, &mut frame);
            }
        }
    }
    if !chunk.is_empty() {
        total += chunk.len() as u64;
        sink(&chunk);
    }
    if total == 0 {
        return Err(WavError::Empty);
    }
    Ok(info)
}

enum Source<'a> {
    Hound(hound::WavReader<Cursor<&'a [u8]>>),
    /// A file hound refuses: what streaming recorders write (a data size of 0 or 0xFFFFFFFF)
    /// and files cut short, read up to the last whole frame.
    Raw {
        tag: u16,
        channels: u16,
        rate: u32,
        bits: u16,
        data: &'a [u8],
    },
}

impl Source<'_> {
    fn info(&self) -> WavInfo {
        match self {
            Source::Hound(r) => {
                let spec = r.spec();
                WavInfo { rate: spec.sample_rate, channels: spec.channels, frames: u64::from(r.duration()) }
            }
            Source::Raw { channels, rate, bits, data, .. } => {
                let frame = usize::from(bits / 8) * usize::from(*channels);
                WavInfo { rate: *rate, channels: *channels, frames: (data.len() / frame.max(1)) as u64 }
            }
        }
    }
}

fn open(bytes: &[u8]) -> Result<Source<'_>, WavError> {
    if bytes.is_empty() {
        return Err(WavError::Empty);
    }
    let raw = raw_chunks(bytes);
    let claims_more = |r: &RawChunks| r.size == 0 || r.size == 0xFFFF_FFFF || r.size as usize > r.data.len();
    let source = match raw {
        Some(r) if claims_more(&r) => r.source()?,
        _ => match hound::WavReader::new(Cursor::new(bytes)) {
            Ok(reader) => Source::Hound(reader),
            Err(e) => match raw {
                Some(r) => r.source()?,
                None => return Err(WavError::NotWav(e.to_string())),
            },
        },
    };
    let info = source.info();
    if info.channels == 0 || info.rate == 0 {
        return Err(WavError::Unsupported(format!("{} channels at {} Hz", info.channels, info.rate)));
    }
    Ok(source)
}

/// The `fmt ` and `data` chunks as found by walking the RIFF chunks by hand (written by hand
/// because hound, which reads everything else, refuses streaming and truncated files whole).
#[derive(Clone, Copy)]
struct RawChunks<'a> {
    tag: u16,
    channels: u16,
    rate: u32,
    bits: u16,
    /// The data chunk's declared size.
    size: u32,
    /// The data present (at most `size` bytes).
    data: &'a [u8],
}

impl<'a> RawChunks<'a> {
    fn source(self) -> Result<Source<'a>, WavError> {
        let unsupported =
            || WavError::Unsupported(format!("format {}, {} bits, {} channels", self.tag, self.bits, self.channels));
        let width = usize::from(self.bits / 8);
        if self.channels == 0 || self.rate == 0 || width == 0 || raw_sample(self.tag, self.bits, &[0; 4]).is_none() {
            return Err(unsupported());
        }
        let RawChunks { tag, channels, rate, bits, data, .. } = self;
        Ok(Source::Raw { tag, channels, rate, bits, data })
    }
}

fn raw_chunks(bytes: &[u8]) -> Option<RawChunks<'_>> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return None;
    }
    let u16_at = |i: usize| bytes.get(i..i + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |i: usize| bytes.get(i..i + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let mut pos = 12usize;
    let mut fmt: Option<(u16, u16, u32, u16)> = None;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let size = u32_at(pos + 4)?;
        let body = pos + 8;
        if id == b"fmt " {
            let mut tag = u16_at(body)?;
            let (channels, rate, bits) = (u16_at(body + 2)?, u32_at(body + 4)?, u16_at(body + 14)?);
            if tag == 0xFFFE {
                // WAVE_FORMAT_EXTENSIBLE: the sub-format's first two bytes are the tag.
                tag = u16_at(body + 24)?;
            }
            fmt = Some((tag, channels, rate, bits));
        } else if id == b"data" {
            let (tag, channels, rate, bits) = fmt?;
            let available = bytes.len() - body;
            let n = if size == 0 || size == 0xFFFF_FFFF { available } else { (size as usize).min(available) };
            let frame = (usize::from(bits / 8) * usize::from(channels)).max(1);
            let data = &bytes[body..body + n - n % frame];
            return Some(RawChunks { tag, channels, rate, bits, size, data });
        }
        pos = body.checked_add(size as usize)?.checked_add(size as usize & 1)?;
    }
    None
}

/// One raw sample as f32; `None` for a format this reader does not know.
fn raw_sample(tag: u16, bits: u16, b: &[u8]) -> Option<f32> {
    Some(match (tag, bits) {
        (1, 8) => (f32::from(b[0]) - 128.0) / 128.0,
        (1, 16) => f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0,
        (1, 24) => (i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8) as f32 / 8_388_608.0,
        (1, 32) => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32 / 2_147_483_648.0,
        (3, 32) => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        _ => return None,
    })
}

/// Writes mono samples as a 16-bit PCM WAV file in memory (tests, clients).
pub fn write_wav(samples: &[f32], rate: u32) -> Vec<u8> {
    let spec =
        hound::WavSpec { channels: 1, sample_rate: rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut cur = Cursor::new(Vec::new());
    // Writing into memory cannot fail for a valid spec.
    if let Ok(mut w) = hound::WavWriter::new(&mut cur, spec) {
        for s in samples {
            let _ = w.write_sample((s.clamp(-1.0, 1.0) * 32767.0).round() as i16);
        }
        let _ = w.finalize();
    }
    cur.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bad_input() {
        let samples: Vec<f32> = (0..800).map(|i| (i as f32 * 0.05).sin() * 0.5).collect();
        let pcm = parse_wav(&write_wav(&samples, 8_000)).unwrap();
        assert_eq!(pcm.rate, 8_000);
        assert_eq!(pcm.samples.len(), 800);
        assert!((pcm.samples[10] - samples[10]).abs() < 1e-3);
        assert_eq!(parse_wav(b""), Err(WavError::Empty));
        assert!(matches!(parse_wav(b"hello, this is not audio"), Err(WavError::NotWav(_))));
        assert_eq!(parse_wav(&write_wav(&[], 16_000)), Err(WavError::Empty));
    }

    /// The header gives the duration before any decoding; chunks add up to the whole file and
    /// are never longer than asked.
    #[test]
    fn the_header_says_the_duration_and_chunks_add_up() {
        let samples: Vec<f32> = (0..10_000).map(|i| (i as f32 * 0.01).sin() * 0.5).collect();
        let bytes = write_wav(&samples, 8_000);
        assert_eq!(wav_info(&bytes).unwrap(), WavInfo { rate: 8_000, channels: 1, frames: 10_000 });
        assert!((wav_info(&bytes).unwrap().seconds() - 1.25).abs() < 1e-9);
        let (mut got, mut longest) = (Vec::new(), 0);
        decode_wav_chunks(&bytes, 1_000, |c| {
            longest = longest.max(c.len());
            got.extend_from_slice(c);
        })
        .unwrap();
        assert_eq!(longest, 1_000);
        assert_eq!(got, parse_wav(&bytes).unwrap().samples);
        // A header that claims more than is there: the frames present.
        let data_size_at = bytes.windows(4).position(|w| w == b"data").unwrap() + 4;
        let mut lying = bytes.clone();
        lying[data_size_at..data_size_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(wav_info(&lying).unwrap().frames, 10_000);
    }

    /// What streaming recorders write (data size 0 or 0xFFFFFFFF) and files cut short are
    /// read up to their last whole frame.
    #[test]
    fn streaming_and_truncated_files_are_read() {
        let samples: Vec<f32> = (0..1600).map(|i| (i as f32 * 0.05).sin() * 0.5).collect();
        let whole = write_wav(&samples, 16_000);
        let data_size_at = whole.windows(4).position(|w| w == b"data").unwrap() + 4;
        for size in [0u32, 0xFFFF_FFFF] {
            let mut streaming = whole.clone();
            streaming[data_size_at..data_size_at + 4].copy_from_slice(&size.to_le_bytes());
            streaming[4..8].copy_from_slice(&size.to_le_bytes());
            let pcm = parse_wav(&streaming).unwrap();
            assert_eq!((pcm.rate, pcm.samples.len()), (16_000, 1600), "size {size:#x}");
            assert!((pcm.samples[10] - samples[10]).abs() < 1e-3);
        }
        // Cut in the middle of a sample: the whole frames before it.
        let cut = &whole[..whole.len() - 801];
        assert_eq!(parse_wav(cut).unwrap().samples.len(), 1600 - 401);
        // Still not a WAV.
        assert!(matches!(parse_wav(b"RIFF\0\0\0\0WAVEjunk"), Err(WavError::NotWav(_))));
    }
}
