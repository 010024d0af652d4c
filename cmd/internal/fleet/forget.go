package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Forgetting a host: a decommissioned host's topics would otherwise stay
// on every replica for ever, failing ("silent") and first on the overview,
// since the store keeps every topic's last value (no age limit, so that
// seqs survive outages). Forget tells the fleet to drop it:
//
//   - it puts a descriptor with no topics, marked forgotten, in KV
//     opsdash_hosts: every replica removes the host's topics whose last
//     value is older (the rule that removes a workload's topic), leaves it
//     off the overview, and a replica started later ignores its old values;
//   - it trims each of the host's subjects in the store to its last value,
//     which is kept so that an agent of the same host id started later
//     continues its seqs rather than starting over under the same instance
//     (clients that kept a pattern matching it would drop the values).
//
// An agent that starts again for the host publishes a new descriptor and
// the host is back.

// forgetPingWait is how long Forget waits for the host's agent to answer:
// longer than the duplicate check's wait, since forgetting a running host
// is worse than waiting.
const forgetPingWait = 2 * time.Second

// ErrHostRunning is returned by Forget when the host's agent still answers.
var ErrHostRunning = errors.New("the host's agent is running")

// Forget drops host from the fleet on nc, which must have the hub's
// rights (Secret.Admin). It refuses while the host's agent answers (stop
// it first) and returns how many stored values it removed.
func Forget(ctx context.Context, nc *nats.Conn, host string) (removed uint64, err error) {
	if !validToken(host) {
		return 0, fmt.Errorf("%q is not a host id (one token of a-z, 0-9, _ and -)", host)
	}
	// An agent answers at once; silence for forgetPingWait means none runs
	// (a "no responders" answer is not guaranteed on every connection).
	pingCtx, cancel := context.WithTimeout(ctx, forgetPingWait)
	m, err := nc.RequestWithContext(pingCtx, agentPrefix+host+".ping", nil)
	cancel()
	if err == nil {
		var r pingReply
		_ = json.Unmarshal(m.Data, &r)
		return 0, fmt.Errorf("%w: %s; stop it first", ErrHostRunning, r)
	} else if !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) {
		return 0, fmt.Errorf("asking for the host's agent: %w", err)
	} else if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, err
	}
	kv, err := js.KeyValue(ctx, HostsBucket)
	if err != nil {
		return 0, fmt.Errorf("the fleet's hosts bucket: %w", err)
	}
	b, _ := json.Marshal(descriptor{Host: host, Forgotten: true})
	if _, err := kv.Put(ctx, host, b); err != nil {
		return 0, fmt.Errorf("marking %s forgotten: %w", host, err)
	}
	st, err := js.Stream(ctx, StreamName)
	if err != nil {
		return 0, fmt.Errorf("the fleet's stream: %w", err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(MetricPrefix+host+".>"))
	if err != nil {
		return 0, fmt.Errorf("the host's subjects: %w", err)
	}
	for subject, n := range info.State.Subjects {
		if n <= 1 {
			continue
		}
		if err := st.Purge(ctx, jetstream.WithPurgeSubject(subject), jetstream.WithPurgeKeep(1)); err != nil {
			return removed, fmt.Errorf("trimming %s: %w", subject, err)
		}
		removed += n - 1
	}
	return removed, nil
}
