//! `[[destination]]` and `[credential.NAME]` made usable: the target an
//! upload call gets (for the plugin, a base URL and credential names; for
//! the host, the allowlist derived from the endpoint, the secrets and a
//! local root), the row the index keeps, and the reachability probe.
//!
//! Interface of an s3 destination (what the `s3` plugin relies on): its
//! `url` is `{endpoint}/{bucket}[/{prefix}]` with `path_style`, else
//! `{scheme}://{bucket}.{endpoint host}[:port][/{prefix}]`; it has exactly
//! one credential, named as in `credential`, which the host signs with
//! SigV4 for service `s3` and the destination's region; the allowlist is
//! the endpoint's host and port (and the bucket's virtual host).
//!
//! Invariant: a secret is read here and handed to the runtime inside a
//! [`Credential`], whose `Debug` redacts it; no error message quotes one.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::config::{Config, CredentialConfig, DestinationConfig, DestinationKind};
use crate::index::DestinationSpec;
use crate::runtime::{Credential, DestinationAccess, Params, RemoteAccess, UploadTarget};

/// How long the reachability probe waits for an answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest credential file read.
const MAX_SECRET_FILE: u64 = 64 * 1024;

/// A destination ready for uploads.
#[derive(Debug, Clone)]
pub struct Destination {
    pub name: String,
    pub kind: DestinationKind,
    /// The uploader plugin's name.
    pub plugin: String,
    pub params: Params,
    pub required: bool,
    pub target: UploadTarget,
    /// What the reachability probe asks: the bucket itself for s3 (a key
    /// under the prefix may well not exist), else the target's URL.
    pub probe_url: String,
}

/// The destinations of a configuration, and those that cannot be used now
/// (a credential missing from the environment, a file of the wrong mode),
/// each with its error.
#[derive(Debug, Default)]
pub struct Resolved {
    pub destinations: Vec<Destination>,
    /// (destination name, what is wrong and what to do).
    pub errors: Vec<(String, String)>,
}

/// Every configured destination (or only `only`), with its secrets read
/// now, so a fixed environment or file is picked up by the next sync.
pub fn resolve(config: &Config, only: Option<&str>) -> Resolved {
    let mut resolved = Resolved::default();
    for (i, destination) in config.destinations.iter().enumerate() {
        if only.is_some_and(|name| name != destination.name) {
            continue;
        }
        match target(config, i, destination) {
            Ok(target) => resolved.destinations.push(Destination {
                name: destination.name.clone(),
                kind: destination.kind,
                plugin: destination.plugin_name().to_owned(),
                params: destination
                    .params
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_string()))
                    .collect(),
                required: destination.required,
                probe_url: match destination.kind {
                    DestinationKind::S3 => s3_bucket_url(destination)
                        .map(|url| url.to_string())
                        .unwrap_or_else(|_| target.url.clone()),
                    _ => target.url.clone(),
                },
                target,
            }),
            Err(error) => resolved.errors.push((destination.name.clone(), error)),
        }
    }
    resolved
}

/// The `destinations` rows of a configuration.
pub fn destination_specs(config: &Config) -> Vec<DestinationSpec> {
    config
        .destinations
        .iter()
        .map(|destination| DestinationSpec {
            name: destination.name.clone(),
            plugin: destination.plugin_name().to_owned(),
            url: match destination.kind {
                DestinationKind::Local => destination
                    .path
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                DestinationKind::S3 => s3_base_url(destination)
                    .map(|u| u.to_string())
                    .unwrap_or_default(),
                DestinationKind::Http => destination.url.clone().unwrap_or_default(),
            },
            required: destination.required,
        })
        .collect()
}

