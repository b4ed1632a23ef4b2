//! WAV parsing from bytes (any common rate, mono or stereo, int or float) to mono f32 at the
//! file's own rate; resampling is the caller's.

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

/// Decodes WAV bytes: channels are averaged; non-finite samples become 0.
pub fn parse_wav(bytes: &[u8]) -> Result<Pcm, WavError> {
    if bytes.is_empty() {
        return Err(WavError::Empty);
    }
    // hound refuses what recorders write while they stream (a data size of 0 or 0xFFFFFFFF)
    // and files cut short; those are read up to the last whole frame.
    parse_whole(bytes).or_else(|e| parse_streaming(bytes).unwrap_or(Err(e)))
}

fn parse_whole(bytes: &[u8]) -> Result<Pcm, WavError> {
    let reader = hound::WavReader::new(Cursor::new(bytes)).map_err(|e| WavError::NotWav(e.to_string()))?;
    let spec = reader.spec();
    if spec.channels == 0 || spec.sample_rate == 0 {
        return Err(WavError::Unsupported(format!("{} channels at {} Hz", spec.channels, spec.sample_rate)));
    }
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader.into_samples::<f32>().collect::<Result<_, _>>(),
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
            reader.into_samples::<i32>().map(|s| s.map(|v| v as f32 * scale)).collect::<Result<_, _>>()
        }
    }
    .map_err(|e| WavError::NotWav(e.to_string()))?;
    let channels = spec.channels as usize;
    let samples: Vec<f32> = interleaved
        .chunks_exact(channels)
        .map(|frame| {
            let v = frame.iter().sum::<f32>() / channels as f32;
            if v.is_finite() { v.clamp(-1.0, 1.0) } else { 0.0 }
        })
        .collect();
    if samples.is_empty() {
        return Err(WavError::Empty);
    }
    Ok(Pcm { samples, rate: spec.sample_rate })
}

/// A RIFF/WAVE file whose `data` chunk claims more than is there (or 0, or 0xFFFFFFFF, as
/// streaming writers leave it): the samples present, to the last whole frame. Integer PCM of
/// 8/16/24/32 bits and 32-bit float. Written by hand because hound, which reads everything
/// else, refuses such files whole. `None` when this is not such a file.
fn parse_streaming(bytes: &[u8]) -> Option<Result<Pcm, WavError>> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return None;
    }
    let u16_at = |i: usize| bytes.get(i..i + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |i: usize| bytes.get(i..i + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let mut pos = 12usize;
    let mut fmt: Option<(u16, u16, u32, u16)> = None;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let size = u32_at(pos + 4)? as usize;
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
            let n = if size == 0 || size == 0xFFFF_FFFF || size > available { available } else { size };
            return Some(decode_frames(&bytes[body..body + n], tag, channels, rate, bits));
        }
        pos = body.checked_add(size)?.checked_add(size & 1)?;
    }
    None
}

fn decode_frames(data: &[u8], tag: u16, channels: u16, rate: u32, bits: u16) -> Result<Pcm, WavError> {
    let unsupported = || WavError::Unsupported(format!("format {tag}, {bits} bits, {channels} channels"));
    if channels == 0 || rate == 0 {
        return Err(unsupported());
    }
    let width = usize::from(bits / 8);
    let sample = |b: &[u8]| -> Option<f32> {
        Some(match (tag, bits) {
            (1, 8) => (f32::from(b[0]) - 128.0) / 128.0,
            (1, 16) => f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0,
            (1, 24) => (i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8) as f32 / 8_388_608.0,
            (1, 32) => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32 / 2_147_483_648.0,
            (3, 32) => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            _ => return None,
        })
    };
    let frame = width * usize::from(channels);
    if width == 0 || sample(&[0, 0, 0, 0]).is_none() {
        return Err(unsupported());
    }
    let samples: Vec<f32> = data
        .chunks_exact(frame)
        .map(|f| {
            let v = f.chunks_exact(width).filter_map(sample).sum::<f32>() / f32::from(channels);
            if v.is_finite() { v.clamp(-1.0, 1.0) } else { 0.0 }
        })
        .collect();
    if samples.is_empty() {
        return Err(WavError::Empty);
    }
    Ok(Pcm { samples, rate })
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
