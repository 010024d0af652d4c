package fleet

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	mathrand "math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/opsdash/opsdash/stream"
)

// ReplicaConfig configures a Replica.
type ReplicaConfig struct {
	// Registry is fed with every host's topics. Required.
	Registry *stream.Registry
	// Name names this process in hello "replica" and in demand leases.
	Name string
	// SessionTTL, when set, makes sure the sessions bucket exists with
	// entries living that long (browser sign-ins, sessions.go).
	SessionTTL time.Duration
	// HistoryGrace is how long a host topic whose history was asked for
	// keeps it with no subscriber here (history.go); 0 means one minute.
	HistoryGrace time.Duration
	// Logger: nil means slog.Default().
	Logger *slog.Logger
}

// FeedLostAfter is how long a replica waits after losing NATS before every
// fleet topic turns failing ("live feed lost"): a reconnect within it is
// not worth alarming anyone.
const FeedLostAfter = 3 * time.Second

// errLost ends one follow: the connection dropped.
var errLost = errors.New("nats connection lost")

// Replica feeds a stream.Registry from the fleet: every topic's last value
// when it starts or reconnects, then every new value as it is stored, with
// the seq its producer gave it. It declares hosts' topics from their
// descriptors, turns a silent host's topics failing, holds demand leases
// for on-demand topics that have viewers here, and sends the publish API's
// values through NATS.
type Replica struct {
	reg          *stream.Registry
	name         string
	sessionTTL   time.Duration
	historyGrace time.Duration
	log          *slog.Logger
	nc           *nats.Conn
	js           jetstream.JetStream

	stateMu   sync.Mutex
	connected bool
	lostAt    time.Time
	lost      chan struct{} // closed when the connection drops; replaced on reconnect
	up        chan struct{} // signalled (cap 1) when the connection comes up

	ready      atomic.Bool
	catchingUp atomic.Bool // the initial replay runs: arrivals take the store's time
	instance   string      // the epoch followed; guarded by stateMu

	// regMu orders the registry calls that add or remove a host topic's
	// status or the topic itself (liveness, descriptors), so that a status
	// never re-creates a topic a descriptor has just removed. Taken
	// before mu.
	regMu sync.Mutex

	// mu guards what follows; never held while calling the registry.
	mu         sync.Mutex
	hosts      map[string]*descriptor // host -> newest descriptor
	topics     map[string]*liveTopic  // every host topic seen or declared
	hostTopics map[string]int         // host -> how many of topics are its
	overCap    map[string]bool        // hosts told about MaxHostTopics (logged once)
	wanted     map[string]time.Time   // topics with viewers here -> since when
	backfilled map[string]bool        // topics whose history was loaded
}

// NewReplica returns a replica feeding cfg.Registry and wires the
// registry's demand, publish-API forwarding and reserved sources to it.
// Call it before the registry is in use; then Connect with OnState set to
// ConnState, and Run.
func NewReplica(cfg ReplicaConfig) *Replica {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	r := &Replica{
		reg: cfg.Registry, name: cfg.Name, sessionTTL: cfg.SessionTTL, log: log.With("replica", cfg.Name),
		historyGrace: cmp.Or(cfg.HistoryGrace, defaultHistoryGrace),
		lost:         make(chan struct{}), up: make(chan struct{}, 1),
		hosts: map[string]*descriptor{}, topics: map[string]*liveTopic{}, hostTopics: map[string]int{}, overCap: map[string]bool{},
		wanted: map[string]time.Time{}, backfilled: map[string]bool{},
	}
	r.reg.OnDemand(r.setDemand)
	r.reg.ForwardPublished(r.forward)
	r.reg.ReserveSources(r.IsHost)
	return r
}

// ConnState is the connection's OnState.
func (r *Replica) ConnState(connected bool) {
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	if connected == r.connected {
		return
	}
	r.connected = connected
	if connected {
		r.lost = make(chan struct{})
		select {
		case r.up <- struct{}{}:
		default:
		}
		return
	}
	r.lostAt = time.Now()
	r.ready.Store(false)
	close(r.lost)
}

