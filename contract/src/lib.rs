//! The plugbus event contract.
//!
//! This crate is the one definition of what an event *means* that the bus (`plugbus`), the plugin
//! API (`plugbus-plugin-api`) and every plugin agree on. It holds data and rules only — no runtime,
//! no I/O, no tokio — so that a plugin built against it carries nothing it does not need.
//!
//! - [`Category`]: the four kinds of event (lifecycle, system, business, custom).
//! - [`types`]: the names of the built-in event types and the standard custom ones, with
//!   [`BUILTIN_TYPES`] listing each with its category.
//! - [`validate_type_name`]: the grammar of a type name (`segment(.segment)*`).
//! - [`Pattern`]: subscription patterns such as `user.*` or `*`.
//! - [`keys`]: well-known metadata keys (correlation, causation, request ids).
//! - [`TypedEvent`] and the standard payload structs in [`payload`].
//! - [`audit`]: the audit log's line limit, shared by the audit logger and its verifier.
//!
//! Changing anything here is a change of the plugin ABI's meaning: add, never rename.
#![warn(missing_docs, unreachable_pub)]

pub mod audit;
mod category;
mod name;
mod pattern;
pub mod payload;
pub mod reserved;
pub mod types;

pub use category::{Category, ParseCategoryError};
pub use name::{validate_type_name, TypeNameError, MAX_TYPE_NAME_LEN};
pub use pattern::{Pattern, PatternError};
pub use types::BUILTIN_TYPES;

/// Well-known metadata keys.
///
/// Events published while a handler runs get [`CAUSATION_ID`](keys::CAUSATION_ID) set to the
/// handled event's id and inherit its [`CORRELATION_ID`](keys::CORRELATION_ID) (or use its id when
/// it has none), in process and from plugins alike.
pub mod keys {
    /// Groups every event that stems from one original event or request.
    pub const CORRELATION_ID: &str = "correlation_id";
    /// The id of the event whose handling produced this one.
    pub const CAUSATION_ID: &str = "causation_id";
    /// An id the application assigns to the request that produced the event.
    pub const REQUEST_ID: &str = "request_id";
}

/// Ties a payload struct to its event type.
///
/// Implement it for a payload to publish and subscribe to it by type: the bus hands typed
/// subscribers a `&T` without any serialization when the event was published in process.
///
/// ```
/// use plugbus_contract::{Category, TypedEvent};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Clone, Serialize, Deserialize)]
/// struct InvoicePaid { invoice: String, cents: u64 }
///
/// impl TypedEvent for InvoicePaid {
///     const EVENT_TYPE: &'static str = "billing.invoice_paid";
///     const CATEGORY: Category = Category::Business;
/// }
/// assert_eq!(InvoicePaid::SCHEMA_VERSION, 1);
/// ```
pub trait TypedEvent:
    serde::Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static
{
    /// The dotted type name events carrying this payload have.
    const EVENT_TYPE: &'static str;
    /// The category of [`Self::EVENT_TYPE`].
    const CATEGORY: Category;
    /// The version of this payload's schema; bump it when the shape changes incompatibly.
    const SCHEMA_VERSION: u32 = 1;
}
