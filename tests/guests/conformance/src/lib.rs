//! The SDK's conformance suite: one exporter whose `run` performs every case
//! against the files it is handed and writes one `case = outcome` line each.
//! The same cases run natively against `MockHost` (this crate's test) and in
//! wasm against the real host (`tests/all/contract.rs`), and both must print
//! exactly `expected.txt`: where a plugin can tell, the mock is the host.
//!
//! It is handed two files: `hello` (5 bytes) and 17 MiB of zeros.

use wharf_sdk::{Entity, ExportResult, Exporter, FileEntry, Params, PluginError, PluginInfo};

pub struct Conformance;

/// How a case ended, in words both hosts must agree on.
fn outcome<T: std::fmt::Debug>(result: Result<T, PluginError>) -> String {
    match result {
        Ok(value) => format!("ok {value:?}"),
        Err(PluginError::InvalidParams(_)) => "invalid-params".into(),
        Err(PluginError::Transient(_)) => "transient".into(),
        Err(PluginError::Terminal(_)) => "terminal".into(),
        Err(PluginError::AccessDenied(_)) => "access-denied".into(),
    }
}

impl Exporter for Conformance {
    fn describe() -> PluginInfo {
        PluginInfo::new("conformance", "0.0.1").description("mock host = real host")
    }

    fn run(_: Entity, files: Vec<FileEntry>, _: Params) -> Result<ExportResult, PluginError> {
        let [hello, big] = files.as_slice() else {
            return Err(PluginError::invalid_params("hand me two files"));
        };
        let (hello, big) = (&hello.file, &big.file);
        let cases: Vec<(&str, String)> = vec![
            ("size", format!("ok {}", hello.size())),
            (
                "read whole",
                outcome(hello.read(0, 5).map(String::from_utf8)),
            ),
            (
                "read clipped at the end",
                outcome(hello.read(1, 100).map(String::from_utf8)),
            ),
            ("read at the end", outcome(hello.read(5, 10))),
            ("read past the end", outcome(hello.read(9, 1))),
            (
                "read over the cap",
                outcome(big.read(0, 16 << 20 | 1).map(|b| b.len())),
            ),
            (
                "read at the cap",
                outcome(big.read(0, 16 << 20).map(|b| b.len())),
            ),
            ("sha256 whole", outcome(hello.sha256(0, 5))),
            ("sha256 empty range", outcome(hello.sha256(5, 0))),
            ("sha256 past the end", outcome(hello.sha256(1, 5))),
            ("crc32", outcome(hello.crc32(0, 5))),
            ("crc32 overflowing range", outcome(hello.crc32(u64::MAX, 2))),
            (
                "append",
                outcome(wharf_sdk::output::append_file(hello, 1, 3)),
            ),
            (
                "append past the end",
                outcome(wharf_sdk::output::append_file(hello, 4, 2)),
            ),
            ("write", outcome(wharf_sdk::output::write(b"|"))),
        ];
        let mut report = String::from("\n");
        for (case, outcome) in cases {
            report.push_str(&format!("{case} = {outcome}\n"));
        }
        wharf_sdk::output::write(report.as_bytes())?;
        Ok(ExportResult {
            file_name: "conformance.txt".into(),
            media_type: "text/plain".into(),
        })
    }
}

wharf_sdk::export_exporter!(Conformance);

/// What both hosts must produce.
pub const EXPECTED: &str = include_str!("../expected.txt");

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_sdk::mock::MockHost;

    #[test]
    fn the_mock_host_answers_every_case_as_the_real_host() {
        let mut host = MockHost::new()
            .with_file(1, b"hello".to_vec())
            .with_file(2, vec![0u8; 17 << 20]);
        let entity = Entity {
            name: "e".into(),
            version: 1,
            last_export_ms: None,
            attributes: Vec::new(),
        };
        let files = vec![
            FileEntry::mock(1, "hello", 5),
            FileEntry::mock(2, "big", 17 << 20),
        ];
        host.run(|| Conformance::run(entity, files, Vec::new()))
            .unwrap();
        assert_eq!(String::from_utf8(host.output).unwrap(), EXPECTED);
    }
}
