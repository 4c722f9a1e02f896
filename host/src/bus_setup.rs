//! The bus a host config describes: `[bus]` onto [`plugbus::BusBuilder`].

use plugbus::{BreakerConfig, BusBuilder, RetryPolicy};

use crate::config::BusConfig;

/// A bus builder with every `[bus]` setting applied (timeout, mailbox capacity, overflow,
/// dead-letter capacity, retry and circuit breaker). The runtime is left to the caller
/// (the current one at `build()` by default).
pub fn bus_builder(config: &BusConfig) -> BusBuilder {
    let mut builder = plugbus::Bus::builder()
        .default_timeout(config.default_timeout)
        .mailbox_capacity(config.mailbox_capacity)
        .overflow(config.overflow)
        .dead_letter_capacity(config.dead_letter_capacity);
    if let Some(retry) = &config.retry {
        builder = builder.retry(
            RetryPolicy::new(retry.max_attempts)
                .initial_backoff(retry.initial_backoff)
                .max_backoff(retry.max_backoff),
        );
    }
    if let Some(breaker) = &config.circuit_breaker {
        builder = builder.circuit_breaker(BreakerConfig::new(
            breaker.failure_threshold,
            breaker.cool_down,
        ));
    }
    builder
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[tokio::test]
    async fn config_builds_a_bus() {
        let config = Config::from_toml_str(
            "[bus]\nmailbox_capacity = 4\noverflow = \"reject\"\n[bus.retry]\n[bus.circuit_breaker]\n",
            "t",
        )
        .unwrap();
        let bus = bus_builder(&config.bus).build().unwrap();
        assert!(bus.is_accepting());
    }
}
