//! `#[derive(ConfigSchema)]`: a plugbus plugin's configuration schema
//! (`plugbus_plugin_api::ConfigSchema`) read off its serde config struct.
//!
//! Plugin authors do not depend on this crate: `plugbus-plugin-api` re-exports the macro
//! (feature `derive`, on by default) as `plugbus_plugin_api::ConfigSchema`, next to the type of
//! the same name (a derive macro and a struct live in different namespaces, as with serde's
//! `Serialize`).
//!
//! ```
//! use plugbus_plugin_api::{serde_json, ConfigSchema, DescribeConfig, ValueKind};
//!
//! #[derive(serde::Deserialize, serde::Serialize, ConfigSchema)]
//! #[serde(rename_all = "kebab-case", deny_unknown_fields)]
//! struct Config {
//!     /// Failed logins within the window that raise an alert.
//!     #[serde(default = "five")]
//!     max_failures: u32,
//!     /// Where alerts go; the default topic when absent.
//!     topic: Option<String>,
//! }
//! fn five() -> u32 { 5 }
//!
//! let schema = Config::config_schema();
//! assert_eq!(schema.keys[0].name, "max-failures");
//! assert_eq!(schema.keys[0].default, Some(serde_json::json!(5)));
//! assert_eq!(schema.keys[0].help, "Failed logins within the window that raise an alert.");
//! assert!(!schema.keys[0].required);
//! assert_eq!(schema.keys[1].kind, ValueKind::Optional { inner: Box::new(ValueKind::String) });
//! assert!(schema.deny_unknown);
//! ```
//!
//! # What it generates
//!
//! For a struct with named fields, two impls:
//!
//! - `DescribeConfig`: `config_schema()` returns one `ConfigKey` per field, in declaration
//!   order, and `deny_unknown` set when the struct has `#[serde(deny_unknown_fields)]`;
//! - `ConfigType`: `kind()` is `ValueKind::Struct` with that schema, so a config struct can
//!   be the type of a field of another one (a nested table).
//!
//! Each key has
//!
//! - **name**: the name serde reads the field with: `#[serde(rename = "...")]` on the field,
//!   else the container's `#[serde(rename_all = "...")]` (`lowercase`, `UPPERCASE`,
//!   `PascalCase`, `camelCase`, `snake_case`, `SCREAMING_SNAKE_CASE`, `kebab-case`,
//!   `SCREAMING-KEBAB-CASE`) applied to the field's name, else the field's name (without
//!   `r#`). The `deserialize = "..."` halves of `rename(...)` and `rename_all(...)` count;
//!   `alias` is ignored (so with `deny_unknown_fields` the host refuses an alias).
//! - **kind**: `<FieldType as ConfigType>::kind()`; `#[config(like = OtherType)]` takes
//!   another type's kind (a `Duration` read from `"5s"` with `deserialize_with` is
//!   `like = String`); `#[config(any)]` on the field makes it `ValueKind::Any`, for a type
//!   without a `ConfigType` impl (an enum, ...).
//! - **help**: the field's doc comment, first paragraph only, each line trimmed and the lines
//!   joined with a space; `#[config(help = "...")]` on the field replaces it.
//! - **default** and **required**:
//!   - a field with `#[serde(default)]` has `FieldType::default()` as its default, one with
//!     `#[serde(default = "path")]` has `path()`;
//!   - otherwise, when the struct has `#[serde(default)]`, the field's value in
//!     `Self::default()` (which needs `Self: Default + Serialize`), or with
//!     `#[serde(default = "path")]` its value in `path()`; a field the serialized default
//!     leaves out (`skip_serializing`, `skip_serializing_if`) shows no default;
//!   - otherwise the field is required, unless its type is written `Option<...>` (the last
//!     segment of its path is `Option`), which serde lets the table leave out.
//!
//! Fields with `#[serde(skip)]` or `#[serde(skip_deserializing)]` are not keys. Other serde
//! attributes (`with`, `borrow`, `skip_serializing_if`, `bound`, ...) change nothing.
//!
//! # What it refuses
//!
//! A compile error, pointing at the cause, for enums, unions, tuple and unit structs, and for
//! `#[serde(flatten)]`, `#[serde(transparent)]`, `#[serde(from)]` and `#[serde(try_from)]`:
//! their keys are not visible to the macro, so implement `DescribeConfig` (and
//! `ConfigType`) by hand.
//!
//! ```compile_fail
//! use plugbus_plugin_api::ConfigSchema;
//!
//! #[derive(serde::Deserialize, ConfigSchema)]
//! struct Config {
//!     #[serde(flatten)] // error: #[derive(ConfigSchema)] does not support #[serde(flatten)]
//!     rest: std::collections::HashMap<String, u32>,
//! }
//! ```
//!
//! ```compile_fail
//! use plugbus_plugin_api::ConfigSchema;
//!
//! #[derive(ConfigSchema)] // error: #[derive(ConfigSchema)] does not support enums
//! enum Mode { Fast, Slow }
//! ```
//!
//! # Generic structs
//!
//! The impls carry the struct's generics. For each field whose type names a type parameter
//! they add `FieldType: ConfigType` (unless `#[config(any)]`), and where a default is read,
//! `FieldType: Default + Serialize` or `Self: Default + Serialize`; `Serialize` is named
//! `::serde::Serialize`, or through the path of `#[serde(crate = "...")]`.
//!
//! # Paths
//!
//! The generated code names the facade as `::plugbus_plugin_api`. A crate that renames that
//! dependency says so with `#[config(crate = "path::to::it")]` on the struct.
//!
#![warn(missing_docs, unreachable_pub)]

mod attrs;
mod case;
mod expand;

use proc_macro::TokenStream;

/// Derives `DescribeConfig` and `ConfigType` for a serde config struct with named fields.
///
/// See the [crate documentation](crate) for the attributes it reads (`#[serde(...)]`,
/// `#[config(any)]`, `#[config(help = "...")]`, `#[config(crate = "...")]`, doc comments)
/// and what it refuses.
#[proc_macro_derive(ConfigSchema, attributes(config))]
pub fn derive_config_schema(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    expand::expand(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
