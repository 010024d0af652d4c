package fleet

import (
	"context"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/opsdash/opsdash/stream"
)

// History: a replica keeps, per topic, the values that arrived while it
// ran; older ones stay in the stream (ValuesPerSubject per topic) and are
// loaded when a page or ?history=N asks for them, once per topic and
// epoch. Loading all 2,400 topics' history at start would cost each
// replica seconds of CPU for charts nobody may open.

// Backfill loads topic's past values from the stream into the registry,
// if it has fewer than n and they were not loaded before. It returns
// when they are loaded, the stream has no more, or ctx ends.
func (r *Replica) Backfill(ctx context.Context, topic string, n int) {
	if n <= 1 || r.js == nil {
		return
	}
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
		batch, err := cons.Fetch(ValuesPerSubject, jetstream.FetchMaxWait(time.Second))
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
