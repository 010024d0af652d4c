package fleete2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats.go"

	"github.com/opsdash/opsdash/cmd/internal/fleet"
	"github.com/opsdash/opsdash/stream"
)

const token = "e2e-token-0123456789abcdef"

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// fleetUnderTest is a hub, two agents and two replicas, all real opsdash
// processes on loopback, plus simulated hosts (real NATS clients with
// their own credentials) for the overview.
type fleetUnderTest struct {
	hub, web1, web2, r1, r2 *proc
	natsURL, hubHTTP        string
	r1HTTP, r2HTTP          string
	dataDir                 string
	secret                  fleet.Secret
}

func credentials(t *testing.T, dataDir string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, append([]string{"credentials", "--nats-data", dataDir}, args...)...).Output()
	if err != nil {
		t.Fatalf("opsdash credentials %v: %v", args, err)
	}
	return strings.TrimSpace(string(out))
}

func startFleet(t *testing.T) *fleetUnderTest {
	f := &fleetUnderTest{dataDir: t.TempDir()}
	natsAddr, hubAddr := freeAddr(t), freeAddr(t)
	f.natsURL, f.hubHTTP = "nats://"+natsAddr, "http://"+hubAddr
	// The hub listens beyond loopback in production; here on loopback,
	// with everyone using credentials anyway.
	f.hub = start(t, "hub", []string{"OPSDASH_AUTH_TOKEN=" + token},
		"serve", "--listen", hubAddr, "--host-id", "hub", "--nats-listen", natsAddr, "--nats-data", f.dataDir)
	eventually(t, 20*time.Second, "the hub ready", func() bool { c, _ := get(f.hubHTTP+"/readyz", ""); return c == 200 })
	var err error
	if f.secret, err = fleet.ReadSecret(filepath.Join(f.dataDir, fleet.SecretFile)); err != nil {
		t.Fatal(err)
	}
	f.web1 = f.agent(t, "web-1")
	f.web2 = f.agent(t, "web-2")
	f.r1, f.r1HTTP = f.replica(t, "r1")
	f.r2, f.r2HTTP = f.replica(t, "r2")
	for _, base := range []string{f.r1HTTP, f.r2HTTP} {
		eventually(t, 10*time.Second, base+" ready", func() bool { c, _ := get(base+"/readyz", ""); return c == 200 })
	}
	return f
}

func (f *fleetUnderTest) agent(t *testing.T, host string) *proc {
	return start(t, "agent "+host, []string{"OPSDASH_NATS_CREDENTIALS=" + credentials(t, f.dataDir, "--host-id", host)},
		"agent", "--nats", f.natsURL, "--host-id", host, "--listen", freeAddr(t))
}

func (f *fleetUnderTest) replica(t *testing.T, name string) (*proc, string) {
	addr := freeAddr(t)
	p := start(t, "replica "+name, []string{
		"OPSDASH_NATS_CREDENTIALS=" + credentials(t, f.dataDir, "--replica", name), "OPSDASH_AUTH_TOKEN=" + token,
	}, "serve", "--nats", f.natsURL, "--listen", addr, "--replica-name", name, "--host-id", "replica-host")
	return p, "http://" + addr
}

