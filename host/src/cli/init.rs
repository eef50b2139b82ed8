//! `wharf init`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::config::Config;
use crate::index::Index;
use crate::store::DataDir;

pub(super) fn init(data_dir: &DataDir, config_path: &Path) -> anyhow::Result<ExitCode> {
    data_dir.create().with_context(|| {
        format!(
            "cannot create the data directory {}",
            data_dir.root().display()
        )
    })?;
    if config_path.exists() {
        // Validate what is there rather than overwrite an operator's edits.
        Config::load(config_path)?;
        println!("kept existing configuration {}", config_path.display());
    } else {
        let text = format!(
            "# wharf configuration: every key with its default value.\n\
             # Remove a key to keep following the default.\n\n{}",
            Config::default().to_toml()
        );
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(config_path)
            .with_context(|| format!("cannot create {}", config_path.display()))?;
        file.write_all(text.as_bytes())?;
        println!("wrote {}", config_path.display());
    }
    let index = Index::open(&data_dir.index_path())
        .with_context(|| format!("cannot open the index {}", data_dir.index_path().display()))?;
    println!(
        "index {} is at schema version {}",
        data_dir.index_path().display(),
        index.schema_version()?
    );
    let token_existed = data_dir.api_token_path().exists();
    crate::api::token(data_dir)?;
    println!(
        "{} the HTTP API's bearer token {} (mode 0600)",
        if token_existed { "kept" } else { "wrote" },
        data_dir.api_token_path().display()
    );
    println!(
        "wharf is ready in {}; start it with `wharf run`",
        data_dir.root().display()
    );
    Ok(ExitCode::SUCCESS)
}
