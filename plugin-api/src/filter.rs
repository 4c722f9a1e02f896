//! Declarative subscription filters: [`AbiFilter`], evaluated by the host before delivery.
//!
//! A filter is a list of conditions that must **all** hold (an empty list matches every event).
//! Each condition names a field, an operator and a value:
//!
//! - field `source`: the event's source;
//! - field `metadata.<key>`: the metadata entry `<key>`;
//! - field `data.<name>`: the top-level field `<name>` of the JSON payload. A string field
//!   compares by its content, any other value by its compact JSON text (`42`, `true`); `null`
//!   counts as absent.
//!
//! Operators: `eq` (present and equal), `ne` (absent or different), `exists` (present; the value
//! is ignored), `prefix` (present and starts with the value).
//!
//! [`filter_matches`] is the one evaluation the host and plugin tests share; it parses the payload
//! only when a `data.` condition exists, and at most once.

use crate::view::EventView;
use abi_stable::{std_types::RString, std_types::RVec, StableAbi};
use std::borrow::Cow;

/// A comparison in a [`FilterCondition`].
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOp {
    /// The field is present and equal to the value.
    Eq = 0,
    /// The field is absent or different from the value.
    Ne = 1,
    /// The field is present (the value is ignored).
    Exists = 2,
    /// The field is present and starts with the value.
    Prefix = 3,
}

/// One condition of an [`AbiFilter`].
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct FilterCondition {
    /// `source`, `metadata.<key>` or `data.<top-level field>`.
    pub field: RString,
    /// The comparison.
    pub op: FilterOp,
    /// The value compared with (ignored by [`FilterOp::Exists`]).
    pub value: RString,
}

/// A declarative filter: every condition must hold. Built with the methods below.
///
/// ```
/// use plugbus_plugin_api::Filter;
/// let f = Filter::new()
///     .eq("data.user_id", "alice")
///     .prefix("source", "web-")
///     .exists("metadata.request_id");
/// assert_eq!(f.conditions.len(), 3);
/// assert!(f.validate().is_ok());
/// ```
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq, Default)]
pub struct AbiFilter {
    /// The conditions, all of which must hold.
    pub conditions: RVec<FilterCondition>,
}

/// The name plugin authors use for [`AbiFilter`].
pub type Filter = AbiFilter;

enum Field<'s> {
    Source,
    Metadata(&'s str),
    Data(&'s str),
}

fn parse_field(field: &str) -> Option<Field<'_>> {
    if field == "source" {
        return Some(Field::Source);
    }
    if let Some(key) = field.strip_prefix("metadata.") {
        return (!key.is_empty()).then_some(Field::Metadata(key));
    }
    if let Some(name) = field.strip_prefix("data.") {
        return (!name.is_empty()).then_some(Field::Data(name));
    }
    None
}

impl AbiFilter {
    /// An empty filter, which matches every event.
    pub fn new() -> Self {
        AbiFilter::default()
    }

    /// Adds a condition.
    pub fn condition(mut self, field: &str, op: FilterOp, value: &str) -> Self {
        self.conditions.push(FilterCondition {
            field: field.into(),
            op,
            value: value.into(),
        });
        self
    }

    /// Adds "`field` is present and equals `value`".
    pub fn eq(self, field: &str, value: &str) -> Self {
        self.condition(field, FilterOp::Eq, value)
    }

    /// Adds "`field` is absent or differs from `value`".
    pub fn ne(self, field: &str, value: &str) -> Self {
        self.condition(field, FilterOp::Ne, value)
    }

    /// Adds "`field` is present".
    pub fn exists(self, field: &str) -> Self {
        self.condition(field, FilterOp::Exists, "")
    }

    /// Adds "`field` is present and starts with `prefix`".
    pub fn prefix(self, field: &str, prefix: &str) -> Self {
        self.condition(field, FilterOp::Prefix, prefix)
    }

    /// True if the filter has no condition (matches everything).
    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }

    /// Checks that every condition names a field this version understands.
    ///
    /// # Errors
    /// A message quoting the first bad field. A host should refuse such a subscription; when it
    /// does not, [`filter_matches`] treats an unknown field as absent.
    pub fn validate(&self) -> Result<(), String> {
        for c in self.conditions.iter() {
            if parse_field(c.field.as_str()).is_none() {
                return Err(format!(
                    "invalid filter field '{}' (expected 'source', 'metadata.<key>' or 'data.<field>')",
                    c.field
                ));
            }
        }
        Ok(())
    }

    fn needs_payload(&self) -> bool {
        self.conditions
            .iter()
            .any(|c| matches!(parse_field(c.field.as_str()), Some(Field::Data(_))))
    }
}

