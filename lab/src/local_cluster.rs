//! The local-cluster script (`deploy/local/cassandra`), as the lab tools
//! drive it: the bench and the soak start a node with it when no contact
//! points are named, the bench restarts that node with another Paxos
//! variant, and the checker stops and starts nodes under load.

use std::path::Path;

use anyhow::Context;
use tokio::process::Command;

/// Runs the script and returns the last line it printed (where `up` prints
/// the contact points).
pub async fn run(script: &Path, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(script)
        .args(args)
        .output()
        .await
        .with_context(|| format!("cannot run {}", script.display()))?;
    anyhow::ensure!(
        output.status.success(),
        "{} {} failed:\n{}",
        script.display(),
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_owned())
}

/// Starts the local node unless one runs, and returns its contact points.
pub async fn up(script: &Path) -> anyhow::Result<Vec<String>> {
    Ok(contact_point_list(&run(script, &["up"]).await?))
}

/// The contact points of the local cluster if it runs; none if it does not
/// (the script then prints nothing, which is not an error here: the caller
/// says what to start).
pub async fn contact_points(script: &Path) -> anyhow::Result<Vec<String>> {
    let output = Command::new(script).arg("contact-points").output().await?;
    Ok(contact_point_list(&String::from_utf8_lossy(&output.stdout)))
}

/// The process ids of the running nodes.
pub async fn pids(script: &Path) -> anyhow::Result<Vec<u32>> {
    let output = Command::new(script).arg("pids").output().await?;
    anyhow::ensure!(output.status.success(), "{} pids failed", script.display());
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect())
}

/// `host:port,host:port` as the script prints it.
fn contact_point_list(printed: &str) -> Vec<String> {
    printed
        .trim()
        .split(',')
        .filter(|node| !node.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_points_are_split_and_nothing_printed_is_none() {
        assert_eq!(
            contact_point_list("127.0.0.1:9042,127.0.0.2:9042\n"),
            vec!["127.0.0.1:9042".to_owned(), "127.0.0.2:9042".to_owned()]
        );
        assert!(contact_point_list("\n").is_empty());
    }
}