fn target(
    config: &Config,
    i: usize,
    destination: &DestinationConfig,
) -> Result<UploadTarget, String> {
    let key = format!("destination[{i}]");
    let name = destination.name.clone();
    match destination.kind {
        DestinationKind::Local => {
            let root = destination
                .path
                .clone()
                .ok_or_else(|| format!("{key}.path is missing"))?;
            Ok(UploadTarget {
                name,
                url: String::new(),
                access: DestinationAccess::Local { root },
            })
        }
        DestinationKind::S3 => {
            let url = s3_base_url(destination)?;
            let endpoint = Url::parse(destination.endpoint.as_deref().unwrap_or_default())
                .map_err(|err| format!("{key}.endpoint: {err}"))?;
            let mut allowed_hosts = vec![host_and_port(&endpoint)?];
            let bucket_host = host_and_port(&url)?;
            if !allowed_hosts.contains(&bucket_host) {
                allowed_hosts.push(bucket_host);
            }
            let credential_name = destination
                .credential
                .clone()
                .ok_or_else(|| format!("{key}.credential is missing"))?;
            let credential = load_credential(
                config,
                &credential_name,
                CredentialUse::SigV4 {
                    region: destination.region_or_default().to_owned(),
                },
            )?;
            Ok(UploadTarget {
                name,
                url: url.to_string().trim_end_matches('/').to_owned(),
                access: DestinationAccess::Remote(RemoteAccess {
                    allowed_hosts,
                    credentials: [(credential_name, credential)].into(),
                    tls_ca_pem: None,
                }),
            })
        }
        DestinationKind::Http => {
            let text = destination
                .url
                .clone()
                .ok_or_else(|| format!("{key}.url is missing"))?;
            let url = Url::parse(&text).map_err(|err| format!("{key}.url: {err}"))?;
            let credentials = match &destination.credential {
                None => Default::default(),
                Some(credential_name) => [(
                    credential_name.clone(),
                    load_credential(config, credential_name, CredentialUse::Bearer)?,
                )]
                .into(),
            };
            Ok(UploadTarget {
                name,
                url: text.trim_end_matches('/').to_owned(),
                access: DestinationAccess::Remote(RemoteAccess {
                    allowed_hosts: vec![host_and_port(&url)?],
                    credentials,
                    tls_ca_pem: None,
                }),
            })
        }
    }
}

/// The base URL an s3 destination's plugin is given.
fn s3_base_url(destination: &DestinationConfig) -> Result<Url, String> {
    let mut url = s3_bucket_url(destination)?;
    if let Some(prefix) = destination.prefix.as_deref().filter(|p| !p.is_empty()) {
        let path = format!("{}/{prefix}", url.path().trim_end_matches('/'));
        url.set_path(&path);
    }
    Ok(url)
}

/// The URL of an s3 destination's bucket: `{endpoint}/{bucket}` in path
/// style, `{scheme}://{bucket}.{host}` otherwise.
fn s3_bucket_url(destination: &DestinationConfig) -> Result<Url, String> {
    let endpoint = destination.endpoint.as_deref().unwrap_or_default();
    let bucket = destination.bucket.as_deref().unwrap_or_default();
    let mut url = Url::parse(endpoint).map_err(|err| format!("endpoint {endpoint:?}: {err}"))?;
    if destination.path_style.unwrap_or(false) {
        url.set_path(&format!("/{bucket}"));
    } else {
        let host = url
            .host_str()
            .ok_or_else(|| format!("endpoint {endpoint:?} has no host"))?
            .to_owned();
        url.set_host(Some(&format!("{bucket}.{host}")))
            .map_err(|err| format!("bucket host {bucket}.{host}: {err}"))?;
        url.set_path("");
    }
    Ok(url)
}

/// `host:port` of a URL, as the allowlist takes it.
fn host_and_port(url: &Url) -> Result<String, String> {
    let host = url
        .host_str()
        .ok_or_else(|| format!("{url} has no host"))?
        .to_ascii_lowercase();
    let port = url
        .port_or_known_default()
        .ok_or_else(|| format!("{url} has no port"))?;
    Ok(format!("{host}:{port}"))
}

/// What a credential is used for.
enum CredentialUse {
    SigV4 { region: String },
    Bearer,
}

/// A credential file's content. `Debug` never shows a secret.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretFile {
    access_key: Option<String>,
    secret_key: Option<String>,
    session_token: Option<String>,
    token: Option<String>,
}

impl std::fmt::Debug for SecretFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |secret: &Option<String>| secret.as_ref().map(|_| "<redacted>");
        f.debug_struct("SecretFile")
            .field("access_key", &self.access_key)
            .field("secret_key", &shown(&self.secret_key))
            .field("session_token", &shown(&self.session_token))
            .field("token", &shown(&self.token))
            .finish()
    }
}

fn load_credential(
    config: &Config,
    name: &str,
    usage: CredentialUse,
) -> Result<Credential, String> {
    let key = format!("credential.{name}");
    let source = config
        .credentials
        .get(name)
        .ok_or_else(|| format!("no [{key}] table"))?;
    let secrets = match &source.file {
        Some(path) => read_secret_file(&key, path)?,
        None => from_environment(&key, source)?,
    };
    match usage {
        CredentialUse::SigV4 { region } => match (secrets.access_key, secrets.secret_key) {
            (Some(access_key_id), Some(secret_access_key))
                if !access_key_id.is_empty() && !secret_access_key.is_empty() =>
            {
                Ok(Credential::SigV4 {
                    access_key_id,
                    secret_access_key,
                    session_token: secrets.session_token.filter(|t| !t.is_empty()),
                    region,
                    service: "s3".to_owned(),
                })
            }
            _ => Err(format!(
                "{key} holds no access key and secret key (access_key and secret_key in its file, or access_key_env and secret_key_env)"
            )),
        },
        CredentialUse::Bearer => match secrets.token {
            Some(token) if !token.is_empty() => Ok(Credential::Bearer(token)),
            _ => Err(format!(
                "{key} holds no bearer token (token in its file, or token_env)"
            )),
        },
    }
}

