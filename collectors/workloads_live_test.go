package collectors_test

// Real cgroups on this machine: the test creates its own under a parent it
// owns (found through /proc/self/mountinfo, v1 controllers or a unified
// hierarchy with controllers), named as Docker, a Kubernetes pod and a
// systemd service would name theirs, runs a process that allocates memory
// and burns CPU in each, and checks what the workloads collector makes of
// them; then removes them. It skips, saying why, where the machine does
// not let it (not root, no writable cgroup filesystem).

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opsdash/opsdash/collectors"
	"github.com/opsdash/opsdash/stream"
)

// burnEnv makes the test binary a burner (see burnMain): its value is the
// memory to allocate, in MiB.
const burnEnv = "OPSDASH_TEST_BURN_MIB"

func TestMain(m *testing.M) {
	if os.Getenv(burnEnv) != "" {
		burnMain()
		return
	}
	os.Exit(m.Run())
}

// burnMain waits for "go" on stdin (the test moves it into its cgroups
// first), allocates and touches the memory, answers "ready" and burns CPU
// until stdin closes.
func burnMain() {
	mib, _ := strconv.Atoi(os.Getenv(burnEnv))
	in := bufio.NewReader(os.Stdin)
	if line, err := in.ReadString('\n'); err != nil || line != "go\n" {
		os.Exit(2)
	}
	mem := make([]byte, mib<<20)
	for i := 0; i < len(mem); i += 4096 {
		mem[i] = 1
	}
	fmt.Println("ready")
	done := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, in); close(done) }()
	x := 0
	for {
		select {
		case <-done:
			runtime.KeepAlive(mem)
			os.Exit(x & 0) // x keeps the loop from being optimised away
		default:
		}
		for i := range 1 << 20 {
			x += i
		}
	}
}

// burner is a running burner process.
type burner struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	pid   int
}

// startBurner starts the test binary as a burner named name (through a
// symbolic link, which is what the kernel names the process after), runs
// place with its pid before it allocates, and waits for it to be ready.
func startBurner(t testing.TB, name string, mib int, attr *syscall.SysProcAttr, place func(pid int) error) *burner {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), name)
	if err := os.Symlink(self, link); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(link)
	cmd.Env = append(os.Environ(), burnEnv+"="+strconv.Itoa(mib))
	cmd.SysProcAttr = attr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting burner: %v", err)
	}
	b := &burner{cmd: cmd, stdin: stdin, pid: cmd.Process.Pid}
	t.Cleanup(b.stop)
	if place != nil {
		if err := place(b.pid); err != nil {
			t.Fatalf("placing burner %d: %v", b.pid, err)
		}
	}
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("burner not ready: %q, %v", line, err)
	}
	return b
}

// stop ends the burner and waits for it (idempotent).
func (b *burner) stop() {
	if b.cmd.ProcessState != nil {
		return
	}
	b.stdin.Close()
	_ = b.cmd.Process.Kill()
	_ = b.cmd.Wait()
}

// testCgroups is a parent cgroup the test owns in every hierarchy a
// workload's figures come from.
type testCgroups struct {
	t      testing.TB
	v2     bool
	roots  []string          // hierarchy roots holding the parent
	ctrl   map[string]string // v1: controller → root; v2: every controller → the one root
	parent string
}

// cgroupMount is a cgroup filesystem from /proc/self/mountinfo.
type cgroupMount struct {
	point string
	v2    bool
	opts  []string
}

// mountedCgroups reads /proc/self/mountinfo for cgroup filesystems.
func mountedCgroups() []cgroupMount {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	var out []cgroupMount
	for line := range strings.Lines(string(b)) {
		left, right, ok := strings.Cut(strings.TrimSpace(line), " - ")
		lf, rf := strings.Fields(left), strings.Fields(right)
		if !ok || len(lf) < 5 || len(rf) < 3 || lf[3] != "/" || (rf[0] != "cgroup" && rf[0] != "cgroup2") {
			continue
		}
		out = append(out, cgroupMount{point: lf[4], v2: rf[0] == "cgroup2", opts: strings.Split(rf[2], ",")})
	}
	return out
}

// newTestCgroups creates the parent, or skips saying why it cannot.
func newTestCgroups(t testing.TB) *testCgroups {
	t.Helper()
	cg, err := openTestCgroups(t)
	if err != nil {
		t.Skip(err.Error())
	}
	return cg
}

