//! Publish and dispatch show up as `tracing` spans with the event's type and id.
#![allow(clippy::unwrap_used)]

use plugbus::{Bus, Event, EventType};
use std::io::Write;
use std::sync::{Arc, Mutex};
use tracing_subscriber::fmt::format::FmtSpan;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn publish_emit_and_dispatch_spans_carry_type_and_id() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(FmtSpan::NEW)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);

    let bus = Bus::builder().build().unwrap();
    bus.subscribe(EventType::USER_LOGIN)
        .name("spanned")
        .handle(|_: &Event| {})
        .unwrap();
    let published = Event::builder(EventType::USER_LOGIN).build().unwrap();
    bus.publish(published.clone()).await.unwrap();
    let emitted = Event::builder(EventType::USER_LOGIN).build().unwrap();
    bus.emit(emitted.clone()).await.unwrap();
    bus.shutdown(std::time::Duration::from_secs(5)).await;

    let out = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let has = |span: &str, id: &str| {
        out.lines()
            .any(|l| l.contains(span) && l.contains(id) && l.contains("user.login"))
    };
    assert!(has("plugbus.publish", &published.id().to_string()), "{out}");
    assert!(has("plugbus.emit", &emitted.id().to_string()), "{out}");
    assert!(has("plugbus.dispatch", &emitted.id().to_string()), "{out}");
    assert!(out.contains("subscriber=\"spanned\""), "{out}");
}
