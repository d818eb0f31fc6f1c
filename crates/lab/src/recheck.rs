//! `ferry lab check HISTORY.jsonl`: judges a history saved by `--histories` again, with the same
//! checkers and verdict as the live run ([`crate::judge`]), and prints what they found. A
//! history is the whole evidence of a run, so a verdict can be re-derived, or a history recorded
//! against another cluster judged, without running anything.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::check::Counts;
use crate::history::{self, Event, Kind, Op};
use crate::judge::judge;
use crate::profile::{Params, Profile};
use crate::report::table::{ms, rate};
use crate::results::{RowResult, Verdict};
use crate::workload::Row;

/// `ferry lab check`'s options.
#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    /// A history written by `ferry lab --histories DIR` (DIR/PROFILE-ROW.jsonl).
    #[arg(value_name = "HISTORY.jsonl")]
    pub history: PathBuf,
    /// Judge it as this row (default: from the file name). The at-least-once run's history is
    /// also the at-least-once-idempotent row's.
    #[arg(long, value_name = "ROW", value_parser = str::parse::<Row>)]
    pub row: Option<Row>,
    /// The fault profile it ran under (default: from the file name).
    #[arg(long, value_name = "NAME")]
    pub profile: Option<Profile>,
    /// Measure latency and throughput over `--quick`'s record ids when the history does not
    /// show which mode wrote it (default: thorough).
    #[arg(long)]
    pub quick: bool,
}

/// The profile and row a `--histories` file name (`PROFILE-ROW.jsonl`, or
/// `PROFILE-ROW.TAG.jsonl` for further baseline trials and cost-curve runs) names, if it names
/// them.
fn names_of(path: &Path) -> Option<(Profile, Row)> {
    let stem = path.file_name()?.to_str()?.strip_suffix(".jsonl")?;
    let stem = stem.split('.').next()?;
    Profile::ALL.into_iter().find_map(|profile| {
        let row = stem.strip_prefix(profile.name())?.strip_prefix('-')?;
        Some((profile, row.parse().ok()?))
    })
}

/// The run sizes whose record ids `history` sent, with how they were found. Every run sends
/// each id of `0..records` at least once, so the distinct ids sent tell `--quick` from thorough;
/// a history that matches neither (cut short, recorded elsewhere) takes the `--quick` flag.
fn params_of(history: &[Op], quick: bool) -> (Params, String) {
    let mut ids: Vec<u64> = history
        .iter()
        .filter_map(|op| match op.event {
            Event::Send { id, .. } if op.kind == Kind::Invoke => Some(id),
            _ => None,
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let dense = ids.last().is_some_and(|&last| last + 1 == ids.len() as u64);
    let modes = [
        ("quick", Params::quick()),
        ("thorough", Params::thorough()),
        ("thorough baseline", Params::thorough().baseline()),
    ];
    for (mode, params) in modes {
        if dense && ids.len() as u64 == params.records() {
            return (
                params,
                format!("{mode} (the history sent its {} ids)", ids.len()),
            );
        }
    }
    let (mode, params) = if quick {
        ("quick", Params::quick())
    } else {
        ("thorough", Params::thorough())
    };
    let source = if quick { "--quick" } else { "the default" };
    let how = format!(
        "{mode} ({source}: the history's {} ids match no mode)",
        ids.len()
    );
    (params, how)
}

/// The verdict on the history `args` names, and the lines that show it.
pub fn check(args: &CheckArgs) -> Result<(RowResult, String)> {
    let path = &args.history;
    let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let ops = history::read_jsonl(std::io::BufReader::new(file))
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("read {}", path.display()))?;
    let named = names_of(path);
    let (Some(row), Some(profile)) = (
        args.row.or(named.map(|(_, row)| row)),
        args.profile.or(named.map(|(profile, _)| profile)),
    ) else {
        bail!(
            "{} is not named PROFILE-ROW.jsonl: pass --row and --profile",
            path.display()
        );
    };
    let (params, ids) = params_of(&ops, args.quick);
    let result = judge(row, profile, &params, &ops);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "history: {} ({} operations)",
        path.display(),
        ops.len()
    );
    let _ = writeln!(out, "row: {} · profile: {}", row.name(), profile.name());
    let _ = writeln!(
        out,
        "record ids: {ids}: latency over {:?}, throughput over {:?}",
        params.paced_ids(),
        params.burst_ids()
    );
    out.push_str(&render(&result));
    Ok((result, out))
}

