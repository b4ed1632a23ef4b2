//! The FunASR, kikipounamu and OpenAI Realtime adapters as state machines: any sequence of client frames, mixed
//! with server events for the sessions they open, never panics.
#![no_main]

use kiki_protocol::funasr::FunAsr;
use kiki_protocol::kikipounamu::Kikipounamu;
use kiki_protocol::native::{ErrorCode, Segment, ServerMessage, Word};
use kiki_protocol::realtime::Realtime;
use kiki_protocol::{Input, Wire};
use libfuzzer_sys::fuzz_target;

fn events(seed: u8, text: &str) -> ServerMessage {
    let seg = Segment {
        seq: u64::from(seed),
        segment: u64::from(seed % 4),
        text: text.to_string(),
        start_ms: 0,
        end_ms: u64::from(seed) * 10,
        words: vec![Word { text: text.to_string(), start_ms: 0, end_ms: 5, probability: 0.5 }],
        origin: None,
        stable: Some(u32::from(seed) % 8),
    };
    match seed % 5 {
        0 => ServerMessage::Partial(seg),
        1 => ServerMessage::Final(seg),
        2 => ServerMessage::error(ErrorCode::Busy, text),
        3 => ServerMessage::End { segments: u64::from(seed) },
        _ => ServerMessage::Ready {
            session: text.into(),
            epoch: "e".into(),
            sample_rate: 16000,
            resume_token: "t".into(),
            recovered: None,
            position_ms: None,
        },
    }
}

fn drive(wire: &mut dyn Wire, data: &[u8]) {
    let mut keys = vec![String::new()];
    // Frames separated by 0xff; the byte after each picks the frame kind and a server event.
    for chunk in data.split(|&b| b == 0xff) {
        let Some((&op, body)) = chunk.split_first() else { continue };
        let inputs = if op & 1 == 0 { wire.text(&String::from_utf8_lossy(body)) } else { wire.binary(body) };
        for input in inputs {
            if let Input::Start { key, .. } = input {
                keys.push(key);
            }
        }
        let key = &keys[op as usize % keys.len()];
        let _ = wire.render(key, &events(op, &String::from_utf8_lossy(body)));
    }
}

fuzz_target!(|data: &[u8]| {
    drive(&mut FunAsr::new(), data);
    drive(&mut Kikipounamu::new(), data);
    let mut realtime = Realtime::new("f".into(), vec!["whisper-1".into()]);
    let _ = realtime.greet();
    drive(&mut realtime, data);
});