// simHosts runs n simulated hosts (sim-000…) on the hub's NATS, each with
// its own agent credentials; host silent publishes once and then stops.
func (f *fleetUnderTest) simHosts(t *testing.T, n int, silent string) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for i := range n {
		host := fmt.Sprintf("sim-%03d", i)
		if i == n-1 {
			host = silent
		}
		a, err := fleet.DialAgent(fleet.ConnConfig{URLs: []string{f.natsURL}, Credentials: f.secret.Agent(host), Name: host, Logger: quiet},
			fleet.AgentConfig{Host: host, Version: "sim", Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(a.Close)
		if err := a.Start(ctx); err != nil {
			t.Fatal(err)
		}
		fleet.SimDeclare(a)
		hostCtx := ctx
		if host == silent {
			var stop context.CancelFunc
			hostCtx, stop = context.WithCancel(ctx)
			first := true
			wg.Go(func() {
				fleet.SimRun(hostCtx, a, i, 0, false, func(time.Time) {
					if !first {
						stop()
					}
					first = false
				})
			})
		} else {
			wg.Go(func() { fleet.SimRun(hostCtx, a, i, time.Duration(i)*time.Second/time.Duration(n), false, nil) })
		}
		wg.Go(func() { a.Run(hostCtx) })
	}
}

// TestFleet runs the fleet's behaviour on real processes, in one fleet
// and in an order where each step leaves the fleet as the next expects.
func TestFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes; not in -short")
	}
	f := startFleet(t)
	const silent = "sim-silent"
	f.simHosts(t, 50, silent) // its silence runs while the steps below do
	silentSince := time.Now()

	t.Run("every host on every replica", func(t *testing.T) {
		c := newClient([]string{f.r1HTTP}, token, "*.cpu")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go c.run(ctx)
		eventually(t, 10*time.Second, "*.cpu of hub, web-1 and web-2 on r1", func() bool {
			_, _, seqs, _ := c.state()
			return seqs["hub.cpu"] > 0 && seqs["web-1.cpu"] > 0 && seqs["web-2.cpu"] > 0
		})
		c2 := newClient([]string{f.r2HTTP}, token, "web-1.cpu")
		go c2.run(ctx)
		eventually(t, 10*time.Second, "hello from r2", func() bool { i, _, _, _ := c2.state(); return len(i) > 0 })
		i1, rep1, _, _ := c.state()
		i2, rep2, _, _ := c2.state()
		if i1[0] != i2[0] || !strings.HasPrefix(i1[0], "fleet-") {
			t.Errorf("instances %q on r1 and %q on r2: want one fleet epoch", i1[0], i2[0])
		}
		if rep1[0] != "r1" || rep2[0] != "r2" {
			t.Errorf("hello.replica %q and %q, want r1 and r2", rep1[0], rep2[0])
		}
	})

	t.Run("a host's credentials cannot publish as another host", func(t *testing.T) {
		errs := make(chan error, 1)
		c := f.secret.Agent("web-1")
		nc, err := nats.Connect(f.natsURL, nats.UserInfo(c.User, c.Password),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
				select {
				case errs <- err:
				default:
				}
			}))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		before := topicState(f.r2HTTP, token, "web-2.cpu").Seq
		m := nats.NewMsg(fleet.MetricPrefix + "web-2.cpu")
		m.Header.Set(fleet.HeaderSeq, "999999999")
		m.Data = []byte(`{"usage_pct":100}`)
		_ = nc.PublishMsg(m)
		_ = nc.Flush()
		select {
		case err := <-errs:
			if !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
				t.Errorf("got %v, want a permissions violation", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("no permissions violation for web-1 publishing as web-2")
		}
		if got := topicState(f.r2HTTP, token, "web-2.cpu").Seq; got >= 999999999 || got < before {
			t.Errorf("web-2.cpu seq %d after the forged publish", got)
		}
	})

	t.Run("a duplicate host id is refused", func(t *testing.T) {
		dup := start(t, "duplicate web-1", []string{"OPSDASH_NATS_CREDENTIALS=" + credentials(t, f.dataDir, "--host-id", "web-1")},
			"agent", "--nats", f.natsURL, "--host-id", "web-1", "--listen", freeAddr(t))
		select {
		case <-dup.done:
		case <-time.After(15 * time.Second):
			t.Fatal("a second agent of web-1 keeps running")
		}
		if !strings.Contains(dup.log.String(), "another agent already publishes as this host id") {
			t.Errorf("the second agent's log does not say why:\n%s", tail(dup.log.String(), 5))
		}
		var exit *exec.ExitError
		if !errors.As(dup.err, &exit) || exit.ExitCode() != 1 {
			t.Errorf("exit: %v, want status 1", dup.err)
		}
	})

	t.Run("a sign-in on one replica is valid on the other", func(t *testing.T) {
		noRedirect := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := noRedirect.PostForm(f.r1HTTP+"/login", url.Values{"token": {token}, "next": {"/"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		var cookie *http.Cookie
		for _, c := range resp.Cookies() {
			if c.Name == "opsdash_session" {
				cookie = c
			}
		}
		if cookie == nil {
			t.Fatalf("login on r1: %d, no session cookie", resp.StatusCode)
		}
		req, _ := http.NewRequest("GET", f.r2HTTP+"/api/v1/topics", nil)
		req.AddCookie(cookie)
		resp2, err := httpc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp2.Body.Close()
		if resp2.StatusCode != 200 {
			t.Errorf("r2 with r1's session cookie: %d, want 200", resp2.StatusCode)
		}
		if code, _ := get(f.r2HTTP+"/api/v1/topics", ""); code != 401 {
			t.Errorf("r2 without the cookie: %d, want 401", code)
		}
	})

	t.Run("who was on top at a second, for any host from any replica", func(t *testing.T) {
		type answer struct {
			Host     string          `json:"host"`
			TS       int64           `json:"ts"`
			Culprits json.RawMessage `json:"culprits"`
		}
		var newest answer
		eventually(t, 10*time.Second, "web-1's newest culprits second through r2", func() bool {
			code, body := get(f.r2HTTP+"/api/v1/culprits?host=web-1", token)
			return code == 200 && json.Unmarshal([]byte(body), &newest) == nil && newest.TS > 0
		})
		if newest.Host != "web-1" || !strings.Contains(string(newest.Culprits), `"top_processes"`) {
			t.Errorf("web-1's culprits from r2: %+v", newest)
		}
		// The same second from the other replica, asked by its time.
		code, body := get(fmt.Sprintf("%s/api/v1/culprits?host=web-1&at=%d", f.r1HTTP, newest.TS), token)
		var same answer
		if code != 200 || json.Unmarshal([]byte(body), &same) != nil || same.TS != newest.TS {
			t.Errorf("r1 at %d: %d %s", newest.TS, code, body)
		}
		if code, body := get(f.r1HTTP+"/api/v1/culprits?host=nowhere", token); code != 404 {
			t.Errorf("a host not in the fleet: %d %s, want 404", code, body)
		}
		if code, body := get(f.r1HTTP+"/api/v1/culprits?host=sim-001", token); code != 404 || !strings.Contains(body, "store holds none") {
			t.Errorf("a simulated host (no record, none in the store): %d %s, want 404 saying why", code, body)
		}
	})

	t.Run("proc.top is collected while any replica has a viewer", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ctx1, stop1 := context.WithCancel(ctx)
		v1 := newClient([]string{f.r1HTTP}, token, "web-1.proc.top")
		v2 := newClient([]string{f.r2HTTP}, token, "web-1.proc.top")
		go v1.run(ctx1)
		eventually(t, 10*time.Second, "web-1.proc.top collected for a viewer on r1", func() bool {
			_, _, s, _ := v1.state()
			return s["web-1.proc.top"] > 0
		})
		go v2.run(ctx)
		stop1() // r1's viewer leaves; r2's keeps it going
		_, _, s, _ := v2.state()
		seen := s["web-1.proc.top"]
		eventually(t, 10*time.Second, "proc.top still collected for r2's viewer", func() bool {
			_, _, s, _ := v2.state()
			return s["web-1.proc.top"] > seen+1
		})
		cancel() // the last viewer leaves: collection stops
		stable := func() uint64 { return topicState(f.hubHTTP, token, "web-1.proc.top").Seq }
		var last uint64
		eventually(t, 15*time.Second, "proc.top no longer collected", func() bool {
			a := stable()
			time.Sleep(5 * time.Second) // proc.top runs every 2 s: two runs would show
			last = stable()
			return a == last
		})
	})

	t.Run("kill -9 of a replica: its clients are back on the other with a snapshot", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var clients []*client
		for range 10 {
			c := newClient([]string{f.r1HTTP, f.r2HTTP}, token, "web-1.>", "*.cpu")
			clients = append(clients, c)
			go c.run(ctx)
		}
		var want int
		eventually(t, 10*time.Second, "clients have their snapshot on r1", func() bool {
			for _, c := range clients {
				_, _, seqs, _ := c.state()
				if len(seqs) < 12 {
					return false
				}
				want = len(seqs)
			}
			return true
		})
		for _, c := range clients {
			c.mu.Lock()
			c.want = want - 2 // the full set but two slow ones (host, disk.usage: no new value needed, the snapshot has them)
			c.mu.Unlock()
		}
		killed := time.Now()
		f.r1.kill()
		eventually(t, 3*time.Second, "every client back with a snapshot from r2", func() bool {
			for _, c := range clients {
				c.mu.Lock()
				ok := len(c.failover) > 0
				c.mu.Unlock()
				if !ok {
					return false
				}
			}
			return true
		})
		t.Logf("all 10 clients back with a full snapshot %v after the kill", time.Since(killed).Round(time.Millisecond))
		for i, c := range clients {
			inst, reps, _, back := c.state()
			if len(inst) < 2 || inst[len(inst)-1] != inst[0] || reps[len(reps)-1] != "r2" {
				t.Errorf("client %d: instances %v replicas %v, want the same instance on r2", i, inst, reps)
			}
			if len(back) > 0 {
				t.Errorf("client %d: seqs went backwards: %v", i, back)
			}
		}
		f.r1.restart(t)
		eventually(t, 10*time.Second, "r1 back", func() bool { c, _ := get(f.r1HTTP+"/readyz", ""); return c == 200 })
	})

	t.Run("kill -9 of an agent: failing within 15 s, back with seqs continuing", func(t *testing.T) {
		before := topicState(f.r2HTTP, token, "web-2.cpu")
		f.web2.kill()
		killed := time.Now()
		took := eventually(t, 17*time.Second, "web-2.cpu failing on r2", func() bool {
			st := topicState(f.r2HTTP, token, "web-2.cpu")
			return st.Status == stream.StatusFailing && strings.Contains(st.Error, "no value from web-2 since")
		})
		if took > 16*time.Second {
			t.Errorf("web-2.cpu failing %v after the kill, want within 15 s (+1 s of polling)", took)
		}
		t.Logf("web-2.cpu failing %v after kill -9", time.Since(killed).Round(100*time.Millisecond))
		// Who was on top just before it died: from the store, its agent gone.
		if code, body := get(f.r1HTTP+"/api/v1/culprits?host=web-2", token); code != 200 || !strings.Contains(body, `"top_processes"`) {
			t.Errorf("web-2's last culprits while its agent is dead: %d %s", code, body)
		}
		f.web2.restart(t)
		eventually(t, 10*time.Second, "web-2.cpu ok again", func() bool {
			return topicState(f.r2HTTP, token, "web-2.cpu").Status == stream.StatusOK
		})
		if after := topicState(f.r2HTTP, token, "web-2.cpu"); after.Seq <= before.Seq {
			t.Errorf("web-2.cpu seq %d after the restart, %d before: want it to continue", after.Seq, before.Seq)
		}
	})

	t.Run("NATS stops and returns: replicas stay up and resume", func(t *testing.T) {
		_, body := get(f.r2HTTP+"/api/v1/topics/web-1.cpu", token)
		c := newClient([]string{f.r2HTTP}, token, "web-1.cpu")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go c.run(ctx)
		eventually(t, 5*time.Second, "a client on r2", func() bool { i, _, _, _ := c.state(); return len(i) == 1 })
		before := topicState(f.r2HTTP, token, "web-1.cpu").Seq
		f.hub.stop(t)
		eventually(t, 3*time.Second, "r2 /readyz 503", func() bool { code, _ := get(f.r2HTTP+"/readyz", ""); return code == 503 })
		eventually(t, 8*time.Second, "live feed lost", func() bool {
			st := topicState(f.r2HTTP, token, "web-1.cpu")
			return st.Status == stream.StatusFailing && strings.Contains(st.Error, "live feed lost")
		})
		f.hub.restart(t)
		eventually(t, 20*time.Second, "r2 ready again", func() bool { code, _ := get(f.r2HTTP+"/readyz", ""); return code == 200 })
		eventually(t, 10*time.Second, "web-1.cpu ok and continuing", func() bool {
			st := topicState(f.r2HTTP, token, "web-1.cpu")
			return st.Status == stream.StatusOK && st.Seq > before
		})
		inst, _, _, back := c.state()
		if len(inst) != 1 {
			t.Errorf("the client on r2 reconnected (%d hellos): the replica should have kept its session", len(inst))
		}
		if len(back) > 0 {
			t.Errorf("seqs went backwards: %v", back)
		}
		_ = body
	})

	t.Run("fleet page in Chromium with 50 simulated hosts", func(t *testing.T) {
		fleetPage(t, f, silent, silentSince)
	})
}

