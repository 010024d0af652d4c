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
	"encoding/json"
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
	"github.com/opsdash/opsdash/collectors/cgrouptest"
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

// startBurner starts the test binary as a burner named name, runs place
// with its pid before it allocates, and waits for it to be ready.
func startBurner(t testing.TB, name string, mib int, attr *syscall.SysProcAttr, place func(pid int) error) *burner {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := cgrouptest.Named(t, name, self)
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

func TestWorkloadsLiveCgroups(t *testing.T) {
	cg := cgrouptest.New(t)
	docker := "docker/" + cgrouptest.RandHex(32)
	podUID := cgrouptest.PodUID()
	pod := "kubepods/burstable/pod" + podUID
	ctr := pod + "/" + cgrouptest.RandHex(32)
	svc := "system.slice/opsdash-test-" + cgrouptest.RandHex(3) + ".service"
	for _, rel := range []string{docker, ctr, svc} {
		cg.Create(rel)
	}
	cg.Limit(docker, 0.5, 256<<20)
	cg.Limit(pod, 0.3, 256<<20) // the kubelet limits the pod, and each container within
	cg.Limit(ctr, 0.3, 256<<20)
	cg.Limit(svc, 0.3, 256<<20)

	var mu sync.Mutex
	offset := time.Duration(0) // the clock's lead over time.Now, for the retention
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return time.Now().Add(offset) }
	v2, v1 := cg.Tree()
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
	bDocker := startBurner(t, "opsdash-burn-d", 48, &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}, cg.Place(docker))
	bCtr := startBurner(t, "opsdash-burn-k", 48, nil, cg.Place(ctr))
	bSvc := startBurner(t, "opsdash-burn-s", 48, nil, cg.Place(svc))
	ids := map[string]string{
		"docker":  workloadID(cg.Path(docker)),
		"pod":     workloadID(cg.Path(ctr)),
		"service": workloadID(cg.Path(svc)),
	}
	limits := map[string]float64{"docker": 0.5, "pod": 0.3, "service": 0.3}

	sane := map[string]string{}
	throttled := false // the 0.5-core quota bit at least once (the machine may be too busy to reach it every time)
	deadline := time.Now().Add(20 * time.Second)
	for {
		collect()
		for kind, id := range ids {
			sane[kind] = checkLiveWorkload(reg, id, kind, limits[kind])
		}
		if sane["docker"] == "" {
			d := topicData(t, reg, ids["docker"])
			throttled = throttled || d.CPUThrottledPct != nil && *d.CPUThrottledPct > 0
		}
		if sane["docker"]+sane["pod"]+sane["service"] == "" && throttled {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no sane figures within 20 s: %v (docker throttled at least once: %v)", sane, throttled)
		}
		time.Sleep(700 * time.Millisecond) // a measurement window, not synchronisation
	}
	d := topicData(t, reg, ids["docker"])
	if d.NetNamespace != "own" || d.NetRxBytesPerS == nil {
		t.Errorf("docker container: net %q rx %s; want its own namespace and a rate", d.NetNamespace, f64(d.NetRxBytesPerS))
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
		cg.Remove(rel)
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
