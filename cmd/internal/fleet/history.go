package fleet

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/opsdash/opsdash/stream"
)

// History: the stream keeps ValuesPerSubject values of every topic, so a
// replica need not. It keeps only the last value (idleHistory) of a host
// topic nobody watches on it; when a page or ?history=N asks for a topic's
// history, the topic's cap goes up to the registry's usual length and its
// past values are loaded from the stream, once, and it keeps what arrives
// from then on, until its last subscriber on this replica leaves. Keeping
// five minutes of all 2,400 topics of 200 hosts cost each replica about
// 1.5 MiB more every second of its first five minutes (220 MiB after two);
// loading it all at start would cost seconds of CPU, for charts nobody may
// open. <host>.summary keeps its whole history: the overview draws every
// host's sparkline from it.

// idleHistory is how many values a replica keeps of a host topic that
// nobody watches on it; defaultHistoryGrace is how long a topic whose
// history was asked for keeps it without a subscriber here (a page's
// history request comes before its WebSocket subscribes, and a program may
// poll ?history=N).
const (
	idleHistory         = 1
	defaultHistoryGrace = time.Minute
)

// Backfill loads topic's past values from the stream into the registry,
// if it has fewer than n and they were not loaded before. It returns
// when they are loaded, the stream has no more, or ctx ends.
func (r *Replica) Backfill(ctx context.Context, topic string, n int) {
	if n <= 1 || r.js == nil {
		return
	}
	r.watchHistory(topic) // also when loaded already: asked again, kept longer
	r.mu.Lock()
	done := r.backfilled[topic]
	r.mu.Unlock()
	if done {
		return
	}
	if st, ok := r.reg.Topic(topic, n); !ok || len(st.History) >= n {
		return
	}
	subject := PublishedPrefix + topic
	if r.IsHost(hostOf(topic)) {
		subject = MetricPrefix + topic
	}
	past, err := r.fetchHistory(ctx, subject, n)
	if err != nil {
		r.log.Debug("history not loaded", "topic", topic, "err", err)
		return
	}
	r.reg.Backfill(topic, past)
	r.mu.Lock()
	r.backfilled[topic] = true
	if t := r.topics[topic]; t != nil && t.watched {
		t.watchedAt = time.Now() // the grace counts from when the history is there
	}
	r.mu.Unlock()
}

// fetchHistory reads subject's stored values (at most ValuesPerSubject)
// with a short-lived ordered consumer and returns the newest n.
func (r *Replica) fetchHistory(ctx context.Context, subject string, n int) ([]stream.HistoryEntry, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cons, err := r.js.OrderedConsumer(ctx, StreamName, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, err
	}
	var out []stream.HistoryEntry
	for {
		// No wait for a full batch: the values are stored already, and a
		// topic younger than ValuesPerSubject seconds has fewer (waiting for
		// the rest would hold a host page's render for a second per chart).
		batch, err := cons.FetchNoWait(ValuesPerSubject)
		if err != nil {
			return nil, err
		}
		more := false
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			seq, _ := strconv.ParseUint(m.Headers().Get(HeaderSeq), 10, 64)
			ts, _ := strconv.ParseInt(m.Headers().Get(HeaderTS), 10, 64)
			if seq > 0 {
				out = append(out, stream.HistoryEntry{Seq: seq, TS: ts, Data: m.Data()})
			}
			more = md.NumPending > 0
		}
		if batch.Error() != nil || !more || ctx.Err() != nil {
			break
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out, nil
}

// historyCap is how many values the registry keeps of a host topic with
// descriptor entry dt (0: the registry's usual length): all for the
// summary and for topics someone watches here, idleHistory otherwise.
func historyCap(dt descTopic, watched bool) int {
	if watched || strings.HasSuffix(dt.Name, "."+SummarySuffix) {
		return dt.History
	}
	return idleHistory
}

// watchHistory gives a host topic its whole history from now on: its cap
// goes up before Backfill loads the past.
func (r *Replica) watchHistory(topic string) {
	r.regMu.Lock()
	defer r.regMu.Unlock()
	r.mu.Lock()
	t := r.topics[topic]
	raise := t != nil && t.declared && !t.watched
	if t != nil && t.declared {
		t.watched, t.watchedAt = true, time.Now()
	}
	r.mu.Unlock()
	if raise {
		r.reg.DeclareRuntime(t.desc.info(), historyCap(t.desc, true))
	}
}

// lowerUnwatched lowers to idleHistory the history of watched host topics
// that have no subscriber here and were last asked for more than
// ReplicaConfig.HistoryGrace ago; the next Backfill loads it again. It runs
// on the liveness loop, not in setDemand: the registry calls setDemand from
// inside its own calls, some of them made under regMu.
func (r *Replica) lowerUnwatched(now time.Time) {
	r.regMu.Lock()
	defer r.regMu.Unlock()
	var lower []descTopic
	r.mu.Lock()
	for name, t := range r.topics {
		if _, wanted := r.wanted[name]; t.watched && !wanted && now.Sub(t.watchedAt) > r.historyGrace {
			t.watched = false
			delete(r.backfilled, name)
			lower = append(lower, t.desc)
		}
	}
	r.mu.Unlock()
	for _, dt := range lower {
		r.reg.DeclareRuntime(dt.info(), historyCap(dt, false))
	}
}
