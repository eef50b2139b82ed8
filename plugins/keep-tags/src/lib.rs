//! Retention policy, dlrepo's tag cleanup: datasets are grouped by an
//! attribute (`group_by`, e.g. `branch`) and judged whole. In each group,
//! newest first by their newest file:
//!
//! - datasets not released: the newest `keep` are kept, but at most
//!   `max_per_day` of them per UTC day (the newest of that day first); the
//!   rest go;
//! - released datasets (attribute `released = true`): the newest
//!   `keep_released` are kept (`all`: every one); the rest go.
//!
//! A dataset's time is its newest file's creation, cached exports of it
//! left out (an export made today of last month's dataset does not make
//! it new); a dataset that only has exports goes by them.
//!
//! A dataset that goes goes whole: every one of its files is named. A
//! dataset without the `group_by` attribute, and the files of no dataset,
//! are never touched; nor is a dataset any of whose files the host protects
//! (leased, held by an export, not yet synced), so that no dataset is left
//! half deleted: the next run decides again.
//!
//! A group's datasets may arrive in different batches, so the run only
//! takes notes in `plan` (per dataset: its group, time and id range, the
//! host never splitting a dataset) and decides in `finish`.

use std::collections::BTreeMap;

use wharf_sdk::{
    Batch, Decisions, ParamSpec, Params, Planner, PluginError, PluginInfo, Retention, param,
    param_parse,
};

pub struct KeepTags;

const DAY_MS: i64 = 86_400_000;

/// The validated parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub group_by: String,
    pub keep: u64,
    /// `None`: no daily limit.
    pub max_per_day: Option<u64>,
    /// `None`: every released dataset is kept.
    pub keep_released: Option<u64>,
}

/// What the run knows of one dataset.
#[derive(Debug, Clone)]
struct Dataset {
    name: String,
    released: bool,
    /// Its newest file's creation time, exports left out.
    newest_ms: i64,
    /// Whether `newest_ms` is only an export's (no other file seen yet).
    only_exports: bool,
    /// Its files: ids `first..first + count` (a dataset's files are
    /// consecutive in a batch, and never split across batches).
    first: u64,
    count: u64,
    /// One of its files is protected by the host: keep it whole.
    protected: bool,
}

/// One run: the rules and every grouped dataset seen, by group.
pub struct Run {
    rules: Rules,
    groups: BTreeMap<String, Vec<Dataset>>,
}

impl Retention for KeepTags {
    type Planner = Run;

    fn describe() -> PluginInfo {
        PluginInfo::new("keep-tags", env!("CARGO_PKG_VERSION"))
            .description(
                "dlrepo's tag cleanup: per group of datasets (an attribute), keeps the newest N, \
                 at most D per day, and up to R released ones; deletes whole datasets.",
            )
            .param(
                ParamSpec::new(
                    "group_by",
                    "the dataset attribute that groups datasets (e.g. `branch`); datasets without it are kept",
                )
                .default("branch"),
            )
            .param(
                ParamSpec::new(
                    "keep",
                    "how many of the newest unreleased datasets to keep per group",
                )
                .default("10"),
            )
            .param(
                ParamSpec::new(
                    "max_per_day",
                    "at most this many unreleased datasets kept per group and UTC day; `none` for no limit",
                )
                .default("none"),
            )
            .param(
                ParamSpec::new(
                    "keep_released",
                    "how many of the newest datasets with `released = true` to keep per group; `all` keeps every one",
                )
                .default("all"),
            )
    }

    fn open(params: Params) -> Result<Run, PluginError> {
        Ok(Run {
            rules: Rules::from_params(&params)?,
            groups: BTreeMap::new(),
        })
    }
}

/// A count, or `word` (e.g. `all`) for no limit.
fn limit(params: &Params, name: &str, word: &str) -> Result<Option<u64>, PluginError> {
    match param(params, name) {
        None => Ok(None),
        Some(raw) if raw == word => Ok(None),
        Some(raw) => raw.parse().map(Some).map_err(|_| {
            PluginError::invalid_params(format!(
                "parameter `{name}` = {raw:?}: give a whole number of datasets, or `{word}`"
            ))
        }),
    }
}