// connState returns whether NATS is up, since when it is down, and the
// channel closed when the current connection drops.
func (r *Replica) connState() (bool, time.Time, <-chan struct{}) {
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	return r.connected, r.lostAt, r.lost
}

// Ready reports whether the replica follows the fleet live: connected,
// and every topic's last value and every host's descriptor loaded.
func (r *Replica) Ready() bool { return r.ready.Load() }

// NotReady says why the replica is not ready ("" when it is).
func (r *Replica) NotReady() string {
	if r.Ready() {
		return ""
	}
	if ok, _, _ := r.connState(); !ok {
		return "NATS unreachable"
	}
	return "loading the fleet's last values"
}

// Instance is the fleet's seq epoch, "" before the first connection.
func (r *Replica) Instance() string {
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	return r.instance
}

// Run follows the fleet on nc until ctx ends: on every (re)connection it
// checks the stream's identity (a re-created stream is a new epoch: the
// registry's seqs start over), takes every topic's last value and every
// descriptor, then every new value. It also runs the liveness check and
// the demand leases.
func (r *Replica) Run(ctx context.Context, nc *nats.Conn) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	r.nc, r.js = nc, js
	if nc.IsConnected() {
		r.ConnState(true)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { r.watch(ctx) })
	wg.Go(func() { r.renewLeases(ctx) })
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.up:
		}
		ok, _, lost := r.connState()
		if !ok {
			continue
		}
		err := r.follow(ctx, lost)
		r.ready.Store(false)
		if ctx.Err() != nil {
			return nil
		}
		if !errors.Is(err, errLost) {
			r.log.Warn("following the fleet failed; retrying", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
		}
		if ok, _, _ := r.connState(); ok {
			select { // still connected: follow again
			case r.up <- struct{}{}:
			default:
			}
		}
	}
}

// follow runs one connection's worth of following, until it drops (errLost)
// or something fails.
func (r *Replica) follow(ctx context.Context, lost <-chan struct{}) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	setup, cancelSetup := context.WithTimeout(ctx, 10*time.Second)
	defer cancelSetup()
	info, err := ensureStreams(setup, r.nc, r.sessionTTL)
	if err != nil {
		return err
	}
	r.setEpoch(instanceOf(info.Created))

	kv, err := r.js.KeyValue(setup, HostsBucket)
	if err != nil {
		return err
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return err
	}
	defer w.Stop()

	caughtUp := make(chan struct{})
	var once sync.Once
	done := func() { once.Do(func() { close(caughtUp) }) }
	if info.State.Msgs == 0 {
		done()
	}
	r.catchingUp.Store(true)
	defer r.catchingUp.Store(false)
	// A new ordered consumer on every connection, from each subject's last
	// value: it never resumes a position in a stream that may have been
	// re-created (nats.go's would silently deliver nothing), and a replica
	// back from an outage gets the newest values, not a backlog.
	cons, err := r.js.OrderedConsumer(setup, StreamName, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{MetricPrefix + ">", PublishedPrefix + ">"},
		DeliverPolicy:  jetstream.DeliverLastPerSubjectPolicy,
	})
	if err != nil {
		return err
	}
	consumeErr := make(chan error, 1)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if pending := r.onValue(m); pending < catchUpSlack {
			done()
		}
	}, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrStreamNotFound) {
			select {
			case consumeErr <- err:
			default:
			}
		}
	}))
	if err != nil {
		return err
	}
	defer cc.Stop()

	hostsLoaded := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-lost:
			return errLost
		case err := <-consumeErr:
			return err
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("hosts watcher ended")
			}
			if e == nil {
				hostsLoaded = true
			} else if e.Operation() == jetstream.KeyValuePut {
				r.onDescriptor(e.Key(), e.Value(), e.Created())
			}
		case <-caughtUp:
			caughtUp = nil // seen; a nil channel blocks from now on
			r.catchingUp.Store(false)
		}
		if hostsLoaded && caughtUp == nil && !r.ready.Load() {
			r.ready.Store(true)
			r.log.Info("following the fleet", "instance", r.Instance(), "topics", len(r.reg.Topics()))
		}
	}
}