fn from_environment(key: &str, source: &CredentialConfig) -> Result<SecretFile, String> {
    let read = |var: &Option<String>, field: &str| -> Result<Option<String>, String> {
        match var {
            None => Ok(None),
            Some(var) => match std::env::var(var) {
                Ok(value) if !value.is_empty() => Ok(Some(value)),
                _ => Err(format!(
                    "{key}.{field} names the environment variable {var}, which is not set (or empty) in wharf's environment"
                )),
            },
        }
    };
    Ok(SecretFile {
        access_key: read(&source.access_key_env, "access_key_env")?,
        secret_key: read(&source.secret_key_env, "secret_key_env")?,
        session_token: read(&source.session_token_env, "session_token_env")?,
        token: read(&source.token_env, "token_env")?,
    })
}

/// Reads a credential file, refusing one that others could read.
fn read_secret_file(key: &str, path: &Path) -> Result<SecretFile, String> {
    let shown = path.display();
    let file = std::fs::File::open(path)
        .map_err(|err| format!("{key}.file {shown} cannot be opened: {err}"))?;
    let meta = file
        .metadata()
        .map_err(|err| format!("{key}.file {shown}: {err}"))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{key}.file {shown} has mode {mode:03o}: a file holding a secret must be readable by its owner only; run `chmod 600 {shown}`"
        ));
    }
    if !meta.is_file() || meta.len() > MAX_SECRET_FILE {
        return Err(format!(
            "{key}.file {shown} must be a regular file of at most {MAX_SECRET_FILE} bytes"
        ));
    }
    let mut text = String::new();
    file.take(MAX_SECRET_FILE)
        .read_to_string(&mut text)
        .map_err(|err| format!("{key}.file {shown} cannot be read: {err}"))?;
    // The parser's own message may quote the file, secret included: not
    // shown.
    toml::from_str(&text).map_err(|_| {
        format!(
            "{key}.file {shown} is not TOML with access_key and secret_key (and optionally session_token), or token"
        )
    })
}

/// Whether a destination can be reached now: a local directory exists (or
/// is created) and takes a file; a remote endpoint answers an unsigned
/// HEAD at all (any status; for s3 the HEAD is of the bucket, and a 404
/// means it does not exist). The error says what is wrong, naming the destination.
pub fn probe(destination: &Destination) -> Result<(), String> {
    let name = &destination.name;
    match &destination.target.access {
        DestinationAccess::Local { root } => probe_local(root).map_err(|err| {
            format!(
                "destination {name}: {} is not writable: {err}",
                root.display()
            )
        }),
        DestinationAccess::Remote(_) => {
            let url = &destination.probe_url;
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(0)
                .timeout_global(Some(PROBE_TIMEOUT))
                .build()
                .into();
            match agent.head(url.as_str()).call() {
                Ok(response)
                    if destination.kind == DestinationKind::S3
                        && response.status().as_u16() == 404 =>
                {
                    Err(format!(
                        "destination {name}: the bucket at {url} does not exist (404); create it or fix bucket"
                    ))
                }
                Ok(_) => Ok(()),
                Err(
                    err @ (ureq::Error::Io(_)
                    | ureq::Error::Timeout(_)
                    | ureq::Error::HostNotFound
                    | ureq::Error::ConnectionFailed),
                ) => Err(format!("destination {name}: {url} is unreachable: {err}")),
                // Anything else (a TLS setting, a protocol oddity) is for
                // the upload itself to report.
                Err(_) => Ok(()),
            }
        }
    }
}

