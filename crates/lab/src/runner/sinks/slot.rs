//! The sink rows' consumer threads: two slots, each a static member whose instances follow
//! each other as the consumer-crash profile kills them, and the rebalance profile's third
//! consumer that joins and leaves.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use client::{Guarantee, Settings};
use sink::{Polled, Sink, SinkError};

use super::{Ctx, JOIN_AT_FRACTION, SLOTS, TAKEOVER_TIMEOUT};
use crate::history::{Event, Kind};
use crate::runner::produce::{new_producer, send_marks};
use crate::runner::sinks::ledger::LedgerDb;
use crate::runner::{Run, WARM_UP_KEY};
use crate::runner::{Shared, POLL_TIMEOUT};

/// How long the rebalance profile's joiner may own partitions with nothing to apply before the
/// nemesis sends it one record per partition.
const JOINER_IDLE_MAX: Duration = Duration::from_millis(500);

/// A death the consumer-crash profile deals to a sink consumer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Death {
    /// The handler fails part way through the batch: the transaction rolls back.
    MidBatch,
    /// The consumer stalls after polling while a successor claims its partitions.
    Paused,
}

impl<D: LedgerDb> Ctx<D> {
    /// Takes the next consumer crash the producer asked for, if one is due.
    fn take_death(&self) -> Option<Death> {
        let shared = &self.shared;
        let requested = shared.crashes_requested.load(Ordering::Relaxed);
        let done = shared.crashes_done.load(Ordering::Relaxed);
        if done >= requested {
            return None;
        }
        shared
            .crashes_done
            .compare_exchange(done, done + 1, Ordering::Relaxed, Ordering::Relaxed)
            .ok()?;
        Some(if done.is_multiple_of(2) {
            Death::MidBatch
        } else {
            Death::Paused
        })
    }
}

/// A slot's current consumer instance.
struct Member<D: LedgerDb> {
    sink: Sink<D::B>,
    instance: u32,
}

/// One consumer slot: a static member whose instances follow each other as they die.
fn slot<D: LedgerDb>(ctx: &Ctx<D>, slot: u32) -> Result<()> {
    let settings = ctx
        .settings
        .clone()
        .set("group.instance.id", format!("{}-sink-{slot}", ctx.topic));
    let mut member = Member {
        instance: ctx.next_instance(),
        sink: ctx.new_sink(&settings)?,
    };
    while !ctx.shared.stop.load(Ordering::Relaxed) {
        let polled = match member.sink.poll(POLL_TIMEOUT) {
            Ok(polled) => polled,
            Err(error) => {
                ctx.account(Err(error.widen()), &[]);
                continue;
            }
        };
        let death = (polled.applicable() > 1)
            .then(|| ctx.take_death())
            .flatten();
        member = match death {
            None => {
                ctx.apply(&member.sink, member.instance, polled);
                member
            }
            Some(Death::MidBatch) => killed_mid_batch(ctx, member, polled, &settings)?,
            Some(Death::Paused) => paused(ctx, member, polled, &settings)?,
        };
    }
    Ok(())
}

/// The handler dies half way through `polled`: the transaction rolls back, and a successor
/// with the same `group.instance.id` takes over.
fn killed_mid_batch<D: LedgerDb>(
    ctx: &Ctx<D>,
    member: Member<D>,
    polled: Polled,
    settings: &Settings,
) -> Result<Member<D>> {
    let Member { sink, instance } = member;
    let mut marks = Vec::new();
    let result = sink.apply(polled, |records, tx| {
        let half = &records[..records.len() / 2];
        ctx.handle(instance, half, tx, &mut marks)?;
        Err("killed mid-batch".to_string())
    });
    if !matches!(result, Err(SinkError::Handler(_))) {
        ctx.account(result, &marks);
    }
    drop(sink);
    ctx.record(Kind::Info, Event::CrashConsumer { instance });
    Ok(Member {
        instance: ctx.next_instance(),
        sink: ctx.new_sink(settings)?,
    })
}

