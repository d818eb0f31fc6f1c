//! A small script language for driving a [`GroupCoordinator`] like a set of Kafka clients, and
//! the transcript it prints: each test is a script and an `expect!` snapshot of the transcript.
//!
//! ```text
//! config initial_delay=100       # settings, before anything else
//! a join v=5 proto=range:m1      # alias, verb, key=value options
//! tick 100                       # advance the clock and fire due timeouts
//! a sync assign=a:x,b:y          # aliases stand for their current member ids
//! a commit t/0=5:meta t/1=7      # topic/partition=offset[:metadata]
//! a txncheck gen=1               # TxnOffsetCommit's member check (KIP-447)
//! fetch t/0 t/9 stable           # no partitions = all committed offsets
//! leave a inst:i1                # batch leave by alias or by group instance id
//! restart                        # replay every emitted record into a new coordinator
//! deltopic t                     # topic t was deleted: its offsets go
//! ```
//!
//! Member ids print as `{prefix}#{n}`: the n-th id generated for that client or instance id.
//! Every response is encoded at its request version, and every record decoded, on the way.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use bytes::{Bytes, BytesMut};
use group::{
    compact, CommittedOffset, DecodedRecord, GroupConfig, GroupCoordinator, Output, Record,
    Request, RequestContext, Response, ResponseToken,
};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DescribeGroupsRequest, DescribeGroupsResponse, GroupId, HeartbeatRequest,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    OffsetCommitRequest, OffsetDeleteRequest, OffsetFetchRequest, OffsetFetchResponse,
    SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

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

#[derive(Default, Clone)]
struct Alias {
    member_id: String,
    generation_id: i32,
    instance_id: Option<String>,
    /// The client's configuration: join options given once stick, as in a real client.
    join_options: HashMap<String, String>,
}

/// Join options that stick to an alias once given.
const STICKY_JOIN_OPTIONS: [&str; 4] = ["session", "rebalance", "proto", "type"];