// catchUpSlack: a replica counts as caught up once fewer values than this
// wait for it (a busy fleet never pauses at exactly zero).
const catchUpSlack = 64

// setEpoch adopts the stream's epoch. The first one is simply taken; a
// different one later means the store was lost and re-created: every seq
// starts over, so the registry drops its values and closes its sessions.
func (r *Replica) setEpoch(instance string) {
	r.stateMu.Lock()
	prev := r.instance
	r.instance = instance
	r.stateMu.Unlock()
	switch {
	case prev == "":
		r.reg.SetInstance(instance)
	case prev != instance:
		r.log.Warn("the fleet's store was re-created: seqs start over, clients reconnect", "old", prev, "new", instance)
		r.mu.Lock()
		clear(r.backfilled)
		for _, t := range r.topics {
			t.lastArrival = time.Time{}
			t.known = time.Now()
		}
		r.mu.Unlock()
		r.reg.NewEpoch(instance)
	}
}

// onValue takes one stored value into the registry and returns how many
// more are pending for this consumer.
func (r *Replica) onValue(m jetstream.Msg) uint64 {
	md, err := m.Metadata()
	if err != nil {
		return 0
	}
	topic, published, ok := topicOf(m.Subject())
	h := m.Headers()
	seq, _ := strconv.ParseUint(h.Get(HeaderSeq), 10, 64)
	if !ok || seq == 0 {
		return md.NumPending
	}
	ts, _ := strconv.ParseInt(h.Get(HeaderTS), 10, 64)
	if published {
		if r.IsHost(hostOf(topic)) {
			return md.NumPending // a host's name: not the publish API's to use
		}
	} else {
		arrived := time.Now()
		if r.catchingUp.Load() {
			arrived = md.Timestamp // the replay of old values: their own time
		}
		if !r.noteArrival(topic, arrived, md.Timestamp) {
			return md.NumPending // a workload gone from its host's descriptor
		}
	}
	r.reg.PublishAt(stream.Sequenced{Topic: topic, Seq: seq, TS: ts, Data: m.Data(), Published: published, Stored: md.Timestamp})
	return md.NumPending
}

// onDescriptor takes a host's descriptor, stored at stored: its topics are
// declared, their intervals and errors feed the liveness check, and the
// host's topics it no longer lists (a workload gone, every topic of a
// forgotten host) are removed, unless a value of theirs was stored after it
// (a workload that appeared since).
func (r *Replica) onDescriptor(host string, value []byte, stored time.Time) {
	var d descriptor
	if err := json.Unmarshal(value, &d); err != nil || d.Host != host || !validToken(host) {
		r.log.Warn("ignoring a bad host descriptor", "host", host, "err", err)
		return
	}
	d.stored, d.lists = stored, make(map[string]bool, len(d.Topics))
	var declare []descTopic
	var remove []string
	watched := map[string]bool{}
	now := time.Now()
	r.regMu.Lock()
	defer r.regMu.Unlock()
	r.mu.Lock()
	old := r.hosts[host]
	r.hosts[host] = &d
	for _, dt := range d.Topics {
		if hostOf(dt.Name) != host {
			continue
		}
		t := r.topicLocked(dt.Name, now)
		if t == nil {
			continue // over MaxHostTopics
		}
		d.lists[dt.Name] = true
		if !t.declared || t.desc != dt {
			declare = append(declare, dt)
			watched[dt.Name] = t.watched
		}
		t.desc, t.declared = dt, true
	}
	for name, t := range r.topics {
		if t.host != host {
			continue
		}
		if !d.lists[name] && !t.lastStored.After(stored) {
			delete(r.topics, name)
			if r.hostTopics[host]--; r.hostTopics[host] == 0 {
				delete(r.hostTopics, host)
			}
			delete(r.backfilled, name)
			remove = append(remove, name)
			continue
		}
		t.agentErr = d.Errors[name]
	}
	r.mu.Unlock()
	switch {
	case d.Forgotten:
		r.log.Info("host forgotten", "host", host, "topics_removed", len(remove))
	case old == nil || old.Forgotten:
		r.log.Info("host joined", "host", host, "version", d.Version, "topics", len(d.Topics))
	}
	for _, dt := range declare {
		// Every host topic is a run-time one here: it exists while its
		// host's descriptor lists it, and goes when the host drops it (a
		// workload's) or the host is forgotten. History 0 is the
		// registry's usual length.
		r.reg.DeclareRuntime(dt.info(), historyCap(dt, watched[dt.Name]))
	}
	for _, name := range remove {
		r.reg.Undeclare(name)
	}
}

