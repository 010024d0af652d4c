package collectors_test

// The workloads collector over the fixture trees of testdata/workloads:
// cgroup v2 layouts of Docker (systemd driver), Kubernetes (kubelet with
// the systemd driver, containerd and CRI-O) and systemd services, each
// with the procfs entries and runtime files the collector reads. The
// trees are copied, counters moved on between two collections with a
// clock the test sets, so every figure is exact.

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opsdash/opsdash/collectors"
	"github.com/opsdash/opsdash/stream"
)

// The fixtures' two Docker containers.
var (
	dockerWeb = "3f2a9c1b7d4e" + strings.Repeat("a1", 26)
	dockerOOM = "9b8c7d6e5f40" + strings.Repeat("b2", 26)
)

// fixture is a copy of one tree under testdata/workloads, a registry the
// collector declares its topics in, and the clock it reads.
type fixture struct {
	t     *testing.T
	root  string
	reg   *stream.Registry
	c     collectors.Collector
	mu    sync.Mutex
	clock time.Time
}

func newFixture(t *testing.T, layout string, wc collectors.WorkloadsConfig) *fixture {
	t.Helper()
	f := &fixture{t: t, root: t.TempDir(), clock: time.Unix(1_763_740_000, 0)}
	copyTree(t, filepath.Join("testdata", "workloads", layout), f.root)
	f.reg = stream.NewRegistry(stream.RegistryConfig{Host: "h"})
	cfg := collectors.Config{HostID: "h", HostRoot: filepath.Join(f.root, "hostroot"), Workloads: wc}
	f.c = collectors.NewWorkloadsOn(cfg, 2*time.Second, filepath.Join(f.root, "proc"), filepath.Join(f.root, "sys/fs/cgroup"), nil, f.now)
	collectors.UseRuntimeTopics([]collectors.Collector{f.c}, f.reg)
	return f
}

func (f *fixture) now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.clock
}

func (f *fixture) advance(d time.Duration) {
	f.mu.Lock()
	f.clock = f.clock.Add(d)
	f.mu.Unlock()
}

// collect runs the collector and publishes what it returns, as the
// scheduler would, and returns the table.
func (f *fixture) collect() collectors.WorkloadsData {
	f.t.Helper()
	samples, err := f.c.Collect(context.Background())
	if err != nil {
		f.t.Fatalf("Collect: %v", err)
	}
	if len(samples) == 0 || samples[0].Topic != "h.workloads" {
		f.t.Fatalf("first sample is not h.workloads: %+v", samples)
	}
	f.reg.PublishBatch(samples)
	return samples[0].Data.(collectors.WorkloadsData)
}

// workload returns a workload's topic as the registry holds it.
func (f *fixture) workload(id string) (collectors.WorkloadData, stream.TopicState) {
	f.t.Helper()
	st, ok := f.reg.Topic("h.workload."+id, 0)
	if !ok {
		f.t.Fatalf("no topic h.workload.%s; topics: %v", id, f.topicNames())
	}
	var d collectors.WorkloadData
	if err := json.Unmarshal(st.Data, &d); err != nil {
		f.t.Fatalf("h.workload.%s: %v in %s", id, err, st.Data)
	}
	return d, st
}

func (f *fixture) topicNames() []string {
	var out []string
	for _, t := range f.reg.Topics() {
		out = append(out, t.Name)
	}
	return out
}

// cg is the path of a file of the cgroup rel in the copied tree.
func (f *fixture) cg(rel, file string) string {
	return filepath.Join(f.root, "sys/fs/cgroup", rel, file)
}

// add moves a counter on: key (a flat-keyed "key value" line, or a
// "key=value" field of io.stat) grows by delta.
func (f *fixture) add(file, key string, delta uint64) {
	f.t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		f.t.Fatal(err)
	}
	re := regexp.MustCompile(`(^|[\s])` + regexp.QuoteMeta(key) + `([ =])(\d+)`)
	done := false
	out := re.ReplaceAllStringFunc(string(b), func(m string) string {
		sub := re.FindStringSubmatch(m)
		v, _ := strconv.ParseUint(sub[3], 10, 64)
		done = true
		return sub[1] + key + sub[2] + strconv.FormatUint(v+delta, 10)
	})
	if !done {
		f.t.Fatalf("%s has no %s", file, key)
	}
	if err := os.WriteFile(file, []byte(out), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

// copyTree copies a fixture directory, symlinks included.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func rowIDs(rows []collectors.WorkloadRow) []string {
	var ids []string
	for _, r := range rows {
		ids = append(ids, r.ID)
	}
	slices.Sort(ids)
	return ids
}

