package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/opsdash/opsdash/collectors"
)

// Timing of an agent's side of the protocol.
const (
	// DemandRenew is how often a replica renews its lease on an on-demand
	// topic it has viewers for; DemandLease how long an agent keeps
	// collecting after the last renewal (three renewals missed).
	DemandRenew = 5 * time.Second
	DemandLease = 15 * time.Second
	// duplicateWait is how long the duplicate-host check listens for
	// another agent's answer.
	duplicateWait = 300 * time.Millisecond
	// duplicateEvery is how often a running agent checks again (two agents
	// that started at the same moment, or a partition that healed).
	duplicateEvery = 10 * time.Second
	// requestTimeout bounds one request to NATS (a direct get).
	requestTimeout = 2 * time.Second
)

// ErrDuplicateHost means another running agent publishes as this host id.
var ErrDuplicateHost = errors.New("another agent already publishes as this host id")

// AgentConfig configures an Agent.
type AgentConfig struct {
	// Conn is the agent's NATS connection (Connect, with InboxPrefix
	// AgentInbox(Host) and OnState wired to the agent's ConnState).
	Conn *nats.Conn
	// Host is the host id, the first token of every topic it publishes.
	Host string
	// Version is reported in the host's descriptor.
	Version string
	// Logger: nil means slog.Default().
	Logger *slog.Logger
}

// DialAgent connects to NATS as the agent of cfg.Host (conn's
// InboxPrefix and OnState are set here) and returns the agent on that
// connection; Close closes it.
func DialAgent(conn ConnConfig, cfg AgentConfig) (*Agent, error) {
	var holder atomic.Pointer[Agent]
	conn.InboxPrefix = AgentInbox(cfg.Host)
	conn.OnState = func(up bool) {
		if a := holder.Load(); a != nil {
			a.ConnState(up)
		}
	}
	nc, err := Connect(conn)
	if err != nil {
		return nil, err
	}
	cfg.Conn = nc
	a := NewAgent(cfg)
	holder.Store(a)
	a.ConnState(nc.IsConnected()) // a change before Store was not seen
	return a, nil
}

// Flush waits until the server has everything the agent published.
func (a *Agent) Flush() error { return a.nc.FlushTimeout(requestTimeout) }

// Close closes the agent's connection, flushing what it buffered.
func (a *Agent) Close() {
	_ = a.nc.FlushTimeout(time.Second)
	a.nc.Close()
}

// AgentInbox is the inbox prefix an agent of host connects with: its
// permissions allow replies there only.
func AgentInbox(host string) string { return agentInboxPrefix + host }

// Agent publishes one host's topics to NATS: it is the collectors'
// Sink, BatchSink and Tracker, so a collectors.Scheduler feeds it exactly
// as it feeds a registry. Each value carries a seq that continues the
// topic's last seq in the stream, so restarts never number from 1 again.
// It also publishes the host's descriptor (topics and their errors) and a
// <host>.summary topic for the fleet overview, and runs on-demand
// collectors while some replica holds a lease on them.
type Agent struct {
	nc      *nats.Conn
	host    string
	boot    string
	version string
	started time.Time
	log     *slog.Logger

	flushMu sync.Mutex // one descriptor publish at a time; taken before mu

	mu        sync.Mutex
	seqs      map[string]uint64 // topic -> seq of its last value
	topics    map[string]collectors.TopicInfo
	runtime   map[string]int             // run-time topics (a subset of topics) -> their history cap
	errs      map[string]string          // topic -> its collector's error
	latest    map[string]json.RawMessage // summary inputs, by topic
	descDirty bool
	demandFn  func(topic string, subscribed bool)
	leases    map[string]map[string]time.Time // topic -> replica -> lease end
	wanted    map[string]bool                 // what demandFn was last told
	sweepMu   sync.Mutex                      // one sweep at a time, so demandFn's calls stay in order

	connected atomic.Bool
	running   atomic.Bool
	duplicate atomic.Pointer[string] // set while another agent publishes as this host
	published atomic.Uint64
	dropped   atomic.Uint64
}

