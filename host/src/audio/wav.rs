//! WAV decoding (any common rate, mono or stereo, int or float) to 16 kHz mono f32.

use std::path::Path;

use kiki_protocol::wav::{WavError, parse_wav};

use super::{AudioError, SAMPLE_RATE, resample};

/// Reads a WAV file and returns 16 kHz mono samples.
pub fn read_wav(path: &Path) -> Result<Vec<f32>, AudioError> {
    let bytes = std::fs::read(path).map_err(|source| AudioError::Io { path: path.display().to_string(), source })?;
    decode_wav(&bytes)
}

/// Decodes WAV bytes to 16 kHz mono samples: channels are averaged, then resampled.
pub fn decode_wav(bytes: &[u8]) -> Result<Vec<f32>, AudioError> {
    let pcm = parse_wav(bytes).map_err(|e| match e {
        WavError::Empty => AudioError::Empty,
        WavError::NotWav(m) => AudioError::NotWav(m),
        WavError::Unsupported(m) => AudioError::Unsupported(m),
    })?;
    resample(&pcm.samples, pcm.rate, SAMPLE_RATE)
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn wav(rate: u32, channels: u16, frames: usize) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut cur = Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut cur, spec).unwrap();
        for i in 0..frames * channels as usize {
            w.write_sample(((i as f32 * 0.01).sin() * 10000.0) as i16).unwrap();
        }
        w.finalize().unwrap();
        cur.into_inner()
    }

    #[test]
    fn stereo_44k1_becomes_16k_mono() {
        let out = decode_wav(&wav(44_100, 2, 44_100)).unwrap();
        assert!((out.len() as i64 - 16_000).abs() <= 2, "{}", out.len());
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        assert!(matches!(decode_wav(b""), Err(AudioError::Empty)));
        assert!(matches!(decode_wav(b"hello, this is not audio"), Err(AudioError::NotWav(_))));
        assert!(matches!(decode_wav(&wav(16_000, 1, 0)), Err(AudioError::Empty)));
    }
}
