//! Raw PCM frames as clients send them over the WebSocket.

use serde::{Deserialize, Serialize};

use super::AudioError;

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

/// Decodes one mono frame into f32 samples, appending to `out`. Non-finite floats become 0 so that
/// a broken client cannot poison the model input.
pub fn decode_frame(bytes: &[u8], format: PcmFormat, out: &mut Vec<f32>) -> Result<(), AudioError> {
    let width = format.sample_width();
    if !bytes.len().is_multiple_of(width) {
        return Err(AudioError::Misaligned { len: bytes.len(), width });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s16_round_trip_and_misalignment() {
        let mut out = Vec::new();
        decode_frame(&[0x00, 0x40, 0x00, 0xc0], PcmFormat::PcmS16le, &mut out).unwrap();
        assert_eq!(out, vec![0.5, -0.5]);
        assert!(matches!(decode_frame(&[1, 2, 3], PcmFormat::PcmS16le, &mut out), Err(AudioError::Misaligned { .. })));
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