var (
	_ collectors.Sink      = (*Agent)(nil)
	_ collectors.BatchSink = (*Agent)(nil)
	_ collectors.Tracker   = (*Agent)(nil)

	_ collectors.RuntimeTopics = (*Agent)(nil)
)

// NewAgent returns the agent of cfg.Host on cfg.Conn. Call Start, then
// run the collectors' scheduler with the agent as its Sink, and Run.
func NewAgent(cfg AgentConfig) *Agent {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	a := &Agent{
		nc: cfg.Conn, host: cfg.Host, boot: hex.EncodeToString(b[:]), version: cfg.Version,
		started: time.Now(), log: log.With("host_id", cfg.Host),
		seqs: map[string]uint64{}, topics: map[string]collectors.TopicInfo{}, runtime: map[string]int{},
		errs: map[string]string{}, latest: map[string]json.RawMessage{},
		leases: map[string]map[string]time.Time{}, wanted: map[string]bool{},
	}
	a.connected.Store(cfg.Conn.IsConnected())
	a.Declare(collectors.TopicInfo{Name: cfg.Host + "." + SummarySuffix, Interval: time.Second, Description: summaryDescription})
	return a
}

// Host is the agent's host id.
func (a *Agent) Host() string { return a.host }

// OnDemand sets who is told that an on-demand topic is wanted by some
// replica (true) or by none any more (false): the scheduler's SetDemand.
// Call it before Start; it is kept under mu, so a later call is safe too.
func (a *Agent) OnDemand(f func(topic string, subscribed bool)) {
	a.mu.Lock()
	a.demandFn = f
	a.mu.Unlock()
}

// ConnState is the connection's OnState: after a reconnect the descriptor
// is published again (the store may be new).
func (a *Agent) ConnState(connected bool) {
	a.connected.Store(connected)
	if connected {
		a.mu.Lock()
		a.descDirty = true
		a.mu.Unlock()
	}
}

// Start waits for NATS, refuses to run beside another agent of the same
// host (ErrDuplicateHost), and subscribes to the host's demand leases and
// duplicate checks. It returns when ctx ends first.
func (a *Agent) Start(ctx context.Context) error {
	for !a.nc.IsConnected() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	if other, err := a.otherAgent(); err != nil {
		return err
	} else if other != "" {
		return fmt.Errorf("%w: host %q (%s)", ErrDuplicateHost, a.host, other)
	}
	if _, err := a.nc.Subscribe(agentPrefix+a.host+".ping", a.answerPing); err != nil {
		return err
	}
	if _, err := a.nc.Subscribe(DemandPrefix+a.host+".>", a.onDemandMsg); err != nil {
		return err
	}
	if err := a.nc.Flush(); err != nil {
		return err
	}
	a.running.Store(true)
	return nil
}

// pingReply is an agent's answer to the duplicate check.
type pingReply struct {
	Boot    string `json:"boot"`
	Version string `json:"version"`
	Started int64  `json:"started_ms"`
}

// String describes the agent that answered, for logs and errors.
func (r pingReply) String() string {
	return fmt.Sprintf("agent %s, version %s, started %s", r.Boot, r.Version, time.UnixMilli(r.Started).UTC().Format(time.RFC3339))
}

func (a *Agent) answerPing(m *nats.Msg) {
	b, _ := json.Marshal(pingReply{a.boot, a.version, a.started.UnixMilli()})
	_ = m.Respond(b)
}

// otherAgent asks whether another agent answers for this host and
// describes it ("" when none does).
func (a *Agent) otherAgent() (string, error) {
	inbox := a.nc.NewRespInbox()
	sub, err := a.nc.SubscribeSync(inbox)
	if err != nil {
		return "", err
	}
	defer sub.Unsubscribe()
	if err := a.nc.PublishRequest(agentPrefix+a.host+".ping", inbox, nil); err != nil {
		return "", err
	}
	deadline := time.Now().Add(duplicateWait)
	for {
		m, err := sub.NextMsg(time.Until(deadline))
		if err != nil { // timeout: nobody else answered
			return "", nil
		}
		var r pingReply
		if json.Unmarshal(m.Data, &r) == nil && r.Boot != "" && r.Boot != a.boot {
			return r.String(), nil
		}
	}
}

