package collectors

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// Finding workloads in the host's cgroup tree.
//
// Every container runtime and systemd put what they run in a cgroup of its
// own and name it after what it runs, so the tree itself says which
// containers, pods and services exist, without asking a runtime:
//
//	/docker/<64 hex>                                     Docker, cgroupfs driver
//	/system.slice/docker-<64 hex>.scope                  Docker, systemd driver
//	/machine.slice/libpod-<64 hex>.scope                 Podman (also under user.slice)
//	/libpod_parent/libpod-<64 hex>                       Podman, cgroupfs driver
//	/system.slice/nerdctl-<64 hex>.scope, /<ns>/<64 hex> containerd without Kubernetes
//	/kubepods/burstable/pod<uid>/<64 hex>                Kubernetes, cgroupfs driver
//	/kubepods.slice/kubepods-burstable.slice/
//	    kubepods-burstable-pod<uid_with_underscores>.slice/
//	    cri-containerd-<64 hex>.scope, crio-<64 hex>.scope Kubernetes, systemd driver
//	/system.slice/<unit>.service                         a systemd service
//
// A Kubernetes pod is one workload, its containers listed inside it: they
// share the pod's network and, with limits on the pod, its memory. The
// patterns are matched anywhere in the path, so a runtime nested under
// another cgroup (a Docker-in-Docker build, a test's own parent) is found
// too. Cgroups that match nothing (user sessions, the kernel's, other
// agents') are not workloads and are left out.

// Workload kinds, as "kind" in the workload topics.
const (
	kindDocker     = "docker"
	kindPodman     = "podman"
	kindContainerd = "containerd"
	kindCRIO       = "cri-o"
	kindPod        = "pod"
	kindService    = "service"
)

// cgroupTree is where the host's cgroup hierarchies are, seen through
// HOST_SYS: the unified (v2) one, and the v1 hierarchy of each controller
// a workload's figures come from.
type cgroupTree struct {
	v2 string            // the unified hierarchy's directory, "" without one
	v1 map[string]string // "cpu", "cpuacct", "memory", "blkio", "pids" → directory
}

// workloadControllers are the v1 controllers a workload's figures come from.
var workloadControllers = []string{"cpu", "cpuacct", "memory", "blkio", "pids"}

// version is the hierarchy workloads are read from: 1 when the v1 memory or
// CPU accounting controller is mounted (a hybrid host, like this project's
// build machine, keeps an empty unified hierarchy beside them for systemd),
// else 2; 0 when there is no cgroup filesystem at all.
func (t cgroupTree) version() int {
	if t.v1["memory"] != "" || t.v1["cpuacct"] != "" || t.v1["cpu"] != "" {
		return 1
	}
	if t.v2 != "" {
		return 2
	}
	return 0
}

