//! Retention runs over a real index: the host pages so that no entity is
//! ever split across batches, whatever the page size, and the policy sees
//! the entities' attributes.

use std::collections::BTreeSet;

use wharf::index::{Index, NewFile};
use wharf::retention::rehearse;

use crate::support::*;

/// An index with `counts[i]` files in entity `e{i}` (none: of no entity),
/// the newest first by creation time; returns (index, ids by entity).
fn index_with(dir: &std::path::Path, counts: &[(Option<&str>, usize)]) -> (Index, Vec<Vec<i64>>) {
    let index = Index::open(&dir.join("index.sqlite")).unwrap();
    let mut ids = Vec::new();
    for (entity, count) in counts {
        let files: Vec<NewFile> = (0..*count)
            .map(|i| NewFile {
                path: format!("{}/{i}", entity.unwrap_or("loose")),
                size: 1,
                mtime_ms: 1,
                sha256: "a".repeat(64),
                kind: "capture".into(),
                entity: entity.map(str::to_owned),
                created_ms: 10_000 - i as i64,
            })
            .collect();
        let inserted = index.insert_files(&files).unwrap();
        ids.push(
            inserted
                .iter()
                .map(|o| match o {
                    wharf::index::InsertOutcome::Inserted(id)
                    | wharf::index::InsertOutcome::AlreadyIndexed(id) => id.0,
                })
                .collect(),
        );
    }
    (index, ids)
}

#[test]
fn keep_last_over_the_index_is_exact_for_every_page_size() {
    let dir = tempfile::tempdir().unwrap();
    let counts = [
        (None, 3),
        (Some("a"), 7),
        (Some("b"), 1),
        (Some("c"), 12),
        (Some("d"), 4),
    ];
    let (index, ids) = index_with(dir.path(), &counts);
    let plugin = runtime(dir.path()).load(bundled("keep-last")).unwrap();
    // Keep the newest 2 of every entity (and of the files of no entity).
    let expected: BTreeSet<i64> = ids
        .iter()
        .flat_map(|group| group.iter().skip(2).copied())
        .collect();
    for page_size in [1, 2, 3, 5, 8, 100] {
        let planned = rehearse(
            &index,
            &plugin,
            &params(&[("keep", "2")]),
            dir.path(),
            page_size,
            0,
        )
        .unwrap();
        let deleted: BTreeSet<i64> = planned.iter().map(|p| p.file.0).collect();
        assert_eq!(
            deleted, expected,
            "page size {page_size}: an entity was split"
        );
        assert_eq!(planned.len(), expected.len(), "each file named once");
        assert!(planned[0].reason.contains("newest 2"));
    }
}

#[test]
fn a_policy_keeps_what_entity_attributes_say() {
    let dir = tempfile::tempdir().unwrap();
    let (index, ids) = index_with(dir.path(), &[(Some("kept"), 3), (Some("draft"), 2)]);
    index
        .set_entity_attributes("kept", &[("released".into(), "true".into())])
        .unwrap();
    let plugin = runtime(dir.path())
        .load(source(
            "hostile-retention",
            guest(wharf_tests::HOSTILE_RETENTION),
            None,
        ))
        .unwrap();
    let planned = rehearse(
        &index,
        &plugin,
        &params(&[("mode", "released")]),
        dir.path(),
        2,
        0,
    )
    .unwrap();
    let deleted: Vec<i64> = planned.iter().map(|p| p.file.0).collect();
    assert_eq!(deleted, ids[1]);
    assert!(planned.iter().all(|p| p.reason == "not released"));
}
