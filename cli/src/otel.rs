//! The config's `[otel]` table for `plugbus run` and `demo`: OpenTelemetry export of the host's
//! delivery spans (`plugbus_host::otel`), when the binary is built with the `otel` feature.
//!
//! The table is read before logging is set up, because the export is a layer of the process's
//! `tracing` subscriber, which is installed once. A config that does not load is left for the
//! command to report as usual. A build without the feature refuses an `[otel]` table by name
//! rather than silently exporting nothing.

use std::path::Path;

use anyhow::Context as _;

/// The export a command runs with (none unless its config has `[otel]`).
#[derive(Debug, Default)]
pub(crate) struct Export {
    #[cfg(feature = "otel")]
    otel: Option<plugbus_host::otel::Otel>,
}

impl Export {
    /// The export `[otel]` in the config at `path` asks for.
    ///
    /// # Errors
    /// The table is there but this binary was built without the `otel` feature, or the
    /// exporter cannot be built.
    pub(crate) fn from_config(path: Option<&Path>) -> anyhow::Result<Export> {
        let Some(path) = path else {
            return Ok(Export::default());
        };
        // A broken config is the command's to report, with its usual message.
        let Ok(config) = plugbus_host::Config::from_path(path) else {
            return Ok(Export::default());
        };
        let Some(otel) = config.otel else {
            return Ok(Export::default());
        };
        #[cfg(feature = "otel")]
        {
            let exporter = plugbus_host::otel::Otel::new(&otel)
                .with_context(|| format!("'{}': [otel]", path.display()))?;
            Ok(Export {
                otel: Some(exporter),
            })
        }
        #[cfg(not(feature = "otel"))]
        {
            let _ = otel;
            Err(anyhow::anyhow!(
                "'{}': [otel] needs a plugbus built with the `otel` feature \
                 (cargo build -p plugbus-cli --features otel); remove the table to run without \
                 OpenTelemetry export",
                path.display()
            ))
            .context("OpenTelemetry export")
        }
    }

    /// The `tracing` layer exporting delivery spans, if there is an export.
    #[cfg(feature = "otel")]
    pub(crate) fn layer<S>(&self) -> Option<impl tracing_subscriber::Layer<S> + Send + Sync>
    where
        S: tracing::Subscriber
            + for<'span> tracing_subscriber::registry::LookupSpan<'span>
            + Send
            + Sync,
    {
        self.otel.as_ref().map(plugbus_host::otel::Otel::layer)
    }

    /// Exports what is still buffered and stops the exporter; a failure is a warning (the run's
    /// own outcome stands).
    pub(crate) fn finish(self) {
        #[cfg(feature = "otel")]
        if let Some(otel) = self.otel {
            if let Err(e) = otel.shutdown() {
                tracing::warn!(error = %e, "OpenTelemetry export did not finish");
            }
        }
    }
}
