//! WAV decoding (any common rate, mono or stereo, int or float) to 16 kHz mono f32.

use std::path::Path;

use kiki_protocol::pcm::quantize;
use kiki_protocol::wav::{WavError, decode_wav_chunks, wav_info};

use super::resample::ClipResampler;
use super::{AudioError, SAMPLE_RATE};

/// Reads a WAV file and returns 16 kHz mono samples.
pub fn read_wav(path: &Path) -> Result<Vec<f32>, AudioError> {
    let bytes = std::fs::read(path).map_err(|source| AudioError::Io { path: path.display().to_string(), source })?;
    decode_wav(&bytes)
}

/// Decodes WAV bytes to 16 kHz mono samples: channels are averaged, then resampled.
pub fn decode_wav(bytes: &[u8]) -> Result<Vec<f32>, AudioError> {
    let mut out = Vec::new();
    decode_with(bytes, u64::MAX, |chunk| out.extend_from_slice(chunk))?;
    Ok(out)
}

/// Decodes an upload to 16 kHz mono s16, refusing a file longer than `max_s` by its header
/// before decoding anything. The file is decoded and resampled a chunk at a time into the s16
/// result, so the memory it takes is that result (32 KB per second of audio) and a chunk: a
/// 49 MB file of 8-bit samples once took 865 MB as whole-file f32 buffers at both rates.
pub fn decode_upload(bytes: &[u8], max_s: u64) -> Result<Vec<i16>, AudioError> {
    let mut out = Vec::new();
    decode_with(bytes, max_s, |chunk| out.extend(chunk.iter().map(|s| quantize(*s))))?;
    Ok(out)
}

fn decode_with(bytes: &[u8], max_s: u64, mut sink: impl FnMut(&[f32])) -> Result<(), AudioError> {
    let wav_error = |e| match e {
        WavError::Empty => AudioError::Empty,
        WavError::NotWav(m) => AudioError::NotWav(m),
        WavError::Unsupported(m) => AudioError::Unsupported(m),
    };
    let info = wav_info(bytes).map_err(wav_error)?;
    // The rate first: a header's absurd rate is the clearer reason than the duration it implies.
    let mut rs = ClipResampler::new(info.rate, SAMPLE_RATE)?;
    if info.seconds() > max_s as f64 {
        return Err(AudioError::TooLong { seconds: info.seconds(), max_s });
    }
    let mut ready = Vec::new();
    let mut failed = None;
    decode_wav_chunks(bytes, 16_384, |chunk| {
        if failed.is_none() {
            match rs.push(chunk, &mut ready) {
                Ok(()) => sink(&ready),
                Err(e) => failed = Some(e),
            }
            ready.clear();
        }
    })
    .map_err(wav_error)?;
    if let Some(e) = failed {
        return Err(e);
    }
    rs.finish(&mut ready)?;
    sink(&ready);
    Ok(())
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

    /// An upload is refused by its header's duration before it is decoded, and is decoded to
    /// the same samples as a file, as s16.
    #[test]
    fn uploads_are_bounded_by_duration_and_decoded_to_s16() {
        let bytes = wav(8_000, 1, 24_000);
        assert!(matches!(decode_upload(&bytes, 2), Err(AudioError::TooLong { max_s: 2, .. })));
        let s16 = decode_upload(&bytes, 3).unwrap();
        let f32s = decode_wav(&bytes).unwrap();
        assert_eq!(s16.len(), f32s.len());
        assert!((s16.len() as i64 - 48_000).abs() <= 2, "{}", s16.len());
        assert!(s16.iter().zip(&f32s).all(|(a, b)| *a == quantize(*b)));
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        assert!(matches!(decode_wav(b""), Err(AudioError::Empty)));
        assert!(matches!(decode_wav(b"hello, this is not audio"), Err(AudioError::NotWav(_))));
        assert!(matches!(decode_wav(&wav(16_000, 1, 0)), Err(AudioError::Empty)));
    }
}
