package stream

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opsdash/opsdash/collectors"
)

// Registry is the hub: topics with their latest value, bounded history and
// status; the sessions subscribed to them by pattern. It implements
// collectors.Sink and collectors.Tracker. All methods are safe for
// concurrent use.
//
// Lock order: Session.mu before Registry.mu, never the other way round (a
// subscribe changes the routes holding both). A publisher holds
// Registry.mu only to update the topic and take its route slice, and
// offers to the sessions after releasing it. demandMu, sessMu and each
// flush loop's mutex (flush.go) are leaves: nothing else is locked while
// one is held, and the Demand callback runs with no lock held.
type Registry struct {
	cfg      RegistryConfig
	instance atomic.Pointer[string] // hello "instance"; replaced by SetInstance (fleet.go)
	log      *slog.Logger
	now      func() time.Time

	// mu guards topics (and the fields of each topic), patterns, the routes
	// (routes.go), published and tombstones. Taken after Session.mu when
	// both are held; never held while a session's lock is taken.
	mu        sync.RWMutex
	topics    map[string]*topic
	bySource  sourceIndex              // topics by first token (topicindex.go)
	patterns  map[string]*patternEntry // distinct subscribed patterns → sessions
	published int                      // topics created through PublishJSON
	// tombstones keep the last seq of expired topics so a topic that
	// reappears continues its seq instead of starting over (bounded).
	tombstones map[string]uint64

	// demand delivery (demand.go): one goroutine at a time delivers, others
	// queue. demandMu is a leaf lock.
	demandMu    sync.Mutex
	demandBusy  bool
	demandDirty []*topic

	sessMu    sync.Mutex // a leaf lock: guards sessions only
	sessions  map[*Session]struct{}
	nextID    atomic.Uint64
	nextOrder atomic.Uint64 // source of Session.order

	counters counters
	flush    flushSet // the flush loops (flush.go)
}

var (
	_ collectors.Sink    = (*Registry)(nil)
	_ collectors.Tracker = (*Registry)(nil)
)

// NewRegistry returns an empty registry. Call Run to expire published topics.
func NewRegistry(cfg RegistryConfig) *Registry {
	cfg = cfg.withDefaults()
	r := &Registry{
		cfg:        cfg,
		log:        cfg.Logger,
		now:        time.Now,
		topics:     make(map[string]*topic),
		patterns:   make(map[string]*patternEntry),
		tombstones: make(map[string]uint64),
		sessions:   make(map[*Session]struct{}),
	}
	r.flush.init(r, cfg.FlushWindow)
	if r.log == nil {
		r.log = slog.Default()
	}
	instance := cfg.Instance
	if instance == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		instance = hex.EncodeToString(b[:])
	}
	r.instance.Store(&instance)
	return r
}

// Host returns the local host id.
func (r *Registry) Host() string { return r.cfg.Host }

// Instance returns the seq epoch clients see in hello: the id of this
// server process start, or the fleet's (SetInstance).
func (r *Registry) Instance() string { return *r.instance.Load() }

// Run expires published topics that were not published for PublishedTTL.
// It returns when ctx is done.
func (r *Registry) Run(ctx context.Context) {
	every := min(max(r.cfg.PublishedTTL/4, time.Second), time.Minute)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			r.expire(r.now())
		}
	}
}

// Sessions returns the number of open sessions.
func (r *Registry) Sessions() int {
	r.sessMu.Lock()
	defer r.sessMu.Unlock()
	return len(r.sessions)
}

// CloseAll closes every open session with code and reason (drain).
func (r *Registry) CloseAll(code int, reason string) {
	r.sessMu.Lock()
	all := make([]*Session, 0, len(r.sessions))
	for s := range r.sessions {
		all = append(all, s)
	}
	r.sessMu.Unlock()
	for _, s := range all {
		s.Close(code, reason)
	}
}