// IsHost reports whether host is a fleet host (a descriptor or a value was
// seen, forgotten ones included): the publish API may not use it as a
// source.
func (r *Replica) IsHost(host string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.hosts[host]
	return ok || r.hostTopics[host] > 0
}

// Hosts lists the fleet's hosts, sorted; forgotten ones are left out.
func (r *Replica) Hosts() []string {
	r.mu.Lock()
	set := map[string]bool{}
	for h, d := range r.hosts {
		if !d.Forgotten {
			set[h] = true
		}
	}
	for h := range r.hostTopics {
		set[h] = true
	}
	r.mu.Unlock()
	return slices.Sorted(maps.Keys(set))
}

// publishAttempts bounds forward's compare-and-set retries.
const publishAttempts = 30

// forward is the publish API in a fleet: the value goes to the stream with
// the topic's next seq, assigned by compare-and-set on the subject's last
// stream sequence so that two replicas publishing the same topic at once
// never hand out one seq twice; the loser retries with the next.
func (r *Replica) forward(topic string, ts time.Time, data json.RawMessage) error {
	if r.nc == nil || !r.nc.IsConnected() {
		return fmt.Errorf("%w: the fleet's NATS is unreachable; try again", stream.ErrUnavailable)
	}
	subject := PublishedPrefix + topic
	ctx, cancel := context.WithTimeout(context.Background(), 2*requestTimeout)
	defer cancel()
	for attempt := range publishAttempts {
		if attempt > 0 { // lost a race: back off a random while so the racers spread out
			time.Sleep(time.Duration(mathrand.Int64N(int64(attempt)*int64(2*time.Millisecond) + 1)))
		}
		streamSeq, last, _, err := directLast(r.nc, subject)
		if err != nil {
			return fmt.Errorf("%w: the fleet's store: %w", stream.ErrUnavailable, err)
		}
		seq := last + 1
		m := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
		m.Header.Set(HeaderSeq, strconv.FormatUint(seq, 10))
		m.Header.Set(HeaderTS, strconv.FormatInt(ts.UnixMilli(), 10))
		_, err = r.js.PublishMsg(ctx, m, jetstream.WithExpectLastSequencePerSubject(streamSeq))
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
			continue // another replica published this topic meanwhile
		}
		if err != nil {
			return fmt.Errorf("%w: the fleet's store: %w", stream.ErrUnavailable, err)
		}
		// Shown here at once; the same value coming back through the
		// consumer is then a stale seq and ignored.
		r.reg.PublishAt(stream.Sequenced{Topic: topic, Seq: seq, TS: ts.UnixMilli(), Data: data, Published: true})
		return nil
	}
	return fmt.Errorf("%w: the fleet's store: too many concurrent publishers of this topic; try again", stream.ErrUnavailable)
}
