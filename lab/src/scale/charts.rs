//! The SVGs, drawn from every sweep's JSON in the output directory: one
//! chart holds the one-node and the three-node runs side by side.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::Report;
use super::cache_rss::CacheRssReport;
use super::storage::StorageReport;
use super::svg::{Axis, Chart, Series};
use super::throughput::{ConcurrencyReport, HTTP, OpenLoopReport, Swept};

/// The JSON files in `out` whose names start with `prefix`, sorted.
pub fn matching(out: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(out) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| {
            path.extension().is_some_and(|ext| ext == "json")
                && path
                    .file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(|name| name.starts_with(prefix))
        })
        .collect();
    paths.sort();
    paths
}

fn load<T: DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path)?;
    serde_json::from_str(&text).map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))
}

/// Every report in `out` whose file name starts with `prefix`; none when
/// there is no such file (that sweep has not run: no chart).
fn load_all<T: DeserializeOwned>(out: &Path, prefix: &str) -> anyhow::Result<Option<Vec<T>>> {
    let reports: Vec<T> = matching(out, prefix)
        .iter()
        .map(|path| load(path))
        .collect::<anyhow::Result<_>>()?;
    Ok((!reports.is_empty()).then_some(reports))
}

/// "1 node" or "3 nodes", from a report's contact points.
fn size_name(nodes: usize) -> String {
    if nodes == 1 {
        "1 node".into()
    } else {
        format!("{nodes} nodes")
    }
}

/// Raw blue, HTTP red; the first cluster size solid, the others dashed.
fn style(operation: &str, size_index: usize) -> (usize, bool) {
    let colour = if operation == HTTP { 1 } else { 0 };
    (colour + 2 * (size_index / 2), size_index % 2 == 1)
}

/// A line through `points`, coloured and dashed as `style` says.
fn line(
    name: String,
    (colour, dashed): (usize, bool),
    points: impl Iterator<Item = (f64, f64)>,
) -> Series {
    Series {
        name,
        points: points.collect(),
        dashed,
        colour,
    }
}

/// The series of every report (one a cluster size), each with the name
/// of its lines ("<operation>, <size>") and its style.
fn operation_lines<S>(
    reports: &[Report<Swept<S>>],
    operation: fn(&S) -> &str,
) -> Vec<(&S, String, (usize, bool))> {
    let mut lines = Vec::new();
    for (size_index, report) in reports.iter().enumerate() {
        let size = size_name(report.machine.nodes.len());
        for series in &report.figures.series {
            let operation = operation(series);
            lines.push((
                series,
                format!("{operation}, {size}"),
                style(operation, size_index),
            ));
        }
    }
    lines
}

const CAVEAT: &str = "shared 2-core machine: compare shapes, not absolute values";

