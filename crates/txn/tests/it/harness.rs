//! A small script language for driving a [`TxnCoordinator`] like a set of transactional
//! producers and a broker, and the transcript it prints: each test is a script and an `expect!`
//! snapshot of the transcript.
//!
//! ```text
//! config abort_interval=1 manual_sync   # settings, before anything else
//! p init id=tx timeout=60000            # alias, verb, key=value options
//! p add t/0 t/1                         # AddPartitionsToTxn
//! p offsets g                           # AddOffsetsToTxn
//! p txncommit g t/0=5:meta              # TxnOffsetCommit (gen= member= inst= for v3's fields)
//! fence IllegalGeneration               # the group's verdict on TxnOffsetCommit members (or ok)
//! p send t/0                            # a transactional Produce (checked with check_produce)
//! p commit                              # EndTxn (or `p abort`)
//! markers                               # the broker writes every marker due and calls back
//! tick 1000                             # advance the clock and fire due timers
//! sync / crash / restart                # fsync the log / kill -9 / clean restart
//! state / committed / deadline          # print every transaction / group offsets / next timer
//! ```
//!
//! An alias remembers its transactional id (`id=`, default `tx`) and the producer id and epoch
//! of its last successful InitProducerId; `pid=` and `epoch=` override them for one request.
//!
//! Transcript lines: `~` a record appended to the transaction log, `!` a marker request handed
//! to the broker, `+` offsets handed to the group coordinator, `alias.verb:` a response. Without
//! `manual_sync` every output is durable at once; with it, responses, markers and staged offsets
//! wait for `sync`, and `crash` loses whatever was not synced.
//!
//! Every call also checks what must hold whatever the script does: records decode and follow
//! Kafka's legal transitions, responses encode at their version, a successful request carried the
//! current producer id and epoch, one transaction never gets two outcomes, every transactional
//! write ends with a marker of its transaction, a committed EndTxn is never aborted.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use bytes::BytesMut;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, DescribeTransactionsRequest, EndTxnRequest,
    GroupId, InitProducerIdRequest, ListTransactionsRequest, TopicName, TransactionalId,
    TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::StrBytes;
use txn::{
    compact, DecodedRecord, GroupMember, GroupOffsets, MarkerRequest, Output, Record, Request,
    RequestContext, Response, ResponseToken, TxnConfig, TxnCoordinator, TxnState, TxnValue,
};

/// Runs `script` and returns its transcript.
pub fn run(script: &str) -> String {
    let mut world = World::new();
    for line in script.lines() {
        world.run_line(line);
    }
    world.transcript
}

pub fn check(script: &str, expect: expect_test::Expect) {
    expect.assert_eq(&run(script));
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

/// Partitions that exist: `t` has four, `u` two; any other topic is unknown.
fn partition_exists(topic: &str, partition: i32) -> Result<(), ResponseError> {
    let exists = match topic {
        "t" => (0..4).contains(&partition),
        "u" => (0..2).contains(&partition),
        _ => false,
    };
    exists
        .then_some(())
        .ok_or(ResponseError::UnknownTopicOrPartition)
}

/// A transaction as the checker names it: the transactional id and how many transactions it
/// started before (counted in the durable log, so a crash renumbers nothing).
type Instance = (String, u64);

#[derive(Clone, Default)]
struct Alias {
    transactional_id: String,
    producer_id: i64,
    epoch: i16,
    /// Partitions this producer was told are in its transaction.
    added: BTreeSet<(String, i32)>,
}

/// What the checker needs of a request when its response comes back.
#[derive(Clone)]
struct Sent {
    alias: String,
    verb: &'static str,
    version: i16,
    transactional_id: String,
    producer_id: i64,
    epoch: i16,
    commit: bool,
    partitions: Vec<(String, i32)>,
}

/// Something the broker may act on only once the log is durable up to `log_end`.
enum Held {
    Response {
        token: u64,
        response: Response,
        /// A successful EndTxn: the transaction it ended and how.
        ended: Option<(Instance, bool)>,
    },
    Markers(MarkerRequest, Instance),
    Stage(GroupOffsets),
}

pub struct World {
    pub coordinator: TxnCoordinator,
    config: TxnConfig,
    pub now_ms: u64,
    manual_sync: bool,
    next_token: u64,
    next_producer_id: i64,
    pending: BTreeMap<u64, Sent>,
    aliases: BTreeMap<String, Alias>,
    pub log: Vec<Record>,
    synced_len: usize,
    held: Vec<Held>,
    /// Marker requests the broker holds, not carried out yet.
    outstanding: Vec<(MarkerRequest, Instance)>,
    // The checker's model, rebuilt from the durable log on a crash.
    last_value: HashMap<String, TxnValue>,
    instances: HashMap<String, u64>,
    /// The outcome markers were written with, per transaction.
    outcomes: HashMap<Instance, bool>,
    /// Partitions each transaction's markers were written to.
    marked: HashMap<Instance, BTreeSet<(String, i32)>>,
    /// Successful EndTxn answers the producers saw.
    ended: Vec<(Instance, bool)>,
    /// Transactional writes acknowledged to producers.
    writes: Vec<(Instance, (String, i32))>,
    /// The group coordinator's committed offsets, as the markers left them.
    committed: BTreeMap<(String, String, i32), i64>,
    /// After a `fence` line, the group coordinator's verdict on every TxnOffsetCommit's member
    /// fields; the questions it was asked are printed (`? group ...`).
    member_verdict: Option<Option<ResponseError>>,
    transcript: String,
}

struct Options {
    kv: HashMap<String, String>,
    words: Vec<String>,
}

impl Options {
    fn parse(tokens: &[&str]) -> Options {
        let mut kv = HashMap::new();
        let mut words = Vec::new();
        for t in tokens {
            match t.split_once('=') {
                Some((k, v)) if !k.contains('/') => {
                    kv.insert(k.to_owned(), v.to_owned());
                }
                _ => words.push((*t).to_owned()),
            }
        }
        Options { kv, words }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.kv.get(key).map(String::as_str)
    }

    fn has_word(&self, word: &str) -> bool {
        self.words.iter().any(|w| w == word)
    }

    fn num<T: std::str::FromStr>(&self, key: &str, default: T) -> T {
        self.get(key)
            .map(|v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("bad number for {key}: {v}"))
            })
            .unwrap_or(default)
    }
}

