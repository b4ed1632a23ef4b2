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
}
