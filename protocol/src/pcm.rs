//! Raw PCM frames as clients send them over the WebSocket.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PcmFormat {
    /// Signed 16-bit little-endian, the default and the cheapest on the wire.
    #[default]
    PcmS16le,
    /// 32-bit float little-endian (what Web Audio produces natively).
    F32le,
}

impl PcmFormat {
    pub fn sample_width(self) -> usize {
        match self {
            PcmFormat::PcmS16le => 2,
            PcmFormat::F32le => 4,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("frame of {len} bytes is not a whole number of {width}-byte samples")]
pub struct FrameError {
    pub len: usize,
    pub width: usize,
}

/// Decodes one mono frame into f32 samples, appending to `out`. Non-finite floats become 0 so that
/// a broken client cannot poison the model input.
pub fn decode_frame(bytes: &[u8], format: PcmFormat, out: &mut Vec<f32>) -> Result<(), FrameError> {
    let width = format.sample_width();
    if !bytes.len().is_multiple_of(width) {
        return Err(FrameError { len: bytes.len(), width });
    }
    out.reserve(bytes.len() / width);
    match format {
        PcmFormat::PcmS16le => {
            out.extend(bytes.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0));
        }
        PcmFormat::F32le => out.extend(bytes.chunks_exact(4).map(|b| {
            let v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            if v.is_finite() { v.clamp(-1.0, 1.0) } else { 0.0 }
        })),
    }
    Ok(())
}

/// Converts f32 samples in [-1, 1] to little-endian s16 bytes.
pub fn to_s16le(samples: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(samples.len() * 2);
    for s in samples {
        out.extend_from_slice(&quantize(*s).to_le_bytes());
    }
    out
}

/// One sample in [-1, 1] as s16, rounded half away from zero. Branch-free (no `roundf` call),
/// so that loops over frames vectorise: the gateway runs this on every sample it receives.
#[inline]
pub fn quantize(s: f32) -> i16 {
    let v = s.clamp(-1.0, 1.0) * 32767.0;
    (v + 0.5f32.copysign(v)) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s16_round_trip_and_misalignment() {
        let mut out = Vec::new();
        decode_frame(&[0x00, 0x40, 0x00, 0xc0], PcmFormat::PcmS16le, &mut out).unwrap();
        assert_eq!(out, vec![0.5, -0.5]);
        assert_eq!(decode_frame(&[1, 2, 3], PcmFormat::PcmS16le, &mut out), Err(FrameError { len: 3, width: 2 }));
    }

    #[test]
    fn f32_rejects_non_finite() {
        let mut bytes = f32::NAN.to_le_bytes().to_vec();
        bytes.extend_from_slice(&0.25f32.to_le_bytes());
        let mut out = Vec::new();
        decode_frame(&bytes, PcmFormat::F32le, &mut out).unwrap();
        assert_eq!(out, vec![0.0, 0.25]);
    }
}