fn write(out: &Path, name: &str, chart: &Chart) -> anyhow::Result<()> {
    let path = out.join(name);
    std::fs::write(&path, chart.render())?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

pub fn render_all(out: &Path) -> anyhow::Result<()> {
    concurrency(out)?;
    open_loop(out)?;
    cache_rss(out)?;
    storage(out)
}

fn concurrency(out: &Path) -> anyhow::Result<()> {
    let Some(reports) = load_all::<ConcurrencyReport>(out, "concurrency-")? else {
        return Ok(());
    };
    let mut throughput = Vec::new();
    let mut p99 = Vec::new();
    for (series, name, style) in operation_lines(&reports, |series| &series.operation) {
        let answered = || series.points.iter().filter(|point| point.ok > 0);
        throughput.push(line(
            name.clone(),
            style,
            answered().map(|point| (point.clients as f64, point.throughput_per_s)),
        ));
        p99.push(line(
            name,
            style,
            answered().map(|point| (point.clients as f64, point.p99_ms)),
        ));
    }
    let secs = reports[0].figures.secs_per_point;
    write(
        out,
        "concurrency-throughput.svg",
        &Chart {
            title: "Claims of new keys per second against concurrent clients (closed loop)".into(),
            subtitle: format!("{secs} s per point; {CAVEAT}"),
            x: Axis::log2("concurrent clients"),
            y: Axis::linear("claims per second"),
            series: throughput,
            markers: Vec::new(),
        },
    )?;
    write(
        out,
        "concurrency-p99.svg",
        &Chart {
            title: "p99 latency against concurrent clients (closed loop)".into(),
            subtitle: format!("{secs} s per point; {CAVEAT}"),
            x: Axis::log2("concurrent clients"),
            y: Axis::log2("p99 latency (ms)"),
            series: p99,
            markers: Vec::new(),
        },
    )
}

fn open_loop(out: &Path) -> anyhow::Result<()> {
    let Some(reports) = load_all::<OpenLoopReport>(out, "open-loop-")? else {
        return Ok(());
    };
    let mut p99 = Vec::new();
    let mut p50 = Vec::new();
    let mut bound = 0.0;
    for (series, name, style) in operation_lines(&reports, |series| &series.operation) {
        bound = series.p99_bound_ms;
        let knee = series
            .knee_per_s
            .map_or("none".to_owned(), |knee| format!("{knee:.0}/s"));
        let answered = || series.points.iter().filter(|point| point.ok > 0);
        p99.push(line(
            format!("{name}: knee {knee}"),
            style,
            answered().map(|point| (point.offered_per_s, point.p99_ms)),
        ));
        p50.push(line(
            name,
            style,
            answered().map(|point| (point.offered_per_s, point.p50_ms)),
        ));
    }
    let subtitle = format!(
        "{} s per rate; knee: p99 > {bound:.0} ms or < 90 % served; {CAVEAT}",
        reports[0].figures.secs_per_point
    );
    write(
        out,
        "open-loop-p99.svg",
        &Chart {
            title: "p99 latency against offered load (open loop, new keys)".into(),
            subtitle: subtitle.clone(),
            x: Axis::log2("offered claims per second"),
            y: Axis::log2("p99 latency (ms)"),
            series: p99,
            markers: Vec::new(),
        },
    )?;
    write(
        out,
        "open-loop-p50.svg",
        &Chart {
            title: "Median latency against offered load (open loop, new keys)".into(),
            subtitle,
            x: Axis::log2("offered claims per second"),
            y: Axis::log2("p50 latency (ms)"),
            series: p50,
            markers: Vec::new(),
        },
    )
}

fn cache_rss(out: &Path) -> anyhow::Result<()> {
    let path = out.join("cache-rss.json");
    if !path.exists() {
        return Ok(());
    }
    let report = load::<CacheRssReport>(&path)?.figures;
    let mut series = Vec::new();
    let mut markers = Vec::new();
    for (index, run) in report.series.iter().enumerate() {
        let name = if run.cache_mib == 0 {
            "cache off (--completed-cache-mib 0)".to_owned()
        } else {
            format!("cache {} MiB", run.cache_mib)
        };
        series.push(Series {
            name,
            points: run
                .points
                .iter()
                .map(|point| (point.completed_claims as f64, point.rss_kib as f64 / 1024.0))
                .collect(),
            dashed: run.cache_mib == 0,
            colour: index + 2,
        });
        if let Some(capacity) = run.estimated_capacity_claims {
            markers.push((
                capacity as f64,
                format!("{} MiB by the cache's weights", run.cache_mib),
            ));
        }
    }
    write(
        out,
        "cache-rss.svg",
        &Chart {
            title: "dedupd's RSS against completed claims it has seen".into(),
            subtitle: format!("completed in steps of {}; {CAVEAT}", report.step_claims),
            x: Axis::linear("completed claims"),
            y: Axis::linear("RSS (MiB)"),
            series,
            markers,
        },
    )
}

fn storage(out: &Path) -> anyhow::Result<()> {
    for path in matching(out, "storage-") {
        let report: StorageReport = load(&path)?;
        let size = size_name(report.machine.nodes.len());
        let report = report.figures;
        let stem = path
            .file_stem()
            .and_then(|stem| stem.to_str())
            .unwrap_or("storage");
        let markers = vec![
            (report.writes_end_secs, "writes end".to_owned()),
            (report.purgeable_secs, "TTL + gc_grace passed".to_owned()),
            (report.compaction_secs, "major compaction".to_owned()),
        ];
        let tables: Vec<String> = report
            .samples
            .first()
            .map(|sample| sample.tables.iter().map(|t| t.table.clone()).collect())
            .unwrap_or_default();
        let per_table = |figure: &dyn Fn(&super::storage::TableStats) -> f64| -> Vec<Series> {
            tables
                .iter()
                .enumerate()
                .map(|(index, table)| Series {
                    name: table.clone(),
                    points: report
                        .samples
                        .iter()
                        .filter_map(|sample| {
                            let stats = sample.tables.iter().find(|t| &t.table == table)?;
                            Some((sample.at_secs, figure(stats)))
                        })
                        .collect(),
                    dashed: false,
                    colour: index,
                })
                .collect()
        };
        let subtitle = format!(
            "{size}, node {} flushed at each sample; TTL {} s, gc_grace {} s, {:.0} claims/s for {} s; paxos_state_purging {}",
            report.node,
            report.ttl_secs,
            report.gc_grace_secs,
            report.rate_per_s,
            report.write_secs,
            report.paxos_state_purging
        );
        write(
            out,
            &format!("{stem}-disk.svg"),
            &Chart {
                title: "Disk used (live SSTables) over a run of short-TTL claims".into(),
                subtitle: subtitle.clone(),
                x: Axis::linear("seconds since the first claim"),
                y: Axis::linear("KiB on disk"),
                series: per_table(&|stats| stats.space_used_live as f64 / 1024.0),
                markers: markers.clone(),
            },
        )?;
        let mut rows = per_table(&|stats| stats.partitions_estimate as f64);
        for series in &mut rows {
            series.name = format!("{}: partitions on disk", series.name);
            series.dashed = true;
        }
        rows.truncate(2);
        rows.insert(
            0,
            Series {
                name: "claims: live rows (CQL count)".into(),
                points: report
                    .samples
                    .iter()
                    .filter_map(|sample| Some((sample.at_secs, sample.live_rows? as f64)))
                    .collect(),
                dashed: false,
                colour: 0,
            },
        );
        write(
            out,
            &format!("{stem}-rows.svg"),
            &Chart {
                title: "Rows a read sees against partitions still on disk".into(),
                subtitle: subtitle.clone(),
                x: Axis::linear("seconds since the first claim"),
                y: Axis::linear("rows / partitions (estimate)"),
                series: rows,
                markers: markers.clone(),
            },
        )?;
        let mut tombstones = per_table(&|stats| stats.droppable_tombstone_ratio);
        tombstones.truncate(2);
        write(
            out,
            &format!("{stem}-tombstones.svg"),
            &Chart {
                title: "Droppable tombstone ratio (expired cells purgeable at compaction)".into(),
                subtitle,
                x: Axis::linear("seconds since the first claim"),
                y: Axis::linear("droppable tombstone ratio"),
                series: tombstones,
                markers,
            },
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::throughput::RAW;
    use super::*;

    #[test]
    fn styles_keep_operations_apart_by_colour_and_sizes_by_dashes() {
        assert_eq!(style(RAW, 0), (0, false));
        assert_eq!(style(HTTP, 0), (1, false));
        assert_eq!(style(RAW, 1), (0, true));
        assert_eq!(style(HTTP, 1), (1, true));
        assert_eq!(size_name(1), "1 node");
        assert_eq!(size_name(3), "3 nodes");
    }
}