impl Rules {
    pub fn from_params(params: &Params) -> Result<Rules, PluginError> {
        let group_by = param(params, "group_by").unwrap_or("branch").to_owned();
        if group_by.is_empty() {
            return Err(PluginError::invalid_params(
                "parameter `group_by` must name a dataset attribute, e.g. `branch`",
            ));
        }
        let keep: u64 = param_parse(params, "keep", Some(10))?;
        let max_per_day = limit(params, "max_per_day", "none")?;
        if max_per_day == Some(0) {
            return Err(PluginError::invalid_params(
                "parameter `max_per_day` = 0 would keep no unreleased dataset; give at least 1, or `none`",
            ));
        }
        Ok(Rules {
            group_by,
            keep,
            max_per_day,
            keep_released: limit(params, "keep_released", "all")?,
        })
    }
}

/// A dataset as [`decide`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    pub released: bool,
    /// Its newest file's creation time, ms since the Unix epoch.
    pub newest_ms: i64,
}

/// Which datasets of one group go, by position in `tags`; `tags` must be
/// sorted newest first. The rules, in one place, so tests can check them
/// against a model.
pub fn decide(rules: &Rules, tags: &[Tag]) -> Vec<bool> {
    let mut kept = 0u64;
    let mut kept_released = 0u64;
    let mut per_day: BTreeMap<i64, u64> = BTreeMap::new();
    tags.iter()
        .map(|tag| {
            if tag.released {
                let keep = rules.keep_released.is_none_or(|r| kept_released < r);
                kept_released += u64::from(keep);
                return !keep;
            }
            let day = per_day.entry(tag.newest_ms.div_euclid(DAY_MS)).or_default();
            let keep = kept < rules.keep && rules.max_per_day.is_none_or(|d| *day < d);
            if keep {
                kept += 1;
                *day += 1;
            }
            !keep
        })
        .collect()
}

impl Planner for Run {
    fn plan(&mut self, batch: &Batch) -> Result<Decisions, PluginError> {
        let entities = batch.entities();
        // The attributes each entity of the batch is judged by: (group, released).
        let grouping: Vec<Option<(&str, bool)>> = entities
            .iter()
            .map(|e| {
                e.attribute(&self.rules.group_by)
                    .map(|group| (group, e.attribute("released") == Some("true")))
            })
            .collect();
        let (created, flags) = (batch.created_ms(), batch.flags());
        let export = batch.kinds().iter().position(|k| k == "export");
        let kind = batch.kind();
        let mut current: Option<(u32, String, Dataset)> = None;
        for ((id, &entity), i) in batch.ids().zip(batch.entity()).zip(0..) {
            let Some((group, released)) = grouping.get(entity as usize).copied().flatten() else {
                continue;
            };
            let f = wharf_sdk::FileFlags(flags.get(i).copied().unwrap_or(0));
            let protected = f.leased() || f.export_held() || !f.synced();
            let is_export = export.is_some_and(|e| kind.get(i).copied() == Some(e as u32));
            let created_ms = created.get(i).copied().unwrap_or(0);
            match &mut current {
                Some((e, _, dataset)) if *e == entity => {
                    dataset.count += 1;
                    dataset.protected |= protected;
                    // Files come newest first: the first that is not an
                    // export is the dataset's newest data.
                    if dataset.only_exports && !is_export {
                        dataset.newest_ms = created_ms;
                        dataset.only_exports = false;
                    }
                }
                _ => {
                    if let Some((_, group, dataset)) = current.take() {
                        self.groups.entry(group).or_default().push(dataset);
                    }
                    current = Some((
                        entity,
                        group.to_owned(),
                        Dataset {
                            name: entities[entity as usize].name.clone(),
                            released,
                            newest_ms: created_ms,
                            only_exports: is_export,
                            first: id,
                            count: 1,
                            protected,
                        },
                    ));
                }
            }
        }
        if let Some((_, group, dataset)) = current {
            self.groups.entry(group).or_default().push(dataset);
        }
        Ok(Decisions::new())
    }