pub struct World {
    pub coordinator: GroupCoordinator,
    config: GroupConfig,
    pub now_ms: u64,
    next_token: u64,
    /// token → (alias, verb, version) of requests not answered yet.
    pending: BTreeMap<u64, (String, &'static str, i16)>,
    aliases: HashMap<String, Alias>,
    /// full member id → label
    labels: HashMap<String, String>,
    label_counts: HashMap<String, usize>,
    pub log: Vec<Record>,
    restarts: u64,
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

    fn group(&self) -> GroupId {
        GroupId(s(self.get("group").unwrap_or("g")))
    }
}

impl World {
    pub fn new() -> World {
        let config = GroupConfig {
            group_initial_rebalance_delay_ms: 100,
            ..GroupConfig::default()
        };
        World {
            coordinator: GroupCoordinator::new(config.clone(), 1),
            config,
            now_ms: 0,
            next_token: 1,
            pending: BTreeMap::new(),
            aliases: HashMap::new(),
            labels: HashMap::new(),
            label_counts: HashMap::new(),
            log: Vec::new(),
            restarts: 0,
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

    /// Requests still waiting for a response, as `alias.verb`.
    pub fn unanswered(&self) -> Vec<String> {
        self.pending
            .values()
            .map(|(alias, verb, _)| format!("{alias}.{verb}"))
            .collect()
    }

    pub fn transcript(&self) -> &str {
        &self.transcript
    }

    fn step(&mut self, line: &str) {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        match tokens[0] {
            "config" => self.configure(&Options::parse(&tokens[1..])),
            "tick" => {
                let ms: u64 = tokens[1].parse().expect("tick takes milliseconds");
                self.advance(self.now_ms + ms);
            }
            "fetch" => self.fetch(&Options::parse(&tokens[1..])),
            "list" => self.list(&Options::parse(&tokens[1..])),
            "describe" => self.describe(&Options::parse(&tokens[1..])),
            "delete" => self.delete(&Options::parse(&tokens[1..])),
            "offdel" => self.offset_delete(&Options::parse(&tokens[1..])),
            "leave" => self.leave_batch(&Options::parse(&tokens[1..])),
            "state" => self.state(&Options::parse(&tokens[1..])),
            "restart" => self.restart(),
            "stage" => self.stage(&Options::parse(&tokens[1..])),
            "endtxn" => self.end_txn(&Options::parse(&tokens[1..])),
            "deltopic" => {
                let out = self
                    .coordinator
                    .delete_topic_offsets(self.now_ms, tokens[1]);
                self.absorb(out, None);
            }
            alias => {
                let opts = Options::parse(&tokens[2..]);
                match tokens[1] {
                    "join" => self.join(alias, &opts),
                    "sync" => self.sync(alias, &opts),
                    "hb" => self.heartbeat(alias, &opts),
                    "leave" => self.leave(alias, &opts),
                    "commit" => self.commit(alias, &opts),
                    "txncheck" => self.txn_check(alias, &opts),
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
            self.absorb(out, None);
        }
        self.now_ms = until_ms;
    }

    fn configure(&mut self, opts: &Options) {
        let c = &mut self.config;
        c.group_initial_rebalance_delay_ms =
            opts.num("initial_delay", c.group_initial_rebalance_delay_ms);
        c.group_min_session_timeout_ms = opts.num("min_session", c.group_min_session_timeout_ms);
        c.group_max_session_timeout_ms = opts.num("max_session", c.group_max_session_timeout_ms);
        c.group_max_size = opts.num("max_size", c.group_max_size);
        c.offset_metadata_max_bytes = opts.num("metadata_max", c.offset_metadata_max_bytes);
        c.offsets_retention_ms = opts.num("retention", c.offsets_retention_ms);
        c.offsets_retention_check_interval_ms =
            opts.num("retention_check", c.offsets_retention_check_interval_ms);
        self.coordinator = GroupCoordinator::new(self.config.clone(), 1);
    }

    fn alias(&mut self, alias: &str) -> &mut Alias {
        self.aliases
            .entry(alias.to_owned())
            .or_insert_with(|| Alias {
                generation_id: -1,
                ..Alias::default()
            })
    }

    /// `id=` option: `none` for empty, another alias for its id, or the alias's own id.
    fn member_id(&mut self, alias: &str, opts: &Options) -> String {
        match opts.get("id") {
            Some("none") => String::new(),
            Some(other) => self.alias(other).member_id.clone(),
            None => self.alias(alias).member_id.clone(),
        }
    }

    fn instance_id(&mut self, alias: &str, opts: &Options) -> Option<String> {
        if let Some(i) = opts.get("inst") {
            self.alias(alias).instance_id = (i != "none").then(|| i.to_owned());
        }
        self.alias(alias).instance_id.clone()
    }

    fn ctx(&mut self, alias: &str, verb: &'static str, version: i16) -> RequestContext {
        let token = self.next_token;
        self.next_token += 1;
        self.pending
            .insert(token, (alias.to_owned(), verb, version));
        RequestContext {
            token: ResponseToken(token),
            api_version: version,
            client_id: s(alias),
            client_host: s("/10.0.0.1"),
        }
    }

    fn send(&mut self, ctx: RequestContext, request: Request) {
        let token = ctx.token.0;
        let out = self.coordinator.handle(self.now_ms, &ctx, request);
        self.absorb(out, Some(token));
    }

    fn join(&mut self, alias: &str, given: &Options) {
        let remembered = &mut self.alias(alias).join_options;
        for key in STICKY_JOIN_OPTIONS {
            if let Some(value) = given.get(key) {
                remembered.insert(key.to_owned(), value.to_owned());
            }
        }
        let mut kv = remembered.clone();
        kv.extend(given.kv.clone());
        let opts = &Options {
            kv,
            words: given.words.clone(),
        };
        let version = opts.num("v", 5i16);
        let mut req = JoinGroupRequest::default();
        req.group_id = opts.group();
        req.session_timeout_ms = opts.num("session", 10_000);
        req.rebalance_timeout_ms = opts.num("rebalance", 30_000);
        req.member_id = s(&self.member_id(alias, opts));
        // The field exists from v5; the codec would drop it below.
        let instance_id = self.instance_id(alias, opts).filter(|_| version >= 5);
        req.group_instance_id = instance_id.map(|i| s(&i));
        req.protocol_type = s(opts.get("type").unwrap_or("consumer"));
        let default_protocols = format!("range:{alias}");
        let protocols = opts.get("proto").unwrap_or(&default_protocols);
        // `subs=t+u`: the metadata is a real consumer subscription to those topics.
        let subscription = opts.get("subs").map(|topics| subscription(topics));
        req.protocols = protocols
            .split(',')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (name, metadata) = p.split_once(':').unwrap_or((p, ""));
                let mut protocol = JoinGroupRequestProtocol::default();
                protocol.name = s(name);
                protocol.metadata = subscription
                    .clone()
                    .unwrap_or_else(|| Bytes::copy_from_slice(metadata.as_bytes()));
                protocol
            })
            .collect();
        let ctx = self.ctx(alias, "join", version);
        self.send(ctx, Request::JoinGroup(req));
    }

    fn sync(&mut self, alias: &str, opts: &Options) {
        let version = opts.num("v", 3i16);
        let mut req = SyncGroupRequest::default();
        req.group_id = opts.group();
        req.generation_id = opts.num("gen", self.alias(alias).generation_id);
        req.member_id = s(&self.member_id(alias, opts));
        let instance_id = self.instance_id(alias, opts).filter(|_| version >= 3);
        req.group_instance_id = instance_id.map(|i| s(&i));
        if version >= 5 {
            req.protocol_type = Some(s(opts.get("type").unwrap_or("consumer")));
            req.protocol_name = Some(s(opts.get("proto").unwrap_or("range")));
        }
        if let Some(assign) = opts.get("assign") {
            for pair in assign.split(',') {
                let (who, assignment) = pair.split_once(':').expect("assign=alias:bytes");
                let mut a = SyncGroupRequestAssignment::default();
                a.member_id = s(&self.alias(who).member_id);
                a.assignment = Bytes::copy_from_slice(assignment.as_bytes());
                req.assignments.push(a);
            }
        }
        let ctx = self.ctx(alias, "sync", version);
        self.send(ctx, Request::SyncGroup(req));
    }

    fn heartbeat(&mut self, alias: &str, opts: &Options) {
        let version = opts.num("v", 3i16);
        let mut req = HeartbeatRequest::default();
        req.group_id = opts.group();
        req.generation_id = opts.num("gen", self.alias(alias).generation_id);
        req.member_id = s(&self.member_id(alias, opts));
        if version >= 3 {
            req.group_instance_id = self.instance_id(alias, opts).map(|i| s(&i));
        }
        let ctx = self.ctx(alias, "hb", version);
        self.send(ctx, Request::Heartbeat(req));
    }

    fn leave(&mut self, alias: &str, opts: &Options) {
        let version = opts.num("v", 3i16);
        let mut req = LeaveGroupRequest::default();
        req.group_id = opts.group();
        let member_id = s(&self.member_id(alias, opts));
        if version >= 3 {
            let mut identity = MemberIdentity::default();
            identity.member_id = member_id;
            identity.group_instance_id = self.instance_id(alias, opts).map(|i| s(&i));
            req.members.push(identity);
        } else {
            req.member_id = member_id;
        }
        let ctx = self.ctx(alias, "leave", version);
        self.send(ctx, Request::LeaveGroup(req));
    }

    fn leave_batch(&mut self, opts: &Options) {
        let mut req = LeaveGroupRequest::default();
        req.group_id = opts.group();
        for word in &opts.words {
            let mut identity = MemberIdentity::default();
            match word.strip_prefix("inst:") {
                Some(instance_id) => identity.group_instance_id = Some(s(instance_id)),
                None => identity.member_id = s(&self.alias(word).member_id.clone()),
            }
            req.members.push(identity);
        }
        let ctx = self.ctx("admin", "leave", opts.num("v", 3));
        self.send(ctx, Request::LeaveGroup(req));
    }

    fn commit(&mut self, alias: &str, opts: &Options) {
        let version = opts.num("v", 8i16);
        let mut req = OffsetCommitRequest::default();
        req.group_id = opts.group();
        req.generation_id_or_member_epoch = opts.num("gen", self.alias(alias).generation_id);
        req.member_id = s(&self.member_id(alias, opts));
        if version >= 7 {
            req.group_instance_id = self.instance_id(alias, opts).map(|i| s(&i));
        }
        for spec in &opts.words {
            let (tp, rest) = spec.split_once('=').expect("t/p=offset");
            let (topic, partition) = tp.split_once('/').expect("topic/partition");
            let (offset, metadata) = match rest.split_once(':') {
                Some((o, m)) => (o, Some(m)),
                None => (rest, None),
            };
            let mut p = OffsetCommitRequestPartition::default();
            p.partition_index = partition.parse().unwrap();
            p.committed_offset = offset.parse().unwrap();
            p.committed_metadata = metadata.map(s);
            if version >= 6 {
                p.committed_leader_epoch = opts.num("epoch", -1);
            }
            let name = TopicName(s(topic));
            match req.topics.iter_mut().find(|t| t.name == name) {
                Some(t) => t.partitions.push(p),
                None => {
                    let mut t = OffsetCommitRequestTopic::default();
                    t.name = name;
                    t.partitions.push(p);
                    req.topics.push(t);
                }
            }
        }
        let ctx = self.ctx(alias, "commit", version);
        self.send(ctx, Request::OffsetCommit(req));
    }

    /// `a txncheck [gen=] [id=] [inst=]`: the KIP-447 member check of a TxnOffsetCommit (v3
    /// carries the alias's generation, member id and instance id; `v=2` carries none of them).
    fn txn_check(&mut self, alias: &str, opts: &Options) {
        let (generation_id, member_id, instance_id) = if opts.num("v", 3i16) >= 3 {
            let generation_id = opts.num("gen", self.alias(alias).generation_id);
            (
                generation_id,
                self.member_id(alias, opts),
                self.instance_id(alias, opts),
            )
        } else {
            (-1, String::new(), None)
        };
        let verdict = self.coordinator.validate_txn_offset_commit(
            self.now_ms,
            &opts.group().0,
            &member_id,
            instance_id.as_deref(),
            generation_id,
        );
        let verdict = verdict.map_or_else(|| "ok".to_owned(), |e| format!("{e:?}"));
        writeln!(self.transcript, "  {alias}.txncheck: {verdict}").unwrap();
    }

    fn fetch(&mut self, opts: &Options) {
        let version = opts.num("v", 7i16);
        let mut req = OffsetFetchRequest::default();
        let specs: Vec<&str> = opts
            .words
            .iter()
            .map(String::as_str)
            .filter(|w| *w != "stable")
            .collect();
        let topics = if specs.is_empty() {
            None
        } else {
            let mut topics: Vec<OffsetFetchRequestTopic> = Vec::new();
            for spec in specs {
                let (topic, partition) = spec.split_once('/').expect("topic/partition");
                let name = TopicName(s(topic));
                let partition = partition.parse().unwrap();
                match topics.iter_mut().find(|t| t.name == name) {
                    Some(t) => t.partition_indexes.push(partition),
                    None => {
                        let mut t = OffsetFetchRequestTopic::default();
                        t.name = name;
                        t.partition_indexes.push(partition);
                        topics.push(t);
                    }
                }
            }
            Some(topics)
        };
        req.require_stable = opts.has_word("stable");
        if version >= 8 {
            let mut g =
                kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup::default();
            g.group_id = opts.group();
            g.topics = topics.map(|ts| {
                ts.into_iter()
                    .map(|t| {
                        let mut out = kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopics::default();
                        out.name = t.name;
                        out.partition_indexes = t.partition_indexes;
                        out
                    })
                    .collect()
            });
            req.groups.push(g);
        } else {
            req.group_id = opts.group();
            req.topics = topics;
        }
        let ctx = self.ctx("admin", "fetch", version);
        self.send(ctx, Request::OffsetFetch(req));
    }

    fn list(&mut self, opts: &Options) {
        let version = opts.num("v", 4i16);
        let mut req = ListGroupsRequest::default();
        if let Some(states) = opts.get("states") {
            req.states_filter = states.split(',').map(s).collect();
        }
        if let Some(types) = opts.get("types") {
            req.types_filter = types.split(',').map(s).collect();
        }
        let ctx = self.ctx("admin", "list", version);
        self.send(ctx, Request::ListGroups(req));
    }

    fn describe(&mut self, opts: &Options) {
        let version = opts.num("v", 5i16);
        let mut req = DescribeGroupsRequest::default();
        req.groups = opts.words.iter().map(|g| GroupId(s(g))).collect();
        req.include_authorized_operations = opts.get("ops").is_some();
        let ctx = self.ctx("admin", "describe", version);
        self.send(ctx, Request::DescribeGroups(req));
    }

    fn delete(&mut self, opts: &Options) {
        let mut req = DeleteGroupsRequest::default();
        req.groups_names = opts.words.iter().map(|g| GroupId(s(g))).collect();
        let ctx = self.ctx("admin", "delete", opts.num("v", 2));
        self.send(ctx, Request::DeleteGroups(req));
    }

    /// `offdel [group=] t/p ...`: OffsetDelete of those partitions.
    fn offset_delete(&mut self, opts: &Options) {
        let mut req = OffsetDeleteRequest::default();
        req.group_id = opts.group();
        for spec in &opts.words {
            let (topic, partition) = spec.split_once('/').expect("topic/partition");
            let name = TopicName(s(topic));
            let mut p = OffsetDeleteRequestPartition::default();
            p.partition_index = partition.parse().unwrap();
            match req.topics.iter_mut().find(|t| t.name == name) {
                Some(t) => t.partitions.push(p),
                None => {
                    let mut t = OffsetDeleteRequestTopic::default();
                    t.name = name;
                    t.partitions.push(p);
                    req.topics.push(t);
                }
            }
        }
        let ctx = self.ctx("admin", "offdel", 0);
        self.send(ctx, Request::OffsetDelete(req));
    }

    fn stage(&mut self, opts: &Options) {
        let producer_id = opts.num("pid", 1i64);
        let offsets = opts
            .words
            .iter()
            .map(|spec| {
                let (tp, offset) = spec.split_once('=').unwrap();
                let (topic, partition) = tp.split_once('/').unwrap();
                let offset = CommittedOffset {
                    offset: offset.parse().unwrap(),
                    leader_epoch: -1,
                    metadata: StrBytes::new(),
                    commit_timestamp_ms: self.now_ms as i64,
                };
                (s(topic), partition.parse().unwrap(), offset)
            })
            .collect();
        let group_id = opts.group().0;
        self.coordinator
            .stage_txn_offsets(self.now_ms, &group_id, producer_id, offsets);
    }

    fn end_txn(&mut self, opts: &Options) {
        let producer_id = opts.num("pid", 1i64);
        let commit = opts.has_word("commit");
        let group_id = opts.group().0;
        let records =
            self.coordinator
                .complete_txn_offsets(self.now_ms, &group_id, producer_id, commit);
        let out = Output {
            records,
            responses: Vec::new(),
        };
        self.absorb(out, None);
    }

    /// Replays the log into a new coordinator, after checking that the log compacts to exactly
    /// what the old coordinator would snapshot.
    fn restart(&mut self) {
        let mut compacted = compact(self.log.clone());
        let mut snapshot = self.coordinator.snapshot();
        let key = |r: &Record| r.key.clone();
        compacted.sort_by_key(key);
        snapshot.sort_by_key(key);
        assert_eq!(compacted, snapshot, "compacted log equals snapshot");
        self.restarts += 1;
        let mut fresh = GroupCoordinator::new(self.config.clone(), 1 + self.restarts);
        for record in &self.log {
            fresh.replay(self.now_ms, record).expect("replay");
        }
        let mut replayed_snapshot = fresh.snapshot();
        replayed_snapshot.sort_by_key(key);
        assert_eq!(replayed_snapshot, snapshot, "replay rebuilds the snapshot");
        self.coordinator = fresh;
        self.pending.clear();
        for group in self.coordinator.groups() {
            self.print_state(&group.group_id);
        }
    }

    fn state(&mut self, opts: &Options) {
        let group_id = opts.group().0;
        self.print_state(&group_id);
    }

    fn print_state(&mut self, group_id: &str) {
        let Some(g) = self.coordinator.group(group_id) else {
            writeln!(self.transcript, "  {group_id}: none").unwrap();
            return;
        };
        let members: Vec<String> = g
            .members
            .iter()
            .map(|m| {
                let mut out = self.label(&m.member_id);
                if let Some(i) = &m.group_instance_id {
                    write!(out, "(inst={i})").unwrap();
                }
                write!(out, ":{}", text(&m.assignment)).unwrap();
                out
            })
            .collect();
        let offsets: Vec<String> = g
            .offsets
            .iter()
            .map(|o| format!("{}/{}={}", o.topic, o.partition, o.offset.offset))
            .collect();
        let leader = g
            .leader_id
            .as_deref()
            .map_or("-".to_owned(), |l| self.label(l));
        writeln!(
            self.transcript,
            "  {group_id}: {} gen={} proto={} leader={leader} members=[{}] offsets=[{}]",
            g.state.as_str(),
            g.generation_id,
            g.protocol_name.as_deref().unwrap_or("-"),
            members.join(" "),
            offsets.join(" "),
        )
        .unwrap();
    }

    fn label(&mut self, member_id: &str) -> String {
        if member_id.is_empty() {
            return "-".to_owned();
        }
        if let Some(label) = self.labels.get(member_id) {
            return label.clone();
        }
        // `{prefix}-{uuid}`: a UUID is 36 characters.
        let prefix = member_id
            .len()
            .checked_sub(37)
            .map_or(member_id, |end| &member_id[..end]);
        let n = self.label_counts.entry(prefix.to_owned()).or_default();
        *n += 1;
        let label = format!("{prefix}#{n}");
        self.labels.insert(member_id.to_owned(), label.clone());
        label
    }

    /// Prints an output: records first (they are made durable first), then responses.
    pub fn absorb(&mut self, out: Output, request: Option<u64>) {
        for record in &out.records {
            let line = self.describe_record(record);
            writeln!(self.transcript, "  ~ {line}").unwrap();
        }
        self.log.extend(out.records);
        let mut answered_request = false;
        for (token, response) in out.responses {
            answered_request |= Some(token.0) == request;
            let (alias, verb, version) = self
                .pending
                .remove(&token.0)
                .unwrap_or_else(|| panic!("response for unknown or answered token {}", token.0));
            let mut buf = BytesMut::new();
            response
                .encode(version, &mut buf)
                .unwrap_or_else(|e| panic!("{verb} v{version}: {e}"));
            let line = self.describe_response(&alias, &response);
            writeln!(self.transcript, "  {alias}.{verb}: {line}").unwrap();
        }
        if let (Some(token), false) = (request, answered_request) {
            let (alias, verb, _) = &self.pending[&token];
            writeln!(self.transcript, "  ({alias}.{verb} parked)").unwrap();
        }
    }

    fn describe_record(&mut self, record: &Record) -> String {
        match record.decode().expect("emitted records decode") {
            DecodedRecord::Offset {
                group_id,
                topic,
                partition,
                value,
            } => match value {
                Some(v) => format!(
                    "offset {group_id} {topic}/{partition}={} epoch={} meta={:?}",
                    v.offset,
                    v.leader_epoch,
                    v.metadata.as_str()
                ),
                None => format!("offset {group_id} {topic}/{partition} deleted"),
            },
            DecodedRecord::Group { group_id, value } => match value {
                Some(v) => {
                    let members: Vec<String> = v
                        .members
                        .iter()
                        .map(|m| format!("{}:{}", self.label(&m.member_id), text(&m.assignment)))
                        .collect();
                    let leader = v
                        .leader_id
                        .as_deref()
                        .map_or("-".to_owned(), |l| self.label(l));
                    format!(
                        "group {group_id} gen={} proto={} leader={leader} members=[{}]",
                        v.generation_id,
                        v.protocol_name.as_deref().unwrap_or("-"),
                        members.join(" ")
                    )
                }
                None => format!("group {group_id} deleted"),
            },
        }
    }

    fn describe_response(&mut self, alias: &str, response: &Response) -> String {
        match response {
            Response::JoinGroup(r) => self.describe_join(alias, r),
            Response::SyncGroup(r) => match r.error_code {
                0 => format!("ok assign={}", text(&r.assignment)),
                code => error(code),
            },
            Response::Heartbeat(r) => error(r.error_code),
            Response::LeaveGroup(r) => self.describe_leave(r),
            Response::OffsetCommit(r) => partition_answers(r.topics.iter().flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (&t.name, p.partition_index, p.error_code))
            })),
            Response::OffsetFetch(r) => describe_fetch(r),
            Response::ListGroups(r) => {
                let groups: Vec<String> = r
                    .groups
                    .iter()
                    .map(|g| {
                        let state = or_dash(&g.group_state, "?");
                        let protocol_type = or_dash(&g.protocol_type, "-");
                        format!("{}:{state}:{protocol_type}", g.group_id.0)
                    })
                    .collect();
                format!("{} [{}]", error(r.error_code), groups.join(" "))
            }
            Response::DescribeGroups(r) => self.describe_describe(r),
            Response::DeleteGroups(r) => {
                let results: Vec<String> = r
                    .results
                    .iter()
                    .map(|g| format!("{}:{}", g.group_id.0, error(g.error_code)))
                    .collect();
                results.join(" ")
            }
            Response::OffsetDelete(r) => {
                let parts = partition_answers(r.topics.iter().flat_map(|t| {
                    t.partitions
                        .iter()
                        .map(|p| (&t.name, p.partition_index, p.error_code))
                }));
                format!("{} [{}]", error(r.error_code), parts)
            }
        }
    }

