//! `thoth-gateway config schema`: the JSON Schema of the config file, so that editors with a
//! TOML language server (Taplo, Even Better TOML) complete and check keys.

/// Prints the schema; always exit code 0.
pub fn run() -> i32 {
    println!("{}", thoth_config::JSON_SCHEMA.trim_end());
    0
}