// roots are the directories a walk for workloads covers: the unified
// hierarchy, or every distinct v1 hierarchy of workloadControllers (a
// systemd service without memory accounting exists in cpu but not in
// memory).
func (t cgroupTree) roots() []string {
	if t.version() == 2 {
		return []string{t.v2}
	}
	var out []string
	for _, c := range workloadControllers {
		if d := t.v1[c]; d != "" && !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}

// findCgroupTree locates the host's cgroup hierarchies: from the host's
// mount table ($HOST_PROC/1/mountinfo when HOST_PROC is set and readable,
// else this process's), each mount point under /sys mapped under HOST_SYS,
// so that a container given the host's /sys read-only sees the host's whole
// tree. A mount whose root is not "/" (a cgroup namespace's view) does not
// show the whole tree and is skipped. When the mount table names nothing
// usable, $HOST_SYS/fs/cgroup is probed directly.
func findCgroupTree(p hostPaths) cgroupTree {
	var mi []byte
	if p.procFromEnv {
		mi, _ = os.ReadFile(p.procPath("1", "mountinfo"))
	}
	if mi == nil {
		mi, _ = os.ReadFile("/proc/self/mountinfo")
	}
	t := cgroupTreeFromMounts(parseCgroupMounts(string(mi)), p.sys)
	if t.version() != 0 {
		return t
	}
	return probeCgroupTree(filepath.Join(p.sys, "fs", "cgroup"))
}

// cgroupTreeFromMounts maps cgroup mounts to directories under sys (the
// host's /sys as this process sees it).
func cgroupTreeFromMounts(mounts []cgroupMount, sys string) cgroupTree {
	t := cgroupTree{v1: map[string]string{}}
	for _, m := range mounts {
		if path.Clean(m.root) != "/" {
			continue
		}
		rest, ok := strings.CutPrefix(path.Clean(m.point), "/sys/")
		if !ok {
			continue
		}
		dir := filepath.Join(sys, rest)
		if m.v2 {
			if t.v2 == "" {
				t.v2 = dir
			}
			continue
		}
		for _, c := range workloadControllers {
			if slices.Contains(m.options, c) && t.v1[c] == "" {
				t.v1[c] = dir
			}
		}
	}
	return t
}

// probeCgroupTree recognises the usual layouts under dir (/sys/fs/cgroup):
// a unified hierarchy (cgroup.controllers at the top), or one directory
// per v1 controller ("cpu,cpuacct" co-mounted).
func probeCgroupTree(dir string) cgroupTree {
	t := cgroupTree{v1: map[string]string{}}
	if _, err := os.Stat(filepath.Join(dir, "cgroup.controllers")); err == nil {
		t.v2 = dir
		return t
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		for _, c := range strings.Split(e.Name(), ",") {
			if slices.Contains(workloadControllers, c) && t.v1[c] == "" {
				t.v1[c] = filepath.Join(dir, e.Name())
			}
		}
	}
	if u := filepath.Join(dir, "unified"); fileExists(filepath.Join(u, "cgroup.controllers")) {
		t.v2 = u
	}
	return t
}

func fileExists(name string) bool {
	_, err := os.Stat(name)
	return err == nil
}

// workloadKey identifies a workload for as long as it exists and when it
// comes back: a container by its id, a pod by its uid, a service by its
// unit name.
type workloadKey struct {
	kind  string
	ident string
}

// workloadRef is a workload found in the tree.
type workloadRef struct {
	key workloadKey
	// rel is its cgroup's path, the same under every hierarchy root
	// ("/docker/<id>").
	rel string
	// containers are a pod's containers (nil for other kinds).
	containers []containerRef
}

// containerRef is one container of a pod.
type containerRef struct {
	id      string // 64 hex
	runtime string // kindContainerd, kindCRIO or kindDocker
	rel     string
}

// walkLimits bound a walk: a host with a runaway number of cgroups costs a
// bounded scan, not an unbounded one.
const (
	maxWalkDepth = 12
	maxWalkDirs  = 20000
)

// discoverWorkloads walks the tree's roots and returns every workload
// found, in path order, each once (a v1 host has the same path in several
// hierarchies).
func discoverWorkloads(t cgroupTree) []workloadRef {
	var out []workloadRef
	seen := map[workloadKey]int{}
	visited := 0
	for _, root := range t.roots() {
		walkCgroups(root, "/", segCtx{}, 0, &visited, func(ref workloadRef) {
			if i, ok := seen[ref.key]; ok {
				// A pod's containers may be visible in one hierarchy
				// only (cpu but not memory): merge them.
				for _, c := range ref.containers {
					if !slices.ContainsFunc(out[i].containers, func(x containerRef) bool { return x.id == c.id }) {
						out[i].containers = append(out[i].containers, c)
					}
				}
				return
			}
			seen[ref.key] = len(out)
			out = append(out, ref)
		})
	}
	return out
}

// segCtx is what a cgroup's ancestors say about it.
type segCtx struct {
	underKubepods    bool // an ancestor is kubepods (cgroupfs) or kubepods*.slice
	underSystemSlice bool // an ancestor is system.slice
}

// next is the context of a child named name.
func (c segCtx) next(name string) segCtx {
	if strings.HasPrefix(name, "kubepods") {
		c.underKubepods = true
	}
	if name == "system.slice" {
		c.underSystemSlice = true
	}
	return c
}

// walkCgroups visits the directories under dir (cgroup path rel) and
// reports each workload to found; it does not descend into a workload,
// except a pod's one level of containers.
func walkCgroups(dir, rel string, ctx segCtx, depth int, visited *int, found func(workloadRef)) {
	if depth >= maxWalkDepth || *visited >= maxWalkDirs {
		return
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return // removed since the parent's listing, or not ours to read
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		*visited++
		name := e.Name()
		childRel := path.Join(rel, name)
		childDir := filepath.Join(dir, name)
		key, ok, skip := classifySegment(name, ctx)
		switch {
		case skip:
			continue
		case ok && key.kind == kindPod:
			found(workloadRef{key: key, rel: childRel, containers: podContainers(childDir, childRel)})
		case ok:
			ref := workloadRef{key: key, rel: childRel}
			refineRuntime(&ref)
			found(ref)
		default:
			walkCgroups(childDir, childRel, ctx.next(name), depth+1, visited, found)
		}
	}
}

// podContainers lists the container cgroups directly under a pod's.
func podContainers(dir, rel string) []containerRef {
	entries, _ := os.ReadDir(dir)
	var out []containerRef
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if id, runtime, ok := podContainerSegment(e.Name()); ok {
			out = append(out, containerRef{id: id, runtime: runtime, rel: path.Join(rel, e.Name())})
		}
	}
	return out
}

