//! SubRip and WebVTT text from timed segments, for the CLI and the file API.

/// `HH:MM:SS<sep>mmm`.
fn stamp(ms: u64, sep: char) -> String {
    format!("{:02}:{:02}:{:02}{sep}{:03}", ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000)
}

/// Segments as (start ms, end ms, text); empty texts are skipped.
pub fn srt<'a>(segments: impl IntoIterator<Item = (u64, u64, &'a str)>) -> String {
    segments
        .into_iter()
        .filter(|s| !s.2.trim().is_empty())
        .enumerate()
        .map(|(i, (s, e, t))| format!("{}\n{} --> {}\n{}\n\n", i + 1, stamp(s, ','), stamp(e, ','), t.trim()))
        .collect()
}

pub fn vtt<'a>(segments: impl IntoIterator<Item = (u64, u64, &'a str)>) -> String {
    let cues: String = segments
        .into_iter()
        .filter(|s| !s.2.trim().is_empty())
        .map(|(s, e, t)| format!("{} --> {}\n{}\n\n", stamp(s, '.'), stamp(e, '.'), vtt_text(t.trim())))
        .collect();
    format!("WEBVTT\n\n{cues}")
}

/// Cue text as WebVTT wants it: `&`, `<` and `>` escaped (a `<` would open a tag), and no
/// `-->` or blank line inside a cue (either would end it).
fn vtt_text(t: &str) -> String {
    t.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace("\n\n", "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_cues() {
        let segs = [(0, 1500, " Hello. "), (1500, 3_723_004, "World."), (4000, 5000, " ")];
        assert_eq!(
            srt(segs),
            "1\n00:00:00,000 --> 00:00:01,500\nHello.\n\n2\n00:00:01,500 --> 01:02:03,004\nWorld.\n\n"
        );
        assert!(vtt(segs).starts_with("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nHello.\n\n"));
        let tricky = vtt([(0, 1000, "a <b> & c --> d")]);
        assert!(tricky.ends_with("\na &lt;b&gt; &amp; c --&gt; d\n\n"), "{tricky}");
    }
}
