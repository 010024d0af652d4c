package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/opsdash/opsdash/collectors"
)

// Culprits in a fleet: each host's record of who was on top each second
// (15 minutes or more, collectors.CulpritSampler) lives in its agent, not
// in the store, whose 300 values per topic would keep only 5 minutes of
// <host>.culprits. A replica asks the agent over NATS request/reply on
// culpritsSubject(host), so GET /api/v1/culprits?host=… answers from any
// replica with the same seconds a single host's server gives. When the
// agent does not answer (the host died, perhaps of the very spike asked
// about), the replica answers from those 5 minutes in the store.

// culpritsSubject is where host's agent answers culprit requests.
func culpritsSubject(host string) string { return agentPrefix + host + ".culprits" }

// CulpritRecord is what an agent answers culprit requests from: its host's
// culprit sampler.
type CulpritRecord interface {
	Culprits(ctx context.Context, host string, at time.Time) (collectors.CulpritSecond, error)
}

// culpritsRequest asks for the second nearest AtMS (Unix ms; 0: the newest).
type culpritsRequest struct {
	AtMS int64 `json:"at_ms,omitempty"`
}

// culpritsReply is an agent's answer: the second, or NotFound saying which
// seconds are kept.
type culpritsReply struct {
	TS       int64           `json:"ts,omitempty"`
	OldestTS int64           `json:"oldest_ts,omitempty"`
	NewestTS int64           `json:"newest_ts,omitempty"`
	Culprits json.RawMessage `json:"culprits,omitempty"`
	NotFound string          `json:"not_found,omitempty"`
}

// ServeCulprits answers replicas' culprit requests for the agent's host
// from rec, until the agent's connection closes.
func (a *Agent) ServeCulprits(rec CulpritRecord) error {
	_, err := a.nc.Subscribe(culpritsSubject(a.host), func(m *nats.Msg) {
		var req culpritsRequest
		var reply culpritsReply
		if err := json.Unmarshal(m.Data, &req); err != nil {
			reply.NotFound = "bad culprits request: " + err.Error()
		} else {
			var at time.Time
			if req.AtMS != 0 {
				at = time.UnixMilli(req.AtMS)
			}
			sec, err := rec.Culprits(context.Background(), a.host, at)
			if err != nil {
				reply.NotFound = err.Error()
			} else {
				reply = culpritsReply{TS: sec.TS.UnixMilli(), OldestTS: sec.Oldest.UnixMilli(), NewestTS: sec.Newest.UnixMilli(), Culprits: sec.Data}
			}
		}
		b, _ := json.Marshal(reply)
		_ = m.Respond(b)
	})
	return err
}

// Culprits asks host's agent for the second of its culprit record nearest
// at (the newest when at is zero); it implements httpapi.CulpritSource.
// A host the fleet does not know, or a second not kept, wraps
// collectors.ErrNoCulprits. An agent that does not answer (stopped, its
// host down) is replaced by the store's last 5 minutes of <host>.culprits;
// NATS unreachable is another error.
func (r *Replica) Culprits(ctx context.Context, host string, at time.Time) (collectors.CulpritSecond, error) {
	if !r.IsHost(host) {
		return collectors.CulpritSecond{}, fmt.Errorf("%w: no host %s in this fleet", collectors.ErrNoCulprits, host)
	}
	if r.nc == nil || !r.nc.IsConnected() {
		return collectors.CulpritSecond{}, errors.New("the fleet's NATS is unreachable; try again")
	}
	var req culpritsRequest
	if !at.IsZero() {
		req.AtMS = at.UnixMilli()
	}
	body, _ := json.Marshal(req)
	// Half the time for the agent, half for the store if it is silent.
	askCtx, cancel := context.WithTimeout(ctx, culpritsAgentWait)
	m, err := r.nc.RequestWithContext(askCtx, culpritsSubject(host), body)
	cancel()
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return r.storedCulprits(ctx, host, at, "its agent is not running")
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		return r.storedCulprits(ctx, host, at, "its agent did not answer")
	case err != nil:
		return collectors.CulpritSecond{}, fmt.Errorf("host %s's agent did not answer: %w", host, err)
	}
	var reply culpritsReply
	if err := json.Unmarshal(m.Data, &reply); err != nil {
		return collectors.CulpritSecond{}, fmt.Errorf("host %s's agent answered badly: %w", host, err)
	}
	if reply.NotFound != "" {
		return collectors.CulpritSecond{}, fmt.Errorf("%w: %s", collectors.ErrNoCulprits, reply.NotFound)
	}
	return collectors.CulpritSecond{
		TS: time.UnixMilli(reply.TS), Oldest: time.UnixMilli(reply.OldestTS), Newest: time.UnixMilli(reply.NewestTS), Data: reply.Culprits,
	}, nil
}

// culpritsAgentWait is how long a replica waits for an agent's answer
// before it answers from the store.
const culpritsAgentWait = time.Second

// storedCulprits answers for host from the store's values of
// <host>.culprits (the last ValuesPerSubject seconds it published), when
// its agent cannot (why). The second nearest at within
// collectors.CulpritMaxDistance, the newest when at is zero.
func (r *Replica) storedCulprits(ctx context.Context, host string, at time.Time, why string) (collectors.CulpritSecond, error) {
	if r.js == nil {
		return collectors.CulpritSecond{}, fmt.Errorf("host %s: %s, and the store is not reachable", host, why)
	}
	past, err := r.fetchHistory(ctx, MetricPrefix+host+".culprits", ValuesPerSubject)
	if err != nil {
		return collectors.CulpritSecond{}, fmt.Errorf("host %s: %s, and its culprits in the store could not be read: %w", host, why, err)
	}
	if len(past) == 0 {
		return collectors.CulpritSecond{}, fmt.Errorf("%w for host %s: %s, and the store holds none of its seconds", collectors.ErrNoCulprits, host, why)
	}
	oldest, newest := time.UnixMilli(past[0].TS), time.UnixMilli(past[len(past)-1].TS)
	best := len(past) - 1
	if !at.IsZero() {
		for i, e := range past {
			if time.UnixMilli(e.TS).Sub(at).Abs() < time.UnixMilli(past[best].TS).Sub(at).Abs() {
				best = i
			}
		}
		if time.UnixMilli(past[best].TS).Sub(at).Abs() > collectors.CulpritMaxDistance {
			return collectors.CulpritSecond{}, fmt.Errorf("%w near %s for host %s: %s, and the store keeps its seconds from %s to %s",
				collectors.ErrNoCulprits, at.UTC().Format(time.RFC3339), host, why, oldest.UTC().Format(time.RFC3339), newest.UTC().Format(time.RFC3339))
		}
	}
	return collectors.CulpritSecond{TS: time.UnixMilli(past[best].TS), Oldest: oldest, Newest: newest, Data: past[best].Data}, nil
}