// classifySegment says whether the cgroup named name, below ancestors
// described by ctx, is a workload (ok, with its key), is to be skipped
// with its subtree (a runtime's monitor process: conmon), or neither (walk
// on below it).
func classifySegment(name string, ctx segCtx) (key workloadKey, ok, skip bool) {
	if uid, isPod := podSegment(name, ctx); isPod {
		return workloadKey{kindPod, uid}, true, false
	}
	if strings.HasPrefix(name, "libpod-conmon-") || strings.HasPrefix(name, "crio-conmon-") {
		return key, false, true
	}
	if id, runtime, isCtr := containerSegment(name); isCtr {
		return workloadKey{runtime, id}, true, false
	}
	if ctx.underSystemSlice && strings.HasSuffix(name, ".service") && len(name) > len(".service") {
		return workloadKey{kindService, name}, true, false
	}
	return key, false, false
}

// scopePrefixes are the runtimes that name a container's systemd scope
// "<prefix>-<id>.scope" (or, with cgroupfs, "<prefix>-<id>").
var scopePrefixes = map[string]string{
	"docker":         kindDocker,
	"libpod":         kindPodman,
	"nerdctl":        kindContainerd,
	"cri-containerd": kindContainerd,
	"crio":           kindCRIO,
}

// containerSegment recognises a container's own cgroup outside a pod.
func containerSegment(name string) (id, runtime string, ok bool) {
	if isHex64(name) {
		return name, kindContainerd, true // refined by the parent below
	}
	base := strings.TrimSuffix(name, ".scope")
	i := strings.LastIndexByte(base, '-')
	if i < 0 || !isHex64(base[i+1:]) {
		return "", "", false
	}
	runtime, ok = scopePrefixes[base[:i]]
	return base[i+1:], runtime, ok
}

// podContainerSegment recognises a container's cgroup under a pod's.
func podContainerSegment(name string) (id, runtime string, ok bool) {
	if strings.HasPrefix(name, "crio-conmon-") {
		return "", "", false
	}
	return containerSegment(name)
}

// podSegment recognises a Kubernetes pod's cgroup and returns its uid:
// "pod<uid>" below kubepods (cgroupfs driver), or
// "kubepods[-<qos>]-pod<uid with _ for ->.slice" (systemd driver).
func podSegment(name string, ctx segCtx) (uid string, ok bool) {
	if s, found := strings.CutSuffix(name, ".slice"); found && strings.HasPrefix(s, "kubepods") {
		i := strings.LastIndex(s, "-pod")
		if i < 0 {
			return "", false
		}
		uid = strings.ReplaceAll(s[i+len("-pod"):], "_", "-")
		return uid, isPodUID(uid)
	}
	if ctx.underKubepods && strings.HasPrefix(name, "pod") {
		uid = name[len("pod"):]
		return uid, isPodUID(uid)
	}
	return "", false
}

// isPodUID accepts a UUID (36 characters, dashes at 8, 13, 18 and 23).
func isPodUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !isHexDigit(s[i]) {
				return false
			}
		}
	}
	return true
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isHexDigit(s[i]) {
			return false
		}
	}
	return true
}

func isHexDigit(b byte) bool { return '0' <= b && b <= '9' || 'a' <= b && b <= 'f' }

// refineRuntime names the runtime of a bare 64-hex container cgroup from
// its parent's name ("/docker/<id>" is Docker's cgroupfs driver).
func refineRuntime(ref *workloadRef) {
	if ref.key.kind != kindContainerd || !isHex64(path.Base(ref.rel)) {
		return
	}
	switch path.Base(path.Dir(ref.rel)) {
	case "docker", "moby":
		ref.key.kind = kindDocker
	case "libpod_parent":
		ref.key.kind = kindPodman
	}
}