var rowRE = regexp.MustCompile(`<tr data-topic="[a-z0-9_-]+\.summary"`)

// fleetPage checks the overview; silent published once, at silentSince.
func fleetPage(t *testing.T, f *fleetUnderTest, silent string, silentSince time.Time) {
	// First paint: the served HTML already holds every host with values.
	req, _ := http.NewRequest("GET", f.r2HTTP+"/", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := httpc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	html := new(strings.Builder)
	_, _ = fmt.Fprint(html, readAll(resp))
	if n := len(rowRE.FindAllString(html.String(), -1)); n < 53 {
		t.Fatalf("the overview has %d host rows, want 53 (hub, web-1, web-2, 50 simulated)", n)
	}
	if !strings.Contains(html.String(), `data-host="sim-001"`) || !regexp.MustCompile(`data-f="cpu_pct">[0-9.]+%`).MatchString(html.String()) {
		t.Error("the first paint has no CPU values")
	}

	path := os.Getenv("OPSDASH_CHROMIUM")
	if path == "" {
		path, _ = exec.LookPath("chromium")
	}
	if path == "" {
		if os.Getenv("OPSDASH_REQUIRE_CHROMIUM") == "1" {
			t.Fatal("Chromium not found; OPSDASH_REQUIRE_CHROMIUM=1 makes it mandatory")
		}
		t.Skip("Chromium not found")
	}
	alloc, cancel := chromedp.NewExecAllocator(context.Background(), chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-dev-shm-usage", true))
	defer cancel()
	ctx, cancel2 := chromedp.NewContext(alloc)
	defer cancel2()
	ctx, cancel3 := context.WithTimeout(ctx, 60*time.Second)
	defer cancel3()
	js := func(expr string) (any, error) { return chromedp.Run(ctx, chromedp.Evaluate[any](expr)) }
	isTrue := func(expr string) bool { v, err := js("!!(" + expr + ")"); return err == nil && v == true }
	str := func(expr string) string { v, _ := js(expr); s, _ := v.(string); return s }
	// Sign in through the page, as a person would.
	start := time.Now()
	if err := chromedp.Do(ctx, chromedp.Navigate(f.r2HTTP+"/login?next=/")); err != nil {
		t.Fatalf("open the login: %v", err)
	}
	if _, err := js(`(() => { const i = document.querySelector('input[name=token]'); i.value = '` + token + `'; i.form.submit(); return true })()`); err != nil {
		t.Fatalf("sign in: %v", err)
	}
	eventually(t, 10*time.Second, "the overview after signing in", func() bool { return isTrue(`document.querySelector('[data-testid="fleet"]')`) })
	t.Logf("overview shown %v after the login page (sign-in included); %s", time.Since(start).Round(time.Millisecond),
		str(`(() => { const n = performance.getEntriesByType('navigation')[0]; return 'DOMContentLoaded ' + Math.round(n.domContentLoadedEventEnd) + ' ms, HTML ' + n.decodedBodySize + ' bytes' })()`))
	eventually(t, 10*time.Second, "the page live", func() bool {
		return isTrue(`document.querySelector('[data-conn]').getAttribute('data-state') === 'live'`)
	})
	pts := func() string {
		return str(`document.querySelector('tr[data-host="sim-001"] [data-spark] polyline').getAttribute('points')`)
	}
	p0 := pts()
	eventually(t, 5*time.Second, "sim-001's sparkline moves", func() bool { return pts() != p0 })
	// Silent since its one value: failing 15 s later at the latest, and
	// above every host that is fine.
	silentFirst := `(() => { const rows = [...document.querySelectorAll('tr[data-host]')];
		const i = rows.findIndex(r => r.dataset.host === '` + silent + `');
		const firstOK = rows.findIndex(r => r.dataset.state === 'ok');
		return i >= 0 && (rows[i].dataset.state === 'failing' || rows[i].dataset.state === 'stale') && (firstOK < 0 || i < firstOK) })()`
	eventually(t, max(17*time.Second-time.Since(silentSince), 5*time.Second), "the silent host marked and above the hosts that are fine", func() bool {
		return isTrue(silentFirst)
	})
	badge := str(`document.querySelector('tr[data-host="` + silent + `"] [data-badge]').textContent`)
	if !strings.Contains(badge, "no value from "+silent) && badge != "stale" {
		t.Errorf("the silent host's badge says %q", badge)
	}
	if n, _ := strconv.Atoi(str(`String(document.querySelectorAll('tr[data-host]').length)`)); n < 53 {
		t.Errorf("%d rows in the browser, want 53", n)
	}
	shootFleet(t, ctx)
	// The filter.
	shown := str(`(() => { const q = document.querySelector('[data-fleet-filter]'); q.value = 'web-'; q.dispatchEvent(new Event('input'));
		return String(Array.from(document.querySelectorAll('tr[data-host]')).filter(r => !r.hidden).length) })()`)
	if shown != "2" {
		t.Errorf("filter web- shows %s rows, want web-1 and web-2", shown)
	}

	// A host's dashboard on a replica: pointing at its CPU chart names that
	// second's culprits, which the replica asked of the host's agent.
	if err := chromedp.Do(ctx, chromedp.Navigate(f.r2HTTP+"/hosts/web-1")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "web-1's CPU chart with a few points", func() bool {
		return isTrue(`document.querySelector('[data-chart=cpu] polyline') && document.querySelector('[data-chart=cpu] polyline').getAttribute('points').split(' ').length >= 3`)
	})
	if err := chromedp.Do(ctx, chromedp.ScrollIntoView(chromedp.CSS(`[data-chart=cpu]`))); err != nil {
		t.Fatal(err)
	}
	v, err := js(`(() => { const r = document.querySelector('[data-chart=cpu]').getBoundingClientRect(); return [r.left + r.width * 0.99, r.top + r.height / 2]; })()`)
	xy, _ := v.([]any)
	if err != nil || len(xy) != 2 {
		t.Fatalf("the chart's place: %v %v", v, err)
	}
	if err := chromedp.Do(ctx, chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, xy[0].(float64), xy[1].(float64))); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the culprits of the second under the pointer", func() bool {
		return strings.HasPrefix(str(`(document.querySelector('[data-culprits=cpu] p') || {}).textContent || ''`), "Top by CPU at ")
	})
}