/// Evaluates `filter` against `event`: true if every condition holds.
///
/// The payload is parsed (once) only if some condition names a `data.` field; a payload that is
/// not a JSON object has no fields.
pub fn filter_matches(filter: &AbiFilter, event: &EventView<'_>) -> bool {
    if filter.conditions.is_empty() {
        return true;
    }
    let payload: Option<serde_json::Map<String, serde_json::Value>> = if filter.needs_payload() {
        serde_json::from_slice::<serde_json::Value>(event.payload_json.as_slice())
            .ok()
            .and_then(|v| match v {
                serde_json::Value::Object(m) => Some(m),
                _ => None,
            })
    } else {
        None
    };
    filter.conditions.iter().all(|c| {
        let actual: Option<Cow<'_, str>> = match parse_field(c.field.as_str()) {
            Some(Field::Source) => Some(Cow::Borrowed(event.source.as_str())),
            Some(Field::Metadata(key)) => event.metadata_value(key).map(Cow::Borrowed),
            Some(Field::Data(name)) => {
                payload
                    .as_ref()
                    .and_then(|m| m.get(name))
                    .and_then(|v| match v {
                        serde_json::Value::Null => None,
                        serde_json::Value::String(s) => Some(Cow::Borrowed(s.as_str())),
                        other => Some(Cow::Owned(other.to_string())),
                    })
            }
            None => None,
        };
        let want = c.value.as_str();
        match c.op {
            FilterOp::Eq => actual.is_some_and(|a| a == want),
            FilterOp::Ne => actual.is_none_or(|a| a != want),
            FilterOp::Exists => actual.is_some(),
            FilterOp::Prefix => actual.is_some_and(|a| a.starts_with(want)),
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::view::KeyValue;

    fn view<'a>(payload: &'a [u8], meta: &'a [KeyValue<'a>]) -> EventView<'a> {
        EventView {
            id: [0; 16],
            event_type: "user.login".into(),
            category: 2,
            source: "web-frontend".into(),
            origin: "local".into(),
            timestamp_unix_nanos: 0,
            schema_version: 1,
            payload_json: payload.into(),
            metadata: meta.into(),
        }
    }

    #[test]
    fn empty_filter_matches_everything() {
        assert!(filter_matches(&Filter::new(), &view(b"not json", &[])));
    }

    #[test]
    fn source_metadata_and_data_conditions() {
        let meta = [KeyValue::new("tenant", "acme")];
        let p = br#"{"user_id":"alice","attempts":3,"admin":true,"gone":null}"#;
        let v = view(p, &meta);
        let yes = |f: Filter| assert!(filter_matches(&f, &v), "{f:?}");
        let no = |f: Filter| assert!(!filter_matches(&f, &v), "{f:?}");

        yes(Filter::new().eq("source", "web-frontend"));
        yes(Filter::new().prefix("source", "web-"));
        no(Filter::new().prefix("source", "api-"));
        yes(Filter::new().eq("metadata.tenant", "acme"));
        no(Filter::new().eq("metadata.tenant", "other"));
        yes(Filter::new().ne("metadata.tenant", "other"));
        yes(Filter::new().ne("metadata.missing", "x"));
        no(Filter::new().exists("metadata.missing"));
        yes(Filter::new().eq("data.user_id", "alice"));
        yes(Filter::new().eq("data.attempts", "3"));
        yes(Filter::new().eq("data.admin", "true"));
        no(Filter::new().exists("data.gone"));
        no(Filter::new().exists("data.nope"));
        yes(Filter::new().ne("data.user_id", "bob"));
        // All conditions must hold.
        no(Filter::new().eq("data.user_id", "alice").eq("source", "x"));
        yes(Filter::new()
            .eq("data.user_id", "alice")
            .exists("metadata.tenant"));
    }

    #[test]
    fn non_object_payload_has_no_fields_and_unknown_fields_are_absent() {
        let v = view(b"[1,2]", &[]);
        assert!(!filter_matches(&Filter::new().exists("data.x"), &v));
        assert!(filter_matches(&Filter::new().ne("data.x", "1"), &v));
        let bad = Filter::new().eq("payload.x", "1");
        assert!(bad.validate().unwrap_err().contains("payload.x"));
        assert!(!filter_matches(&bad, &v));
        assert!(Filter::new().eq("metadata.", "1").validate().is_err());
        assert!(Filter::new().eq("data.", "1").validate().is_err());
    }
}