func near(got, want float64) bool { return math.Abs(got-want) < 0.011 }

func f64(p *float64) string {
	if p == nil {
		return "null"
	}
	return strconv.FormatFloat(*p, 'f', -1, 64)
}

func u64(p *uint64) string {
	if p == nil {
		return "null"
	}
	return strconv.FormatUint(*p, 10)
}

func TestWorkloadsDockerV2(t *testing.T) {
	f := newFixture(t, "v2-docker", collectors.WorkloadsConfig{})
	web := "system.slice/docker-" + dockerWeb + ".scope"
	oom := "system.slice/docker-" + dockerOOM + ".scope"

	if tab := f.collect(); len(tab.Workloads) != 0 || tab.CgroupVersion != 2 {
		t.Fatalf("first run is the baseline, shows nothing: %+v", tab)
	}
	if slices.ContainsFunc(f.topicNames(), func(n string) bool { return strings.HasPrefix(n, "h.workload.") }) {
		t.Fatalf("workload topics declared before they have a value: %v", f.topicNames())
	}
	// Two seconds in which web uses 3 s of CPU (1.5 cores, its whole
	// quota), is throttled in 10 of 20 periods, reads 2 MiB, receives
	// 4000 bytes.
	f.add(f.cg(web, "cpu.stat"), "usage_usec", 3_000_000)
	f.add(f.cg(web, "cpu.stat"), "nr_periods", 20)
	f.add(f.cg(web, "cpu.stat"), "nr_throttled", 10)
	f.add(f.cg(web, "io.stat"), "rbytes", 2<<20)
	f.add(filepath.Join(f.root, "proc/1001/net/dev"), "eth0:", 4000)
	f.advance(2 * time.Second)
	tab := f.collect()

	want := []string{"docker-3f2a9c1b7d4e", "docker-9b8c7d6e5f40", "svc-containerd", "svc-docker"}
	if got := rowIDs(tab.Workloads); !slices.Equal(got, want) {
		t.Fatalf("workloads %v, want %v", got, want)
	}
	if tab.Running != 4 || tab.Stopped != 0 || tab.Workloads[0].ID != "docker-3f2a9c1b7d4e" {
		t.Errorf("table: running %d, stopped %d, first %s; want 4, 0, the busiest (docker-3f2a9c1b7d4e)", tab.Running, tab.Stopped, tab.Workloads[0].ID)
	}

	d, st := f.workload("docker-3f2a9c1b7d4e")
	if st.IntervalMS != 2000 || st.Status != stream.StatusOK {
		t.Errorf("topic interval %d ms, status %s", st.IntervalMS, st.Status)
	}
	if d.Kind != "docker" || d.Name != "web" || d.Image != "nginx:1.27" || d.NameSource != "docker state" || d.ContainerID != dockerWeb {
		t.Errorf("names: kind %q name %q image %q from %q, id %q", d.Kind, d.Name, d.Image, d.NameSource, d.ContainerID)
	}
	if d.State != "running" || !near(d.CPUCores, 1.5) || f64(d.CPULimitCores) != "1.5" || f64(d.CPUUsedPct) != "100" || f64(d.CPUThrottledPct) != "50" {
		t.Errorf("CPU: state %s, %v cores of %s (%s%%), throttled %s%%; want running, 1.5 of 1.5 (100%%), 50%%",
			d.State, d.CPUCores, f64(d.CPULimitCores), f64(d.CPUUsedPct), f64(d.CPUThrottledPct))
	}
	// memory.current 100 MiB, half of it file cache, half of that inactive:
	// working set 75 MiB of a 512 MiB limit.
	if d.MemBytes != 100<<20 || u64(d.MemLimitBytes) != strconv.Itoa(512<<20) || d.MemAnonBytes != 50<<20 || d.MemWorkingSetBytes != 75<<20 || f64(d.MemUsedPct) != "14.65" {
		t.Errorf("memory: %d bytes of %s, anon %d, working set %d (%s%%)", d.MemBytes, u64(d.MemLimitBytes), d.MemAnonBytes, d.MemWorkingSetBytes, f64(d.MemUsedPct))
	}
	if f64(d.IOReadBytesPerS) != strconv.Itoa(1<<20) || f64(d.IOWriteBytesPerS) != "0" || u64(d.Pids) != "4" || u64(d.PidsLimit) != "100" {
		t.Errorf("I/O %s/%s B/s, pids %s of %s", f64(d.IOReadBytesPerS), f64(d.IOWriteBytesPerS), u64(d.Pids), u64(d.PidsLimit))
	}
	if d.NetNamespace != "own" || f64(d.NetRxBytesPerS) != "2000" || f64(d.NetTxBytesPerS) != "0" {
		t.Errorf("network: namespace %q, rx %s tx %s B/s; want own, 2000, 0", d.NetNamespace, f64(d.NetRxBytesPerS), f64(d.NetTxBytesPerS))
	}

	// Without the root-only config.v2.json (or a socket), a container is
	// known by its short id.
	o, _ := f.workload("docker-9b8c7d6e5f40")
	if o.Name != "9b8c7d6e5f40" || o.NameSource != "cgroup path" || o.OOMKills != 1 || o.CPULimitCores != nil || o.MemLimitBytes != nil || o.CPUThrottledPct != nil {
		t.Errorf("unnamed container: %+v", o.WorkloadRow)
	}
	s, _ := f.workload("svc-docker")
	if s.Kind != "service" || s.Name != "docker.service" || s.NetNamespace != "host" || s.NetRxBytesPerS != nil {
		t.Errorf("docker.service: kind %s name %s net %q rx %s", s.Kind, s.Name, s.NetNamespace, f64(s.NetRxBytesPerS))
	}

	// The OOM-killed container's cgroup goes: stopped (marked OOM-killed)
	// for the retention time, then gone; its seq continues when it is back.
	_, before := f.workload("docker-9b8c7d6e5f40")
	saved := t.TempDir()
	copyTree(t, filepath.Join(f.root, "sys/fs/cgroup", oom), saved)
	if err := os.RemoveAll(filepath.Join(f.root, "sys/fs/cgroup", oom)); err != nil {
		t.Fatal(err)
	}
	f.advance(2 * time.Second)
	tab = f.collect()
	o, _ = f.workload("docker-9b8c7d6e5f40")
	if o.State != "oom_killed" || o.CPUCores != 0 || f64(o.StoppedForS) != "0" || tab.Stopped != 1 || tab.Workloads[len(tab.Workloads)-1].ID != "docker-9b8c7d6e5f40" {
		t.Errorf("after its cgroup went: state %s, %v cores, stopped for %s s; table stopped %d, last row %s",
			o.State, o.CPUCores, f64(o.StoppedForS), tab.Stopped, tab.Workloads[len(tab.Workloads)-1].ID)
	}
	f.advance(collectors.DefaultWorkloadRetention - time.Second)
	f.collect()
	if o, _ = f.workload("docker-9b8c7d6e5f40"); o.State != "oom_killed" || f64(o.StoppedForS) != strconv.Itoa(int((collectors.DefaultWorkloadRetention-time.Second).Seconds())) {
		t.Errorf("one second before the retention ends: state %s, stopped for %s s", o.State, f64(o.StoppedForS))
	}
	f.advance(time.Second)
	tab = f.collect()
	if slices.Contains(rowIDs(tab.Workloads), "docker-9b8c7d6e5f40") || slices.Contains(f.topicNames(), "h.workload.docker-9b8c7d6e5f40") {
		t.Fatalf("still there after %v stopped: rows %v, topics %v", collectors.DefaultWorkloadRetention, rowIDs(tab.Workloads), f.topicNames())
	}

	copyTree(t, saved, filepath.Join(f.root, "sys/fs/cgroup", oom))
	f.advance(2 * time.Second)
	f.collect() // seen again: its baseline
	f.advance(2 * time.Second)
	f.collect()
	o, after := f.workload("docker-9b8c7d6e5f40")
	if o.State != "running" || after.Seq <= before.Seq+2 {
		t.Errorf("back again: state %s, seq %d; want running and a seq past the %d+2 it had", o.State, after.Seq, before.Seq)
	}
}