/// The group coordinator's answers a `fence` line can script.
fn member_verdict(name: &str) -> Option<ResponseError> {
    match name {
        "ok" => None,
        "IllegalGeneration" => Some(ResponseError::IllegalGeneration),
        "UnknownMemberId" => Some(ResponseError::UnknownMemberId),
        "FencedInstanceId" => Some(ResponseError::FencedInstanceId),
        other => panic!("unknown member verdict {other}"),
    }
}

fn partition_spec(spec: &str) -> (String, i32) {
    let (topic, partition) = spec.split_once('/').expect("topic/partition");
    (
        topic.to_owned(),
        partition.parse().expect("partition index"),
    )
}

impl Default for World {
    fn default() -> Self {
        World::new()
    }
}

impl World {
    pub fn new() -> World {
        let config = TxnConfig::default();
        World {
            coordinator: TxnCoordinator::new(config.clone()),
            config,
            now_ms: 0,
            manual_sync: false,
            next_token: 1,
            next_producer_id: 1000,
            pending: BTreeMap::new(),
            aliases: BTreeMap::new(),
            log: Vec::new(),
            synced_len: 0,
            held: Vec::new(),
            outstanding: Vec::new(),
            last_value: HashMap::new(),
            instances: HashMap::new(),
            outcomes: HashMap::new(),
            marked: HashMap::new(),
            ended: Vec::new(),
            writes: Vec::new(),
            committed: BTreeMap::new(),
            member_verdict: None,
            transcript: String::new(),
        }
    }

