//! Event payloads: typed in process, JSON on demand.
//!
//! A payload published from Rust stays the Rust value: in-process handlers borrow it, nothing is
//! serialized. The first consumer that needs bytes (a plugin, the audit log, a bridge) triggers
//! serialization, and the bytes are cached on the event, so the work happens at most once per
//! event however many consumers there are. A payload read from JSON keeps its bytes and is parsed
//! only when someone asks for a typed view.

use crate::error::PayloadError;
use plugbus_contract::TypedEvent;
use std::any::Any;
use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, OnceLock};

/// Buffers kept for the next serialization on this thread only up to this size, so one huge
/// payload does not pin its memory to the thread.
const SCRATCH_KEPT: usize = 64 * 1024;

thread_local! {
    /// The serialization buffer of this thread, reused: `serde_json::to_vec` starts each
    /// payload in a new 128-byte vector and grows it by doubling (a 257-byte login: three
    /// allocations and two copies), then `Arc::from` copies it once more. Serializing here and
    /// copying once into an exactly sized `Arc` took 15-20% less time for that login.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `value` as JSON in a shared buffer of exactly its size.
fn to_shared_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Arc<[u8]>, serde_json::Error> {
    SCRATCH.with(|scratch| {
        // A `Serialize` impl that itself serializes a payload finds the buffer taken.
        let Ok(mut buf) = scratch.try_borrow_mut() else {
            return serde_json::to_vec(value).map(Arc::from);
        };
        buf.clear();
        let written = serde_json::to_writer(&mut *buf, value).map(|()| Arc::from(&buf[..]));
        if buf.capacity() > SCRATCH_KEPT {
            *buf = Vec::new();
        }
        written
    })
}

/// What a typed payload must offer once its concrete type is erased.
trait ErasedPayload: Any + Send + Sync {
    fn as_any(&self) -> &dyn Any;
    fn to_json(&self) -> Result<Arc<[u8]>, serde_json::Error>;
    fn clone_box(&self) -> Box<dyn ErasedPayload>;
    fn rust_type(&self) -> &'static str;
}

impl<T: TypedEvent> ErasedPayload for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn to_json(&self) -> Result<Arc<[u8]>, serde_json::Error> {
        to_shared_json(self)
    }
    fn clone_box(&self) -> Box<dyn ErasedPayload> {
        Box::new(self.clone())
    }
    fn rust_type(&self) -> &'static str {
        std::any::type_name::<T>()
    }
}

enum Repr {
    Empty,
    Typed(Box<dyn ErasedPayload>),
    Json,
}

/// An event's payload: typed in process, JSON on demand.
///
/// A payload published from Rust stays the Rust value, borrowed by in-process handlers; the first
/// consumer that needs bytes triggers serialization, cached on the event, so it happens at most
/// once per event. A payload read from JSON keeps its bytes and is parsed only on request.
pub struct Payload {
    repr: Repr,
    json: OnceLock<Result<Arc<[u8]>, Arc<str>>>,
}

const NULL_JSON: &[u8] = b"null";

impl Payload {
    /// No payload (`null` in JSON).
    pub fn empty() -> Payload {
        Payload {
            repr: Repr::Empty,
            json: OnceLock::new(),
        }
    }

    /// A typed payload.
    pub fn typed<T: TypedEvent>(value: T) -> Payload {
        Payload {
            repr: Repr::Typed(Box::new(value)),
            json: OnceLock::new(),
        }
    }

    /// A payload given as JSON text. The bytes are checked to be one JSON value.
    ///
    /// # Errors
    /// [`PayloadError::InvalidJson`] if the bytes are not a single JSON value.
    pub fn from_json(bytes: impl Into<Arc<[u8]>>) -> Result<Payload, PayloadError> {
        let bytes: Arc<[u8]> = bytes.into();
        serde_json::from_slice::<serde::de::IgnoredAny>(&bytes)
            .map_err(|e| PayloadError::InvalidJson(e.to_string()))?;
        Ok(Payload::from_json_unchecked(bytes))
    }

    /// JSON bytes already known to be valid (parsed by the caller).
    pub(crate) fn from_json_unchecked(bytes: Arc<[u8]>) -> Payload {
        let json = OnceLock::new();
        let _ = json.set(Ok(bytes));
        Payload {
            repr: Repr::Json,
            json,
        }
    }

    /// A payload from any serializable value (serialized now).
    ///
    /// # Errors
    /// The value cannot be serialized to JSON.
    pub fn from_serialize<T: serde::Serialize>(value: &T) -> Result<Payload, PayloadError> {
        let bytes = to_shared_json(value).map_err(|e| PayloadError::Serialize(e.to_string()))?;
        Ok(Payload::from_json_unchecked(bytes))
    }

    /// True when there is no payload.
    pub fn is_empty(&self) -> bool {
        matches!(self.repr, Repr::Empty)
    }

    /// True when the payload is held as a Rust value.
    pub fn is_typed(&self) -> bool {
        matches!(self.repr, Repr::Typed(_))
    }

    /// True once JSON bytes exist (given, or serialized by an earlier call).
    pub fn is_serialized(&self) -> bool {
        matches!(self.json.get(), Some(Ok(_)))
    }

