package collectors

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// dockerAPI asks a Docker Engine (or Podman's compatible service) for the
// names and images of its containers: GET /containers/json, nothing else.
// It is optional and off by default (WorkloadsConfig.DockerSocket): every
// figure comes from the cgroup tree without it, and it only turns ids into
// names where the runtime's files are root-only.
//
// Mounting the socket read-only does not make the API read-only: whoever
// can connect to it can start containers. opsdash only sends this one GET;
// put a filtering proxy in front of it (docs/deploy.md) to make that a
// guarantee rather than a promise.
type dockerAPI struct {
	client *http.Client

	mu      sync.Mutex
	byID    map[string][2]string // full id → name, image
	fetched time.Time
}

const (
	// dockerTimeout bounds one request to the socket: well within the
	// workloads collector's run (2 s), which waits for it.
	dockerTimeout = time.Second
	// dockerMaxBody bounds the container list read (about 2 KiB per
	// container in Docker's answer).
	dockerMaxBody = 8 << 20
)

// newDockerAPI returns a client of the API socket at path, or nil for "".
func newDockerAPI(path string) *dockerAPI {
	if path == "" {
		return nil
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		MaxIdleConns:    1,
		IdleConnTimeout: 30 * time.Second,
	}
	return &dockerAPI{client: &http.Client{Transport: tr, Timeout: dockerTimeout}}
}

// lookup returns the name and image of the container with id (64 hex),
// listing the containers again when id is unknown and the last listing is
// older than listingRefresh.
func (d *dockerAPI) lookup(ctx context.Context, id string) (name, image string, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if v, ok := d.byID[id]; ok {
		return v[0], v[1], true
	}
	if time.Since(d.fetched) < listingRefresh {
		return "", "", false
	}
	d.fetched = time.Now()
	list, err := d.list(ctx)
	if err != nil {
		return "", "", false
	}
	d.byID = list
	v, ok := d.byID[id]
	return v[0], v[1], ok
}

// list asks for every container, running or not.
func (d *dockerAPI) list(ctx context.Context) (map[string][2]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/containers/json?all=true", nil)
	if err != nil {
		return nil, err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("docker socket: %s", resp.Status)
	}
	var cs []struct {
		ID    string   `json:"Id"`
		Names []string `json:"Names"`
		Image string   `json:"Image"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, dockerMaxBody)).Decode(&cs); err != nil {
		return nil, fmt.Errorf("docker socket: %w", err)
	}
	out := make(map[string][2]string, len(cs))
	for _, c := range cs {
		name := ""
		if len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/")
		}
		out[c.ID] = [2]string{clip(name), clip(c.Image)}
	}
	return out, nil
}