// Duplicate returns a description of another agent publishing as this
// host, found since Start, or "".
func (a *Agent) Duplicate() string {
	if d := a.duplicate.Load(); d != nil {
		return *d
	}
	return ""
}

// Ready reports whether the agent publishes: started, connected, alone.
func (a *Agent) Ready() bool {
	return a.running.Load() && a.connected.Load() && a.Duplicate() == ""
}

// Seqs returns the seq of each topic's last value published so far.
func (a *Agent) Seqs() map[string]uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.seqs)
}

// Stats are an agent's counters since start.
type Stats struct {
	Published, Dropped uint64
}

// Stats returns the agent's counters.
func (a *Agent) Stats() Stats { return Stats{a.published.Load(), a.dropped.Load()} }

// Run keeps the agent's side going until ctx ends: the summary topic and
// the lease check every second, the descriptor when it changed, the
// duplicate check every 10 s.
func (a *Agent) Run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	lastCheck := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			a.sweepLeases(now)
			a.publishSummary(now)
			a.flushDescriptor()
			if now.Sub(lastCheck) >= duplicateEvery && a.nc.IsConnected() {
				lastCheck = now
				a.checkDuplicate()
			}
		}
	}
}

func (a *Agent) checkDuplicate() {
	other, err := a.otherAgent()
	if err != nil {
		return
	}
	if other == "" {
		a.duplicate.Store(nil)
		return
	}
	if a.Duplicate() == "" {
		a.log.Error("DUPLICATE HOST ID: another agent publishes as this host; its values and this one's mix and seqs collide. Give one of them another --host-id", "other", other)
	}
	a.duplicate.Store(&other)
}

// Publish implements collectors.Sink.
func (a *Agent) Publish(s collectors.Sample) {
	data, err := json.Marshal(s.Data)
	if err != nil {
		a.dropped.Add(1)
		a.log.Warn("agent: cannot encode sample", "topic", s.Topic, "err", err)
		return
	}
	ts := s.Time
	if ts.IsZero() {
		ts = time.Now()
	}
	a.publish(s.Topic, ts, data)
}

// PublishBatch implements collectors.BatchSink.
func (a *Agent) PublishBatch(samples []collectors.Sample) {
	for _, s := range samples {
		a.Publish(s)
	}
}

// publish sends one value with the topic's next seq. A topic's first
// value asks the stream for the topic's last seq; while that cannot be
// known (NATS unreachable since start) the value is dropped rather than
// risk numbering from 1 again.
func (a *Agent) publish(topic string, ts time.Time, data []byte) {
	a.mu.Lock()
	seq, known := a.seqs[topic]
	if _, ok := a.topics[topic]; !ok {
		// Published without a declaration: still one of the host's
		// topics, so the descriptor lists it (replicas drop a host's
		// topics that its descriptor does not list).
		a.topics[topic] = collectors.TopicInfo{Name: topic}
		a.descDirty = true
	}
	if _, ok := summaryInputs[topicSuffix(topic, a.host)]; ok {
		a.latest[topic] = data
	}
	a.mu.Unlock()
	if !known {
		// A topic's first value follows a descriptor that lists it, so a
		// replica never takes it for a workload its host has dropped.
		a.flushDescriptor()
		_, last, _, err := directLast(a.nc, MetricPrefix+topic)
		if err != nil {
			a.dropped.Add(1)
			a.log.Warn("agent: the topic's last seq in the store is unknown; value dropped rather than numbered from 1", "topic", topic, "err", err)
			return
		}
		seq = last
	}
	seq++
	m := &nats.Msg{Subject: MetricPrefix + topic, Data: data, Header: nats.Header{}}
	m.Header.Set(HeaderSeq, strconv.FormatUint(seq, 10))
	m.Header.Set(HeaderTS, strconv.FormatInt(ts.UnixMilli(), 10))
	if err := a.nc.PublishMsg(m); err != nil {
		// The reconnect buffer is full (a long outage): the value is lost,
		// its seq is not reused, so clients see a gap, never a repeat.
		a.dropped.Add(1)
	} else {
		a.published.Add(1)
	}
	a.mu.Lock()
	a.seqs[topic] = seq
	a.mu.Unlock()
}

