//! Uploader calls: one file to one destination, which is either remote
//! (reached with `http`, within its allowlist, signed with its credentials
//! by the host) or a local directory (reached with `local-store`).

use std::path::PathBuf;

use super::{CallError, CallFile, Grants, Params, entered};
use crate::runtime::bindings::{Destination, DestinationKind, UploadResult};
use crate::runtime::host::{HttpAccess, LocalAccess, RemoteAccess};
use crate::runtime::registry::{Plugin, WorldPre};

/// How the host reaches a destination on a plugin's behalf.
#[derive(Debug, Clone)]
pub enum DestinationAccess {
    /// Over HTTP(S), to the allowed hosts only, with these credentials.
    Remote(RemoteAccess),
    /// A directory the host writes into.
    Local { root: PathBuf },
}

/// A destination as an upload call sees it.
#[derive(Debug, Clone)]
pub struct UploadTarget {
    /// The operator's name for it.
    pub name: String,
    /// Base URL of a remote destination; empty for a local one.
    pub url: String,
    pub access: DestinationAccess,
}

impl UploadTarget {
    /// What the plugin is told: never a secret, never a local path.
    fn describe(&self) -> Destination {
        let (kind, credentials) = match &self.access {
            DestinationAccess::Remote(remote) => (
                DestinationKind::Remote,
                remote.credentials.keys().cloned().collect(),
            ),
            DestinationAccess::Local { .. } => (DestinationKind::Local, Vec::new()),
        };
        Destination {
            name: self.name.clone(),
            kind,
            url: self.url.clone(),
            credentials,
        }
    }
}

impl Plugin {
    /// Uploads `file` to `target` through the host's `http` or `local-store`
    /// import, whichever the destination is reached by.
    pub fn upload(
        &self,
        file: &CallFile,
        target: &UploadTarget,
        params: &Params,
    ) -> Result<UploadResult, CallError> {
        let WorldPre::Uploader(pre) = &self.pre else {
            return Err(self.wrong_world("uploader"));
        };
        let grants = match &target.access {
            DestinationAccess::Remote(remote) => {
                let agent = self
                    .runtime
                    .http_agents
                    .agent(&target.name, remote.tls_ca_pem.as_deref())
                    .map_err(|err| {
                        CallError::Terminal(format!("destination {}: {err}", target.name))
                    })?;
                Grants {
                    http: Some(HttpAccess::new(
                        remote.clone(),
                        self.allowed_hosts.clone(),
                        self.limits.http_response_bytes,
                        agent,
                    )),
                    ..Grants::default()
                }
            }
            DestinationAccess::Local { root } => Grants {
                local: Some(LocalAccess { root: root.clone() }),
                ..Grants::default()
            },
        };
        let destination = target.describe();
        self.invoke("upload", grants, |store| {
            let entry = file.grant(store)?;
            entered(store, |store| pre.instantiate(store))?
                .wharf_plugin_transfer()
                .call_run(store, &entry, &destination, params)
        })
        .map(|(result, _)| result)
        // The host's refusal (a host outside the allowlist, a credential
        // the destination does not own) says which destination it guards.
        .map_err(|error| match error {
            CallError::AccessDenied(what) => {
                CallError::AccessDenied(format!("destination {}: {what}", target.name))
            }
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::host::Credential;

    #[test]
    fn the_plugin_is_told_credential_names_never_secrets() {
        let remote = RemoteAccess {
            allowed_hosts: vec!["s3.example.com".into()],
            credentials: [
                (
                    "token".to_owned(),
                    Credential::Bearer("bearer-secret".into()),
                ),
                (
                    "s3".to_owned(),
                    Credential::SigV4 {
                        access_key_id: "AKID".into(),
                        secret_access_key: "sigv4-secret".into(),
                        session_token: Some("session-secret".into()),
                        region: "us-east-1".into(),
                        service: "s3".into(),
                    },
                ),
            ]
            .into(),
            tls_ca_pem: None,
        };
        let target = UploadTarget {
            name: "store".into(),
            url: "https://s3.example.com/bucket".into(),
            access: DestinationAccess::Remote(remote),
        };
        let told = target.describe();
        assert_eq!(told.credentials, ["s3", "token"]);
        let everything = format!("{told:?} {target:?}");
        for secret in ["bearer-secret", "sigv4-secret", "session-secret"] {
            assert!(!everything.contains(secret), "{everything}");
        }
    }
}
