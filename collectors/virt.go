package collectors

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// virtualization is what <host>.host says the host runs in, and why.
type virtualization struct {
	// system names the innermost environment: the container engine when
	// the host is a container, else the hypervisor when it is a virtual
	// machine; "" when neither is known.
	system string
	// role is "guest" (a container or VM), "host" (it runs VMs) or "".
	role string
	// evidence says what decided, in the words of the files read, and what
	// was seen but not trusted.
	evidence string
}

// detectVirtualization decides what the host runs in from the files of
// procfs h.proc, sysfs h.sys and, for the marker files, the root
// filesystem at root ("" means "/").
//
// gopsutil answers "docker" as soon as /.dockerenv exists, which it does in
// any machine whose root filesystem was made from a Docker image: a
// Firecracker or Kata VM, say. So a container is only believed on evidence
// the kernel gives about PID 1 (and this process): its cgroup path, the
// source of its root or /etc/hostname mount, its container= environment
// variable, or a PID outside its namespace in /proc/1/sched. A marker file
// (/.dockerenv, /run/.containerenv) only names the engine of a container
// found that way. A virtual machine is found by its DMI vendor, a
// hypervisor's paravirtual clock, the hypervisor CPU flag or
// /sys/hypervisor.
//
// With HOST_PROC set (a container watching its host), only the host's PID 1
// is looked at: this process's own cgroup and mounts are the container's,
// not the host's; and the marker files are looked for only when root
// (HOST_ROOT) is the host's root too.
func detectVirtualization(h hostPaths, root string) virtualization {
	pids := []string{"1"}
	if !h.procFromEnv {
		pids = append(pids, "self")
	}
	marker, markerSystem := "", ""
	if root != "" || !h.procFromEnv {
		marker, markerSystem = markerFile(root)
	}
	if system, ev, ok := containerEvidence(h, pids); ok {
		if system == "" {
			system = markerSystem
			if marker != "" {
				ev += "; " + marker
			}
		}
		return virtualization{system: system, role: "guest", evidence: ev}
	}
	v := vmEvidence(h)
	if marker != "" {
		v.evidence += "; " + marker + " ignored: no other sign of a container"
	}
	return v
}

// markerFile returns the first container marker file under root, with the
// engine that writes it.
func markerFile(root string) (path, system string) {
	if root == "" {
		root = "/"
	}
	for _, m := range []struct{ path, system string }{
		{"/.dockerenv", "docker"},
		{"/run/.containerenv", "podman"},
	} {
		if _, err := os.Stat(filepath.Join(root, m.path)); err == nil {
			return m.path, m.system
		}
	}
	return "", ""
}

// engines recognizes a container engine in a cgroup path or a mount source,
// first match wins (kubepods before the runtime under it). Container ids
// are 64 hex digits; cgroup paths may carry them shortened.
var engines = []struct {
	re     *regexp.Regexp
	system string
}{
	{regexp.MustCompile(`kubepods|/kubelet/pods/`), "kubernetes"},
	{regexp.MustCompile(`/docker/[0-9a-f]{12,}|docker-[0-9a-f]{12,}\.scope|/containers/[0-9a-f]{64}/(hostname|hosts|resolv\.conf)$|/docker/overlay2/`), "docker"},
	{regexp.MustCompile(`libpod-[0-9a-f]{12,}|/libpod_parent/|/overlay-containers/[0-9a-f]{64}/userdata/|/containers/storage/overlay/`), "podman"},
	{regexp.MustCompile(`cri-containerd-[0-9a-f]{12,}|/io\.containerd\.`), "containerd"},
	{regexp.MustCompile(`crio-[0-9a-f]{12,}`), "cri-o"},
	{regexp.MustCompile(`/lxc/|lxc\.payload`), "lxc"},
}

func engineOf(s string) string {
	for _, e := range engines {
		if e.re.MatchString(s) {
			return e.system
		}
	}
	return ""
}

// longID matches the tail of a container id, cut from evidence text so
// that it stays readable.
var longID = regexp.MustCompile(`([0-9a-f]{12})[0-9a-f]{4,}`)

func shortIDs(s string) string { return longID.ReplaceAllString(s, "$1…") }