// directLast returns the last message of subject in the stream: its
// stream sequence and its Opsdash-Seq; found is false when there is none.
func directLast(nc *nats.Conn, subject string) (streamSeq, seq uint64, found bool, err error) {
	var m *nats.Msg
	for start := time.Now(); ; {
		m, err = nc.Request("$JS.API.DIRECT.GET."+StreamName+"."+subject, nil, requestTimeout)
		// A stream just created or recovered answers direct gets a moment
		// later than it exists: no responders then means "not yet".
		if !errors.Is(err, nats.ErrNoResponders) || time.Since(start) > requestTimeout {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return 0, 0, false, err
	}
	switch m.Header.Get("Status") {
	case "":
	case "404":
		return 0, 0, false, nil
	default:
		return 0, 0, false, fmt.Errorf("direct get %s: %s %s", subject, m.Header.Get("Status"), m.Header.Get("Description"))
	}
	streamSeq, _ = strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
	seq, _ = strconv.ParseUint(m.Header.Get(HeaderSeq), 10, 64)
	return streamSeq, seq, true, nil
}

// Declare implements collectors.Tracker: the topic joins the host's
// descriptor.
func (a *Agent) Declare(info collectors.TopicInfo) {
	a.mu.Lock()
	a.topics[info.Name] = info
	a.descDirty = true
	a.mu.Unlock()
}

// DeclareRuntime implements collectors.RuntimeTopics: the topic joins the
// host's descriptor marked as a run-time one (a workload's), so that
// replicas list it while it exists and remove it when Undeclare drops it
// from the descriptor.
func (a *Agent) DeclareRuntime(info collectors.TopicInfo, history int) {
	a.mu.Lock()
	a.topics[info.Name] = info
	a.runtime[info.Name] = history
	a.descDirty = true
	a.mu.Unlock()
}

// Undeclare implements collectors.RuntimeTopics: the topic leaves the
// descriptor, and with it every replica's lists. Its seq is forgotten here
// (a host running many short-lived containers would otherwise collect them
// for ever) but not lost: a workload that comes back reads its last seq
// from the store, as any topic's first value does, and continues it.
func (a *Agent) Undeclare(topic string) {
	a.mu.Lock()
	if _, ok := a.runtime[topic]; ok {
		delete(a.topics, topic)
		delete(a.runtime, topic)
		delete(a.seqs, topic)
		delete(a.errs, topic)
		delete(a.latest, topic)
		a.descDirty = true
	}
	a.mu.Unlock()
}

// SetStatus implements collectors.Tracker: the topic's error (or its
// recovery) goes into the descriptor, which replicas turn into status.
func (a *Agent) SetStatus(topic string, err error) {
	a.mu.Lock()
	if err != nil {
		a.errs[topic] = err.Error()
	} else {
		delete(a.errs, topic)
	}
	a.descDirty = true
	a.mu.Unlock()
}

// descriptor is a host's entry in KV opsdash_hosts.
type descriptor struct {
	Host    string            `json:"host"`
	Boot    string            `json:"boot"`
	Version string            `json:"version"`
	Started int64             `json:"started_ms"`
	Topics  []descTopic       `json:"topics"`
	Errors  map[string]string `json:"errors,omitempty"`
	// Forgotten marks a host dropped from the fleet (Forget): no topics,
	// left off the overview until its agent starts again.
	Forgotten bool `json:"forgotten,omitempty"`

	// Set by the replica that reads it: when the store took it, and the
	// names of Topics as a set.
	stored time.Time
	lists  map[string]bool
}

type descTopic struct {
	Name        string `json:"name"`
	IntervalMS  int64  `json:"interval_ms"`
	Description string `json:"description"`
	OnDemand    bool   `json:"on_demand,omitempty"`
	// Runtime marks a topic that comes and goes (a workload's), with the
	// history cap it was declared with, which replicas keep. (Replicas
	// remove any host topic once a descriptor no longer lists it.)
	Runtime bool `json:"runtime,omitempty"`
	History int  `json:"history,omitempty"`
}

// info is the topic as collectors declare it.
func (dt descTopic) info() collectors.TopicInfo {
	return collectors.TopicInfo{Name: dt.Name, Interval: time.Duration(dt.IntervalMS) * time.Millisecond, Description: dt.Description, OnDemand: dt.OnDemand}
}

// flushDescriptor publishes the descriptor when it changed. Descriptors
// go out in the order they are built (flushMu), so an older one never
// lands after a newer one.
func (a *Agent) flushDescriptor() {
	a.flushMu.Lock()
	defer a.flushMu.Unlock()
	a.mu.Lock()
	if !a.descDirty || !a.nc.IsConnected() {
		a.mu.Unlock()
		return
	}
	a.descDirty = false
	d := descriptor{Host: a.host, Boot: a.boot, Version: a.version, Started: a.started.UnixMilli(), Errors: maps.Clone(a.errs)}
	for _, name := range slices.Sorted(maps.Keys(a.topics)) {
		t := a.topics[name]
		hist, runtime := a.runtime[name]
		d.Topics = append(d.Topics, descTopic{t.Name, t.Interval.Milliseconds(), t.Description, t.OnDemand, runtime, hist})
	}
	a.mu.Unlock()
	b, _ := json.Marshal(d)
	if err := a.nc.Publish("$KV."+HostsBucket+"."+a.host, b); err != nil {
		a.mu.Lock()
		a.descDirty = true
		a.mu.Unlock()
	}
}

// demandMsg is a replica's lease on an on-demand topic.
type demandMsg struct {
	Replica string `json:"replica"`
	Want    bool   `json:"want"`
}

func (a *Agent) onDemandMsg(m *nats.Msg) {
	topic := m.Subject[len(DemandPrefix):]
	var d demandMsg
	if json.Unmarshal(m.Data, &d) != nil || d.Replica == "" || hostOf(topic) != a.host {
		return
	}
	a.mu.Lock()
	if d.Want {
		if a.leases[topic] == nil {
			a.leases[topic] = map[string]time.Time{}
		}
		a.leases[topic][d.Replica] = time.Now().Add(DemandLease)
	} else {
		delete(a.leases[topic], d.Replica)
	}
	a.mu.Unlock()
	a.sweepLeases(time.Now())
}

// sweepLeases drops expired leases and tells the scheduler which on-demand
// topics became wanted or unwanted.
func (a *Agent) sweepLeases(now time.Time) {
	type change struct {
		topic string
		want  bool
	}
	var changes []change
	a.sweepMu.Lock()
	defer a.sweepMu.Unlock()
	a.mu.Lock()
	// A topic is wanted only while it has a lease entry, and the entry goes
	// only here, when its last lease has: this loop sees every change.
	for topic, byReplica := range a.leases {
		for r, until := range byReplica {
			if now.After(until) {
				delete(byReplica, r)
			}
		}
		want := len(byReplica) > 0
		if !want {
			delete(a.leases, topic)
		}
		if a.wanted[topic] != want {
			changes = append(changes, change{topic, want})
		}
	}
	for _, c := range changes {
		if c.want {
			a.wanted[c.topic] = true
		} else {
			delete(a.wanted, c.topic)
		}
	}
	f := a.demandFn
	a.mu.Unlock()
	for _, c := range changes {
		if f != nil {
			f(c.topic, c.want)
		}
	}
}