    /// Runs one script line (comments and blank lines are skipped).
    pub fn run_line(&mut self, line: &str) {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            return;
        }
        writeln!(self.transcript, "> {line}").unwrap();
        self.step(line);
    }

    pub fn transcript(&self) -> &str {
        &self.transcript
    }

    /// (transactions committed, aborted, writes acknowledged, EndTxn answered ok) so far.
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let commits = self.outcomes.values().filter(|c| **c).count();
        let aborts = self.outcomes.len() - commits;
        (commits, aborts, self.writes.len(), self.ended.len())
    }

    fn step(&mut self, line: &str) {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        let opts = |from: usize| Options::parse(&tokens[from..]);
        match tokens[0] {
            "config" => self.configure(&opts(1)),
            "tick" => {
                let ms: u64 = tokens[1].parse().expect("tick takes milliseconds");
                self.advance(self.now_ms + ms);
            }
            "markers" => self.write_markers(&opts(1)),
            "fence" => self.member_verdict = Some(member_verdict(tokens[1])),
            "sync" => self.sync(),
            "crash" => self.crash(),
            "restart" => {
                self.sync();
                self.restart(true);
            }
            "list" => self.list(&opts(1)),
            "describe" => self.describe(&opts(1)),
            "state" => self.print_states(),
            "committed" => self.print_committed(),
            "deadline" => {
                let next = self.coordinator.next_deadline_ms();
                let line = next.map_or("none".to_owned(), |d| d.to_string());
                writeln!(self.transcript, "  next deadline {line}").unwrap();
            }
            alias => {
                let o = opts(2);
                match tokens[1] {
                    "init" => self.init(alias, &o),
                    "add" => self.add(alias, &o),
                    "offsets" => self.add_offsets(alias, &o),
                    "txncommit" => self.txn_commit(alias, &o),
                    "commit" => self.end(alias, &o, true),
                    "abort" => self.end(alias, &o, false),
                    "send" => self.send_data(alias, &o),
                    verb => panic!("unknown verb {verb}"),
                }
            }
        }
    }

    /// Moves the clock to `until_ms` the way a driver does: sleeping until each deadline the
    /// coordinator reports and ticking there.
    pub fn advance(&mut self, until_ms: u64) {
        while let Some(deadline_ms) = self.coordinator.next_deadline_ms() {
            if deadline_ms > until_ms {
                break;
            }
            self.now_ms = self.now_ms.max(deadline_ms);
            let out = self.coordinator.tick(self.now_ms);
            self.absorb(out);
        }
        self.now_ms = self.now_ms.max(until_ms);
    }

    fn configure(&mut self, opts: &Options) {
        let c = &mut self.config;
        c.transaction_max_timeout_ms = opts.num("max_timeout", c.transaction_max_timeout_ms);
        c.transactional_id_expiration_ms = opts.num("expiration", c.transactional_id_expiration_ms);
        c.transaction_abort_timed_out_transaction_cleanup_interval_ms = opts.num(
            "abort_interval",
            c.transaction_abort_timed_out_transaction_cleanup_interval_ms,
        );
        c.transaction_remove_expired_transaction_cleanup_interval_ms = opts.num(
            "remove_interval",
            c.transaction_remove_expired_transaction_cleanup_interval_ms,
        );
        c.transactional_ids_max = opts.num("ids_max", c.transactional_ids_max);
        c.transaction_partitions_max = opts.num("partitions_max", c.transaction_partitions_max);
        c.transaction_offsets_max = opts.num("offsets_max", c.transaction_offsets_max);
        c.offset_metadata_max_bytes = opts.num("metadata_max", c.offset_metadata_max_bytes);
        self.next_producer_id = opts.num("first_pid", self.next_producer_id);
        if opts.has_word("manual_sync") {
            self.manual_sync = true;
        }
        self.coordinator = TxnCoordinator::new(self.config.clone());
    }

    fn alias(&mut self, alias: &str, opts: &Options) -> &mut Alias {
        let a = self
            .aliases
            .entry(alias.to_owned())
            .or_insert_with(|| Alias {
                transactional_id: "tx".to_owned(),
                producer_id: -1,
                epoch: -1,
                added: BTreeSet::new(),
            });
        if let Some(id) = opts.get("id") {
            a.transactional_id = if id == "none" {
                String::new()
            } else {
                id.to_owned()
            };
        }
        a
    }

    /// The transactional id, producer id and epoch a request of `alias` carries.
    fn identity(&mut self, alias: &str, opts: &Options) -> (String, i64, i16) {
        let a = self.alias(alias, opts).clone();
        (
            a.transactional_id,
            opts.num("pid", a.producer_id),
            opts.num("epoch", a.epoch),
        )
    }

    fn ctx(&mut self, sent: Sent) -> RequestContext {
        let token = self.next_token;
        self.next_token += 1;
        let version = sent.version;
        self.pending.insert(token, sent);
        RequestContext {
            token: ResponseToken(token),
            api_version: version,
        }
    }

    fn send(&mut self, ctx: RequestContext, request: Request) {
        let mut next = self.next_producer_id;
        let mut ids = || {
            next += 1;
            next - 1
        };
        let asked = RefCell::new(Vec::new());
        let verdict = self.member_verdict.flatten();
        let members = |m: &GroupMember| {
            let instance = m.group_instance_id.unwrap_or("-");
            asked.borrow_mut().push(format!(
                "? group {} gen={} member={:?} inst={instance}",
                m.group_id, m.generation_id, m.member_id
            ));
            verdict
        };
        let out = self.coordinator.handle(
            self.now_ms,
            &ctx,
            request,
            &mut ids,
            &partition_exists,
            &members,
        );
        self.next_producer_id = next;
        if self.member_verdict.is_some() {
            for question in asked.into_inner() {
                writeln!(self.transcript, "  {question}").unwrap();
            }
        }
        self.absorb(out);
    }

    fn sent(&mut self, alias: &str, verb: &'static str, version: i16, opts: &Options) -> Sent {
        let (transactional_id, producer_id, epoch) = self.identity(alias, opts);
        Sent {
            alias: alias.to_owned(),
            verb,
            version,
            transactional_id,
            producer_id,
            epoch,
            commit: false,
            partitions: Vec::new(),
        }
    }

    fn init(&mut self, alias: &str, opts: &Options) {
        let version = opts.num("v", 4i16);
        let sent = self.sent(alias, "init", version, opts);
        let mut req = InitProducerIdRequest::default();
        req.transactional_id = Some(TransactionalId(s(&sent.transactional_id)));
        req.transaction_timeout_ms = opts.num("timeout", 60_000);
        // KIP-360: the producer says which id and epoch it holds (v3+ only).
        if version >= 3 && (opts.has_word("recover") || opts.get("pid").is_some()) {
            req.producer_id = sent.producer_id.into();
            req.producer_epoch = sent.epoch;
        }
        let ctx = self.ctx(sent);
        self.send(ctx, Request::InitProducerId(req));
    }

    fn add(&mut self, alias: &str, opts: &Options) {
        let version = opts.num("v", 3i16);
        let mut sent = self.sent(alias, "add", version, opts);
        let mut req = AddPartitionsToTxnRequest::default();
        req.v3_and_below_transactional_id = TransactionalId(s(&sent.transactional_id));
        req.v3_and_below_producer_id = sent.producer_id.into();
        req.v3_and_below_producer_epoch = sent.epoch;
        for spec in &opts.words {
            let (topic, partition) = partition_spec(spec);
            sent.partitions.push((topic.clone(), partition));
            let name = TopicName(s(&topic));
            match req.v3_and_below_topics.iter_mut().find(|t| t.name == name) {
                Some(t) => t.partitions.push(partition),
                None => {
                    let mut t = AddPartitionsToTxnTopic::default();
                    t.name = name;
                    t.partitions.push(partition);
                    req.v3_and_below_topics.push(t);
                }
            }
        }
        let ctx = self.ctx(sent);
        self.send(ctx, Request::AddPartitionsToTxn(req));
    }

    fn add_offsets(&mut self, alias: &str, opts: &Options) {
        let version = opts.num("v", 3i16);
        let sent = self.sent(alias, "offsets", version, opts);
        let mut req = AddOffsetsToTxnRequest::default();
        req.transactional_id = TransactionalId(s(&sent.transactional_id));
        req.producer_id = sent.producer_id.into();
        req.producer_epoch = sent.epoch;
        req.group_id = GroupId(s(opts.words.first().map_or("g", String::as_str)));
        let ctx = self.ctx(sent);
        self.send(ctx, Request::AddOffsetsToTxn(req));
    }

    fn txn_commit(&mut self, alias: &str, opts: &Options) {
        let version = opts.num("v", 3i16);
        let sent = self.sent(alias, "txncommit", version, opts);
        let mut req = TxnOffsetCommitRequest::default();
        req.transactional_id = TransactionalId(s(&sent.transactional_id));
        req.producer_id = sent.producer_id.into();
        req.producer_epoch = sent.epoch;
        let (group, specs) = opts
            .words
            .split_first()
            .expect("txncommit group t/p=offset...");
        req.group_id = GroupId(s(if group == "none" { "" } else { group }));
        req.generation_id = opts.num("gen", -1);
        req.member_id = s(opts.get("member").unwrap_or(""));
        req.group_instance_id = opts.get("inst").map(s);
        for spec in specs {
            let (tp, rest) = spec.split_once('=').expect("t/p=offset");
            let (topic, partition) = partition_spec(tp);
            let (offset, metadata) = match rest.split_once(':') {
                Some((o, m)) => (o, Some(m)),
                None => (rest, None),
            };
            let mut p = TxnOffsetCommitRequestPartition::default();
            p.partition_index = partition;
            p.committed_offset = offset.parse().expect("offset");
            p.committed_metadata = metadata.map(s);
            let name = TopicName(s(&topic));
            match req.topics.iter_mut().find(|t| t.name == name) {
                Some(t) => t.partitions.push(p),
                None => {
                    let mut t = TxnOffsetCommitRequestTopic::default();
                    t.name = name;
                    t.partitions.push(p);
                    req.topics.push(t);
                }
            }
        }
        let ctx = self.ctx(sent);
        self.send(ctx, Request::TxnOffsetCommit(req));
    }

    fn end(&mut self, alias: &str, opts: &Options, commit: bool) {
        let version = opts.num("v", 3i16);
        let verb = if commit { "commit" } else { "abort" };
        let mut sent = self.sent(alias, verb, version, opts);
        sent.commit = commit;
        // As librdkafka: once a transaction is being ended, nothing more is sent in it; the
        // next transaction adds its partitions again.
        if let Some(a) = self.aliases.get_mut(alias) {
            a.added.clear();
        }
        let mut req = EndTxnRequest::default();
        req.transactional_id = TransactionalId(s(&sent.transactional_id));
        req.producer_id = sent.producer_id.into();
        req.producer_epoch = sent.epoch;
        req.committed = commit;
        let ctx = self.ctx(sent);
        self.send(ctx, Request::EndTxn(req));
    }

    /// A transactional Produce to one partition, as a real producer sends it: only to a
    /// partition it was told is in its transaction (`force` sends anyway).
    fn send_data(&mut self, alias: &str, opts: &Options) {
        let (id, producer_id, epoch) = self.identity(alias, opts);
        let (topic, partition) = partition_spec(opts.words.first().expect("send t/p"));
        let known = self.aliases[alias]
            .added
            .contains(&(topic.clone(), partition));
        if !known && !opts.has_word("force") {
            writeln!(
                self.transcript,
                "  {alias}.send: not sent (partition not added)"
            )
            .unwrap();
            return;
        }
        let verdict = self
            .coordinator
            .check_produce(&id, producer_id, epoch, &topic, partition);
        match verdict {
            Ok(()) => {
                let instance = self.instance(&id);
                self.writes.push((instance, (topic, partition)));
                writeln!(self.transcript, "  {alias}.send: ok").unwrap();
            }
            Err(e) => writeln!(self.transcript, "  {alias}.send: {e:?}").unwrap(),
        }
    }

    fn list(&mut self, opts: &Options) {
        let version = opts.num("v", 1i16);
        let mut req = ListTransactionsRequest::default();
        if let Some(states) = opts.get("states") {
            req.state_filters = states.split(',').map(s).collect();
        }
        if let Some(pids) = opts.get("pids") {
            req.producer_id_filters = pids
                .split(',')
                .map(|p| p.parse::<i64>().unwrap().into())
                .collect();
        }
        req.duration_filter = opts.num("duration", -1i64);
        let sent = self.sent("admin", "list", version, opts);
        let ctx = self.ctx(sent);
        self.send(ctx, Request::ListTransactions(req));
    }

    fn describe(&mut self, opts: &Options) {
        let mut req = DescribeTransactionsRequest::default();
        req.transactional_ids = opts
            .words
            .iter()
            .map(|id| TransactionalId(s(if id == "none" { "" } else { id })))
            .collect();
        let sent = self.sent("admin", "describe", 0, opts);
        let ctx = self.ctx(sent);
        self.send(ctx, Request::DescribeTransactions(req));
    }

    /// Carries out the outstanding marker requests (only `id=`'s if given): markers on the
    /// partitions, offsets into the groups, then the callback.
    fn write_markers(&mut self, opts: &Options) {
        let only = opts.get("id").map(str::to_owned);
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.outstanding)
            .into_iter()
            .partition(|(m, _)| {
                only.as_ref()
                    .is_none_or(|id| m.transactional_id.as_str() == id)
            });
        self.outstanding = rest;
        for (marker, instance) in mine {
            self.carry_out(&marker, &instance);
            let out = self.coordinator.markers_written(
                self.now_ms,
                &marker.transactional_id,
                marker.producer_id,
                marker.producer_epoch,
            );
            self.absorb(out);
        }
    }

    fn carry_out(&mut self, marker: &MarkerRequest, instance: &Instance) {
        let outcome = *self
            .outcomes
            .entry(instance.clone())
            .or_insert(marker.commit);
        assert_eq!(
            outcome, marker.commit,
            "{instance:?} got both outcomes\n{}",
            self.transcript
        );
        let marked = self.marked.entry(instance.clone()).or_default();
        marked.extend(marker.partitions.iter().map(|(t, p)| (t.to_string(), *p)));
        if marker.commit {
            for g in &marker.groups {
                assert_eq!(
                    g.producer_id, marker.producer_id,
                    "group offsets of another producer"
                );
                for o in &g.offsets {
                    let key = (g.group_id.to_string(), o.topic.to_string(), o.partition);
                    self.committed.insert(key, o.offset);
                }
            }
        }
    }

    /// Makes the log durable and releases what waited for it.
    fn sync(&mut self) {
        self.synced_len = self.log.len();
        for held in std::mem::take(&mut self.held) {
            self.deliver(held);
        }
    }

    /// kill -9: the unsynced tail of the log is lost, and with it every answer and marker that
    /// waited for it; the broker restarts from what is durable.
    fn crash(&mut self) {
        self.log.truncate(self.synced_len);
        for held in std::mem::take(&mut self.held) {
            if let Held::Response { token, .. } = held {
                let sent = &self.pending[&token];
                writeln!(self.transcript, "  ({}.{} lost)", sent.alias, sent.verb).unwrap();
            }
        }
        self.restart(false);
    }

    /// Replays the log into a new coordinator. A clean restart must rebuild exactly the old
    /// coordinator's state; any restart must rebuild the same state from the compacted log.
    fn restart(&mut self, clean: bool) {
        let key = |r: &Record| r.key.clone();
        let mut compacted = compact(self.log.clone());
        compacted.sort_by_key(key);
        let mut fresh = replayed(&self.config, &self.log, self.now_ms);
        let from_compacted = replayed(&self.config, &compact(self.log.clone()), self.now_ms);
        let mut snapshot = fresh.0.snapshot();
        snapshot.sort_by_key(key);
        let mut compacted_snapshot = from_compacted.0.snapshot();
        compacted_snapshot.sort_by_key(key);
        assert_eq!(
            compacted_snapshot, snapshot,
            "the compacted log replays to the same state"
        );
        assert_eq!(
            fresh.1, from_compacted.1,
            "the compacted log recovers the same way"
        );
        if clean {
            let mut old = self.coordinator.snapshot();
            old.sort_by_key(key);
            assert_eq!(compacted, old, "compacted log equals snapshot");
            assert_eq!(snapshot, old, "replay rebuilds the snapshot");
        }
        // Clients lose their connections: answers still due are never sent.
        self.pending.clear();
        self.outstanding.clear();
        self.rebuild_model();
        let recovered = std::mem::take(&mut fresh.1);
        self.coordinator = fresh.0;
        for tx in self.coordinator.transactions() {
            writeln!(self.transcript, "  {}", describe_txn(&tx)).unwrap();
        }
        self.absorb(recovered);
    }

    /// Re-derives the per-id values and transaction numbering from the (durable) log.
    fn rebuild_model(&mut self) {
        self.last_value.clear();
        self.instances.clear();
        let log = std::mem::take(&mut self.log);
        for record in &log {
            self.follow(record);
        }
        self.log = log;
    }

    fn instance(&self, id: &str) -> Instance {
        (id.to_owned(), self.instances.get(id).copied().unwrap_or(0))
    }

    /// Checks one record against the previous value of its id and updates the model.
    fn follow(&mut self, record: &Record) {
        let DecodedRecord::Txn {
            transactional_id,
            value,
        } = record.decode().expect("emitted records decode")
        else {
            return;
        };
        let id = transactional_id.to_string();
        let Some(v) = value else {
            let last = self
                .last_value
                .remove(&id)
                .expect("tombstone of a known id");
            assert!(
                !last.state.in_flight(),
                "expired with a transaction in flight"
            );
            return;
        };
        match self.last_value.get(&id) {
            None => assert_eq!(v.state, TxnState::Empty, "a new id starts Empty"),
            Some(last) => {
                assert!(
                    v.state.may_follow(last.state),
                    "{id}: {:?} after {:?}",
                    v.state,
                    last.state
                );
                if v.producer_id == last.producer_id {
                    assert!(
                        v.producer_epoch >= last.producer_epoch,
                        "{id}: epoch went back"
                    );
                } else {
                    assert_eq!(
                        v.state,
                        TxnState::Empty,
                        "{id}: producer id changed outside InitProducerId"
                    );
                    assert_eq!(
                        v.last_producer_id, last.producer_id,
                        "{id}: rotation records the old id"
                    );
                }
                if last.state == TxnState::Ongoing && v.state == TxnState::Ongoing {
                    assert!(
                        last.partitions.is_subset(&v.partitions),
                        "{id}: partitions dropped"
                    );
                }
                if last.state == TxnState::Ongoing && v.state.is_completing() {
                    assert_eq!(
                        last.partitions, v.partitions,
                        "{id}: partitions changed at prepare"
                    );
                    assert_eq!(last.start_ms, v.start_ms, "{id}: start changed at prepare");
                }
            }
        }
        let starts = v.state == TxnState::Ongoing
            && self
                .last_value
                .get(&id)
                .is_none_or(|l| l.state != TxnState::Ongoing);
        if starts {
            *self.instances.entry(id.clone()).or_default() += 1;
        }
        self.last_value.insert(id, v);
    }

    /// Prints an output's records at once (they are appended at once) and hands the rest over
    /// now or, in `manual_sync` mode, at the next `sync`.
    pub fn absorb(&mut self, out: Output) {
        for record in &out.records {
            writeln!(self.transcript, "  ~ {}", describe_record(record)).unwrap();
            self.follow(record);
        }
        self.log.extend(out.records);
        let mut held = Vec::new();
        for g in out.offsets_to_stage {
            held.push(Held::Stage(g));
        }
        for m in out.markers {
            let instance = self.instance(&m.transactional_id);
            held.push(Held::Markers(m, instance));
        }
        for (token, response) in out.responses {
            let ended = self.check_response(token.0, &response);
            held.push(Held::Response {
                token: token.0,
                response,
                ended,
            });
        }
        // Held back only while some record is not durable yet.
        let durable = self.log.len() == self.synced_len && self.held.is_empty();
        if self.manual_sync && !durable {
            self.held.extend(held);
        } else {
            self.synced_len = self.log.len();
            for h in held {
                self.deliver(h);
            }
        }
    }

    /// Checks a response when it is produced: it encodes, and a success was earned by the
    /// current producer id and epoch.
    fn check_response(&mut self, token: u64, response: &Response) -> Option<(Instance, bool)> {
        let sent = self
            .pending
            .get(&token)
            .unwrap_or_else(|| panic!("response for unknown token {token}"))
            .clone();
        let mut buf = BytesMut::new();
        response
            .encode(sent.version, &mut buf)
            .unwrap_or_else(|e| panic!("{} v{}: {e}", sent.verb, sent.version));
        let ok = match response {
            Response::AddPartitionsToTxn(r) => {
                let mut codes = r
                    .results_by_topic_v3_and_below
                    .iter()
                    .flat_map(|t| &t.results_by_partition)
                    .map(|p| p.partition_error_code)
                    .peekable();
                codes.peek().is_some() && codes.all(|c| c == 0)
            }
            Response::AddOffsetsToTxn(r) => r.error_code == 0,
            Response::EndTxn(r) => r.error_code == 0,
            Response::TxnOffsetCommit(r) => r
                .topics
                .iter()
                .flat_map(|t| &t.partitions)
                .any(|p| p.error_code == 0),
            _ => false,
        };
        if !ok {
            return None;
        }
        let now = self
            .coordinator
            .transaction(&sent.transactional_id)
            .expect("a success needs a transactional id");
        assert_eq!(
            (now.producer_id, now.producer_epoch),
            (sent.producer_id, sent.epoch),
            "{}.{} succeeded with a stale producer\n{}",
            sent.alias,
            sent.verb,
            self.transcript
        );
        matches!(response, Response::EndTxn(_))
            .then(|| (self.instance(&sent.transactional_id), sent.commit))
    }

    fn deliver(&mut self, held: Held) {
        match held {
            Held::Stage(g) => {
                let offsets: Vec<String> = g
                    .offsets
                    .iter()
                    .map(|o| format!("{}/{}={}", o.topic, o.partition, o.offset))
                    .collect();
                writeln!(
                    self.transcript,
                    "  + stage {} pid={} {}",
                    g.group_id,
                    g.producer_id,
                    offsets.join(" ")
                )
                .unwrap();
            }
            Held::Markers(m, instance) => {
                writeln!(self.transcript, "  ! {}", describe_marker(&m)).unwrap();
                self.outstanding.push((m, instance));
            }
            Held::Response {
                token,
                response,
                ended,
            } => {
                let Some(sent) = self.pending.remove(&token) else {
                    panic!("response for unknown or answered token {token}");
                };
                if let Some(e) = ended {
                    self.ended.push(e);
                }
                let line = self.learn(&sent, &response);
                writeln!(self.transcript, "  {}.{}: {line}", sent.alias, sent.verb).unwrap();
            }
        }
    }

    /// Describes a response and updates what its producer learns from it.
    fn learn(&mut self, sent: &Sent, response: &Response) -> String {
        let a = self.aliases.entry(sent.alias.clone()).or_default();
        match response {
            Response::InitProducerId(r) => {
                if r.error_code != 0 {
                    return error(r.error_code);
                }
                a.producer_id = r.producer_id.0;
                a.epoch = r.producer_epoch;
                a.added.clear();
                format!("ok pid={} epoch={}", r.producer_id.0, r.producer_epoch)
            }
            Response::AddPartitionsToTxn(r) => {
                let parts: Vec<String> = r
                    .results_by_topic_v3_and_below
                    .iter()
                    .flat_map(|t| {
                        t.results_by_partition.iter().map(move |p| {
                            (
                                t.name.0.to_string(),
                                p.partition_index,
                                p.partition_error_code,
                            )
                        })
                    })
                    .map(|(t, p, code)| {
                        if code == 0 {
                            a.added.insert((t.clone(), p));
                        }
                        format!("{t}/{p}:{}", error(code))
                    })
                    .collect();
                if parts.is_empty() {
                    "none".to_owned()
                } else {
                    parts.join(" ")
                }
            }
            Response::AddOffsetsToTxn(r) => error(r.error_code),
            Response::EndTxn(r) => {
                if r.error_code == 0 {
                    a.added.clear();
                }
                error(r.error_code)
            }
            Response::TxnOffsetCommit(r) => {
                let parts: Vec<String> = r
                    .topics
                    .iter()
                    .flat_map(|t| {
                        t.partitions.iter().map(move |p| {
                            format!("{}/{}:{}", t.name.0, p.partition_index, error(p.error_code))
                        })
                    })
                    .collect();
                parts.join(" ")
            }
            Response::ListTransactions(r) => {
                let txns: Vec<String> = r
                    .transaction_states
                    .iter()
                    .map(|t| {
                        format!(
                            "{}:{}:{}",
                            t.transactional_id.0, t.producer_id.0, t.transaction_state
                        )
                    })
                    .collect();
                let mut line = format!("{} [{}]", error(r.error_code), txns.join(" "));
                if !r.unknown_state_filters.is_empty() {
                    let unknown: Vec<&str> =
                        r.unknown_state_filters.iter().map(|f| f.as_str()).collect();
                    write!(line, " unknown=[{}]", unknown.join(",")).unwrap();
                }
                line
            }
            Response::DescribeTransactions(r) => {
                let txns: Vec<String> = r
                    .transaction_states
                    .iter()
                    .map(|t| {
                        if t.error_code != 0 {
                            return format!(
                                "{:?}:{}",
                                t.transactional_id.0.as_str(),
                                error(t.error_code)
                            );
                        }
                        let topics: Vec<String> = t
                            .topics
                            .iter()
                            .map(|d| {
                                let ps: Vec<String> =
                                    d.partitions.iter().map(i32::to_string).collect();
                                format!("{}:{}", d.topic.0, ps.join(","))
                            })
                            .collect();
                        format!(
                            "{} {} pid={} epoch={} timeout={} start={} [{}]",
                            t.transactional_id.0,
                            t.transaction_state,
                            t.producer_id.0,
                            t.producer_epoch,
                            t.transaction_timeout_ms,
                            t.transaction_start_time_ms,
                            topics.join(" ")
                        )
                    })
                    .collect();
                txns.join("; ")
            }
        }
    }

    fn print_states(&mut self) {
        for tx in self.coordinator.transactions() {
            writeln!(self.transcript, "  {}", describe_txn(&tx)).unwrap();
        }
    }

    fn print_committed(&mut self) {
        let offsets: Vec<String> = self
            .committed
            .iter()
            .map(|((g, t, p), o)| format!("{g}:{t}/{p}={o}"))
            .collect();
        writeln!(self.transcript, "  committed [{}]", offsets.join(" ")).unwrap();
    }

    /// Lets time pass with a diligent broker until nothing is in flight, then checks the
    /// end-to-end promises: every transactional write was ended by a marker of its own
    /// transaction, and every EndTxn a producer saw succeed ended the way it asked.
    pub fn settle_and_check(&mut self) {
        self.manual_sync = false;
        self.sync();
        for _ in 0..4 {
            self.write_markers(&Options::parse(&[]));
            self.advance(self.now_ms + 3_600_000);
            self.write_markers(&Options::parse(&[]));
        }
        for tx in self.coordinator.transactions() {
            assert!(
                !tx.state.in_flight(),
                "{} still {:?}\n{}",
                tx.transactional_id,
                tx.state,
                self.transcript
            );
        }
        for (instance, tp) in &self.writes {
            assert!(
                self.outcomes.contains_key(instance),
                "write to {tp:?} in {instance:?} never ended\n{}",
                self.transcript
            );
            assert!(
                self.marked[instance].contains(tp),
                "{tp:?} of {instance:?} got no marker\n{}",
                self.transcript
            );
        }
        for (instance, commit) in &self.ended {
            assert_eq!(
                self.outcomes.get(instance),
                Some(commit),
                "EndTxn answered ok for {instance:?} (commit={commit}) but markers say otherwise\n{}",
                self.transcript
            );
        }
    }
}