    /// Also learns what a client learns from its JoinGroup response: its id and generation.
    fn describe_join(&mut self, alias: &str, r: &JoinGroupResponse) -> String {
        let member_id = r.member_id.to_string();
        let label = self.label(&member_id);
        let a = self.alias(alias);
        match ResponseError::try_from_code(r.error_code) {
            None => {
                a.member_id = member_id;
                a.generation_id = r.generation_id;
            }
            Some(ResponseError::MemberIdRequired) => a.member_id = member_id,
            Some(ResponseError::UnknownMemberId) => a.member_id.clear(),
            Some(_) => {}
        }
        if r.error_code != 0 {
            return format!("{} id={label}", error(r.error_code));
        }
        let leader = self.label(&r.leader);
        let members: Vec<String> = r
            .members
            .iter()
            .map(|m| format!("{}:{}", self.label(&m.member_id), text(&m.metadata)))
            .collect();
        let mut line = format!(
            "ok gen={} proto={} leader={leader} id={label}",
            r.generation_id,
            r.protocol_name.as_deref().unwrap_or("-"),
        );
        if !members.is_empty() {
            write!(line, " members=[{}]", members.join(" ")).unwrap();
        }
        if r.skip_assignment {
            line.push_str(" skip_assignment");
        }
        line
    }

