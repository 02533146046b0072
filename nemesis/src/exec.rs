//! Running the machine's tools (`ip`, `tc`, `nft`, `mkfs.ext4`, `mount`)
//! for the namespaces and the file systems.

use std::process::Command;

use anyhow::{bail, Context};

/// Runs `program args`; an error with its stderr if it fails.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