fn probe_local(root: &PathBuf) -> std::io::Result<()> {
    std::fs::create_dir_all(root)?;
    tempfile::Builder::new()
        .prefix(".wharf-probe-")
        .tempfile_in(root)
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(text).unwrap()
    }

    #[test]
    fn an_s3_destination_gets_the_agreed_url_allowlist_and_one_sigv4_credential() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys.toml");
        std::fs::write(
            &keys,
            "access_key = \"AKIDEXAMPLE\"\nsecret_key = \"do-not-print-me\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = config(&format!(
            "[[destination]]\nname = \"s3\"\nkind = \"s3\"\nendpoint = \"http://127.0.0.1:9000\"\n\
             bucket = \"wharf\"\nprefix = \"a/b\"\npath_style = true\nregion = \"eu-west-1\"\ncredential = \"minio\"\n\
             [[destination]]\nname = \"aws\"\nkind = \"s3\"\nendpoint = \"https://s3.amazonaws.com\"\n\
             bucket = \"my-bucket\"\ncredential = \"minio\"\n\
             [credential.minio]\nfile = {:?}\n",
            keys.display().to_string()
        ));
        let resolved = resolve(&config, None);
        assert!(resolved.errors.is_empty(), "{:?}", resolved.errors);
        let [path_style, virtual_host] = &resolved.destinations[..] else {
            panic!("{resolved:?}");
        };
        assert_eq!(path_style.target.url, "http://127.0.0.1:9000/wharf/a/b");
        assert_eq!(path_style.plugin, "s3");
        assert_eq!(
            virtual_host.target.url,
            "https://my-bucket.s3.amazonaws.com"
        );
        let DestinationAccess::Remote(remote) = &virtual_host.target.access else {
            panic!("remote");
        };
        assert_eq!(
            remote.allowed_hosts,
            ["s3.amazonaws.com:443", "my-bucket.s3.amazonaws.com:443"]
        );
        let DestinationAccess::Remote(remote) = &path_style.target.access else {
            panic!("remote");
        };
        assert_eq!(remote.allowed_hosts, ["127.0.0.1:9000"]);
        assert_eq!(remote.credentials.keys().collect::<Vec<_>>(), ["minio"]);
        match &remote.credentials["minio"] {
            Credential::SigV4 {
                region, service, ..
            } => assert_eq!((region.as_str(), service.as_str()), ("eu-west-1", "s3")),
            other => panic!("{other:?}"),
        }
        let shown = format!("{resolved:?}");
        assert!(!shown.contains("do-not-print-me"), "{shown}");
    }

    #[test]
    fn a_credential_file_others_can_read_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        std::fs::write(&path, "access_key = \"AKID\"\nsecret_key = \"hush-hush\"\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let text = format!(
            "[[destination]]\nname = \"s3\"\nkind = \"s3\"\nendpoint = \"http://127.0.0.1:9000\"\n\
             bucket = \"wharf\"\npath_style = true\ncredential = \"k\"\n[credential.k]\nfile = {:?}\n",
            path.display().to_string()
        );
        let resolved = resolve(&config(&text), None);
        let (name, error) = &resolved.errors[0];
        assert_eq!(name, "s3");
        assert!(
            error.contains(&path.display().to_string()) && error.contains("chmod 600"),
            "{error}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let resolved = resolve(&config(&text), None);
        assert!(resolved.errors.is_empty(), "{:?}", resolved.errors);
        // A file that is not TOML is reported without quoting it.
        std::fs::write(&path, "secret_key = hush-hush-unquoted\n").unwrap();
        let resolved = resolve(&config(&text), None);
        let (_, error) = &resolved.errors[0];
        assert!(!error.contains("hush"), "{error}");
    }

    #[test]
    fn a_missing_environment_variable_is_named_without_any_value() {
        let text = "[[destination]]\nname = \"web\"\nkind = \"http\"\nurl = \"http://127.0.0.1:1/up\"\n\
                    credential = \"t\"\n[credential.t]\ntoken_env = \"WHARF_TEST_UNSET_TOKEN_B\"\n";
        let resolved = resolve(&config(text), None);
        let (name, error) = &resolved.errors[0];
        assert_eq!(name, "web");
        assert!(error.contains("WHARF_TEST_UNSET_TOKEN_B"), "{error}");
    }

    #[test]
    fn a_local_destination_probes_writable_and_an_unreachable_endpoint_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("backup");
        let local = resolve(
            &config(&format!(
                "[[destination]]\nname = \"b\"\nkind = \"local\"\npath = {:?}\n",
                root.display().to_string()
            )),
            None,
        );
        probe(&local.destinations[0]).unwrap();
        assert!(root.is_dir());
        // A port nothing listens on (bound, then closed).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let remote = resolve(
            &config(&format!(
                "[[destination]]\nname = \"web\"\nkind = \"http\"\nurl = \"http://127.0.0.1:{port}/up\"\n"
            )),
            None,
        );
        let error = probe(&remote.destinations[0]).unwrap_err();
        assert!(
            error.contains("destination web") && error.contains("unreachable"),
            "{error}"
        );
    }
}