// openTestCgroups creates the parent, or says why it cannot.
func openTestCgroups(t testing.TB) (*testCgroups, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("creating cgroups needs root; run the tests as root to cover workloads on real cgroups")
	}
	cg := &testCgroups{t: t, ctrl: map[string]string{}, parent: "opsdash-test-" + randHex(4)}
	var unified string
	for _, m := range mountedCgroups() {
		if m.v2 {
			unified = m.point
			continue
		}
		for _, c := range []string{"cpu", "cpuacct", "memory", "pids", "blkio"} {
			if slices.Contains(m.opts, c) {
				cg.ctrl[c] = m.point
			}
		}
	}
	switch {
	case cg.ctrl["cpu"] != "" && cg.ctrl["cpuacct"] != "" && cg.ctrl["memory"] != "":
		for _, root := range cg.ctrl {
			if !slices.Contains(cg.roots, root) {
				cg.roots = append(cg.roots, root)
			}
		}
	case unified != "":
		b, _ := os.ReadFile(filepath.Join(unified, "cgroup.subtree_control"))
		have := strings.Fields(string(b))
		if !slices.Contains(have, "cpu") || !slices.Contains(have, "memory") {
			return nil, fmt.Errorf("the cgroup2 mount at %s delegates no cpu and memory controllers (subtree_control %q), and no v1 hierarchy has them", unified, have)
		}
		cg.v2, cg.roots = true, []string{unified}
		for _, c := range []string{"cpu", "cpuacct", "memory", "pids", "blkio"} {
			cg.ctrl[c] = unified
		}
	default:
		return nil, errors.New("no cgroup hierarchy with the cpu and memory controllers is mounted")
	}
	for i, root := range cg.roots {
		if err := os.Mkdir(filepath.Join(root, cg.parent), 0o755); err != nil {
			for _, done := range cg.roots[:i] {
				_ = syscall.Rmdir(filepath.Join(done, cg.parent))
			}
			return nil, fmt.Errorf("cannot create a cgroup under %s: %v", root, err)
		}
	}
	cg.enable(cg.parent)
	t.Cleanup(cg.removeAll)
	return cg, nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// path is rel's cgroup path (under the parent).
func (cg *testCgroups) path(rel string) string { return "/" + cg.parent + "/" + rel }

// enable turns the controllers on for the children of a v2 cgroup.
func (cg *testCgroups) enable(rel string) {
	if !cg.v2 {
		return
	}
	f := filepath.Join(cg.roots[0], rel, "cgroup.subtree_control")
	for _, c := range []string{"cpu", "memory", "pids", "io"} {
		_ = os.WriteFile(f, []byte("+"+c), 0o644) // best effort: a controller the root lacks stays off
	}
}

// create makes rel and the levels above it in every hierarchy.
func (cg *testCgroups) create(rel string) {
	cg.t.Helper()
	parts := strings.Split(rel, "/")
	for i := range parts {
		sub := cg.parent + "/" + strings.Join(parts[:i+1], "/")
		for _, root := range cg.roots {
			if err := os.Mkdir(filepath.Join(root, sub), 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				cg.t.Fatalf("mkdir %s: %v", sub, err)
			}
		}
		if i < len(parts)-1 {
			cg.enable(sub)
		}
	}
}

// limit sets rel's CPU quota (cores) and memory limit (bytes).
func (cg *testCgroups) limit(rel string, cores float64, mem int64) {
	cg.t.Helper()
	quota := strconv.Itoa(int(cores * 100000))
	files := map[string]string{}
	if cg.v2 {
		files[filepath.Join(cg.roots[0], cg.parent, rel, "cpu.max")] = quota + " 100000"
		files[filepath.Join(cg.roots[0], cg.parent, rel, "memory.max")] = strconv.FormatInt(mem, 10)
	} else {
		files[filepath.Join(cg.ctrl["cpu"], cg.parent, rel, "cpu.cfs_period_us")] = "100000"
		files[filepath.Join(cg.ctrl["cpu"], cg.parent, rel, "cpu.cfs_quota_us")] = quota
		files[filepath.Join(cg.ctrl["memory"], cg.parent, rel, "memory.limit_in_bytes")] = strconv.FormatInt(mem, 10)
	}
	for f, v := range files {
		if err := os.WriteFile(f, []byte(v), 0o644); err != nil {
			cg.t.Fatalf("write %s: %v", f, err)
		}
	}
}

