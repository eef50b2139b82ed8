//! Reading the named parameters a call was given.

use crate::{Params, PluginError};

/// The value of parameter `name`, if given.
pub fn param<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// Parameter `name` parsed as `T`, or `default` when it is absent.
///
/// A value that does not parse, or a missing parameter without a default, is
/// an `invalid-params` error naming the parameter.
pub fn param_parse<T>(params: &Params, name: &str, default: Option<T>) -> Result<T, PluginError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    match (param(params, name), default) {
        (Some(raw), _) => raw.parse().map_err(|err| {
            PluginError::InvalidParams(format!("parameter `{name}` = {raw:?}: {err}"))
        }),
        (None, Some(default)) => Ok(default),
        (None, None) => Err(PluginError::InvalidParams(format!(
            "parameter `{name}` is required"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn param_parse_reads_default_and_rejects_garbage() {
        let given = params(&[("keep", "3"), ("bad", "x")]);
        assert_eq!(param_parse::<u32>(&given, "keep", Some(9)).unwrap(), 3);
        assert_eq!(param_parse::<u32>(&given, "other", Some(9)).unwrap(), 9);
        match param_parse::<u32>(&given, "bad", None) {
            Err(PluginError::InvalidParams(msg)) => assert!(msg.contains("`bad`"), "{msg}"),
            other => panic!("expected invalid-params, got {other:?}"),
        }
        match param_parse::<u32>(&given, "missing", None) {
            Err(PluginError::InvalidParams(msg)) => assert!(msg.contains("required"), "{msg}"),
            other => panic!("expected invalid-params, got {other:?}"),
        }
    }
}
