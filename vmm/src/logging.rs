//! Logging to stderr. With `VIRGA_LOG` set (tracing env-filter syntax) the full
//! tracing-subscriber formatter is used; by default a tiny subscriber prints warnings and
//! errors as one line each. Setting up the full formatter costs ~350 KiB of resident memory
//! per VMM, a tenth of its overhead, for output nobody asked for.

use std::fmt::Write as _;
use std::io::Write as _;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Installs the logger for this process.
pub fn init() {
    match std::env::var("VIRGA_LOG") {
        Ok(spec) => {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(spec))
                .with_writer(std::io::stderr)
                .try_init();
        }
        Err(_) => {
            let _ = tracing::subscriber::set_global_default(WarnToStderr);
        }
    }
}

/// Prints WARN and ERROR events as `virga-vmm: warning: <message> key=value…`.
struct WarnToStderr;

struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value}");
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

impl Subscriber for WarnToStderr {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= Level::WARN
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let kind = if *event.metadata().level() == Level::ERROR {
            "error"
        } else {
            "warning"
        };
        let mut line = Line(format!("virga-vmm: {kind}:"));
        event.record(&mut line);
        line.0.push('\n');
        let _ = std::io::stderr().write_all(line.0.as_bytes());
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_warnings_and_errors_are_enabled() {
        tracing::subscriber::with_default(WarnToStderr, || {
            assert!(tracing::enabled!(Level::WARN));
            assert!(tracing::enabled!(Level::ERROR));
            assert!(!tracing::enabled!(Level::INFO));
        });
    }
}
