//! The chat form decoder and JSON writer: no panic; whatever is accepted comes back out of the
//! JSON reply as the same text, and the reply is valid JSON without `<` or `>`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smolhttpd::chat::{Chat, ChatReply};
use smolhttpd::json::Sink;

struct Collect(Vec<u8>);

impl Sink for Collect {
    fn put(&mut self, b: &[u8]) -> Result<(), smolhttpd::json::Full> {
        self.0.extend_from_slice(b);
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let mut chat: Chat = Chat::new();
    for form in data.split(|&b| b == b'\n') {
        let _ = chat.post(form);
    }
    let reply = ChatReply::new(&chat, 0);
    let mut out = Collect(Vec::new());
    reply.write(&chat, &mut out).unwrap();
    assert_eq!(out.0.len(), reply.len(&chat));
    assert!(!out.0.contains(&b'<') && !out.0.contains(&b'>'));
    let v: serde_json::Value = serde_json::from_slice(&out.0).expect("valid JSON");
    let messages = v["messages"].as_array().unwrap();
    for (m, kept) in messages.iter().zip(chat.range(0, u64::MAX)) {
        assert_eq!(m["text"].as_str().unwrap(), kept.text.as_str());
        assert_eq!(m["name"].as_str().unwrap(), kept.name.as_str());
    }
});
