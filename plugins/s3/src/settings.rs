//! The plugin's parameters and S3's size limits: when a file goes up in one
//! PUT, and how a larger one is cut into parts.

use wharf_sdk::{ParamSpec, Params, PluginError, param};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// S3's smallest part (every part but the last).
pub(crate) const MIN_PART: u64 = 5 * MIB;
/// S3's largest part, and its largest single PUT.
pub(crate) const MAX_PART: u64 = 5 * GIB;
/// S3's most parts in one multipart upload.
pub(crate) const MAX_PARTS: u64 = 10_000;
/// S3's largest object.
pub(crate) const MAX_OBJECT: u64 = 5 * 1024 * GIB;

pub(crate) const DEFAULT_PART_SIZE: &str = "16MiB";
pub(crate) const DEFAULT_THRESHOLD: &str = "64MiB";

/// What the operator chose, checked against S3's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Settings {
    /// Files larger than this go up in parts.
    pub(crate) multipart_threshold: u64,
    /// The size of every part but the last (raised when a file would need
    /// more than 10,000 parts).
    pub(crate) part_size: u64,
}

pub(crate) fn specs() -> [ParamSpec; 2] {
    [
        ParamSpec::new(
            "part_size",
            "size of each part of a multipart upload, in bytes or with KiB/MiB/GiB (5MiB to 5GiB); raised for files that would need more than 10,000 parts",
        )
        .default(DEFAULT_PART_SIZE),
        ParamSpec::new(
            "multipart_threshold",
            "files larger than this go up in parts, in bytes or with KiB/MiB/GiB (at most 5GiB, S3's largest single PUT)",
        )
        .default(DEFAULT_THRESHOLD),
    ]
}

impl Settings {
    pub(crate) fn from_params(params: &Params) -> Result<Settings, PluginError> {
        let part_size = size(params, "part_size", DEFAULT_PART_SIZE)?;
        if !(MIN_PART..=MAX_PART).contains(&part_size) {
            return Err(PluginError::invalid_params(format!(
                "part_size = {part_size} bytes is outside S3's limits: use 5MiB to 5GiB"
            )));
        }
        let multipart_threshold = size(params, "multipart_threshold", DEFAULT_THRESHOLD)?;
        if multipart_threshold > MAX_PART {
            return Err(PluginError::invalid_params(format!(
                "multipart_threshold = {multipart_threshold} bytes is over S3's largest single PUT: use at most 5GiB"
            )));
        }
        Ok(Settings {
            multipart_threshold,
            part_size,
        })
    }

    /// The part size for a file of `size` bytes: the configured one, or the
    /// smallest whole MiB that fits the file in 10,000 parts.
    pub(crate) fn part_size_for(&self, size: u64) -> Result<u64, PluginError> {
        if size > MAX_OBJECT {
            return Err(PluginError::terminal(format!(
                "the file is {size} bytes, over S3's largest object (5TiB)"
            )));
        }
        let needed = size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
        Ok(self.part_size.max(needed).min(MAX_PART))
    }
}

/// A size parameter: plain bytes or a number with `KiB`, `MiB` or `GiB`.
fn size(params: &Params, name: &str, default: &str) -> Result<u64, PluginError> {
    let text = param(params, name).unwrap_or(default).trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, ""),
    };
    let scale = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => MIB,
        "GiB" => GIB,
        _ => 0,
    };
    number
        .parse::<u64>()
        .ok()
        .filter(|_| scale != 0)
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| {
            PluginError::invalid_params(format!(
                "{name} = {text:?} is not a size: write bytes, or a number with KiB, MiB or GiB (e.g. {default})"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, PluginError> {
        let params = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_params(&params)
    }

    #[test]
    fn defaults_and_units() {
        assert_eq!(
            settings(&[]).unwrap(),
            Settings {
                multipart_threshold: 64 * MIB,
                part_size: 16 * MIB
            }
        );
        let chosen = settings(&[("part_size", "5242880"), ("multipart_threshold", "1 GiB")]);
        assert_eq!(
            chosen.unwrap(),
            Settings {
                multipart_threshold: GIB,
                part_size: 5 * MIB
            }
        );
    }

    #[test]
    fn sizes_outside_s3s_limits_are_refused_naming_the_parameter() {
        for (name, value) in [
            ("part_size", "4MiB"),
            ("part_size", "6GiB"),
            ("part_size", "lots"),
            ("part_size", "5 TB"),
            ("multipart_threshold", "6GiB"),
            ("multipart_threshold", "99999999999999999999GiB"),
        ] {
            match settings(&[(name, value)]) {
                Err(PluginError::InvalidParams(message)) => {
                    assert!(message.contains(name), "{message}")
                }
                other => panic!("{name} = {value}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_file_never_needs_more_than_ten_thousand_parts() {
        let settings = settings(&[("part_size", "5MiB")]).unwrap();
        assert_eq!(settings.part_size_for(GIB).unwrap(), 5 * MIB);
        let huge = 100 * GIB;
        let part = settings.part_size_for(huge).unwrap();
        assert!(part >= MIN_PART && part.is_multiple_of(MIB));
        assert!(huge.div_ceil(part) <= MAX_PARTS);
        assert_eq!(settings.part_size_for(MAX_OBJECT).unwrap(), 525 * MIB);
        assert!(settings.part_size_for(MAX_OBJECT + 1).is_err());
    }
}