/// A fresh coordinator with `log` replayed, and what recovery asks for.
fn replayed(config: &TxnConfig, log: &[Record], now_ms: u64) -> (TxnCoordinator, Output) {
    let mut c = TxnCoordinator::new(config.clone());
    for record in log {
        c.replay(record).expect("replay");
    }
    let out = c.recover(now_ms);
    (c, out)
}

fn list<T>(items: impl IntoIterator<Item = T>, f: impl Fn(T) -> String) -> String {
    items.into_iter().map(f).collect::<Vec<_>>().join(" ")
}

fn describe_txn(tx: &txn::TransactionDescription) -> String {
    let mut line = format!(
        "{}: {} pid={} epoch={} timeout={} start={} parts=[{}] groups=[{}]",
        tx.transactional_id,
        tx.state.as_str(),
        tx.producer_id,
        tx.producer_epoch,
        tx.timeout_ms,
        tx.start_ms,
        list(&tx.partitions, |(t, p)| format!("{t}/{p}")),
        list(&tx.groups, |g| g.to_string()),
    );
    for g in &tx.staged_offsets {
        write!(
            line,
            " staged {}:[{}]",
            g.group_id,
            list(&g.offsets, |o| format!(
                "{}/{}={}",
                o.topic, o.partition, o.offset
            ))
        )
        .unwrap();
    }
    line
}