    fn describe_leave(&mut self, r: &LeaveGroupResponse) -> String {
        let members: Vec<String> = r
            .members
            .iter()
            .map(|m| {
                let who = match &m.group_instance_id {
                    Some(i) if m.member_id.is_empty() => format!("inst:{i}"),
                    _ => self.label(&m.member_id),
                };
                format!("{who}:{}", error(m.error_code))
            })
            .collect();
        if members.is_empty() {
            error(r.error_code)
        } else {
            format!("{} [{}]", error(r.error_code), members.join(" "))
        }
    }

    fn describe_describe(&mut self, r: &DescribeGroupsResponse) -> String {
        let groups: Vec<String> = r
            .groups
            .iter()
            .map(|g| {
                let members: Vec<String> = g
                    .members
                    .iter()
                    .map(|m| {
                        format!(
                            "{} client={} host={} meta={} assign={}",
                            self.label(&m.member_id),
                            m.client_id,
                            m.client_host,
                            text(&m.member_metadata),
                            text(&m.member_assignment)
                        )
                    })
                    .collect();
                let mut line = format!(
                    "{} {} {} type={} proto={} [{}]",
                    g.group_id.0,
                    error(g.error_code),
                    g.group_state,
                    g.protocol_type,
                    g.protocol_data,
                    members.join(", ")
                );
                if g.authorized_operations != i32::MIN {
                    write!(line, " ops={}", g.authorized_operations).unwrap();
                }
                line
            })
            .collect();
        groups.join("; ")
    }
}