// place moves pid into rel in every hierarchy.
func (cg *testCgroups) place(rel string) func(pid int) error {
	return func(pid int) error {
		for _, root := range cg.roots {
			if err := os.WriteFile(filepath.Join(root, cg.parent, rel, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
				return err
			}
		}
		return nil
	}
}

// remove deletes rel and the levels above it that hold nothing else.
func (cg *testCgroups) remove(rel string) {
	cg.t.Helper()
	for p := rel; p != "." && p != "/"; p = filepath.Dir(p) {
		for _, root := range cg.roots {
			err := syscall.Rmdir(filepath.Join(root, cg.parent, p))
			if err != nil && err != syscall.ENOENT && err != syscall.EBUSY && err != syscall.ENOTEMPTY {
				cg.t.Fatalf("rmdir %s: %v", p, err)
			}
		}
	}
}

// removeAll deletes everything under the parent and the parent, deepest
// first (a cgroup goes only once empty).
func (cg *testCgroups) removeAll() {
	for _, root := range cg.roots {
		var dirs []string
		_ = filepath.WalkDir(filepath.Join(root, cg.parent), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := syscall.Rmdir(dirs[i]); err != nil && err != syscall.ENOENT {
				cg.t.Errorf("cleanup: rmdir %s: %v", dirs[i], err)
			}
		}
	}
}

// treeOfCgroups is the collector's view of the hierarchies the test uses.
func (cg *testCgroups) tree() (string, map[string]string) {
	if cg.v2 {
		return cg.roots[0], nil
	}
	return "", cg.ctrl
}

func TestWorkloadsLiveCgroups(t *testing.T) {
	cg := newTestCgroups(t)
	docker := "docker/" + randHex(32)
	podUID := fmt.Sprintf("%s-%s-%s-%s-%s", randHex(4), randHex(2), randHex(2), randHex(2), randHex(6))
	pod := "kubepods/burstable/pod" + podUID
	ctr := pod + "/" + randHex(32)
	svc := "system.slice/opsdash-test-" + randHex(3) + ".service"
	for _, rel := range []string{docker, ctr, svc} {
		cg.create(rel)
	}
	cg.limit(docker, 0.5, 256<<20)
	cg.limit(pod, 0.3, 256<<20) // the kubelet limits the pod, and each container within
	cg.limit(ctr, 0.3, 256<<20)
	cg.limit(svc, 0.3, 256<<20)

	var mu sync.Mutex
	offset := time.Duration(0) // the clock's lead over time.Now, for the retention
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return time.Now().Add(offset) }
	v2, v1 := cg.tree()
	reg := stream.NewRegistry(stream.RegistryConfig{Host: "live"})
	wl := collectors.NewWorkloadsOn(collectors.Config{HostID: "live"}, 2*time.Second, "", v2, v1, now)
	collectors.UseRuntimeTopics([]collectors.Collector{wl}, reg)
	collect := func() collectors.WorkloadsData {
		t.Helper()
		samples, err := wl.Collect(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		reg.PublishBatch(samples)
		return samples[0].Data.(collectors.WorkloadsData)
	}

	// The container gets a network namespace of its own, as Docker's do.
	bDocker := startBurner(t, "opsdash-burn-d", 48, &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}, cg.place(docker))
	bCtr := startBurner(t, "opsdash-burn-k", 48, nil, cg.place(ctr))
	bSvc := startBurner(t, "opsdash-burn-s", 48, nil, cg.place(svc))
	ids := map[string]string{
		"docker":  collectors.WorkloadIDOf(cg.path(docker)),
		"pod":     collectors.WorkloadIDOf(cg.path(ctr)),
		"service": collectors.WorkloadIDOf(cg.path(svc)),
	}
	limits := map[string]float64{"docker": 0.5, "pod": 0.3, "service": 0.3}

	sane := map[string]string{}
	deadline := time.Now().Add(20 * time.Second)
	for {
		collect()
		for kind, id := range ids {
			sane[kind] = checkLiveWorkload(reg, id, kind, limits[kind])
		}
		if sane["docker"]+sane["pod"]+sane["service"] == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no sane figures within 20 s: %v", sane)
		}
		time.Sleep(700 * time.Millisecond) // a measurement window, not synchronisation
	}
	d := topicData(t, reg, ids["docker"])
	if d.NetNamespace != "own" || d.NetRxBytesPerS == nil || d.CPUThrottledPct == nil || *d.CPUThrottledPct <= 0 {
		t.Errorf("docker container: net %q rx %s, throttled %s%%; want its own namespace, a rate, throttling under a 0.5-core quota",
			d.NetNamespace, f64(d.NetRxBytesPerS), f64(d.CPUThrottledPct))
	}
	if p := topicData(t, reg, ids["pod"]); p.PodUID != podUID || len(p.Containers) != 1 || p.Containers[0].CPUCores <= 0 || p.NetNamespace != "host" {
		t.Errorf("pod: uid %q, containers %+v, net %q", p.PodUID, p.Containers, p.NetNamespace)
	}
	if s := topicData(t, reg, ids["service"]); s.Name != filepath.Base(svc) || s.NameSource != "cgroup path" {
		t.Errorf("service named %q from %q", s.Name, s.NameSource)
	}
	t.Logf("figures: %v", liveSummary(t, reg, ids))

	// Gone: the processes end, the cgroups go. Stopped at once, removed
	// after the retention time.
	for _, b := range []*burner{bDocker, bCtr, bSvc} {
		b.stop()
	}
	for _, rel := range []string{docker, ctr, svc} {
		cg.remove(rel)
	}
	tab := collect()
	for kind, id := range ids {
		if d := topicData(t, reg, id); d.State != "stopped" || d.CPUCores != 0 {
			t.Errorf("%s after removal: state %s, %v cores; want stopped, 0", kind, d.State, d.CPUCores)
		}
	}
	if tab.Stopped < 3 {
		t.Errorf("table counts %d stopped", tab.Stopped)
	}
	mu.Lock()
	offset = collectors.DefaultWorkloadRetention + time.Second
	mu.Unlock()
	tab = collect()
	for kind, id := range ids {
		if _, ok := reg.Topic("live.workload."+id, 0); ok || slices.Contains(rowIDs(tab.Workloads), id) {
			t.Errorf("%s still listed %v after it stopped", kind, collectors.DefaultWorkloadRetention)
		}
	}
}

