//! The built-in default configuration of `thoth-gateway run` without `--config`.

use std::path::Path;

use anyhow::Context;
use thoth_config::Config;

const DEFAULT_TOML: &str = include_str!("../examples/default.toml");

/// The example MDM snapshots, embedded so the default works from any directory.
const EXAMPLE_SNAPSHOTS: [(&str, &str); 2] = [
    (
        "acme-jamf.json",
        include_str!("../examples/mdm/acme-jamf.json"),
    ),
    (
        "globex-intune.json",
        include_str!("../examples/mdm/globex-intune.json"),
    ),
];

/// The default config, relative to the current directory. Where the repository's
/// `examples/mdm/` snapshots are not at hand, embedded copies are written under the data
/// directory and used instead.
pub fn load() -> anyhow::Result<Config> {
    let mut config = Config::from_toml(DEFAULT_TOML, Path::new(".")).map_err(|errs| {
        anyhow::anyhow!(
            "the embedded default config is invalid: {}",
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        )
    })?;
    for provider in &mut config.mdm.providers {
        if provider.file.exists() {
            continue;
        }
        let name = provider
            .file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let Some((_, content)) = EXAMPLE_SNAPSHOTS.iter().find(|(n, _)| *n == name) else {
            continue;
        };
        let dir = config.data_dir.join("examples").join("mdm");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(&name);
        if !path.exists() {
            std::fs::write(&path, content)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        provider.file = path;
    }
    Ok(config)
}
