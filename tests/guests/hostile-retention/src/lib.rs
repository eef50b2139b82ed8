//! A retention plugin for the contract tests. Its `mode` parameter picks one
//! behaviour: honest ones (`keep`, `finish-all`, `disk`) that show what the
//! planner and its imports can do, and hostile answers the host must refuse.

use wharf_sdk::{
    Batch, Decisions, Deletion, ParamSpec, Params, Planner, PluginError, PluginInfo, Retention,
    param,
};

pub struct HostileRetention;

pub struct Run {
    mode: String,
    /// Every id seen so far in this run: state kept across batches.
    seen: Vec<u64>,
    first: Option<u64>,
}

impl Retention for HostileRetention {
    type Planner = Run;

    fn describe() -> PluginInfo {
        PluginInfo::new("hostile-retention", "0.0.1")
            .description("answers badly on purpose")
            .param(ParamSpec::new("mode", "how").default("keep"))
    }

    fn open(params: Params) -> Result<Run, PluginError> {
        let mode = param(&params, "mode").unwrap_or("keep").to_owned();
        if mode == "bad-params" {
            return Err(PluginError::invalid_params(
                "mode bad-params is refused at open",
            ));
        }
        Ok(Run {
            mode,
            seen: Vec::new(),
            first: None,
        })
    }
}

impl Planner for Run {
    fn plan(&mut self, batch: &Batch) -> Result<Decisions, PluginError> {
        self.seen.extend(batch.ids());
        let first = batch.ids().next();
        self.first = self.first.or(first);
        let mut decisions = Decisions::new();
        match self.mode.as_str() {
            "keep" | "finish-all" => {}
            "delete-all" => {
                for (id, file) in batch.files() {
                    let kind = batch.kind_of(&file);
                    let entity = batch.entity_of(&file).map_or("-", |e| e.name.as_str());
                    decisions.delete(id, &format!("{kind} of {entity}"));
                }
            }
            "released" => {
                // Keeps the files of released entities, deletes the rest.
                for (id, file) in batch.files() {
                    let released = batch.entity_of(&file).and_then(|e| e.attribute("released"))
                        == Some("true");
                    if !released {
                        decisions.delete(id, "not released");
                    }
                }
            }
            "disk" => {
                let space = wharf_sdk::disk::space();
                if let Some(id) = first {
                    decisions.delete(
                        id,
                        &format!("free {} of {}", space.free_bytes, space.total_bytes),
                    );
                }
            }
            "dup" => {
                if let Some(id) = first {
                    decisions.delete(id, "once");
                    decisions.delete(id, "twice");
                }
            }
            "stray" => {
                let max = batch.ids().max().unwrap_or(0);
                decisions.delete(max + 1000, "not in the batch");
            }
            "bad-reason" => {
                if let Some(id) = first {
                    decisions.deletions.push(Deletion {
                        file: id,
                        reason: 5,
                    });
                }
            }
            "reason-flood" => {
                decisions.reasons = (0..100).map(|i| format!("reason {i}")).collect();
            }
            "flood" => {
                // 100,000 copies of one id for a small batch.
                if let Some(id) = first {
                    decisions.reasons.push("again".into());
                    decisions.deletions = vec![
                        Deletion {
                            file: id,
                            reason: 0
                        };
                        100_000
                    ];
                }
            }
            "again" => {
                if let Some(id) = first {
                    decisions.delete(id, "first time");
                }
            }
            "panic" => panic!("hostile retention panics on purpose"),
            other => return Err(PluginError::invalid_params(format!("unknown mode {other}"))),
        }
        Ok(decisions)
    }

    fn finish(&mut self) -> Result<Decisions, PluginError> {
        let mut decisions = Decisions::new();
        match self.mode.as_str() {
            "finish-all" => {
                for id in &self.seen {
                    decisions.delete(*id, "whole run");
                }
            }
            "again" => {
                if let Some(id) = self.first {
                    decisions.delete(id, "second time");
                }
            }
            _ => {}
        }
        Ok(decisions)
    }
}

wharf_sdk::export_retention!(HostileRetention);