// classifyCgroupPath finds the workload a process belongs to from its
// cgroup path (a line of /proc/<pid>/cgroup): the first workload along the
// path, as a walk would find it.
func classifyCgroupPath(p string) (workloadKey, bool) {
	var ctx segCtx
	rel := "/"
	for _, seg := range strings.Split(strings.Trim(p, "/"), "/") {
		if seg == "" {
			break
		}
		rel = path.Join(rel, seg)
		key, ok, skip := classifySegment(seg, ctx)
		if skip {
			return workloadKey{}, false
		}
		if ok {
			ref := workloadRef{key: key, rel: rel}
			refineRuntime(&ref)
			return ref.key, true
		}
		ctx = ctx.next(seg)
	}
	return workloadKey{}, false
}

// WorkloadID returns the id of the workload a process whose cgroup path is
// p (as /proc/<pid>/cgroup shows it) runs in, as the workloads collector
// and the culprit sampler name it; false when p is in no workload.
func WorkloadID(p string) (string, bool) {
	k, ok := classifyCgroupPath(p)
	if !ok {
		return "", false
	}
	return workloadID(k), true
}

// Workload ids: the token of a workload's topic, <host>.workload.<id>.
// They are short, made of [a-z0-9_-], stable (the same workload gets the
// same id whenever it is seen, by the collector and the culprit sampler
// alike, so that a workload that comes back continues its topic's seq) and
// collision-free: the kind's prefix keeps kinds apart, and within a kind
//
//   - a container is named by the first 12 hex digits of its id (Docker's
//     short id): docker-3f2a9c1b7d4e, podman-…, ctr-…, crio-…;
//   - a pod by the first 12 hex digits of its uid: pod-0d8c1a8e2b43;
//   - a service by its unit name without ".service" when that is already a
//     token of at most 40 characters without "_" (svc-nginx), otherwise by
//     a cleaned-up prefix, "_" and 10 hex digits of the SHA-256 of the
//     unit name (getty@tty1.service: svc-getty-tty1_4f0c2a9e1b). An exact
//     name has no "_", so it cannot collide with a hashed one.
//
// The real names are in the payloads. Two containers whose ids share 12
// hex digits, or two services whose hashes share 40 bits, would collide:
// odds far below one in a million for a host's few hundred workloads.

// idPrefix is each kind's id prefix.
var idPrefix = map[string]string{
	kindDocker:     "docker",
	kindPodman:     "podman",
	kindContainerd: "ctr",
	kindCRIO:       "crio",
	kindPod:        "pod",
	kindService:    "svc",
}

// maxExactServiceID is the longest unit name (without .service) used as
// is in an id.
const maxExactServiceID = 40

// workloadID returns the id of the workload with key k.
func workloadID(k workloadKey) string {
	prefix := idPrefix[k.kind]
	switch k.kind {
	case kindPod:
		return prefix + "-" + strings.ReplaceAll(k.ident, "-", "")[:12]
	case kindService:
		name := strings.TrimSuffix(k.ident, ".service")
		if len(name) <= maxExactServiceID && isExactToken(name) {
			return prefix + "-" + name
		}
		sum := sha256.Sum256([]byte(k.ident))
		clean := cleanToken(name, 28)
		return prefix + "-" + clean + "_" + hex.EncodeToString(sum[:5])
	}
	return prefix + "-" + k.ident[:12]
}

// isExactToken reports whether s is non-empty and made of [a-z0-9-] only.
func isExactToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// cleanToken lowercases s, turns systemd's \xHH escapes back into their
// characters, replaces everything outside [a-z0-9-] with '-' and cuts the
// result to n bytes.
func cleanToken(s string, n int) string {
	s = strings.ToLower(unescapeUnit(s))
	b := make([]byte, 0, min(len(s), n))
	for i := 0; i < len(s) && len(b) < n; i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			c = '-'
		}
		b = append(b, c)
	}
	return strings.Trim(string(b), "-")
}

// unescapeUnit undoes systemd's unit name escaping (\x2d for '-' in a path
// unit, \x40 …): the name as people wrote it.
func unescapeUnit(s string) string {
	if !strings.Contains(s, `\x`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x' && isHexDigit(lower(s[i+2])) && isHexDigit(lower(s[i+3])) {
			v, _ := hex.DecodeString(string([]byte{lower(s[i+2]), lower(s[i+3])}))
			b.Write(v)
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