/// What the checkers found, one figure a line.
fn render(result: &RowResult) -> String {
    let mut out = String::new();
    if let Some(counts) = &result.counts {
        out.push_str(&counts_lines(counts));
    }
    let latency = result.latency.as_ref().map_or("-".into(), |l| {
        format!(
            "p50 {} · p99 {} · p99.9 {} · max {} ms over {} records",
            ms(l.p50_us),
            ms(l.p99_us),
            ms(l.p999_us),
            ms(l.max_us),
            l.samples
        )
    });
    let _ = writeln!(out, "latency: {latency}");
    let throughput = result.throughput.as_ref().map_or("-".into(), |t| {
        format!(
            "{}/s ({} records in {} ms)",
            rate(t.per_second),
            t.records,
            ms(t.elapsed_us)
        )
    });
    let _ = writeln!(out, "throughput: {throughput}");
    if let Some(faults) = &result.faults {
        let kinds = faults.listed();
        let kinds = if kinds.is_empty() {
            String::new()
        } else {
            format!(": {}", kinds.join(", "))
        };
        let _ = writeln!(out, "faults: {} injected{kinds}", faults.injected);
    }
    if let Some(ledger) = &result.ledger {
        let _ = writeln!(
            out,
            "ledger: {} (total {}, was {}; {} accounts off)",
            if ledger.holds { "holds" } else { "broken" },
            ledger.total_observed,
            ledger.total_initial,
            ledger.accounts_off
        );
    }
    let _ = writeln!(out, "verdict: {}", verdict_text(&result.verdict));
    out
}

fn counts_lines(c: &Counts) -> String {
    format!(
        "sent: {} (last outcome ok {} · fail {} · info {}), {} expected, {} in aborted \
         transactions\nprocessed: {} records in {} processings ({} skipped as duplicates)\n\
         lost: {} (after ok {} · fail {} · info {}) · duplicated: {} · reordered: {} · aborted \
         reads: {} · phantom: {}\n",
        c.sent,
        c.send_ok,
        c.send_fail,
        c.send_info,
        c.expected,
        c.aborted,
        c.processed,
        c.processings,
        c.dedup_skipped,
        c.lost,
        c.lost_after_ok,
        c.lost_after_fail,
        c.lost_after_info,
        c.duplicated,
        c.reordered,
        c.aborted_reads,
        c.phantom
    )
}

fn verdict_text(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Holds => "holds (faults injected, promises kept)".into(),
        Verdict::Baseline => "baseline (no faults, promises kept)".into(),
        Verdict::Violated { reasons } => format!("violated: {}", reasons.join(", ")),
        Verdict::NoFaultInjected => "no fault injected (the row shows nothing)".into(),
        Verdict::NotMeasured => "not measured".into(),
    }
}

