package stream

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/opsdash/opsdash/collectors"
)

var (
	// ErrReservedTopic means the publish API tried to publish under the
	// local host id, which belongs to the host's own collectors.
	ErrReservedTopic = errors.New("topic reserved for the local host's collectors")
	// ErrTooManyTopics means the cap on topics created through the publish
	// API (RegistryConfig.MaxTopics) is reached.
	ErrTooManyTopics = errors.New("too many published topics")
)

// ErrInvalidData is returned by PublishJSON when data is not one JSON object.
var ErrInvalidData = errors.New("data must be a JSON object")

// ErrValueTooLarge is returned by PublishJSON when data is larger than
// RegistryConfig.MaxValueBytes.
var ErrValueTooLarge = errors.New("value too large")

// Publish stores a collector's sample as the topic's latest value and offers
// it to every matching session. It implements collectors.Sink and never
// blocks on a subscriber. A sample with an invalid topic or data that
// cannot be encoded as JSON is logged and dropped.
func (r *Registry) Publish(s collectors.Sample) {
	r.publishSample(s, nil)
}

// PublishBatch publishes samples taken together (one collector run) so that
// a subscriber of several of them gets them in one write: writers start
// once every sample is offered, not after each. It implements
// collectors.BatchSink.
func (r *Registry) PublishBatch(samples []collectors.Sample) {
	var b batch
	for _, s := range samples {
		r.publishSample(s, &b)
	}
	b.deliver(&r.flush)
}

func (r *Registry) publishSample(s collectors.Sample, b *batch) {
	if !ValidTopic(s.Topic) {
		r.counters.encodeErrors.Add(1)
		r.log.Warn("stream: publish: invalid topic name", "topic", s.Topic)
		return
	}
	data, err := json.Marshal(s.Data)
	if err != nil {
		r.counters.encodeErrors.Add(1)
		r.log.Warn("stream: publish: cannot encode sample", "topic", s.Topic, "err", err)
		return
	}
	ts := s.Time
	if ts.IsZero() {
		ts = r.now()
	}
	_ = r.publish(s.Topic, ts, data, false, b)
}

// PublishJSON is the publish API's entry point. It validates the topic
// (ErrInvalidTopic), refuses the local host id as first token
// (ErrReservedTopic), refuses data that is not one JSON object
// (ErrInvalidData) and caps the number of topics it creates
// (ErrTooManyTopics). A zero ts means now. Topics created here expire after
// PublishedTTL without a publish.
func (r *Registry) PublishJSON(name string, ts time.Time, data json.RawMessage) error {
	return r.publishJSON(name, ts, data, nil)
}

func (r *Registry) publishJSON(name string, ts time.Time, data json.RawMessage, b *batch) error {
	if err := r.CheckPublishTopic(name); err != nil {
		return err
	}
	// Compact so every frame is one line (SSE data lines) and validate.
	var buf bytes.Buffer
	buf.Grow(len(data))
	if err := json.Compact(&buf, data); err != nil || buf.Len() == 0 || buf.Bytes()[0] != '{' {
		return ErrInvalidData
	}
	if err := r.CheckPublishSize(buf.Len()); err != nil {
		return err
	}
	if ts.IsZero() {
		ts = r.now()
	}
	if r.cfg.forward != nil { // fleet mode: the value goes through NATS (fleet.go)
		return r.forwardPublished(name, ts, buf.Bytes())
	}
	return r.publish(name, ts, buf.Bytes(), true, b)
}

// CheckPublishTopic reports whether name may be published through the
// publish API: ErrInvalidTopic for a malformed name, ErrReservedTopic for
// a topic of the local host (no spoofing of its collectors' metrics). The
// HTTP edge checks a whole batch with it before publishing any of it.
func (r *Registry) CheckPublishTopic(name string) error {
	if !ValidTopic(name) {
		return fmt.Errorf("%w: %q", ErrInvalidTopic, name)
	}
	first, _, _ := strings.Cut(name, ".")
	if h := r.cfg.Host; h != "" && first == h {
		return fmt.Errorf("%w: %q", ErrReservedTopic, name)
	}
	if r.cfg.reservedSource != nil && r.cfg.reservedSource(first) { // a fleet host (fleet.go)
		return fmt.Errorf("%w: %q", ErrReservedTopic, name)
	}
	return nil
}

// CheckPublishSize reports whether a value of n bytes of compact JSON may be
// published through the publish API (ErrValueTooLarge if not). The HTTP
// edge checks a whole batch with it before publishing any of it.
func (r *Registry) CheckPublishSize(n int) error {
	if max := r.cfg.MaxValueBytes; max > 0 && n > max {
		return fmt.Errorf("%w: %d bytes of JSON, the limit is %d", ErrValueTooLarge, n, max)
	}
	return nil
}

// JSONItem is one value for PublishJSONBatch.
type JSONItem struct {
	Topic string
	TS    time.Time // zero means now
	Data  json.RawMessage
}

// PublishJSONBatch publishes items in order through PublishJSON's checks,
// stopping at the first error, and returns how many were published. As
// with PublishBatch, a subscriber gets the batch's values in one write.
func (r *Registry) PublishJSONBatch(items []JSONItem) (int, error) {
	var b batch
	defer func() { b.deliver(&r.flush) }() // b grows below: deliver what it holds at return
	for i, it := range items {
		if err := r.publishJSON(it.Topic, it.TS, it.Data, &b); err != nil {
			return i, err
		}
	}
	return len(items), nil
}

// publish stores a value and offers it to the topic's subscribers. With b
// nil it is offered at once; otherwise it joins b, which the caller
// delivers after the batch's last value.
func (r *Registry) publish(name string, ts time.Time, data []byte, api bool, b *batch) error {
	tsMS := ts.UnixMilli()
	r.mu.Lock()
	t := r.topics[name]
	created := false
	if t == nil {
		if api && r.cfg.MaxTopics > 0 && r.published >= r.cfg.MaxTopics {
			r.mu.Unlock()
			return fmt.Errorf("%w (cap %d)", ErrTooManyTopics, r.cfg.MaxTopics)
		}
		t = r.newTopicLocked(name)
		created = true
		if api {
			t.published = true
			r.published++
		}
	}
	if t.published {
		t.lastPublish = r.now()
	}
	r.storeAndOffer(t, created, t.seq+1, tsMS, data, b) // unlocks r.mu
	return nil
}

// storeAndOffer makes (seq, tsMS, data) t's latest value, releases r.mu
// (held for writing by the caller) and offers the value to t's
// subscribers: at once, or through b when it is not nil.
func (r *Registry) storeAndOffer(t *topic, created bool, seq uint64, tsMS int64, data []byte, b *batch) {
	t.seq = seq
	t.ts = tsMS
	t.data = data
	t.frame = appendUpdate(make([]byte, 0, len(data)+len(t.name)+64), t.name, seq, tsMS, data)
	histBytes := r.cfg.HistoryBytes
	if t.published {
		histBytes = r.cfg.PublishedHistoryBytes
	}
	t.hist.push(HistoryEntry{Seq: seq, TS: tsMS, Data: data}, t.historyLen(r.cfg.HistoryLen), histBytes)
	frame := t.frame
	subs := t.subscribersLocked()
	r.mu.Unlock()

	r.counters.published.Add(1)
	r.counters.offered.Add(uint64(len(subs)))
	if created && len(subs) > 0 {
		r.notifyDemand([]*topic{t})
	}
	if len(subs) == 0 {
		return
	}
	v := loopValue{t: t, seq: seq, frame: frame, subs: subs}
	if b != nil {
		*b = append(*b, v)
		return
	}
	r.flush.offer(v)
}
