package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// publisher pushes values through POST /api/v1/publish. Each value's data
// carries the publisher's sequence for its topic (pub_seq, from 1; 0 is the
// warm-up that creates the topic) and the time its POST started
// (sent_unix_ns), which clients subtract from their receive time.
//
// Two shapes of load:
//   - batched (default): one POST per tick holds a value for every topic,
//     so each tick offers topics × subscribers messages at the same instant;
//   - staggered: one goroutine per topic, each with its own POST per tick,
//     phases spread evenly over the period, the way opsdash's own
//     collectors are staggered.
type publisher struct {
	url     string
	token   string
	padding string // makes each value's data object about payloadBytes long
	client  *http.Client
	topics  []*pubTopic

	posts     atomic.Int64
	errors    atomic.Int64
	postNanos atomic.Int64 // total time spent in POSTs
	lastErr   atomic.Value // string
}

// pubTopic is one topic's publishing history.
type pubTopic struct {
	name      string
	sendLog                 // when each pub_seq's POST started
	completed atomic.Uint64 // newest pub_seq the server has accepted (2xx)
}

// newPublisher prepares a publisher for topics on the server at base
// (http://127.0.0.1:port), each value's data about payloadBytes long.
func newPublisher(base, token string, topics []string, payloadBytes int) *publisher {
	// {"sent_unix_ns":1763740000123456789,"pub_seq":123456,"pad":""} is about 64 bytes.
	pad := max(payloadBytes-64, 0)
	p := &publisher{
		url:     base + "/api/v1/publish",
		token:   token,
		padding: strings.Repeat("x", pad),
		client: &http.Client{
			Timeout:   10 * time.Second,
			Transport: &http.Transport{MaxIdleConnsPerHost: len(topics) + 2, DisableCompression: true},
		},
	}
	for _, name := range topics {
		p.topics = append(p.topics, &pubTopic{name: name, sendLog: sendLog{sent: make([]int64, 1, 1024)}})
	}
	return p
}

// body builds the JSON array for one POST.
func (p *publisher) body(idx []int, seq uint64, sentNS int64) []byte {
	var b bytes.Buffer
	b.Grow(len(idx) * (len(p.padding) + 100))
	b.WriteByte('[')
	for i, t := range idx {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"topic":"`)
		b.WriteString(p.topics[t].name)
		b.WriteString(`","data":{"sent_unix_ns":`)
		b.WriteString(strconv.FormatInt(sentNS, 10))
		b.WriteString(`,"pub_seq":`)
		b.WriteString(strconv.FormatUint(seq, 10))
		b.WriteString(`,"pad":"`)
		b.WriteString(p.padding)
		b.WriteString(`"}}`)
	}
	b.WriteByte(']')
	return b.Bytes()
}

// publish sends pub_seq seq of the topics idx in one POST. seq 0 is the
// warm-up; later seqs of a topic must come in order, one goroutine per topic.
func (p *publisher) publish(ctx context.Context, idx []int, seq uint64) error {
	now := time.Now()
	for _, t := range idx {
		p.topics[t].record(seq, now.UnixNano())
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(p.body(idx, seq, now.UnixNano())))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+p.token)
	resp, err := p.client.Do(req)
	p.posts.Add(1)
	p.postNanos.Add(int64(time.Since(now)))
	if err != nil {
		if ctx.Err() == nil { // a run being stopped is not a failure
			p.fail(err.Error())
		}
		return err
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		err := fmt.Errorf("POST /api/v1/publish: %s: %s", resp.Status, bytes.TrimSpace(msg))
		p.fail(err.Error())
		return err
	}
	for _, t := range idx {
		p.topics[t].completed.Store(seq)
	}
	return nil
}

func (p *publisher) fail(msg string) {
	p.errors.Add(1)
	p.lastErr.Store(msg)
}

// all returns the indexes of every topic.
func (p *publisher) all() []int {
	idx := make([]int, len(p.topics))
	for i := range idx {
		idx[i] = i
	}
	return idx
}

// warmUp publishes pub_seq 0 of every topic, which creates the topics.
func (p *publisher) warmUp(ctx context.Context) error { return p.publish(ctx, p.all(), 0) }

// run publishes every topic at rate values per second for d, batched or
// staggered, continuing each topic's pub_seq. A tick that comes while the
// previous POST is still running is skipped (a time.Ticker drops ticks for a
// slow receiver): the achieved rate is reported, and the publisher never
// queues. It returns the number of values published.
func (p *publisher) run(ctx context.Context, rate float64, d time.Duration, stagger bool) uint64 {
	period := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	end := start.Add(d)
	loop := func(idx []int, phase time.Duration) uint64 {
		if sleepCtx(ctx, phase) != nil {
			return 0
		}
		tick := time.NewTicker(period)
		defer tick.Stop()
		var n uint64
		seq := p.topics[idx[0]].latest.Load()
		for {
			seq++
			if p.publish(ctx, idx, seq) == nil {
				n += uint64(len(idx))
			}
			select {
			case <-ctx.Done():
				return n
			case now := <-tick.C:
				if !now.Before(end) {
					return n
				}
			}
		}
	}
	if !stagger {
		return loop(p.all(), 0)
	}
	var total atomic.Uint64
	var wg sync.WaitGroup
	for i := range p.topics {
		wg.Add(1)
		go func() {
			defer wg.Done()
			total.Add(loop([]int{i}, period*time.Duration(i)/time.Duration(len(p.topics))))
		}()
	}
	wg.Wait()
	return total.Load()
}

// sentTable returns topic t's send-time table (sendLog.table).
func (p *publisher) sentTable(t int) []int64 { return p.topics[t].table() }

// lastError is the most recent publish error, "" if none.
func (p *publisher) lastError() string {
	s, _ := p.lastErr.Load().(string)
	return s
}