// shootFleet checks that the overview fits a desktop's and a phone's
// width and pictures both: fleet.png and fleet-phone.png, in
// $OPSDASH_SCREENSHOTS when set (the README's come from
// `OPSDASH_SCREENSHOTS=$PWD/docs/screenshots go test -run TestFleet ./cmd/opsdash/fleete2e`).
func shootFleet(t *testing.T, ctx context.Context) {
	dir := os.Getenv("OPSDASH_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	for _, v := range []struct {
		file          string
		width, height int64
		mobile        bool
	}{{"fleet.png", 1280, 900, false}, {"fleet-phone.png", 390, 844, true}} {
		var opts []chromedp.EmulateViewportOption
		if v.mobile {
			opts = append(opts, chromedp.EmulateMobile, chromedp.EmulatePortrait)
		}
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(v.width, v.height, opts...)); err != nil {
			t.Fatal(err)
		}
		over, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`document.documentElement.scrollWidth - window.innerWidth`))
		if err != nil {
			t.Fatal(err)
		}
		if over > 0 {
			t.Errorf("%s: the overview is %v px wider than the window", v.file, over)
		}
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot()) // the first screen, not 53 rows
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, v.file), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900)); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", dir)
}

func readAll(resp *http.Response) string {
	defer resp.Body.Close()
	b := new(strings.Builder)
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String()
		}
	}
}