fn describe_record(record: &Record) -> String {
    match record.decode().expect("emitted records decode") {
        DecodedRecord::Txn { transactional_id, value: Some(v) } => format!(
            "{transactional_id}: {} pid={} epoch={} last={}:{} timeout={} start={} parts=[{}] groups=[{}]",
            v.state.as_str(),
            v.producer_id,
            v.producer_epoch,
            v.last_producer_id,
            v.last_producer_epoch,
            v.timeout_ms,
            v.start_ms,
            list(&v.partitions, |(t, p)| format!("{t}/{p}")),
            list(&v.groups, |g| g.to_string()),
        ),
        DecodedRecord::Txn { transactional_id, value: None } => format!("{transactional_id}: deleted"),
        DecodedRecord::Offset { transactional_id, group_id, topic, partition, value } => match value {
            Some(o) => format!(
                "{transactional_id}: offset {group_id} {topic}/{partition}={} pid={} meta={:?}",
                o.offset,
                o.producer_id,
                o.metadata.as_str()
            ),
            None => format!("{transactional_id}: offset {group_id} {topic}/{partition} deleted"),
        },
    }
}

fn describe_marker(m: &MarkerRequest) -> String {
    let groups = list(&m.groups, |g| {
        let offsets = list(&g.offsets, |o| {
            format!("{}/{}={}", o.topic, o.partition, o.offset)
        });
        if offsets.is_empty() {
            g.group_id.to_string()
        } else {
            format!("{}:{offsets}", g.group_id)
        }
    });
    format!(
        "markers {} pid={} epoch={} {} parts=[{}] groups=[{groups}]",
        m.transactional_id,
        m.producer_id,
        m.producer_epoch,
        if m.commit { "COMMIT" } else { "ABORT" },
        list(&m.partitions, |(t, p)| format!("{t}/{p}")),
    )
}

pub fn error(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "ok".to_owned(),
        Some(e) => format!("{e:?}"),
    }
}
