package fleet

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/opsdash/opsdash/collectors"
	"github.com/opsdash/opsdash/stream"
)

// Host a's credentials cannot publish as host b: the server refuses, and
// nothing reaches the store; a's own values do.
func TestAgentCredentialsPublishOnlyTheirOwnHost(t *testing.T) {
	s := testHub(t, t.TempDir(), "127.0.0.1:0")
	var mu sync.Mutex
	var asyncErr error
	nc, err := nats.Connect(s.ClientURL(), nats.UserInfo(s.Secret().Agent("web-a").User, s.Secret().Agent("web-a").Password),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { mu.Lock(); asyncErr = err; mu.Unlock() }))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for _, subj := range []string{MetricPrefix + "web-b.cpu", PublishedPrefix + "billing.x", "$KV." + HostsBucket + ".web-b"} {
		if err := nc.Publish(subj, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Publish(MetricPrefix+"web-a.cpu", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	_ = nc.Flush()
	waitFor(t, "a permissions violation", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return asyncErr != nil && strings.Contains(strings.ToLower(asyncErr.Error()), "permissions violation")
	})
	admin := connect(t, s.ClientURL(), s.HubCredentials(), "", nil)
	waitFor(t, "web-a's own value stored", func() bool {
		_, _, found, _ := directLast(admin, MetricPrefix+"web-a.cpu")
		return found
	})
	for _, subj := range []string{MetricPrefix + "web-b.cpu", PublishedPrefix + "billing.x"} {
		if _, _, found, err := directLast(admin, subj); found || err != nil {
			t.Errorf("%s: stored=%v err=%v; host a's credentials must not reach it", subj, found, err)
		}
	}
	// Wrong password, unknown role: refused at connect.
	for _, c := range []Credentials{{"agent-web-a", "nope"}, {"root", s.Secret().password("root")}} {
		if nc, err := nats.Connect(s.ClientURL(), nats.UserInfo(c.User, c.Password)); err == nil {
			nc.Close()
			t.Errorf("connect as %s with a bad password or role succeeded", c.User)
		}
	}
}

// Listening beyond loopback, the embedded server refuses clients without
// credentials; on loopback it lets them in.
func TestServerRequiresCredentialsBeyondLoopback(t *testing.T) {
	open := testHub(t, t.TempDir(), "127.0.0.1:0")
	if nc, err := nats.Connect(open.ClientURL()); err != nil {
		t.Errorf("loopback-only server refused an anonymous client: %v", err)
	} else {
		nc.Close()
	}
	wide := testHub(t, t.TempDir(), "0.0.0.0:0")
	url := fmt.Sprintf("nats://127.0.0.1:%d", wide.Addr().(*net.TCPAddr).Port) // still reached over loopback
	if nc, err := nats.Connect(url); err == nil {
		nc.Close()
		t.Error("a server listening beyond loopback let in a client without credentials")
	}
	creds := wide.Secret().Agent("web-1")
	if nc, err := nats.Connect(url, nats.UserInfo(creds.User, creds.Password)); err != nil {
		t.Errorf("an agent with its credentials was refused: %v", err)
	} else {
		nc.Close()
	}
}

// A replica's credentials read everything but may publish only the
// publish API's subjects, never a host's.
func TestReplicaCredentialsCannotPoseAsAHost(t *testing.T) {
	s := testHub(t, t.TempDir(), "127.0.0.1:0")
	errs := make(chan error, 4)
	nc, err := nats.Connect(s.ClientURL(), nats.UserInfo(s.Secret().Replica("r1").User, s.Secret().Replica("r1").Password),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.Publish(MetricPrefix+"web-1.cpu", []byte(`{}`))
	_ = nc.Flush()
	select {
	case err := <-errs:
		if !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
			t.Errorf("got %v, want a permissions violation", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a replica published as a host without a permissions violation")
	}
}

// A restarted agent continues each topic's seq from the store, and two
// replicas show every host's topics with the agents' seqs and one instance.
func TestSeqsContinueAcrossAgentRestartsAndReplicasAgree(t *testing.T) {
	s := testHub(t, t.TempDir(), "127.0.0.1:0")
	a := testAgent(t, s, "web-1")
	for i := range 3 {
		sample(a, "web-1.cpu", float64(i))
	}
	a.Close()
	admin := connect(t, s.ClientURL(), s.HubCredentials(), "", nil)
	waitFor(t, "seq 3 stored", func() bool { _, seq, _, _ := directLast(admin, MetricPrefix+"web-1.cpu"); return seq == 3 })
	b := testAgent(t, s, "web-1") // the same host, restarted
	sample(b, "web-1.cpu", 9)
	c := testAgent(t, s, "web-2")
	sample(c, "web-2.cpu", 1)

	r1, reg1 := testReplica(t, s.ClientURL(), s.Secret().Replica("r1"), "r1")
	r2, reg2 := testReplica(t, s.ClientURL(), s.Secret().Replica("r2"), "r2")
	for _, reg := range []*stream.Registry{reg1, reg2} {
		waitFor(t, fmt.Sprintf("web-1.cpu at seq 4 (is %d) and web-2.cpu at 1", seqOf(reg, "web-1.cpu")), func() bool {
			return seqOf(reg, "web-1.cpu") == 4 && seqOf(reg, "web-2.cpu") == 1
		})
	}
	waitFor(t, "both replicas ready", func() bool { return r1.Ready() && r2.Ready() })
	if reg1.Instance() != reg2.Instance() || !strings.HasPrefix(reg1.Instance(), "fleet-") {
		t.Errorf("instances %q and %q: want one fleet epoch", reg1.Instance(), reg2.Instance())
	}
	sample(b, "web-1.cpu", 10)
	waitFor(t, "live value seq 5 on r2", func() bool { return seqOf(reg2, "web-1.cpu") == 5 })
	st, _ := reg2.Topic("web-1.cpu", 0)
	if string(st.Data) != `{"usage_pct":10}` {
		t.Errorf("data %s, want the agent's", st.Data)
	}
	if got := r1.Hosts(); strings.Join(got, ",") != "web-1,web-2" {
		t.Errorf("Hosts() = %v", got)
	}
}

// The store survives a restart of the hub (same epoch, replicas resume);
// a hub whose store was lost is a new epoch: replicas close their
// sessions with 1012 and the seqs start over under the new instance.
func TestReplicaDetectsARecreatedStoreOnReconnect(t *testing.T) {
	addr, dir := freePort(t), t.TempDir()
	s := testHub(t, dir, addr)
	secret := s.Secret()
	a := testAgent(t, s, "web-1")
	sample(a, "web-1.cpu", 1)
	r, reg := testReplica(t, s.ClientURL(), secret.Replica("r1"), "r1")
	waitFor(t, "replica ready with web-1.cpu", func() bool { return r.Ready() && seqOf(reg, "web-1.cpu") == 1 })
	first := reg.Instance()

	s.Shutdown()
	waitFor(t, "replica notices the loss", func() bool { return !r.Ready() })
	if r.NotReady() != "NATS unreachable" {
		t.Errorf("NotReady() = %q", r.NotReady())
	}
	if err := reg.PublishJSON("billing.orders", time.Time{}, json.RawMessage(`{"n":1}`)); !errors.Is(err, stream.ErrUnavailable) {
		t.Errorf("publish API with NATS away: %v, want ErrUnavailable (503)", err)
	}
	r.checkLiveness(time.Now().Add(FeedLostAfter + time.Second))
	if st, _ := reg.Topic("web-1.cpu", 0); st.Status != stream.StatusFailing || !strings.Contains(st.Error, "live feed lost") {
		t.Errorf("after the loss web-1.cpu is %s %q, want failing: live feed lost", st.Status, st.Error)
	}

	s = testHub(t, dir, addr) // same store
	waitFor(t, "replica ready again", r.Ready)
	if reg.Instance() != first {
		t.Errorf("instance changed from %q to %q although the store survived", first, reg.Instance())
	}
	r.checkLiveness(time.Now())
	if st, _ := reg.Topic("web-1.cpu", 0); st.Status != stream.StatusOK {
		t.Errorf("after the return web-1.cpu is %s %q, want ok", st.Status, st.Error)
	}
	sample(a, "web-1.cpu", 2)
	waitFor(t, "seq 2 after the restart", func() bool { return seqOf(reg, "web-1.cpu") == 2 })

	conn := &wsConn{}
	sess := reg.Open(conn, stream.SessionConfig{})
	defer sess.Close(1000, "")
	s.Shutdown()
	lost := t.TempDir() // the store is lost, the secret kept (the agents' credentials stay valid)
	if err := os.WriteFile(filepath.Join(lost, SecretFile), []byte(hex.EncodeToString(secret)), 0o600); err != nil {
		t.Fatal(err)
	}
	testHub(t, lost, addr)
	waitFor(t, "a new epoch", func() bool { return reg.Instance() != first && r.Ready() })
	if conn.closedWith() != stream.CloseServiceRestart {
		t.Errorf("session closed with %d, want %d", conn.closedWith(), stream.CloseServiceRestart)
	}
	if seqOf(reg, "web-1.cpu") != 0 {
		t.Errorf("web-1.cpu kept seq %d from the old epoch", seqOf(reg, "web-1.cpu"))
	}
}

// A second agent with a host id already in use refuses to start.
func TestDuplicateHostIDIsRefused(t *testing.T) {
	s := testHub(t, t.TempDir(), "127.0.0.1:0")
	testAgent(t, s, "web-1")
	b, err := DialAgent(ConnConfig{URLs: []string{s.ClientURL()}, Credentials: s.Secret().Agent("web-1"), Logger: quiet},
		AgentConfig{Host: "web-1", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Start(ctx); !errors.Is(err, ErrDuplicateHost) {
		t.Errorf("second agent of web-1: Start = %v, want ErrDuplicateHost", err)
	}
}

// The publish API on two replicas: every value gets its own seq, the same
// on both, whichever replica took it; a fleet host's id is refused.
func TestPublishAPIOnTwoReplicasSharesOneSeq(t *testing.T) {
	s := testHub(t, t.TempDir(), "127.0.0.1:0")
	testAgent(t, s, "web-1").Declare(collectors.TopicInfo{Name: "web-1.cpu", Interval: time.Second})
	r1, reg1 := testReplica(t, s.ClientURL(), s.Secret().Replica("r1"), "r1")
	r2, reg2 := testReplica(t, s.ClientURL(), s.Secret().Replica("r2"), "r2")
	waitFor(t, "replicas know web-1", func() bool { return r1.IsHost("web-1") && r2.IsHost("web-1") })

	const each = 20
	var wg sync.WaitGroup
	for _, reg := range []*stream.Registry{reg1, reg2} {
		wg.Go(func() {
			for i := range each {
				if err := reg.PublishJSON("billing.orders", time.Time{}, json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))); err != nil {
					t.Errorf("PublishJSON: %v", err)
				}
			}
		})
	}
	wg.Wait()
	for _, reg := range []*stream.Registry{reg1, reg2} {
		waitFor(t, "both at seq 40", func() bool { return seqOf(reg, "billing.orders") == 2*each })
	}
	if err := reg1.PublishJSON("web-1.cpu", time.Time{}, json.RawMessage(`{}`)); !errors.Is(err, stream.ErrReservedTopic) {
		t.Errorf("publishing as fleet host web-1: %v, want ErrReservedTopic", err)
	}
}

// A host whose agent falls silent: its topics turn failing within 15 s
// (checked at a chosen instant, not by waiting), saying since when; a
// value brings them back.
func TestSilentHostTurnsFailing(t *testing.T) {
	s := testHub(t, t.TempDir(), "127.0.0.1:0")
	a := testAgent(t, s, "web-1")
	a.Declare(collectors.TopicInfo{Name: "web-1.cpu", Interval: time.Second})
	a.Declare(collectors.TopicInfo{Name: "web-1.host", Interval: time.Minute})
	sample(a, "web-1.cpu", 1)
	sample(a, "web-1.host", 1)
	r, reg := testReplica(t, s.ClientURL(), s.Secret().Replica("r1"), "r1")
	waitFor(t, "declared and a value", func() bool {
		st, _ := reg.Topic("web-1.host", 0)
		return r.Ready() && st.IntervalMS == 60000 && seqOf(reg, "web-1.cpu") == 1
	})
	r.checkLiveness(time.Now().Add(14 * time.Second))
	if st, _ := reg.Topic("web-1.cpu", 0); st.Status != stream.StatusFailing || !strings.Contains(st.Error, "no value from web-1 since") {
		t.Errorf("cpu after 14 s of silence: %s %q, want failing, no value since", st.Status, st.Error)
	}
	if st, _ := reg.Topic("web-1.host", 0); st.Status != stream.StatusOK {
		t.Errorf("host topic (60 s interval) after 14 s: %s, want ok until 3 intervals", st.Status)
	}
	r.checkLiveness(time.Now().Add(3 * time.Minute))
	if st, _ := reg.Topic("web-1.host", 0); st.Status != stream.StatusFailing {
		t.Errorf("host topic after 3 minutes: %s, want failing", st.Status)
	}
	sample(a, "web-1.cpu", 2)
	waitFor(t, "seq 2", func() bool { return seqOf(reg, "web-1.cpu") == 2 })
	r.checkLiveness(time.Now())
	if st, _ := reg.Topic("web-1.cpu", 0); st.Status != stream.StatusOK {
		t.Errorf("cpu after a new value: %s %q, want ok", st.Status, st.Error)
	}
	// A collector's own error travels in the descriptor.
	a.SetStatus("web-1.cpu", errors.New("permission denied"))
	a.flushDescriptor()
	waitFor(t, "the agent's error", func() bool {
		r.checkLiveness(time.Now())
		st, _ := reg.Topic("web-1.cpu", 0)
		return st.Error == "permission denied"
	})
}

// A viewer of an on-demand topic on either replica makes the agent
// collect it; it stops once the last viewer on every replica left.
func TestDemandAcrossReplicas(t *testing.T) {
	s := testHub(t, t.TempDir(), "127.0.0.1:0")
	a := testAgent(t, s, "web-1")
	var mu sync.Mutex
	wanted := map[string]bool{}
	a.OnDemand(func(topic string, on bool) { mu.Lock(); wanted[topic] = on; mu.Unlock() })
	a.Declare(collectors.TopicInfo{Name: "web-1.proc.top", Interval: 2 * time.Second, OnDemand: true})
	isWanted := func() bool { mu.Lock(); defer mu.Unlock(); return wanted["web-1.proc.top"] }

	_, reg1 := testReplica(t, s.ClientURL(), s.Secret().Replica("r1"), "r1")
	_, reg2 := testReplica(t, s.ClientURL(), s.Secret().Replica("r2"), "r2")
	for _, reg := range []*stream.Registry{reg1, reg2} {
		waitFor(t, "proc.top declared idle", func() bool {
			st, ok := reg.Topic("web-1.proc.top", 0)
			return ok && st.Status == stream.StatusIdle
		})
	}
	open := func(reg *stream.Registry) *stream.Session {
		sess := reg.Open(&wsConn{}, stream.SessionConfig{})
		if err := sess.Handle([]byte(`{"type":"subscribe","id":"1","topics":["web-1.proc.top"]}`)); err != nil {
			t.Fatal(err)
		}
		return sess
	}
	v1, v2 := open(reg1), open(reg2)
	waitFor(t, "collection wanted", isWanted)
	v1.Close(1000, "")
	a.sweepLeases(time.Now())
	if !isWanted() {
		t.Error("collection stopped while a viewer on r2 remains")
	}
	v2.Close(1000, "")
	waitFor(t, "collection stopped", func() bool { return !isWanted() })
}

// A browser signed in on one replica is signed in on another; signing out
// on one ends it on both.
func TestSessionsAreSharedByReplicas(t *testing.T) {
	s := testHub(t, t.TempDir(), "127.0.0.1:0")
	a := NewSessionStore(connect(t, s.ClientURL(), s.Secret().Replica("r1"), "", nil), time.Hour)
	b := NewSessionStore(connect(t, s.ClientURL(), s.Secret().Replica("r2"), "", nil), time.Hour)
	now := time.Now()
	id, err := a.Create(now)
	if err != nil {
		t.Fatal(err)
	}
	if !b.Valid(id, now) {
		t.Fatal("a session made on r1 is not valid on r2")
	}
	if b.Valid(strings.Repeat("A", len(id)), now) {
		t.Error("an unknown id is valid")
	}
	if !a.Revoke(id) {
		t.Fatal("Revoke found no session")
	}
	if b.Valid(id, now.Add(sessionCacheFor)) {
		t.Error("a session signed out on r1 is still valid on r2 after the cache time")
	}
	id2, _ := a.Create(now)
	if b.Valid(id2, now.Add(2*time.Hour)) {
		t.Error("a session is valid past its TTL")
	}
}

// History asked for on a replica is loaded from the store, once.
func TestReplicaLoadsHistoryWhenAsked(t *testing.T) {
	s := testHub(t, t.TempDir(), "127.0.0.1:0")
	a := testAgent(t, s, "web-1")
	for i := range 30 {
		sample(a, "web-1.cpu", float64(i))
	}
	r, reg := testReplica(t, s.ClientURL(), s.Secret().Replica("r1"), "r1")
	waitFor(t, "seq 30", func() bool { return seqOf(reg, "web-1.cpu") == 30 })
	if st, _ := reg.Topic("web-1.cpu", 20); len(st.History) != 1 {
		t.Fatalf("history before asking: %d values, want only the last", len(st.History))
	}
	r.Backfill(context.Background(), "web-1.cpu", 20)
	st, _ := reg.Topic("web-1.cpu", 20)
	if len(st.History) != 20 || st.History[0].Seq != 11 || st.History[19].Seq != 30 {
		t.Errorf("history after Backfill: %d values from seq %d, want 20 from 11 to 30", len(st.History), st.History[0].Seq)
	}
}

// A lease that lapses tells the agent's collectors once that the topic is
// no longer wanted.
func TestLapsedLeaseStopsCollectionOnce(t *testing.T) {
	s := testHub(t, t.TempDir(), "127.0.0.1:0")
	a := NewAgent(AgentConfig{Conn: connect(t, s.ClientURL(), s.Secret().Agent("web-1"), AgentInbox("web-1"), nil), Host: "web-1", Logger: quiet})
	var calls []string
	a.OnDemand(func(topic string, on bool) { calls = append(calls, fmt.Sprint(topic, " ", on)) })
	a.onDemandMsg(&nats.Msg{Subject: DemandPrefix + "web-1.proc.top", Data: []byte(`{"replica":"r1","want":true}`)})
	a.sweepLeases(time.Now().Add(DemandLease + time.Second))
	a.sweepLeases(time.Now().Add(2 * DemandLease))
	if want := []string{"web-1.proc.top true", "web-1.proc.top false"}; !slices.Equal(calls, want) {
		t.Fatalf("demand calls %q, want %q", calls, want)
	}
}

// Once a simulated host's SimRun has returned, demand changes for its
// agent no longer wait for it: the agent's lease handling goes on.
func TestSimRunDoesNotHoldDemandAfterItEnds(t *testing.T) {
	s := testHub(t, t.TempDir(), "127.0.0.1:0")
	a := NewAgent(AgentConfig{Conn: connect(t, s.ClientURL(), s.Secret().Agent("web-1"), AgentInbox("web-1"), nil), Host: "web-1", Logger: quiet})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	SimRun(ctx, a, 0, 0, false, nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 10 { // more changes than SimRun's channel holds
			msg := fmt.Sprintf(`{"replica":"r1","want":%v}`, i%2 == 0)
			a.onDemandMsg(&nats.Msg{Subject: DemandPrefix + "web-1.proc.top", Data: []byte(msg)})
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second): // a bound on a hang, not a speed check
		t.Fatal("demand changes blocked after SimRun ended")
	}
}

// A workload's topic (a run-time topic) travels in its host's descriptor:
// replicas list it while the agent has it, drop it when the agent
// undeclares it, a replica started later never shows it although the store
// still holds its values, and when the workload comes back its seq
// continues.
func TestWorkloadTopicsFollowTheirHost(t *testing.T) {
	s := testHub(t, t.TempDir(), "127.0.0.1:0")
	a := testAgent(t, s, "web-1")
	a.Declare(collectors.TopicInfo{Name: "web-1.cpu", Interval: time.Second})
	const w = "web-1.workload.docker-3f2a9c1b7d4e"
	info := collectors.TopicInfo{Name: w, Interval: 5 * time.Second, Description: "a container"}
	a.DeclareRuntime(info, 60)
	sample(a, w, 1)
	sample(a, "web-1.cpu", 1)

	listed := func(reg *stream.Registry, name string) bool {
		return slices.ContainsFunc(reg.Topics(), func(st stream.TopicState) bool { return st.Name == name })
	}
	r1, reg1 := testReplica(t, s.ClientURL(), s.Secret().Replica("r1"), "r1")
	// The value may arrive before the descriptor that declares it.
	waitFor(t, "the workload listed on r1 at seq 1, as the descriptor declares it", func() bool {
		st, _ := reg1.Topic(w, 0)
		return listed(reg1, w) && st.Seq == 1 && st.IntervalMS == 5000 && st.Description == "a container"
	})

	a.Undeclare(w)
	waitFor(t, "the workload gone from r1", func() bool { return !listed(reg1, w) })
	if !listed(reg1, "web-1.cpu") {
		t.Error("r1 dropped a catalog topic with the workload")
	}

	r2, reg2 := testReplica(t, s.ClientURL(), s.Secret().Replica("r2"), "r2")
	waitFor(t, "r2 ready", r2.Ready)
	if listed(reg2, w) {
		t.Errorf("r2, started after the workload went, lists it from the store's old value")
	}
	if !listed(reg2, "web-1.cpu") {
		t.Error("r2 does not list web-1.cpu")
	}

	a.DeclareRuntime(info, 60)
	sample(a, w, 2)
	for _, reg := range []*stream.Registry{reg1, reg2} {
		waitFor(t, "the workload back at seq 2", func() bool { return listed(reg, w) && seqOf(reg, w) == 2 })
	}
	if !r1.Ready() {
		t.Error("r1 not ready")
	}
}

// A replica answers who was on top at a second for any host by asking that
// host's agent, which keeps the record (a real culprit sampler here): the
// newest second, the second nearest a time, not-found for a time nothing
// was kept near and for a host the fleet does not know. When the agent is
// gone, the same second comes from the store's values of <host>.culprits;
// a host that never published any is not found, saying why.
func TestCulpritsAcrossTheFleet(t *testing.T) {
	s := testHub(t, t.TempDir(), "127.0.0.1:0")
	a := testAgent(t, s, "web-1")
	sampler := collectors.NewCulprits(collectors.Config{HostID: "web-1"}).(*collectors.CulpritSampler)
	if err := a.ServeCulprits(sampler); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the baseline, then a second, published as the scheduler would
		samples, err := sampler.Collect(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		a.PublishBatch(samples)
	}
	want, err := sampler.Lookup(time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	b := testAgent(t, s, "web-2") // an agent that keeps no record
	sample(b, "web-2.cpu", 1)
	r, _ := testReplica(t, s.ClientURL(), s.Secret().Replica("r1"), "r1")
	waitFor(t, "r1 ready with both hosts", func() bool { return r.Ready() && r.IsHost("web-1") && r.IsHost("web-2") })

	ctx := context.Background()
	for _, at := range []time.Time{{}, want.TS.Add(700 * time.Millisecond)} {
		got, err := r.Culprits(ctx, "web-1", at)
		if err != nil || !got.TS.Equal(want.TS) || !got.Newest.Equal(want.Newest) || string(got.Data) != string(want.Data) {
			t.Errorf("web-1 at %v: %v, %v; want the agent's second %v", at, got.TS, err, want.TS)
		}
	}
	if _, err := r.Culprits(ctx, "web-1", want.TS.Add(-time.Hour)); !errors.Is(err, collectors.ErrNoCulprits) || !strings.Contains(err.Error(), "kept from") {
		t.Errorf("an hour before the record: %v; want not found, saying what is kept", err)
	}
	if _, err := r.Culprits(ctx, "web-9", time.Time{}); !errors.Is(err, collectors.ErrNoCulprits) {
		t.Errorf("a host not in the fleet: %v; want not found", err)
	}
	if _, err := r.Culprits(ctx, "web-2", time.Time{}); !errors.Is(err, collectors.ErrNoCulprits) || !strings.Contains(err.Error(), "store holds none") {
		t.Errorf("a host whose agent keeps no record and that published none: %v; want not found, saying why", err)
	}

	a.Close() // web-1 dies: its last seconds are still in the store
	got, err := r.Culprits(ctx, "web-1", want.TS.Add(-300*time.Millisecond))
	if err != nil || !got.TS.Equal(want.TS) || string(got.Data) != string(want.Data) {
		t.Errorf("web-1 after its agent stopped: %v, %v; want the second %v from the store", got.TS, err, want.TS)
	}
	if _, err := r.Culprits(ctx, "web-1", want.TS.Add(-time.Hour)); !errors.Is(err, collectors.ErrNoCulprits) || !strings.Contains(err.Error(), "store keeps") {
		t.Errorf("an hour before, from the store: %v; want not found, saying what the store keeps", err)
	}
}

// A decommissioned host is forgotten: refused while its agent runs; then
// every replica drops its topics and leaves it off the hosts, a replica
// started later does not bring it back, the store keeps one value per
// topic; an agent of that host id started again brings the host back with
// its seqs continuing.
func TestForgetAHost(t *testing.T) {
	s := testHub(t, t.TempDir(), "127.0.0.1:0")
	a := testAgent(t, s, "web-3")
	a.Declare(collectors.TopicInfo{Name: "web-3.cpu", Interval: time.Second})
	for i := range 3 {
		sample(a, "web-3.cpu", float64(i))
	}
	b := testAgent(t, s, "web-1")
	sample(b, "web-1.cpu", 1)
	r1, reg1 := testReplica(t, s.ClientURL(), s.Secret().Replica("r1"), "r1")
	listed := func(reg *stream.Registry, name string) bool {
		return slices.ContainsFunc(reg.Topics(), func(st stream.TopicState) bool { return st.Name == name })
	}
	waitFor(t, "web-3.cpu at seq 3 on r1", func() bool { return seqOf(reg1, "web-3.cpu") == 3 && listed(reg1, "web-1.cpu") })

	admin := connect(t, s.ClientURL(), s.Secret().Admin(), "", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := Forget(ctx, admin, "web-3"); !errors.Is(err, ErrHostRunning) {
		t.Fatalf("forgetting a host whose agent runs: %v, want ErrHostRunning", err)
	}
	a.Close()
	removed, err := Forget(ctx, admin, "web-3")
	if err != nil || removed < 2 {
		t.Fatalf("Forget: %d removed, %v; want at least web-3.cpu's 2 older values", removed, err)
	}
	if _, seq, _, _ := directLast(admin, MetricPrefix+"web-3.cpu"); seq != 3 {
		t.Errorf("the store's last web-3.cpu has seq %d, want 3 kept", seq)
	}
	gone := func(r *Replica, reg *stream.Registry) bool {
		return !listed(reg, "web-3.cpu") && !slices.Contains(r.Hosts(), "web-3") && listed(reg, "web-1.cpu")
	}
	waitFor(t, "web-3 gone from r1, web-1 kept", func() bool { return gone(r1, reg1) })
	r2, reg2 := testReplica(t, s.ClientURL(), s.Secret().Replica("r2"), "r2")
	waitFor(t, "r2 ready", r2.Ready)
	if !gone(r2, reg2) {
		t.Errorf("r2, started after web-3 was forgotten, shows it: hosts %v", r2.Hosts())
	}

	back := testAgent(t, s, "web-3")
	back.Declare(collectors.TopicInfo{Name: "web-3.cpu", Interval: time.Second})
	sample(back, "web-3.cpu", 9)
	for _, r := range []struct {
		r   *Replica
		reg *stream.Registry
	}{{r1, reg1}, {r2, reg2}} {
		waitFor(t, "web-3 back at seq 4", func() bool {
			return seqOf(r.reg, "web-3.cpu") == 4 && slices.Contains(r.r.Hosts(), "web-3")
		})
	}
}

// An agent whose host was compromised cannot make a replica hold topics
// without end: past MaxHostTopics of one host, its new topics are ignored,
// while other hosts' keep flowing.
func TestReplicaCapsTopicsPerHost(t *testing.T) {
	s := testHub(t, t.TempDir(), "127.0.0.1:0")
	b := testAgent(t, s, "web-2")
	r, reg := testReplica(t, s.ClientURL(), s.Secret().Replica("r1"), "r1")
	waitFor(t, "r1 ready", r.Ready)
	rogue := connect(t, s.ClientURL(), s.Secret().Agent("web-1"), AgentInbox("web-1"), nil)
	for i := range MaxHostTopics + 50 {
		m := &nats.Msg{Subject: fmt.Sprintf("%sweb-1.t%d", MetricPrefix, i), Data: []byte(`{"v":1}`), Header: nats.Header{}}
		m.Header.Set(HeaderSeq, "1")
		if err := rogue.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := rogue.Flush(); err != nil {
		t.Fatal(err)
	}
	count := func() int {
		n := 0
		for _, st := range reg.Topics() {
			if strings.HasPrefix(st.Name, "web-1.") {
				n++
			}
		}
		return n
	}
	waitFor(t, "web-1's topics up to the cap", func() bool { return count() == MaxHostTopics })
	sample(b, "web-2.cpu", 1) // another host still flows, after all of web-1's values
	waitFor(t, "web-2.cpu on r1", func() bool { return seqOf(reg, "web-2.cpu") == 1 })
	if n := count(); n != MaxHostTopics {
		t.Errorf("r1 holds %d of web-1's topics, want the cap, %d", n, MaxHostTopics)
	}
}

// A replica keeps only the last value of a host topic nobody watches on it
// (the store keeps 300); asking for its history loads the past and keeps
// what arrives, until nobody has subscribed for a while; the summary, which
// the overview draws sparklines from, keeps its whole history.
func TestReplicaKeepsHistoryOnlyWhileWatched(t *testing.T) {
	s := testHub(t, t.TempDir(), "127.0.0.1:0")
	a := testAgent(t, s, "web-1")
	a.Declare(collectors.TopicInfo{Name: "web-1.cpu", Interval: time.Second})
	reg := stream.NewRegistry(stream.RegistryConfig{Replica: "r1", Logger: quiet})
	r := NewReplica(ReplicaConfig{Registry: reg, Name: "r1", HistoryGrace: 1500 * time.Millisecond, Logger: quiet})
	run(t, func(ctx context.Context) {
		_ = r.Run(ctx, connect(t, s.ClientURL(), s.Secret().Replica("r1"), "", r.ConnState))
	})
	waitFor(t, "r1 ready", r.Ready)
	histLen := func(topic string) int { st, _ := reg.Topic(topic, 1000); return len(st.History) }
	for i := range 5 {
		sample(a, "web-1.cpu", float64(i))
		a.Publish(collectors.Sample{Topic: "web-1.summary", Time: time.Now(), Data: map[string]int{"cpu_pct": i}})
	}
	waitFor(t, "5 values of web-1.cpu and of the summary", func() bool {
		return seqOf(reg, "web-1.cpu") == 5 && histLen("web-1.summary") >= 5
	})
	if n := histLen("web-1.cpu"); n != 1 {
		t.Errorf("an unwatched topic keeps %d values, want 1", n)
	}

	r.Backfill(context.Background(), "web-1.cpu", 20)
	if n := histLen("web-1.cpu"); n != 5 {
		t.Fatalf("after asking for its history: %d values, want the store's 5", n)
	}
	sess := reg.Open(&wsConn{}, stream.SessionConfig{})
	if err := sess.Handle([]byte(`{"type":"subscribe","id":"1","topics":["web-1.cpu"]}`)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2100 * time.Millisecond) // past the grace and a liveness tick: a subscriber keeps it
	sample(a, "web-1.cpu", 5)
	waitFor(t, "seq 6", func() bool { return seqOf(reg, "web-1.cpu") == 6 })
	if n := histLen("web-1.cpu"); n != 6 {
		t.Errorf("watched, with a subscriber: %d values, want 6", n)
	}

	sess.Close(1000, "")
	waitFor(t, "web-1.cpu unwatched", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return !r.topics["web-1.cpu"].watched
	})
	sample(a, "web-1.cpu", 6)
	waitFor(t, "seq 7", func() bool { return seqOf(reg, "web-1.cpu") == 7 })
	if n := histLen("web-1.cpu"); n != 1 {
		t.Errorf("after its last subscriber left: %d values, want 1 again", n)
	}
	r.Backfill(context.Background(), "web-1.cpu", 20)
	if n := histLen("web-1.cpu"); n != 7 {
		t.Errorf("asked again: %d values, want the store's 7", n)
	}
}