/// Prints the check of `args`' history; an error when the verdict is violated, so the command
/// exits non-zero.
pub fn run(args: &CheckArgs) -> Result<()> {
    let (result, text) = check(args)?;
    print!("{text}");
    if let Verdict::Violated { reasons } = &result.verdict {
        bail!(
            "{} broke its promises: {}",
            result.row.name(),
            reasons.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Process;

    fn op(index: usize, kind: Kind, process: Process, event: Event) -> Op {
        Op {
            index: index as u64,
            time_us: index as u64 * 100,
            kind,
            process,
            event,
        }
    }

    /// A history of the records `sent`, of which those in `processed` were processed once.
    fn history(sent: u64, processed: &[u64]) -> Vec<Op> {
        let send = |id| Event::Send {
            id,
            partition: Some(0),
            offset: Some(id as i64),
            txn: None,
            error: None,
        };
        let mut events = Vec::new();
        for id in 0..sent {
            events.push((Kind::Invoke, Process::Producer, send(id)));
            events.push((Kind::Ok, Process::Producer, send(id)));
        }
        for &id in processed {
            let process = Event::Process {
                id,
                partition: 0,
                offset: id as i64,
                applied: true,
            };
            events.push((Kind::Ok, Process::Consumer(0), process));
        }
        let events = events.into_iter().enumerate();
        events.map(|(i, (k, p, e))| op(i, k, p, e)).collect()
    }

    fn write(dir: &Path, name: &str, ops: &[Op]) -> PathBuf {
        let path = dir.join(name);
        let mut bytes = Vec::new();
        history::write_jsonl(ops, &mut bytes).unwrap();
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn args(history: PathBuf) -> CheckArgs {
        CheckArgs {
            history,
            row: None,
            profile: None,
            quick: false,
        }
    }

    #[test]
    fn a_clean_history_is_a_baseline_and_a_lost_record_violates() {
        let dir = tempfile::tempdir().unwrap();
        let clean = write(
            dir.path(),
            "none-at-least-once.jsonl",
            &history(3, &[0, 1, 2]),
        );
        let (result, text) = check(&args(clean.clone())).unwrap();
        assert_eq!(result.verdict, Verdict::Baseline, "{text}");
        assert!(text.contains("lost: 0 "), "{text}");
        assert!(run(&args(clean)).is_ok());

        let lossy = write(
            dir.path(),
            "lost-acks-exactly-once.jsonl",
            &history(3, &[0, 2]),
        );
        let (result, text) = check(&args(lossy.clone())).unwrap();
        assert_eq!(result.row, Row::ExactlyOnce);
        assert!(text.contains("lost: 1 (after ok 1 "), "{text}");
        assert!(text.contains("verdict: violated: 1 records lost"), "{text}");
        let error = run(&args(lossy)).unwrap_err().to_string();
        assert!(
            error.starts_with("exactly-once broke its promises: 1 records lost"),
            "{error}"
        );
    }

    #[test]
    fn row_and_profile_come_from_the_file_name_or_the_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "lab-run.jsonl", &history(2, &[0, 1]));
        let error = check(&args(path.clone())).unwrap_err().to_string();
        assert!(error.ends_with("is not named PROFILE-ROW.jsonl: pass --row and --profile"));
        let mut flags = args(path);
        flags.row = Some(Row::AtMostOnce);
        flags.profile = Some(Profile::LostAcks);
        let (result, _) = check(&flags).unwrap();
        assert_eq!(result.verdict, Verdict::NoFaultInjected);
    }

    #[test]
    fn file_names_as_data() {
        let cases = [
            (
                "none-at-least-once.jsonl",
                Some((Profile::None, Row::AtLeastOnce)),
            ),
            (
                "lost-acks-at-least-once-idempotent.jsonl",
                Some((Profile::LostAcks, Row::AtLeastOnceIdempotent)),
            ),
            (
                "/tmp/h/broker-kill-sink-postgres.jsonl",
                Some((Profile::BrokerKill, Row::SinkPostgres)),
            ),
            ("consumer-crash-exactly-once.json", None),
            ("none-at-least-twice.jsonl", None),
            ("at-most-once.jsonl", None),
        ];
        for (name, expect) in cases {
            assert_eq!(names_of(Path::new(name)), expect, "{name}");
        }
    }

    #[test]
    fn id_ranges_as_data() {
        let quick = Params::quick().records();
        let thorough = Params::thorough().records();
        let check = |sent: u64, flag: bool, expect: &str| {
            let (_, how) = params_of(&history(sent, &[]), flag);
            assert_eq!(how, expect, "{sent} {flag}");
        };
        check(quick, false, "quick (the history sent its 3600 ids)");
        check(thorough, true, "thorough (the history sent its 40000 ids)");
        check(
            5,
            true,
            "quick (--quick: the history's 5 ids match no mode)",
        );
        check(
            5,
            false,
            "thorough (the default: the history's 5 ids match no mode)",
        );
        check(
            quick - 1,
            false,
            "thorough (the default: the history's 3599 ids match no mode)",
        );
    }
}
