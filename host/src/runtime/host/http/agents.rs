//! One `ureq::Agent` per destination, kept by the runtime across calls, so
//! consecutive uploads to a destination reuse its idle connections (and a
//! plugin call never builds a TLS configuration of its own).
//!
//! Invariant: the map is bounded ([`MAX_AGENTS`]); an agent is keyed by the
//! destination's name and its TLS roots, so a destination whose CA changed
//! gets a fresh pool instead of connections verified against the old CA.

use std::sync::{Mutex, PoisonError};

use super::tls::tls_config;

/// Destinations whose connection pools are kept; the least recently used
/// one is dropped past this (its open connections close when its last call
/// ends).
const MAX_AGENTS: usize = 64;

struct Entry {
    destination: String,
    ca_pem: Option<Vec<u8>>,
    agent: ureq::Agent,
    last_used: u64,
}

#[derive(Default)]
struct Agents {
    entries: Vec<Entry>,
    clock: u64,
}

/// The runtime's connection pools, one per destination.
#[derive(Default)]
pub(crate) struct HttpAgents {
    agents: Mutex<Agents>,
}

impl HttpAgents {
    /// The agent of `destination` trusting the public roots and `ca_pem`,
    /// created on first use. An error says what is wrong with `ca_pem`.
    pub(crate) fn agent(
        &self,
        destination: &str,
        ca_pem: Option<&[u8]>,
    ) -> Result<ureq::Agent, String> {
        // A panic while holding the lock cannot leave the map inconsistent:
        // every change below is a single push, swap or field store.
        let mut agents = self.agents.lock().unwrap_or_else(PoisonError::into_inner);
        agents.clock += 1;
        let now = agents.clock;
        if let Some(entry) = agents
            .entries
            .iter_mut()
            .find(|e| e.destination == destination && e.ca_pem.as_deref() == ca_pem)
        {
            entry.last_used = now;
            return Ok(entry.agent.clone());
        }
        let agent = new_agent(ca_pem)?;
        let entry = Entry {
            destination: destination.to_owned(),
            ca_pem: ca_pem.map(<[u8]>::to_vec),
            agent: agent.clone(),
            last_used: now,
        };
        // The same destination with other roots replaces its old pool.
        let slot = agents
            .entries
            .iter()
            .position(|e| e.destination == destination)
            .or_else(|| {
                (agents.entries.len() >= MAX_AGENTS)
                    .then(|| {
                        agents
                            .entries
                            .iter()
                            .enumerate()
                            .min_by_key(|(_, e)| e.last_used)
                            .map(|(i, _)| i)
                    })
                    .flatten()
            });
        match slot {
            Some(i) => agents.entries[i] = entry,
            None => agents.entries.push(entry),
        }
        Ok(agent)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.agents
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entries
            .len()
    }
}

fn new_agent(ca_pem: Option<&[u8]>) -> Result<ureq::Agent, String> {
    let config = ureq::Agent::config_builder()
        // Statuses are the plugin's to judge.
        .http_status_as_error(false)
        // wharf follows redirects itself, checking and signing every hop.
        .max_redirects(0)
        .user_agent(concat!("wharf/", env!("CARGO_PKG_VERSION")))
        .tls_config(tls_config(ca_pem)?)
        .build();
    Ok(config.new_agent())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_agent_per_destination_and_roots_and_the_map_stays_bounded() {
        let agents = HttpAgents::default();
        agents.agent("a", None).unwrap();
        agents.agent("a", None).unwrap();
        assert_eq!(agents.len(), 1);
        // Roots that do not parse make no agent.
        assert!(agents.agent("a", Some(b"garbage")).is_err());
        assert_eq!(agents.len(), 1);
        for i in 0..MAX_AGENTS + 10 {
            agents.agent(&format!("d{i}"), None).unwrap();
        }
        assert_eq!(agents.len(), MAX_AGENTS);
    }
}