// checkLiveWorkload returns what is not sane about a test workload's
// topic, "" when all is.
func checkLiveWorkload(reg *stream.Registry, id, kind string, limit float64) string {
	st, ok := reg.Topic("live.workload."+id, 0)
	if !ok {
		return "no topic yet"
	}
	var d collectors.WorkloadData
	if err := json.Unmarshal(st.Data, &d); err != nil {
		return err.Error()
	}
	switch {
	case d.Kind != kind || d.State != "running":
		return fmt.Sprintf("kind %s state %s", d.Kind, d.State)
	case d.CPUCores < 0.05 || d.CPUCores > limit+0.1:
		return fmt.Sprintf("%v cores (limit %v)", d.CPUCores, limit)
	case d.MemBytes < 40<<20 || d.MemBytes > 256<<20:
		return fmt.Sprintf("memory %d bytes (48 MiB allocated)", d.MemBytes)
	case d.MemLimitBytes == nil || *d.MemLimitBytes != 256<<20:
		return "memory limit " + u64(d.MemLimitBytes)
	case d.CPULimitCores == nil || !near(*d.CPULimitCores, limit):
		return "CPU limit " + f64(d.CPULimitCores)
	case d.Pids != nil && *d.Pids < 1:
		return "no pids"
	}
	return ""
}

func topicData(t *testing.T, reg *stream.Registry, id string) collectors.WorkloadData {
	t.Helper()
	st, ok := reg.Topic("live.workload."+id, 0)
	if !ok {
		t.Fatalf("no topic live.workload.%s", id)
	}
	var d collectors.WorkloadData
	if err := json.Unmarshal(st.Data, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func liveSummary(t *testing.T, reg *stream.Registry, ids map[string]string) string {
	var parts []string
	for kind, id := range ids {
		d := topicData(t, reg, id)
		parts = append(parts, fmt.Sprintf("%s %s: %.2f cores of %s, %d MiB of %d MiB, throttled %s%%, pids %s",
			kind, id, d.CPUCores, f64(d.CPULimitCores), d.MemBytes>>20, *d.MemLimitBytes>>20, f64(d.CPUThrottledPct), u64(d.Pids)))
	}
	slices.Sort(parts)
	return strings.Join(parts, "; ")
}
