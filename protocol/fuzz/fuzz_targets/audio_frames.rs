//! The audio frame decoders: PCM frames in both formats and WAV files (the kikipounamu chunks
//! and file uploads). Whole samples decode to finite values in [-1, 1]; anything else is a
//! clear error.
#![no_main]

use kiki_protocol::pcm::{PcmFormat, decode_frame};
use kiki_protocol::wav::parse_wav;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for format in [PcmFormat::PcmS16le, PcmFormat::F32le] {
        let mut out = Vec::new();
        match decode_frame(data, format, &mut out) {
            Ok(()) => {
                assert_eq!(out.len(), data.len() / format.sample_width());
                assert!(out.iter().all(|s| s.is_finite() && (-1.0..=1.0).contains(s)));
            }
            Err(e) => assert!(!data.len().is_multiple_of(e.width)),
        }
    }
    if let Ok(pcm) = parse_wav(data) {
        assert!(pcm.rate > 0 && !pcm.samples.is_empty());
        assert!(pcm.samples.iter().all(|s| s.is_finite() && (-1.0..=1.0).contains(s)));
    }
});
