//! The native protocol's message parser: any text frame is a message or a `bad_message`
//! reject, never a panic; a parsed `start` survives a round trip.
#![no_main]

use kiki_protocol::native::ClientMessage;
use kiki_protocol::{Input, Wire, wire::Native};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut wire = Native;
    for input in wire.text(&text) {
        if let Input::Start { start, .. } = input {
            let again: ClientMessage =
                serde_json::from_str(&serde_json::to_string(&ClientMessage::Start(start.clone())).unwrap()).unwrap();
            assert_eq!(again, ClientMessage::Start(start));
        }
    }
    let _ = wire.binary(data);
});
