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
            out.extend(bytes.chunks_exact(2).map(|b| s16_to_f32(i16::from_le_bytes([b[0], b[1]]))));
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

/// One s16 sample as f32 in [-1, 1) (the inverse of [`quantize`] within one step).
#[inline]
pub fn s16_to_f32(v: i16) -> f32 {
    f32::from(v) / 32768.0
}

/// One sample in [-1, 1] as s16, rounded half away from zero. Branch-free (no `roundf` call),
/// so that loops over frames vectorise: the gateway runs this on every sample it receives.
#[inline]
pub fn quantize(s: f32) -> i16 {
    let v = s.clamp(-1.0, 1.0) * 32767.0;
    (v + 0.5f32.copysign(v)) as i16
}

/// G.711 μ-law byte to linear s16 (ITU-T G.711; what telephony and OpenAI's `audio/pcmu` carry).
/// Written out because it is a dozen lines of a fixed standard; no crate needed for it.
pub fn ulaw_to_s16(byte: u8) -> i16 {
    let u = !byte;
    let exponent = (u >> 4) & 0x07;
    let mantissa = (u & 0x0f) as i32;
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    (if u & 0x80 != 0 { -magnitude } else { magnitude }) as i16
}

/// G.711 A-law byte to linear s16 (`audio/pcma`).
pub fn alaw_to_s16(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let exponent = (a >> 4) & 0x07;
    let mantissa = (a & 0x0f) as i32;
    let magnitude = match exponent {
        0 => (mantissa << 4) + 8,
        e => ((mantissa << 4) + 0x108) << (e - 1),
    };
    (if a & 0x80 != 0 { magnitude } else { -magnitude }) as i16
}

/// G.711 bytes (μ-law or A-law) as little-endian s16 PCM.
pub fn g711_to_s16le(bytes: &[u8], alaw: bool) -> Vec<u8> {
    let decode = if alaw { alaw_to_s16 } else { ulaw_to_s16 };
    bytes.iter().flat_map(|&b| decode(b).to_le_bytes()).collect()
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

    #[test]
    fn g711_matches_the_standard_tables() {
        // Reference points of ITU-T G.711 (and every codec library's tables).
        assert_eq!((ulaw_to_s16(0xff), ulaw_to_s16(0x7f)), (0, 0));
        assert_eq!((ulaw_to_s16(0x00), ulaw_to_s16(0x80)), (-32124, 32124));
        assert_eq!((ulaw_to_s16(0xfe), ulaw_to_s16(0x7e)), (8, -8));
        assert_eq!((alaw_to_s16(0xd5), alaw_to_s16(0x55)), (8, -8));
        assert_eq!((alaw_to_s16(0xaa), alaw_to_s16(0x2a)), (32256, -32256));
        assert_eq!(g711_to_s16le(&[0x00], false), (-32124i16).to_le_bytes().to_vec());
    }
}