func TestWorkloadsKubernetesV2(t *testing.T) {
	f := newFixture(t, "v2-kubernetes", collectors.WorkloadsConfig{})
	pod := "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0d8c1a8e_2b43_4c57_9d16_3f3e0b7c8c11.slice"
	f.collect()
	f.add(f.cg(pod, "cpu.stat"), "usage_usec", 1_000_000)
	f.add(f.cg(pod+"/cri-containerd-"+strings.Repeat("c1", 32)+".scope", "cpu.stat"), "usage_usec", 800_000)
	f.advance(2 * time.Second)
	tab := f.collect()

	want := []string{"pod-0d8c1a8e2b43", "pod-7a6b5c4d1e2f", "svc-kubelet"}
	if got := rowIDs(tab.Workloads); !slices.Equal(got, want) {
		t.Fatalf("workloads %v, want %v (pods, not their containers; conmon and pause left out)", got, want)
	}
	d, _ := f.workload("pod-0d8c1a8e2b43")
	if d.Kind != "pod" || d.Name != "web-5d9c7b6f4-x2k8q" || d.Namespace != "shop" || d.NameSource != "kubelet logs" || d.PodUID != "0d8c1a8e-2b43-4c57-9d16-3f3e0b7c8c11" {
		t.Errorf("pod names: %+v", d.WorkloadRow)
	}
	if !near(d.CPUCores, 0.5) || f64(d.CPULimitCores) != "2" || u64(d.MemLimitBytes) != strconv.Itoa(1<<30) || d.NetNamespace != "own" {
		t.Errorf("pod figures: %v cores of %s, memory limit %s, net %q", d.CPUCores, f64(d.CPULimitCores), u64(d.MemLimitBytes), d.NetNamespace)
	}
	var ctrs []string
	for _, c := range d.Containers {
		ctrs = append(ctrs, fmt.Sprintf("%s %s %.2f %s", c.Name, c.Image, c.CPUCores, u64(c.MemLimitBytes)))
	}
	if want := []string{"app registry.example.com/shop/web:2.3 0.40 " + strconv.Itoa(512<<20), "sidecar  0.00 null"}; !slices.Equal(ctrs, want) {
		t.Errorf("containers %q, want %q (the pause container left out)", ctrs, want)
	}
	c, _ := f.workload("pod-7a6b5c4d1e2f")
	if c.Name != "coredns-abc12" || c.Namespace != "kube-system" || len(c.Containers) != 1 || c.Containers[0].Name != "coredns" {
		t.Errorf("CRI-O pod: %+v, containers %+v", c.WorkloadRow, c.Containers)
	}
}