    fn finish(&mut self) -> Result<Decisions, PluginError> {
        let mut decisions = Decisions::new();
        for (group, datasets) in &mut self.groups {
            // Newest first; the name breaks ties so a run is reproducible.
            datasets.sort_by(|a, b| b.newest_ms.cmp(&a.newest_ms).then(a.name.cmp(&b.name)));
            let tags: Vec<Tag> = datasets
                .iter()
                .map(|d| Tag {
                    released: d.released,
                    newest_ms: d.newest_ms,
                })
                .collect();
            let goes = decide(&self.rules, &tags);
            let unreleased = format!(
                "keep-tags: {}={group}: beyond the newest {} unreleased datasets{}",
                self.rules.group_by,
                self.rules.keep,
                self.rules
                    .max_per_day
                    .map_or(String::new(), |d| format!(" or {d} per day"))
            );
            let released = format!(
                "keep-tags: {}={group}: beyond the newest {} released datasets",
                self.rules.group_by,
                self.rules.keep_released.unwrap_or(u64::MAX)
            );
            for (dataset, _) in datasets
                .iter()
                .zip(goes)
                .filter(|(d, goes)| *goes && !d.protected)
            {
                let reason = decisions.reason(if dataset.released {
                    &released
                } else {
                    &unreleased
                });
                for id in dataset.first..dataset.first + dataset.count {
                    decisions.delete_for(id, reason);
                }
            }
        }
        Ok(decisions)
    }
}

