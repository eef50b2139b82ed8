//! `PluginError` constructors and conversions, so `?` works on the errors a
//! plugin commonly meets.

use crate::{PluginError, TransientError};

impl PluginError {
    /// The parameters are wrong; retrying will not help until they change.
    pub fn invalid_params(message: impl Into<String>) -> Self {
        PluginError::InvalidParams(message.into())
    }

    /// Something outside the plugin failed; the host retries later.
    pub fn transient(message: impl Into<String>) -> Self {
        PluginError::Transient(TransientError {
            message: message.into(),
            retry_after_ms: None,
        })
    }

    /// Like [`PluginError::transient`], retried no sooner than `after_ms`
    /// (e.g. from a `Retry-After` header).
    pub fn retry_after(message: impl Into<String>, after_ms: u64) -> Self {
        PluginError::Transient(TransientError {
            message: message.into(),
            retry_after_ms: Some(after_ms),
        })
    }

    /// The plugin cannot do this, ever.
    pub fn terminal(message: impl Into<String>) -> Self {
        PluginError::Terminal(message.into())
    }

    /// Whether the host will retry the call.
    pub fn is_transient(&self) -> bool {
        matches!(self, PluginError::Transient(_))
    }
}

/// I/O failures are worth a retry.
impl From<std::io::Error> for PluginError {
    fn from(error: std::io::Error) -> Self {
        PluginError::transient(error.to_string())
    }
}

/// A bug of the plugin's own (formatting into a `String` cannot fail).
impl From<std::fmt::Error> for PluginError {
    fn from(error: std::fmt::Error) -> Self {
        PluginError::terminal(error.to_string())
    }
}

/// Bytes that should be text and are not: retrying gives the same bytes.
impl From<std::string::FromUtf8Error> for PluginError {
    fn from(error: std::string::FromUtf8Error) -> Self {
        PluginError::terminal(error.to_string())
    }
}

impl From<std::str::Utf8Error> for PluginError {
    fn from(error: std::str::Utf8Error) -> Self {
        PluginError::terminal(error.to_string())
    }
}

/// Numbers come from parameters, so a bad one is the caller's to fix.
impl From<std::num::ParseIntError> for PluginError {
    fn from(error: std::num::ParseIntError) -> Self {
        PluginError::invalid_params(error.to_string())
    }
}

impl From<std::num::ParseFloatError> for PluginError {
    fn from(error: std::num::ParseFloatError) -> Self {
        PluginError::invalid_params(error.to_string())
    }
}

impl From<std::num::TryFromIntError> for PluginError {
    fn from(error: std::num::TryFromIntError) -> Self {
        PluginError::terminal(error.to_string())
    }
}

impl From<String> for PluginError {
    fn from(message: String) -> Self {
        PluginError::terminal(message)
    }
}

impl From<&str> for PluginError {
    fn from(message: &str) -> Self {
        PluginError::terminal(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<u32, PluginError> {
        Ok(text.parse::<u32>()?)
    }

    #[test]
    fn question_mark_classifies_common_errors() {
        assert!(matches!(parse("x"), Err(PluginError::InvalidParams(_))));
        let io = PluginError::from(std::io::Error::other("disk on fire"));
        assert!(io.is_transient());
        let text = String::from_utf8(vec![0xff]).map_err(PluginError::from);
        assert!(matches!(text, Err(PluginError::Terminal(_))));
    }

    #[test]
    fn retry_hints_are_kept() {
        match PluginError::retry_after("slow down", 1500) {
            PluginError::Transient(t) => assert_eq!(t.retry_after_ms, Some(1500)),
            other => panic!("{other:?}"),
        }
    }
}