// containerEvidence looks for a container in the cgroups, mounts and
// environment of pids, then in /proc/1/sched. ok reports a container;
// system is "" when the evidence does not name its engine.
func containerEvidence(h hostPaths, pids []string) (system, evidence string, ok bool) {
	who := func(pid string) string {
		if pid == "self" {
			return "this process"
		}
		return "PID " + pid
	}
	for _, pid := range pids {
		for _, p := range cgroupPaths(h.procPath(pid, "cgroup")) {
			if s := engineOf(p); s != "" {
				return s, "cgroup of " + who(pid) + ": " + shortIDs(p), true
			}
		}
	}
	for _, pid := range pids {
		if s, ev := mountEvidence(h.procPath(pid, "mountinfo")); s != "" {
			return s, "mounts of " + who(pid) + ": " + shortIDs(ev), true
		}
	}
	// Readable by root only; a container engine that follows systemd's
	// convention (podman, lxc, systemd-nspawn) sets it.
	if env, err := os.ReadFile(h.procPath("1", "environ")); err == nil {
		for _, kv := range bytes.Split(env, []byte{0}) {
			if v, found := bytes.CutPrefix(kv, []byte("container=")); found && len(v) > 0 {
				return string(v), "environment of PID 1: container=" + string(v), true
			}
		}
	}
	// "comm (pid, #threads: n)": kernels before 4.14 (and some since) give
	// the PID of the outermost namespace, so PID 1 showing another number
	// is in a PID namespace of its own. Showing 1 proves nothing.
	if pid := schedPID(h.procPath("1", "sched")); pid > 1 {
		return "", "/proc/1/sched: PID 1 is PID " + strconv.Itoa(pid) + " outside its namespace", true
	}
	return "", "", false
}

// cgroupPaths returns the paths of a /proc/PID/cgroup file
// ("hierarchy:controllers:path" lines), nil when it cannot be read.
func cgroupPaths(file string) []string {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil
	}
	var paths []string
	for line := range strings.Lines(string(b)) {
		if f := strings.SplitN(strings.TrimSpace(line), ":", 3); len(f) == 3 {
			paths = append(paths, f[2])
		}
	}
	return paths
}

// mountEvidence looks in a mountinfo file for a container engine's paths:
// in the layers of an overlay root filesystem, or in the file that an
// engine bind-mounts on /etc/hostname, /etc/hosts or /etc/resolv.conf.
func mountEvidence(file string) (system, evidence string) {
	f, err := os.Open(file)
	if err != nil {
		return "", ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20) // an overlay root lists every layer
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		pre, post, found := strings.Cut(sc.Text(), " - ")
		fields, tail := strings.Fields(pre), strings.Fields(post)
		if !found || len(fields) < 5 || len(tail) < 3 {
			continue
		}
		mountRoot, mountPoint := fields[3], fields[4]
		switch {
		case mountPoint == "/" && tail[0] == "overlay":
			for _, opt := range strings.Split(tail[2], ",") {
				if k, v, _ := strings.Cut(opt, "="); k == "upperdir" {
					if s := engineOf(v); s != "" {
						return s, "/ is an overlay with upperdir " + v
					}
				}
			}
		case mountPoint == "/etc/hostname" || mountPoint == "/etc/hosts" || mountPoint == "/etc/resolv.conf":
			if s := engineOf(mountRoot); s != "" {
				return s, mountPoint + " is " + mountRoot
			}
		}
	}
	return "", ""
}

// schedPID returns the PID in the first line of a /proc/PID/sched file, 0
// when it cannot be read.
func schedPID(file string) int {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	_, rest, ok := strings.Cut(line, " (")
	if !ok {
		return 0
	}
	num, _, _ := strings.Cut(rest, ",")
	pid, _ := strconv.Atoi(num)
	return pid
}