wharf_sdk::export_retention!(KeepTags);

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_sdk::{Candidate, Entity, FileFlags};

    const S: FileFlags = FileFlags(FileFlags::SYNCED);

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    fn entity(name: &str, attributes: &[(&str, &str)]) -> Entity {
        Entity {
            name: name.into(),
            version: 1,
            last_export_ms: None,
            attributes: attributes
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        }
    }

    /// A batch starting at id `first`: for each entity, its files' creation
    /// times newest first, as the host orders them.
    fn batch(first: u64, entities: Vec<(Entity, Vec<i64>)>) -> Batch<'static> {
        let mut batch = Batch::new(
            first,
            entities.iter().map(|(e, _)| e.clone()).collect(),
            vec!["capture".into()],
        );
        for (i, (_, files)) in entities.iter().enumerate() {
            for &created_ms in files {
                batch.push(Candidate {
                    size: 1,
                    created_ms,
                    modified_ms: created_ms,
                    last_access_ms: None,
                    entity: Some(i as u32),
                    kind: 0,
                    flags: S,
                });
            }
        }
        batch
    }

    fn run(rules: &[(&str, &str)], batches: Vec<Batch<'static>>) -> Vec<u64> {
        let mut run = KeepTags::open(params(rules)).unwrap();
        for batch in &batches {
            assert!(
                run.plan(batch).unwrap().deletions.is_empty(),
                "decides in finish"
            );
        }
        let mut files = run.finish().unwrap().files();
        files.sort();
        files
    }

    const D: i64 = DAY_MS;

    #[test]
    fn keeps_the_newest_per_group_and_deletes_whole_datasets_across_batches() {
        let main = |n: &str| entity(n, &[("branch", "main")]);
        let dev = |n: &str| entity(n, &[("branch", "dev")]);
        // Ids: m1 0..2, d1 2, m2 3..5 | m3 5, m0 6..8 (the oldest main).
        let first = batch(
            0,
            vec![
                (main("m1"), vec![40 * D, 39 * D]),
                (dev("d1"), vec![10 * D]),
                (main("m2"), vec![30 * D, 29 * D]),
            ],
        );
        let second = batch(
            5,
            vec![(main("m3"), vec![50 * D]), (main("m0"), vec![5 * D, 4 * D])],
        );
        // keep 2 per branch: main keeps m3 and m1; m2 and m0 go whole; dev keeps d1.
        assert_eq!(run(&[("keep", "2")], vec![first, second]), vec![3, 4, 6, 7]);
    }

    #[test]
    fn at_most_max_per_day_and_released_up_to_keep_released() {
        let tag = |n: &str, released: bool| {
            let mut attributes = vec![("branch", "main")];
            if released {
                attributes.push(("released", "true"));
            }
            entity(n, &attributes)
        };
        // Three unreleased on day 9 (ids 0, 1, 2), one on day 8 (3);
        // released: 4 (day 9), 5 (day 2), 6 (day 1).
        let b = batch(
            0,
            vec![
                (tag("a", false), vec![9 * D + 300]),
                (tag("b", false), vec![9 * D + 200]),
                (tag("c", false), vec![9 * D + 100]),
                (tag("d", false), vec![8 * D]),
                (tag("r1", true), vec![9 * D + 50]),
                (tag("r2", true), vec![2 * D]),
                (tag("r3", true), vec![D]),
            ],
        );
        let rules = [("keep", "3"), ("max_per_day", "2"), ("keep_released", "2")];
        // c is the third of day 9: it goes, and d takes its place among the 3;
        // r3 is the third released.
        assert_eq!(run(&rules, vec![b]), vec![2, 6]);
    }

    #[test]
    fn ungrouped_datasets_loose_files_and_protected_datasets_are_left_whole() {
        let x = |n: &str| entity(n, &[("branch", "x")]);
        // Ids: new 0, old 1..3, older 3, nobranch 4, then a file of no entity 5.
        let mut b = batch(
            0,
            vec![
                (x("new"), vec![9 * D]),
                (x("old"), vec![8 * D, 7 * D]),
                (x("older"), vec![6 * D]),
                (entity("nobranch", &[]), vec![D]),
            ],
        );
        b.push(Candidate {
            size: 1,
            created_ms: 0,
            modified_ms: 0,
            last_access_ms: None,
            entity: None,
            kind: 0,
            flags: S,
        });
        assert_eq!(run(&[("keep", "1")], vec![b]), vec![1, 2, 3]);
        // The same, but one file of `old` is leased: `old` stays whole.
        let mut b = batch(0, vec![(x("new"), vec![9 * D]), (x("old"), vec![8 * D])]);
        b.push(Candidate {
            size: 1,
            created_ms: 7 * D,
            modified_ms: 0,
            last_access_ms: None,
            entity: Some(1),
            kind: 0,
            flags: FileFlags(FileFlags::SYNCED | FileFlags::LEASED),
        });
        let older = batch(3, vec![(x("older"), vec![6 * D])]);
        assert_eq!(run(&[("keep", "1")], vec![b, older]), vec![3]);
    }

    #[test]
    fn a_fresh_export_does_not_make_an_old_dataset_new() {
        let x = |n: &str| entity(n, &[("branch", "x")]);
        // `old` (ids 0..3) was exported a moment ago: its export (id 0,
        // kind 1) is its newest file, but its data is older than `new`'s.
        let mut b = Batch::new(
            0,
            vec![x("old"), x("new")],
            vec!["capture".into(), "export".into()],
        );
        for (entity, kind, created_ms) in
            [(0, 1, 99 * D), (0, 0, 5 * D), (0, 0, 4 * D), (1, 0, 9 * D)]
        {
            b.push(Candidate {
                size: 1,
                created_ms,
                modified_ms: created_ms,
                last_access_ms: None,
                entity: Some(entity),
                kind,
                flags: S,
            });
        }
        assert_eq!(
            run(&[("keep", "1")], vec![b]),
            vec![0, 1, 2],
            "old goes whole, its export too"
        );
    }

    #[test]
    fn bad_parameters_are_invalid_params_naming_them() {
        for (given, name) in [
            (&[("keep", "-1")][..], "keep"),
            (&[("max_per_day", "0")], "max_per_day"),
            (&[("max_per_day", "some")], "max_per_day"),
            (&[("keep_released", "many")], "keep_released"),
            (&[("group_by", "")], "group_by"),
        ] {
            let result = KeepTags::open(params(given));
            assert!(
                matches!(&result, Err(PluginError::InvalidParams(msg)) if msg.contains(name)),
                "{given:?}"
            );
        }
        let rules = Rules::from_params(&params(&[])).unwrap();
        assert_eq!(
            rules,
            Rules {
                group_by: "branch".into(),
                keep: 10,
                max_per_day: None,
                keep_released: None
            }
        );
    }

    mod model {
        use super::*;
        use proptest::prelude::*;

        /// A generated dataset: group (None: no `branch`), released, time, files.
        #[derive(Debug, Clone)]
        struct Generated {
            group: Option<u8>,
            released: bool,
            newest_ms: i64,
            files: usize,
        }

        fn generated() -> impl Strategy<Value = Generated> {
            (
                prop::option::weighted(0.9, 0u8..3),
                prop::bool::weighted(0.3),
                // A few days, several datasets a day, some at the same time.
                (0i64..4, 0i64..4).prop_map(|(day, hour)| day * D + hour * 3_600_000),
                1usize..4,
            )
                .prop_map(|(group, released, newest_ms, files)| Generated {
                    group,
                    released,
                    newest_ms,
                    files,
                })
        }

        /// The rules, written out plainly: per group, newest first (then by
        /// name), the first `keep_released` released ones stay; an
        /// unreleased one stays while fewer than `keep` stayed and fewer
        /// than `max_per_day` stayed on its day.
        fn expected(rules: &Rules, datasets: &[Generated]) -> Vec<bool> {
            let mut goes = vec![false; datasets.len()];
            for group in 0u8..3 {
                let mut members: Vec<usize> = (0..datasets.len())
                    .filter(|&i| datasets[i].group == Some(group))
                    .collect();
                members.sort_by_key(|&i| {
                    (std::cmp::Reverse(datasets[i].newest_ms), format!("s{i:03}"))
                });
                let released: Vec<usize> = members
                    .iter()
                    .copied()
                    .filter(|&i| datasets[i].released)
                    .collect();
                for (rank, &i) in released.iter().enumerate() {
                    goes[i] = rules.keep_released.is_some_and(|r| rank as u64 >= r);
                }
                let mut stayed: Vec<i64> = Vec::new();
                for &i in members.iter().filter(|&&i| !datasets[i].released) {
                    let day = datasets[i].newest_ms.div_euclid(D);
                    let that_day = stayed.iter().filter(|&&d| d == day).count() as u64;
                    if (stayed.len() as u64) < rules.keep
                        && rules.max_per_day.is_none_or(|m| that_day < m)
                    {
                        stayed.push(day);
                    } else {
                        goes[i] = true;
                    }
                }
            }
            goes
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

            /// Whatever the datasets and however the host cuts them into
            /// batches, the run deletes exactly the files of the datasets
            /// the rules let go, every file of each.
            #[test]
            fn keep_tags_deletes_exactly_the_datasets_its_rules_let_go(
                datasets in prop::collection::vec(generated(), 0..16),
                keep in 0u64..5,
                max_per_day in prop::option::of(1u64..3),
                keep_released in prop::option::of(0u64..3),
                cuts in prop::collection::vec(any::<bool>(), 16),
            ) {
                let rules = Rules { group_by: "branch".into(), keep, max_per_day, keep_released };
                let mut given = vec![("keep".to_owned(), keep.to_string())];
                if let Some(d) = max_per_day {
                    given.push(("max_per_day".into(), d.to_string()));
                }
                if let Some(r) = keep_released {
                    given.push(("keep_released".into(), r.to_string()));
                }
                prop_assert_eq!(&Rules::from_params(&given).unwrap(), &rules);
                // Datasets named s000, s001, ... in entity order; batches cut
                // between datasets where `cuts` says.
                let mut run = KeepTags::open(given).unwrap();
                let mut ids_of = Vec::new();
                let mut next_id = 0u64;
                let mut pending: Vec<(Entity, Vec<i64>)> = Vec::new();
                let mut first = 0u64;
                for (i, d) in datasets.iter().enumerate() {
                    let mut attributes = Vec::new();
                    if let Some(g) = d.group {
                        attributes.push(("branch", ["a", "b", "c"][g as usize]));
                    }
                    if d.released {
                        attributes.push(("released", "true"));
                    }
                    let times: Vec<i64> = (0..d.files).map(|j| d.newest_ms - j as i64).collect();
                    ids_of.push(next_id..next_id + d.files as u64);
                    next_id += d.files as u64;
                    pending.push((entity(&format!("s{i:03}"), &attributes), times));
                    if cuts[i] {
                        let b = batch(first, std::mem::take(&mut pending));
                        prop_assert!(run.plan(&b).unwrap().deletions.is_empty());
                        first = next_id;
                    }
                }
                let b = batch(first, pending);
                prop_assert!(run.plan(&b).unwrap().deletions.is_empty());
                let mut deleted = run.finish().unwrap().files();
                deleted.sort();
                let want: Vec<u64> = expected(&rules, &datasets)
                    .iter()
                    .zip(&ids_of)
                    .filter(|(goes, _)| **goes)
                    .flat_map(|(_, ids)| ids.clone())
                    .collect();
                prop_assert_eq!(deleted, want);
            }
        }
    }
}
