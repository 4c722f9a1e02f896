//! [`parse_config`]: plugin configuration with errors that name the offending key.

use crate::error::PluginError;
use serde::de::DeserializeOwned;

/// Deserializes a plugin's configuration table into `T`, naming the offending key on error.
///
/// `T` should be a serde struct with `#[serde(default, deny_unknown_fields)]`, so that every key
/// is optional and unknown keys are refused. serde's own messages do not say which key held a
/// bad value; this function finds it by checking each key on its own, and reports
/// `invalid configuration for plugin '<plugin>': key '<key>': <serde message>`.
///
/// # Errors
/// [`PluginError::Config`] if the configuration is not an object, has an unknown key, or a key
/// holds a value of the wrong type.
///
/// ```
/// use plugbus_plugin_api::parse_config;
/// #[derive(serde::Deserialize, Default, Debug)]
/// #[serde(default, deny_unknown_fields)]
/// struct Cfg { max: u32, name: String }
///
/// let ok: Cfg = parse_config("demo", serde_json::json!({"max": 3}))?;
/// assert_eq!(ok.max, 3);
/// let err = parse_config::<Cfg>("demo", serde_json::json!({"max": "x"})).unwrap_err();
/// assert!(err.message().contains("key 'max'"));
/// let err = parse_config::<Cfg>("demo", serde_json::json!({"mx": 1})).unwrap_err();
/// assert!(err.message().contains("key 'mx'"));
/// # Ok::<(), plugbus_plugin_api::PluginError>(())
/// ```
pub fn parse_config<T: DeserializeOwned>(
    plugin: &str,
    config: serde_json::Value,
) -> Result<T, PluginError> {
    let config = match config {
        serde_json::Value::Null => serde_json::Value::Object(serde_json::Map::new()),
        other => other,
    };
    let serde_json::Value::Object(map) = &config else {
        return Err(PluginError::config(format_args!(
            "invalid configuration for plugin '{plugin}': expected a table, got {config}"
        )));
    };
    match serde_json::from_value::<T>(config.clone()) {
        Ok(value) => Ok(value),
        Err(whole) => {
            for (key, value) in map {
                let mut single = serde_json::Map::new();
                single.insert(key.clone(), value.clone());
                if let Err(e) = serde_json::from_value::<T>(serde_json::Value::Object(single)) {
                    return Err(PluginError::config(format_args!(
                        "invalid configuration for plugin '{plugin}': key '{key}': {e}"
                    )));
                }
            }
            Err(PluginError::config(format_args!(
                "invalid configuration for plugin '{plugin}': {whole}"
            )))
        }
    }
}
