// Package cgrouptest makes real cgroups for tests: a parent the test owns
// in every hierarchy a workload's figures come from (found through
// /proc/self/mountinfo: the v1 controllers cpu, cpuacct, memory, pids and
// blkio, or a unified hierarchy that delegates cpu and memory), cgroups
// below it named as a container runtime or systemd would name theirs, and
// processes placed in them. Everything is removed when the test ends.
//
// It is a test helper in the manner of net/http/httptest: an ordinary
// package, because the tests of collectors (the workloads collector, the
// culprit sampler) and of cmd/opsdash (the pages and the API, end to end)
// both need it. Nothing but tests imports it. Creating cgroups needs root;
// Open says why it cannot where the machine does not allow it, and the
// tests skip with that message.
package cgrouptest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// controllers are the v1 controllers a workload's figures come from.
var controllers = []string{"cpu", "cpuacct", "memory", "pids", "blkio"}

// Cgroups is a parent cgroup a test owns.
type Cgroups struct {
	t      testing.TB
	v2     bool
	roots  []string          // hierarchy roots holding the parent
	ctrl   map[string]string // v1: controller → root; v2: every controller → the one root
	parent string
}

// mount is a cgroup filesystem from /proc/self/mountinfo.
type mount struct {
	point string
	v2    bool
	opts  []string
}

// mounts reads /proc/self/mountinfo for cgroup filesystems mounted whole
// (root "/").
func mounts() []mount {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	var out []mount
	for line := range strings.Lines(string(b)) {
		left, right, ok := strings.Cut(strings.TrimSpace(line), " - ")
		lf, rf := strings.Fields(left), strings.Fields(right)
		if !ok || len(lf) < 5 || len(rf) < 3 || lf[3] != "/" || (rf[0] != "cgroup" && rf[0] != "cgroup2") {
			continue
		}
		out = append(out, mount{point: lf[4], v2: rf[0] == "cgroup2", opts: strings.Split(rf[2], ",")})
	}
	return out
}

// New creates the parent, or skips the test saying why it cannot.
func New(t testing.TB) *Cgroups {
	t.Helper()
	cg, err := Open(t)
	if err != nil {
		t.Skip(err.Error())
	}
	return cg
}

// Open creates the parent, or says why it cannot. It is removed, with
// everything below it, when the test ends.
func Open(t testing.TB) (*Cgroups, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("creating cgroups needs root; run the tests as root to cover workloads on real cgroups")
	}
	cg := &Cgroups{t: t, ctrl: map[string]string{}, parent: "opsdash-test-" + RandHex(4)}
	var unified string
	for _, m := range mounts() {
		if m.v2 {
			unified = m.point
			continue
		}
		for _, c := range controllers {
			if slices.Contains(m.opts, c) {
				cg.ctrl[c] = m.point
			}
		}
	}
	switch {
	case cg.ctrl["cpu"] != "" && cg.ctrl["cpuacct"] != "" && cg.ctrl["memory"] != "":
		for _, c := range controllers {
			if root := cg.ctrl[c]; root != "" && !slices.Contains(cg.roots, root) {
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
		for _, c := range controllers {
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

// RandHex returns n random bytes in hex: container ids, pod uids.
func RandHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// PodUID returns a random pod uid (a UUID).
func PodUID() string {
	return fmt.Sprintf("%s-%s-%s-%s-%s", RandHex(4), RandHex(2), RandHex(2), RandHex(2), RandHex(6))
}

// Path is rel's cgroup path, as /proc/<pid>/cgroup shows it.
func (cg *Cgroups) Path(rel string) string { return "/" + cg.parent + "/" + rel }

// Tree is where the hierarchies are: the unified one, or the v1 one of each
// controller.
func (cg *Cgroups) Tree() (v2 string, v1 map[string]string) {
	if cg.v2 {
		return cg.roots[0], nil
	}
	return "", cg.ctrl
}

// enable turns the controllers on for the children of a v2 cgroup.
func (cg *Cgroups) enable(rel string) {
	if !cg.v2 {
		return
	}
	f := filepath.Join(cg.roots[0], rel, "cgroup.subtree_control")
	for _, c := range []string{"cpu", "memory", "pids", "io"} {
		_ = os.WriteFile(f, []byte("+"+c), 0o644) // best effort: a controller the root lacks stays off
	}
}

// Create makes rel (below the parent) and the levels above it.
func (cg *Cgroups) Create(rel string) {
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

// Limit sets rel's CPU quota (cores) and memory limit (bytes).
func (cg *Cgroups) Limit(rel string, cores float64, mem int64) {
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

// Place returns a function that moves a process into rel in every
// hierarchy.
func (cg *Cgroups) Place(rel string) func(pid int) error {
	return func(pid int) error {
		for _, root := range cg.roots {
			if err := os.WriteFile(filepath.Join(root, cg.parent, rel, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
				return err
			}
		}
		return nil
	}
}

// Remove deletes rel and the levels above it that hold nothing else. Its
// processes must have ended.
func (cg *Cgroups) Remove(rel string) {
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
func (cg *Cgroups) removeAll() {
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

// Proc is a process a test started.
type Proc struct {
	Cmd *exec.Cmd
	Pid int
}

// Stop kills the process and waits for it (idempotent).
func (p *Proc) Stop() {
	if p.Cmd.ProcessState != nil {
		return
	}
	_ = p.Cmd.Process.Kill()
	_ = p.Cmd.Wait()
}

// Named returns a command that runs program under the name name: through
// a symbolic link in a temporary directory, since the kernel names a
// process (comm, what top shows) after the file it executes.
func Named(t testing.TB, name, program string, args ...string) *exec.Cmd {
	t.Helper()
	link := filepath.Join(t.TempDir(), name)
	if err := os.Symlink(program, link); err != nil {
		t.Fatal(err)
	}
	return exec.Command(link, args...)
}

// Spin starts a shell named name that keeps one core busy until the test
// ends, moved by place (when not nil) into a cgroup as soon as it runs.
func Spin(t testing.TB, name string, place func(pid int) error) *Proc {
	t.Helper()
	cmd := Named(t, name, "/bin/sh", "-c", "while :; do :; done")
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	p := &Proc{Cmd: cmd, Pid: cmd.Process.Pid}
	t.Cleanup(p.Stop)
	if place != nil {
		if err := place(p.Pid); err != nil {
			t.Fatalf("placing %s (%d): %v", name, p.Pid, err)
		}
	}
	return p
}