func TestWorkloadsSystemdV2(t *testing.T) {
	f := newFixture(t, "v2-systemd", collectors.WorkloadsConfig{})
	f.collect()
	f.advance(2 * time.Second)
	tab := f.collect()
	names := map[string]string{}
	token := regexp.MustCompile(`^[a-z0-9_-]+$`)
	for _, r := range tab.Workloads {
		names[r.ID] = r.Name
		if !token.MatchString(r.ID) || len(r.ID) > 48 {
			t.Errorf("id %q is not a short [a-z0-9_-] token", r.ID)
		}
	}
	// Only services under system.slice: no user services, scopes, mounts,
	// nor a service whose cgroup is empty.
	if len(names) != 4 || names["svc-nginx"] != "nginx.service" || names["svc-systemd-journald"] != "systemd-journald.service" {
		t.Fatalf("services %v", names)
	}
	var getty, fsck string
	for id, n := range names {
		switch n {
		case "getty@tty1.service":
			getty = id
		case "systemd-fsck@dev-disk-by-uuid-1234.service": // \x2d unescaped
			fsck = id
		}
	}
	if !regexp.MustCompile(`^svc-getty-tty1_[0-9a-f]{10}$`).MatchString(getty) || !regexp.MustCompile(`^svc-systemd-fsck-dev-disk-by-uui_[0-9a-f]{10}$`).MatchString(fsck) {
		t.Errorf("escaped unit names got ids %q and %q", getty, fsck)
	}
}