/// The consumer stalls with `polled` in hand while its successor joins and claims the
/// partitions; then the zombie resumes and tries to commit what it polled.
fn paused<D: LedgerDb>(
    ctx: &Ctx<D>,
    zombie: Member<D>,
    polled: Polled,
    settings: &Settings,
) -> Result<Member<D>> {
    ctx.paused.fetch_add(1, Ordering::Relaxed);
    ctx.record(
        Kind::Info,
        Event::CrashConsumer {
            instance: zombie.instance,
        },
    );
    // The successor joins as the same static member: the coordinator hands it the paused
    // instance's assignment, and its claim bumps the epochs.
    let successor = Member {
        instance: ctx.next_instance(),
        sink: ctx.new_sink(settings)?,
    };
    let deadline = Instant::now() + TAKEOVER_TIMEOUT;
    while successor.sink.owned().is_empty()
        && Instant::now() < deadline
        && !ctx.shared.stop.load(Ordering::Relaxed)
    {
        ctx.step(&successor.sink, successor.instance);
    }
    // The zombie resumes and commits what it polled before the pause.
    if let Some(step) = ctx.apply(&zombie.sink, zombie.instance, polled) {
        ctx.shared.note(format!(
            "a paused consumer committed {} records: its successor had not claimed \
             the partitions yet",
            step.applied
        ));
    }
    drop(zombie);
    Ok(successor)
}

/// The rebalance profile's nemesis: a third consumer (a dynamic member, so leaving sends
/// LeaveGroup) joins part way through, applies at least one batch, and leaves.
pub(super) fn rebalance<D: LedgerDb>(ctx: &Ctx<D>, run: &Run<'_>) -> Result<()> {
    let params = &run.spec.params;
    let at = Duration::from_millis((params.paced_ms() as f64 * JOIN_AT_FRACTION) as u64);
    std::thread::sleep(at);
    let instance = ctx.next_instance();
    ctx.record(Kind::Invoke, Event::JoinConsumer { instance });
    let joiner = ctx.new_sink(&ctx.settings)?;
    ctx.record(Kind::Info, Event::JoinConsumer { instance });
    let deadline = Instant::now() + TAKEOVER_TIMEOUT;
    let mut applied = 0;
    let mut owned_since = None;
    let mut marks = None;
    while applied == 0 && Instant::now() < deadline {
        applied += ctx.step(&joiner, instance).map_or(0, |s| s.applied);
        if joiner.owned().is_empty() {
            continue;
        }
        // The transfers may all be sent before the rebalance hands the joiner its partitions
        // (a short --quick run, a fast producer): one warm-up record per partition, outside the
        // ledger, gives it something to apply.
        let since = *owned_since.get_or_insert_with(Instant::now);
        if marks.is_none() && since.elapsed() > JOINER_IDLE_MAX {
            let producer = new_producer(run, Guarantee::AtLeastOnce)?;
            send_marks(&producer, run.spec, WARM_UP_KEY)?;
            marks = Some(producer);
        }
    }
    if applied == 0 {
        ctx.shared
            .note("the joining consumer applied nothing before it left".into());
    }
    if let Some(producer) = marks {
        if let Err(error) = producer.flush(TAKEOVER_TIMEOUT) {
            ctx.shared
                .note(format!("the joiner's warm-up records: {error}"));
        }
    }
    ctx.record(Kind::Invoke, Event::LeaveConsumer { instance });
    drop(joiner);
    ctx.record(Kind::Info, Event::LeaveConsumer { instance });
    Ok(())
}

/// The consumer slots' threads; dropping them stops and joins them.
pub(super) struct Slots {
    pub(super) handles: Vec<std::thread::JoinHandle<Result<()>>>,
    shared: Arc<Shared>,
}

impl Slots {
    pub(super) fn start<D: LedgerDb>(ctx: &Arc<Ctx<D>>) -> Result<Slots> {
        let mut slots = Slots {
            handles: Vec::new(),
            shared: ctx.shared.clone(),
        };
        for n in 0..SLOTS {
            let ctx = ctx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("lab-sink-{n}"))
                .spawn(move || {
                    ctx.client_log
                        .clone()
                        .capture("sink consumer", || slot(&ctx, n))
                })
                .context("spawn a sink consumer thread")?;
            slots.handles.push(handle);
        }
        Ok(slots)
    }

    /// Stops and joins the slots; how each ended is a note unless it ended well.
    pub(super) fn stop(&mut self) {
        for result in self.join() {
            match result {
                Ok(Ok(())) => {}
                Ok(Err(error)) => self
                    .shared
                    .note(format!("sink consumer stopped: {error:#}")),
                Err(_) => self.shared.note("a sink consumer thread panicked".into()),
            }
        }
    }

    fn join(&mut self) -> Vec<std::thread::Result<Result<()>>> {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.handles.drain(..).map(|h| h.join()).collect()
    }
}

impl Drop for Slots {
    fn drop(&mut self) {
        let _ = self.join();
    }
}
