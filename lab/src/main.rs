use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "dedupd-lab",
    version,
    about = "Benchmark, soak and fault checks for dedupd"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure what lightweight transactions cost (see docs/lwt.md).
    Bench(dedupd_lab::bench::BenchArgs),
    /// A bounded soak: steady load with memory and p99 watched, then overload.
    Soak(dedupd_lab::bench::soak::SoakArgs),
    /// Check the guarantee under faults (needs a 3-node local cluster).
    Check(dedupd_lab::check::CheckArgs),
    /// How cost grows as work grows: sweeps and their charts (docs/lwt.md).
    Scale(dedupd_lab::scale::ScaleArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Their own logs would drown their reports, and the driver logs every
    // connection the faults break.
    dedupd::telemetry::init_with_default(dedupd::telemetry::LogFormat::Text, "warn,scylla=off");
    match Cli::parse().command {
        Command::Bench(args) => dedupd_lab::bench::run(args).await,
        Command::Soak(args) => dedupd_lab::bench::soak::run(args).await,
        Command::Check(args) => dedupd_lab::check::run(args).await,
        Command::Scale(args) => dedupd_lab::scale::run(args).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commands_ci_runs_parse() {
        for args in [
            &["dedupd-lab", "bench", "--profile", "ci", "--json", "b.json"][..],
            &["dedupd-lab", "soak", "--json", "s.json"],
            &["dedupd-lab", "check", "--json", "c.json"],
            &[
                "dedupd-lab",
                "check",
                "--faults",
                "clock-skew,clock-skew-beyond",
                "--dedupd-bin",
                "target/release/dedupd",
            ],
        ] {
            assert!(Cli::try_parse_from(args).is_ok(), "{args:?}");
        }
    }

    #[test]
    fn each_tool_has_its_default_keyspace_and_refuses_a_bad_name() {
        let keyspace = |command: &str| match Cli::parse_from(["dedupd-lab", command]).command {
            Command::Bench(args) => args.target.keyspace,
            Command::Soak(args) => args.target.keyspace,
            Command::Check(args) => args.target.keyspace,
            Command::Scale(_) => unreachable!("scale's keyspaces are tested in scale"),
        };
        assert_eq!(keyspace("bench").name.as_str(), "dedupd_bench");
        assert_eq!(keyspace("soak").name.as_str(), "dedupd_bench");
        assert_eq!(keyspace("check").name.as_str(), "dedupd_check");
        assert!(!keyspace("check").allow_existing);
        let named = Cli::parse_from([
            "dedupd-lab",
            "check",
            "--keyspace",
            "mine",
            "--allow-existing-keyspace",
        ]);
        let Command::Check(args) = named.command else {
            panic!("not the check command");
        };
        assert_eq!(args.target.keyspace.name.as_str(), "mine");
        assert!(args.target.keyspace.allow_existing);
        assert!(Cli::try_parse_from(["dedupd-lab", "soak", "--keyspace", "no-dashes"]).is_err());
    }
}