func TestWorkloadsCap(t *testing.T) {
	f := newFixture(t, "v2-docker", collectors.WorkloadsConfig{Max: 2})
	f.collect()
	f.advance(2 * time.Second)
	tab := f.collect()
	if len(tab.Workloads) != 2 || tab.Untracked != 2 {
		t.Fatalf("cap 2: %d rows, %d untracked; want 2 and 2", len(tab.Workloads), tab.Untracked)
	}
	var n int
	for _, name := range f.topicNames() {
		if strings.HasPrefix(name, "h.workload.") {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d workload topics under a cap of 2: %v", n, f.topicNames())
	}
}

// Every runtime's path gives the same id whoever looks: the collector
// walking the tree, or the culprit sampler reading /proc/<pid>/cgroup.
func TestWorkloadIDs(t *testing.T) {
	id := dockerWeb
	for path, want := range map[string]string{
		"/docker/" + id:                                    "docker-3f2a9c1b7d4e",
		"/system.slice/docker-" + id + ".scope":            "docker-3f2a9c1b7d4e",
		"/machine.slice/libpod-" + id + ".scope/container": "podman-3f2a9c1b7d4e",
		"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + id + ".scope": "podman-3f2a9c1b7d4e",
		"/libpod_parent/libpod-" + id:            "podman-3f2a9c1b7d4e",
		"/system.slice/nerdctl-" + id + ".scope": "ctr-3f2a9c1b7d4e",
		"/default/" + id:                         "ctr-3f2a9c1b7d4e",
		"/kubepods/burstable/pod0d8c1a8e-2b43-4c57-9d16-3f3e0b7c8c11/" + id:                            "pod-0d8c1a8e2b43",
		"/kubepods/pod0d8c1a8e-2b43-4c57-9d16-3f3e0b7c8c11/" + id:                                      "pod-0d8c1a8e2b43",
		"/kubepods.slice/kubepods-pod0d8c1a8e_2b43_4c57_9d16_3f3e0b7c8c11.slice/crio-" + id + ".scope": "pod-0d8c1a8e2b43",
		"/ci/kubepods/besteffort/pod0d8c1a8e-2b43-4c57-9d16-3f3e0b7c8c11":                              "pod-0d8c1a8e2b43",
		"/system.slice/nginx.service":                                                                  "svc-nginx",
		"/system.slice/system-getty.slice/getty@tty1.service":                                          "svc-getty-tty1_" + "",
		"/machine.slice/libpod-conmon-" + id + ".scope":                                                "",
		"/user.slice/user-1000.slice/session-3.scope":                                                  "",
		"/user.slice/user-1000.slice/user@1000.service":                                                "",
		"/init.scope": "",
		"/":           "",
	} {
		got := workloadID(path)
		if strings.HasSuffix(want, "_") {
			if !strings.HasPrefix(got, want) || len(got) != len(want)+10 {
				t.Errorf("%s: id %q, want %q and 10 hex digits", path, got, want)
			}
			continue
		}
		if got != want {
			t.Errorf("%s: id %q, want %q", path, got, want)
		}
	}
}

// workloadID is collectors.WorkloadID, "" for none.
func workloadID(p string) string {
	id, _ := collectors.WorkloadID(p)
	return id
}

// With --docker-socket, a container whose state files opsdash cannot read
// is named from the Docker API, which is asked GET /containers/json and
// nothing else.
func TestWorkloadsDockerSocketNames(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var asked []string
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked = append(asked, r.Method+" "+r.URL.String())
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `[{"Id":%q,"Names":["/billing-worker"],"Image":"billing:4.1","State":"running"}]`, dockerOOM)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	f := newFixture(t, "v2-docker", collectors.WorkloadsConfig{DockerSocket: sock})
	f.collect()
	f.advance(2 * time.Second)
	f.collect()
	d, _ := f.workload("docker-9b8c7d6e5f40")
	if d.Name != "billing-worker" || d.Image != "billing:4.1" || d.NameSource != "docker socket" {
		t.Errorf("named %q (%q) from %q; want billing-worker (billing:4.1) from the docker socket", d.Name, d.Image, d.NameSource)
	}
	if w, _ := f.workload("docker-3f2a9c1b7d4e"); w.NameSource != "docker state" {
		t.Errorf("a container with a readable config.v2.json named from %q", w.NameSource)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(asked) != 1 || asked[0] != "GET /containers/json?all=true" {
		t.Errorf("the socket was asked %q; want one GET /containers/json?all=true", asked)
	}
}

// A workload topic's description says in words how long it outlives the
// workload, as people write a duration ("10m", not "10m0s").
func TestWorkloadTopicDescription(t *testing.T) {
	for _, tc := range []struct {
		retention time.Duration
		want      string
	}{{0, "removed 10m after it stops"}, {90 * time.Second, "removed 1m30s after it stops"}, {2 * time.Hour, "removed 2h after it stops"}} {
		f := newFixture(t, "v2-docker", collectors.WorkloadsConfig{StoppedRetention: tc.retention})
		f.collect()
		f.advance(2 * time.Second)
		f.collect()
		i := slices.IndexFunc(f.reg.Topics(), func(ti stream.TopicState) bool { return ti.Name == "h.workload.docker-3f2a9c1b7d4e" })
		if i < 0 {
			t.Fatalf("no topic h.workload.docker-3f2a9c1b7d4e in %v", f.topicNames())
		}
		if d := f.reg.Topics()[i].Description; !strings.HasSuffix(d, tc.want) {
			t.Errorf("retention %v: description %q, want it to end %q", tc.retention, d, tc.want)
		}
	}
}
