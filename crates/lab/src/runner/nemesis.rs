//! The nemesis of the runs, as Jepsen calls what injects faults: the proxy's plan switched on
//! and off around the workload, the broker's `kill -9` and restart, and the proxy's fault
//! events turned into the history's nemesis operations.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chaos::Plan;

use super::RunSpec;
use crate::history::{micros_since, Event, Kind, Op, Process, Recorder};
use crate::profile::{Params, Profile};
use crate::target::Target;

/// When the paced part kills the broker, as a fraction of it.
const KILL_AT_FRACTION: f64 = 0.4;

/// Runs `workload` with the profile's proxy plan in force, and heals afterwards whatever
/// happened; the outer error is a failure to steer the proxy.
pub(crate) fn with_faults<R>(
    target: &Target,
    spec: &RunSpec,
    recorder: &Recorder,
    workload: impl FnOnce() -> R,
) -> Result<R> {
    recorder.record(Kind::Invoke, Process::Nemesis, start_faults(spec.profile));
    target.set_plan(spec.profile.plan(spec.seed, &spec.params))?;
    recorder.record(Kind::Info, Process::Nemesis, start_faults(spec.profile));
    let result = workload();
    recorder.record(Kind::Invoke, Process::Nemesis, Event::Heal {});
    target.set_plan(Plan::none(spec.seed))?;
    recorder.record(Kind::Info, Process::Nemesis, Event::Heal {});
    Ok(result)
}

fn start_faults(profile: Profile) -> Event {
    Event::StartFaults {
        plan: profile.name().to_string(),
    }
}

/// The broker-kill nemesis: `kill -9` part way through the paced records, restart after the
/// downtime.
pub(crate) fn kill_and_restart(
    target: &Target,
    params: &Params,
    recorder: &Recorder,
) -> Result<()> {
    let at = Duration::from_millis((params.paced_ms() as f64 * KILL_AT_FRACTION) as u64);
    std::thread::sleep(at);
    recorder.record(Kind::Invoke, Process::Nemesis, Event::KillBroker {});
    target.kill_broker()?;
    recorder.record(Kind::Info, Process::Nemesis, Event::KillBroker {});
    std::thread::sleep(Duration::from_millis(params.kill_downtime_ms));
    recorder.record(Kind::Invoke, Process::Nemesis, Event::RestartBroker {});
    target
        .restart_broker()
        .context("restart the broker after kill -9")?;
    recorder.record(Kind::Info, Process::Nemesis, Event::RestartBroker {});
    Ok(())
}

/// The proxy's fault events since `cursor`, as nemesis operations on the history's clock.
pub(crate) fn proxy_faults(target: &Target, cursor: u64, origin: Instant) -> Vec<Op> {
    target
        .events_since(cursor)
        .into_iter()
        .map(|(at, event)| Op {
            index: 0,
            time_us: micros_since(origin, at),
            kind: Kind::Info,
            process: Process::Nemesis,
            event: Event::Fault {
                fault: fault_name(&event.action),
                api_key: event.api_key,
                direction: format!("{:?}", event.direction).to_lowercase(),
                connection: event.connection,
            },
        })
        .collect()
}

fn fault_name(fault: &chaos::Fault) -> String {
    match fault {
        chaos::Fault::DropFrame => "drop_frame".into(),
        chaos::Fault::Delay { .. } => "delay".into(),
        chaos::Fault::Duplicate => "duplicate".into(),
        chaos::Fault::CutConnection => "cut_connection".into(),
        chaos::Fault::BlackHole { .. } => "black_hole".into(),
        chaos::Fault::Pause => "pause".into(),
        chaos::Fault::Resume => "resume".into(),
    }
}