fn describe_fetch(r: &OffsetFetchResponse) -> String {
    let mut parts: Vec<String> = Vec::new();
    if r.error_code != 0 {
        parts.push(error(r.error_code));
    }
    for t in &r.topics {
        for p in &t.partitions {
            let meta = p.metadata.as_deref();
            let at = (p.committed_offset, p.committed_leader_epoch);
            parts.push(fetched(
                &t.name.0,
                p.partition_index,
                at,
                meta,
                p.error_code,
            ));
        }
    }
    for t in r.groups.iter().flat_map(|g| &g.topics) {
        for p in &t.partitions {
            let meta = p.metadata.as_deref();
            let at = (p.committed_offset, p.committed_leader_epoch);
            parts.push(fetched(
                &t.name.0,
                p.partition_index,
                at,
                meta,
                p.error_code,
            ));
        }
    }
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(" ")
    }
}

fn or_dash<'a>(value: &'a str, dash: &'a str) -> &'a str {
    if value.is_empty() {
        dash
    } else {
        value
    }
}

fn fetched(
    topic: &str,
    partition: i32,
    at: (i64, i32),
    metadata: Option<&str>,
    code: i16,
) -> String {
    if code != 0 {
        return format!("{topic}/{partition}:{}", error(code));
    }
    let (offset, epoch) = at;
    let mut out = format!("{topic}/{partition}={offset}");
    if epoch != -1 {
        write!(out, "@{epoch}").unwrap();
    }
    if let Some(m) = metadata.filter(|m| !m.is_empty()) {
        write!(out, ":{m}").unwrap();
    }
    out
}

/// `topic/partition:error` for each answer, space-separated.
fn partition_answers<'a>(answers: impl Iterator<Item = (&'a TopicName, i32, i16)>) -> String {
    let parts: Vec<String> = answers
        .map(|(topic, partition, code)| format!("{}/{partition}:{}", topic.0, error(code)))
        .collect();
    parts.join(" ")
}

/// A consumer subscription (ConsumerProtocolSubscription v0) to the topics `t+u+...`.
fn subscription(topics: &str) -> Bytes {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::Encodable;
    let mut subscription = ConsumerProtocolSubscription::default();
    subscription.topics = topics.split('+').map(s).collect();
    let mut buf = bytes::BytesMut::new();
    buf.extend_from_slice(&0i16.to_be_bytes());
    subscription
        .encode(&mut buf, 0)
        .expect("encode subscription");
    buf.freeze()
}

fn error(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "ok".to_owned(),
        Some(e) => format!("{e:?}"),
    }
}

fn text(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        "-".to_owned()
    } else {
        String::from_utf8_lossy(bytes).into_owned()
    }
}