    /// Borrows the payload as `T` if it is held as a `T` (no parsing).
    pub fn downcast_ref<T: 'static>(&self) -> Option<&T> {
        match &self.repr {
            Repr::Typed(v) => v.as_any().downcast_ref(),
            _ => None,
        }
    }

    /// The payload as `T`: borrowed when held as `T`, parsed from JSON otherwise.
    ///
    /// # Errors
    /// The JSON does not fit `T`, or the payload could not be serialized.
    pub fn get<T: TypedEvent>(&self) -> Result<Cow<'_, T>, PayloadError> {
        if let Some(v) = self.downcast_ref::<T>() {
            return Ok(Cow::Borrowed(v));
        }
        let bytes = self.json_shared()?;
        serde_json::from_slice::<T>(&bytes)
            .map(Cow::Owned)
            .map_err(|e| PayloadError::Shape {
                expected: std::any::type_name::<T>(),
                reason: e.to_string(),
            })
    }

    /// The JSON bytes, serializing once if needed.
    ///
    /// # Errors
    /// The typed value failed to serialize (the failure is cached and repeated).
    pub fn json(&self) -> Result<&[u8], PayloadError> {
        match &self.repr {
            Repr::Empty => Ok(NULL_JSON),
            _ => match self.json_cell() {
                Ok(b) => Ok(b),
                Err(e) => Err(PayloadError::Serialize(e.to_string())),
            },
        }
    }

    /// The JSON bytes as a shared buffer (cheap to hand to several consumers).
    ///
    /// # Errors
    /// As [`Payload::json`].
    pub fn json_shared(&self) -> Result<Arc<[u8]>, PayloadError> {
        match &self.repr {
            Repr::Empty => Ok(Arc::from(NULL_JSON)),
            _ => match self.json_cell() {
                Ok(b) => Ok(Arc::clone(b)),
                Err(e) => Err(PayloadError::Serialize(e.to_string())),
            },
        }
    }

    fn json_cell(&self) -> Result<&Arc<[u8]>, &Arc<str>> {
        self.json
            .get_or_init(|| match &self.repr {
                Repr::Typed(v) => v.to_json().map_err(|e| Arc::from(e.to_string())),
                Repr::Empty => Ok(Arc::from(NULL_JSON)),
                Repr::Json => Err(Arc::from("payload bytes missing")),
            })
            .as_ref()
    }
}

impl Clone for Payload {
    fn clone(&self) -> Self {
        let repr = match &self.repr {
            Repr::Empty => Repr::Empty,
            Repr::Typed(v) => Repr::Typed(v.clone_box()),
            Repr::Json => Repr::Json,
        };
        let json = OnceLock::new();
        if let Some(j) = self.json.get() {
            let _ = json.set(j.clone());
        }
        Payload { repr, json }
    }
}

impl Default for Payload {
    fn default() -> Self {
        Payload::empty()
    }
}

/// Never prints the payload itself: payloads carry passwords and tokens.
impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Empty => f.write_str("Payload(empty)"),
            Repr::Typed(v) => write!(f, "Payload(typed {})", v.rust_type()),
            Repr::Json => write!(
                f,
                "Payload(json, {} bytes)",
                self.json
                    .get()
                    .and_then(|r| r.as_ref().ok())
                    .map_or(0, |b| b.len())
            ),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use plugbus_contract::payload::{UserLogin, UserLogout};

    fn login() -> UserLogin {
        UserLogin {
            user_id: "alice".into(),
            ip: "10.0.0.1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn typed_payload_is_borrowed_and_serialized_once() {
        let p = Payload::typed(login());
        assert!(!p.is_serialized());
        assert!(matches!(p.get::<UserLogin>().unwrap(), Cow::Borrowed(_)));
        let a = p.json_shared().unwrap();
        let b = p.json_shared().unwrap();
        assert!(Arc::ptr_eq(&a, &b), "second call must reuse the bytes");
        assert_eq!(&*a, br#"{"user_id":"alice","ip":"10.0.0.1"}"#);
    }

    #[test]
    fn json_payload_parses_on_demand_and_reports_shape_errors() {
        let p = Payload::from_json(&br#"{"user_id":"bob"}"#[..]).unwrap();
        assert_eq!(p.get::<UserLogin>().unwrap().user_id, "bob");
        let bad = Payload::from_json(&br#"{"user":"bob"}"#[..]).unwrap();
        let err = bad.get::<UserLogout>().unwrap_err();
        assert!(err.to_string().contains("user_id"), "{err}");
        assert!(Payload::from_json(&b"{nope"[..]).is_err());
    }

    /// Serializes another payload from inside its own `Serialize`, as a wrapper type might.
    struct Nested(Payload);

    impl serde::Serialize for Nested {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let inner = self.0.json_shared().map_err(serde::ser::Error::custom)?;
            let text = std::str::from_utf8(&inner).map_err(serde::ser::Error::custom)?;
            s.serialize_str(text)
        }
    }

    #[test]
    fn the_reused_buffer_writes_what_serde_json_writes_big_small_and_nested() {
        let mut big = login();
        big.user_agent = "é\"\n".repeat(40_000); // escapes, and more than the buffer keeps
        for value in [login(), big.clone(), login()] {
            let shared = to_shared_json(&value).unwrap();
            assert_eq!(&*shared, serde_json::to_vec(&value).unwrap().as_slice());
        }
        let nested = Nested(Payload::typed(big.clone()));
        let from_nested = Payload::from_serialize(&nested).unwrap();
        let expected = serde_json::to_vec(&serde_json::to_string(&big).unwrap()).unwrap();
        assert_eq!(&*from_nested.json_shared().unwrap(), expected.as_slice());
        assert!(SCRATCH.with(|b| b.borrow().capacity()) <= SCRATCH_KEPT);
    }

    #[test]
    fn debug_hides_contents() {
        let p = Payload::from_json(&br#"{"password":"hunter2"}"#[..]).unwrap();
        assert!(!format!("{p:?}").contains("hunter2"));
        let t = Payload::typed(login());
        assert!(!format!("{t:?}").contains("alice"));
    }
}