// dmiVendors names the hypervisor from the DMI (SMBIOS) strings a virtual
// machine's firmware gives, first match wins; the names follow gopsutil's
// where it has one, else systemd-detect-virt's.
var dmiVendors = []struct {
	file, contains, system string
	product                string // when set, product_name must contain it too
}{
	{"product_name", "KVM", "kvm", ""},
	{"sys_vendor", "QEMU", "qemu", ""}, // kvm when there is a kvm-clock too
	{"sys_vendor", "OpenStack", "kvm", ""},
	{"sys_vendor", "DigitalOcean", "kvm", ""},
	{"sys_vendor", "Amazon EC2", "amazon", ""},
	{"sys_vendor", "Google", "google", "Google Compute Engine"},
	{"sys_vendor", "VMware", "vmware", ""},
	{"sys_vendor", "innotek GmbH", "vbox", ""},
	{"product_name", "VirtualBox", "vbox", ""},
	{"sys_vendor", "Xen", "xen", ""},
	{"sys_vendor", "Microsoft Corporation", "hyperv", "Virtual Machine"},
	{"sys_vendor", "Parallels", "parallels", ""},
	{"sys_vendor", "BHYVE", "bhyve", ""},
}

// paravirtClocks are clock sources only a guest of that hypervisor has.
var paravirtClocks = []struct{ name, system string }{
	{"kvm-clock", "kvm"},
	{"hyperv_clocksource", "hyperv"},
	{"xen", "xen"},
}

// vmEvidence looks for a hypervisor above the host, then for one the host
// runs.
func vmEvidence(h hostPaths) virtualization {
	var ev []string
	system, guest := "", false

	dmi := map[string]string{}
	for _, name := range []string{"sys_vendor", "product_name"} {
		b, _ := os.ReadFile(h.sysPath("class", "dmi", "id", name))
		dmi[name] = strings.TrimSpace(string(b))
	}
	for _, v := range dmiVendors {
		if s := dmi[v.file]; strings.Contains(s, v.contains) && strings.Contains(dmi["product_name"], v.product) {
			system, guest = v.system, true
			ev = append(ev, "DMI "+v.file+": "+s)
			break
		}
	}
	noDMI := "" // said after what did decide
	switch {
	case guest:
	case dmi["sys_vendor"] != "":
		noDMI = "DMI sys_vendor: " + dmi["sys_vendor"] + " (not a hypervisor's)"
	default:
		noDMI = "no DMI"
	}

	clocks, _ := os.ReadFile(h.sysPath("devices", "system", "clocksource", "clocksource0", "available_clocksource"))
	for _, c := range paravirtClocks {
		if slices.ContainsFunc(strings.Fields(string(clocks)), func(w string) bool { return strings.HasPrefix(w, c.name) }) {
			// QEMU accelerated by KVM is KVM, as systemd-detect-virt says.
			if system == "" || system == "qemu" && c.system == "kvm" {
				system = c.system
			}
			guest = true
			ev = append(ev, "clocksource: "+c.name)
			break
		}
	}
	if hypervisorFlag(h.procPath("cpuinfo")) {
		guest = true
		ev = append(ev, "cpuinfo: hypervisor flag")
	}

	if noDMI != "" {
		ev = append(ev, noDMI)
	}

	xenCaps, _ := os.ReadFile(h.procPath("xen", "capabilities"))
	switch {
	case strings.Contains(string(xenCaps), "control_d"):
		return virtualization{system: "xen", role: "host", evidence: "/proc/xen/capabilities: control_d (dom0)"}
	case guest:
		if system == "" {
			if t, _ := os.ReadFile(h.sysPath("hypervisor", "type")); len(bytes.TrimSpace(t)) > 0 {
				system = string(bytes.TrimSpace(t))
				ev = append(ev, "/sys/hypervisor/type: "+system)
			}
		}
		return virtualization{system: system, role: "guest", evidence: strings.Join(ev, "; ")}
	}
	for _, m := range []string{"kvm_intel", "kvm_amd"} {
		if _, err := os.Stat(h.sysPath("module", m)); err == nil {
			return virtualization{system: "kvm", role: "host",
				evidence: strings.Join(append(ev, "module "+m+" loaded: it can run KVM guests"), "; ")}
		}
	}
	return virtualization{evidence: strings.Join(append(ev, "no sign of a container or hypervisor"), "; ")}
}

// hypervisorFlag reports whether the first "flags" line of cpuinfo lists
// "hypervisor", which the CPU sets for a guest (x86).
func hypervisorFlag(file string) bool {
	f, err := os.Open(file)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "flags" {
			return strings.Contains(" "+v+" ", " hypervisor ")
		}
	}
	return false
}
