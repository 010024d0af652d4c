package collectors

import (
	"path/filepath"
	"strings"
	"testing"
)

// Container ids as engines write them: 64 hex digits.
const (
	dockerID = "4f1c2a9d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f"
	podID    = "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b"
)

// cgroupV1Root is /proc/1/cgroup of a cgroup v1 machine's init, or of any
// process in a private cgroup namespace: every hierarchy at its root.
const cgroupV1Root = "9:name=systemd:/\n8:pids:/\n4:memory:/\n1:cpu:/\n0::/\n"

const (
	cpuinfoGuest = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu vme de pse tsc msr pae hypervisor lahf_lm\n\nprocessor\t: 1\n"
	cpuinfoMetal = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R)\nflags\t\t: fpu vme de pse tsc msr pae vmx lahf_lm\n"
	// rootExt4 is a mountinfo whose / is a block device's file system.
	rootExt4 = "26 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard\n21 26 0:20 / /proc rw,relatime - proc proc rw\n"
	// rootOverlay is a container's / without an engine's path in it.
	rootOverlay = "500 450 0:60 / / rw,relatime - overlay overlay rw,lowerdir=/l/1:/l/2,upperdir=/u/diff,workdir=/u/work\n"
)

// TestDetectVirtualization decides from fixtures of /proc, /sys and the
// root filesystem, one per kind of machine met in practice, and checks
// that the evidence names what decided.
func TestDetectVirtualization(t *testing.T) {
	for _, tc := range []struct {
		name     string
		proc     map[string]string
		sys      map[string]string
		root     map[string]string // marker files
		hostProc bool              // HOST_PROC set: a container watching its host
		noRoot   bool              // HOST_ROOT unset
		system   string
		role     string
		evidence []string // each is in the evidence
		not      []string // none is
	}{
		{
			// This machine: a Firecracker microVM whose root filesystem
			// came from a Docker image. gopsutil said "docker".
			name: "Firecracker VM with /.dockerenv",
			proc: map[string]string{
				"1/cgroup":    cgroupV1Root,
				"self/cgroup": "9:name=systemd:/\n4:memory:/process_api/afa6c666f9f1de37db180da51de77c39\n0::/\n",
				"1/mountinfo": rootExt4, "self/mountinfo": rootExt4,
				"1/sched": "process_api (1, #threads: 18)\n-------\n",
				"cpuinfo": cpuinfoGuest,
			},
			sys:    map[string]string{"devices/system/clocksource/clocksource0/available_clocksource": "kvm-clock \n"},
			root:   map[string]string{".dockerenv": ""},
			system: "kvm", role: "guest",
			evidence: []string{"clocksource: kvm-clock", "cpuinfo: hypervisor flag", "no DMI", "/.dockerenv ignored: no other sign of a container"},
		},
		{
			name: "Docker, cgroup v1",
			proc: map[string]string{
				"1/cgroup": "12:memory:/docker/" + dockerID + "\n1:cpu:/docker/" + dockerID + "\n",
				"cpuinfo":  cpuinfoGuest,
			},
			root:   map[string]string{".dockerenv": ""},
			system: "docker", role: "guest",
			evidence: []string{"cgroup of PID 1: /docker/4f1c2a9d8e7b…"},
		},
		{
			// cgroup v2 gives a container its own cgroup namespace: its
			// cgroup reads "/". The mounts still show the engine.
			name: "Docker on cgroup v2, in a KVM VM",
			proc: map[string]string{
				"1/cgroup": "0::/\n", "self/cgroup": "0::/\n",
				"1/mountinfo": "1000 900 0:70 / / rw,relatime master:1 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/ABC:/var/lib/docker/overlay2/l/DEF,upperdir=/var/lib/docker/overlay2/0123abcd/diff,workdir=/var/lib/docker/overlay2/0123abcd/work\n" +
					"1010 1000 8:1 /var/lib/docker/containers/" + dockerID + "/hostname /etc/hostname rw,relatime - ext4 /dev/sda1 rw\n",
				"cpuinfo": cpuinfoGuest,
			},
			sys:    map[string]string{"class/dmi/id/sys_vendor": "QEMU\n"},
			root:   map[string]string{".dockerenv": ""},
			system: "docker", role: "guest",
			evidence: []string{"mounts of PID 1: / is an overlay with upperdir /var/lib/docker/overlay2/0123abcd/diff"},
		},
		{
			// Docker with its data root on a file system of its own: the
			// overlay's path no longer says docker, /etc/hostname's does.
			name: "Docker on cgroup v2, data root on its own disk",
			proc: map[string]string{
				"1/cgroup": "0::/\n",
				"1/mountinfo": rootOverlay +
					"510 500 8:17 /containers/" + dockerID + "/hostname /etc/hostname rw,relatime - xfs /dev/sdb1 rw\n",
			},
			system: "docker", role: "guest",
			evidence: []string{"/etc/hostname is /containers/4f1c2a9d8e7b…/hostname"},
		},
		{
			name: "a PID namespace seen in /proc/1/sched, named by /.dockerenv",
			proc: map[string]string{
				"1/cgroup": "0::/\n", "1/mountinfo": rootOverlay,
				"1/sched": "sh (48213, #threads: 1)\n-------\n",
			},
			root:   map[string]string{".dockerenv": ""},
			system: "docker", role: "guest",
			evidence: []string{"/proc/1/sched: PID 1 is PID 48213 outside its namespace", "/.dockerenv"},
			not:      []string{"ignored"},
		},
		{
			name: "a PID namespace without a marker file",
			proc: map[string]string{
				"1/cgroup": "0::/\n", "1/mountinfo": rootOverlay,
				"1/sched": "tini (7, #threads: 1)\n",
			},
			system: "", role: "guest",
			evidence: []string{"PID 1 is PID 7"},
		},
		{
			name: "Kubernetes pod",
			proc: map[string]string{
				"1/cgroup": "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1d2e.slice/cri-containerd-" + podID + ".scope\n",
			},
			system: "kubernetes", role: "guest",
			evidence: []string{"cgroup of PID 1: /kubepods.slice/", "cri-containerd-9a8b7c6d5e4f….scope"},
		},
		{
			name: "Podman, by PID 1's environment",
			proc: map[string]string{
				"1/cgroup": "0::/\n", "1/environ": "PATH=/usr/bin\x00container=podman\x00HOME=/\x00",
			},
			root:   map[string]string{"run/.containerenv": ""},
			system: "podman", role: "guest",
			evidence: []string{"environment of PID 1: container=podman"},
		},
		{
			name: "rootless Podman, by its cgroup",
			proc: map[string]string{
				"self/cgroup": "0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + podID + ".scope/container\n",
			},
			system: "podman", role: "guest",
			evidence: []string{"cgroup of this process: "},
		},
		{
			name:   "LXC",
			proc:   map[string]string{"1/cgroup": "0::/lxc.payload.web1\n"},
			system: "lxc", role: "guest",
		},
		{
			// A service of a systemd host that runs Docker: "docker" in
			// a unit name is not a container.
			name: "QEMU/KVM VM running dockerd, opsdash as a service",
			proc: map[string]string{
				"1/cgroup": "0::/init.scope\n", "self/cgroup": "0::/system.slice/opsdash.service\n",
				"1/mountinfo": rootExt4 + "300 26 0:80 / /var/lib/docker/overlay2/x/merged rw - overlay overlay rw,upperdir=/var/lib/docker/overlay2/x/diff\n",
				"cpuinfo":     cpuinfoGuest,
			},
			sys: map[string]string{
				"class/dmi/id/sys_vendor":                                       "QEMU\n",
				"class/dmi/id/product_name":                                     "Standard PC (Q35 + ICH9, 2009)\n",
				"devices/system/clocksource/clocksource0/available_clocksource": "kvm-clock tsc hpet acpi_pm \n",
			},
			system: "kvm", role: "guest",
			evidence: []string{"DMI sys_vendor: QEMU", "clocksource: kvm-clock"},
		},
		{
			name:   "QEMU without KVM (emulated)",
			proc:   map[string]string{"cpuinfo": cpuinfoGuest},
			sys:    map[string]string{"class/dmi/id/sys_vendor": "QEMU\n", "devices/system/clocksource/clocksource0/available_clocksource": "tsc acpi_pm \n"},
			system: "qemu", role: "guest",
		},
		{
			name:   "VMware",
			proc:   map[string]string{"1/cgroup": "0::/init.scope\n", "cpuinfo": cpuinfoGuest},
			sys:    map[string]string{"class/dmi/id/sys_vendor": "VMware, Inc.\n", "class/dmi/id/product_name": "VMware Virtual Platform\n"},
			system: "vmware", role: "guest",
			evidence: []string{"DMI sys_vendor: VMware, Inc."},
		},
		{
			name: "Azure (Hyper-V)",
			proc: map[string]string{"cpuinfo": cpuinfoGuest},
			sys: map[string]string{
				"class/dmi/id/sys_vendor": "Microsoft Corporation\n", "class/dmi/id/product_name": "Virtual Machine\n",
				"devices/system/clocksource/clocksource0/available_clocksource": "hyperv_clocksource_tsc_page acpi_pm \n",
			},
			system: "hyperv", role: "guest",
		},
		{
			name:   "a Microsoft laptop is not Hyper-V",
			proc:   map[string]string{"cpuinfo": cpuinfoMetal},
			sys:    map[string]string{"class/dmi/id/sys_vendor": "Microsoft Corporation\n", "class/dmi/id/product_name": "Surface Laptop 5\n"},
			system: "", role: "",
			evidence: []string{"DMI sys_vendor: Microsoft Corporation (not a hypervisor's)", "no sign of a container or hypervisor"},
		},
		{
			name:   "bare metal running KVM guests",
			proc:   map[string]string{"1/cgroup": "0::/init.scope\n", "cpuinfo": cpuinfoMetal},
			sys:    map[string]string{"class/dmi/id/sys_vendor": "Dell Inc.\n", "module/kvm_intel/parameters/nested": "Y\n"},
			system: "kvm", role: "host",
			evidence: []string{"module kvm_intel loaded"},
		},
		{
			name:   "Xen dom0",
			proc:   map[string]string{"xen/capabilities": "control_d\n", "cpuinfo": cpuinfoGuest},
			sys:    map[string]string{"hypervisor/type": "xen\n"},
			system: "xen", role: "host",
		},
		{
			name:   "Xen guest without DMI",
			proc:   map[string]string{"xen/capabilities": "\n", "cpuinfo": cpuinfoGuest},
			sys:    map[string]string{"hypervisor/type": "xen\n"},
			system: "xen", role: "guest",
			evidence: []string{"/sys/hypervisor/type: xen"},
		},
		{
			// HOST_PROC is the host's procfs: this process's own cgroup
			// there is the container's and does not count, nor does the
			// container's /.dockerenv without HOST_ROOT.
			name: "watching a KVM host from a Docker container",
			proc: map[string]string{
				"1/cgroup": "0::/init.scope\n", "self/cgroup": "0::/system.slice/docker-" + dockerID + ".scope\n",
				"1/mountinfo": rootExt4, "cpuinfo": cpuinfoGuest,
			},
			sys:      map[string]string{"class/dmi/id/sys_vendor": "QEMU\n", "class/dmi/id/product_name": "KVM Virtual Machine\n"},
			hostProc: true, noRoot: true,
			system: "kvm", role: "guest",
			evidence: []string{"DMI product_name: KVM Virtual Machine", "cpuinfo: hypervisor flag"},
			not:      []string{"docker", "ignored"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			h := hostPaths{proc: filepath.Join(dir, "proc"), sys: filepath.Join(dir, "sys"), etc: filepath.Join(dir, "etc"), procFromEnv: tc.hostProc}
			writeTree(t, h.proc, tc.proc)
			writeTree(t, h.sys, tc.sys)
			root := filepath.Join(dir, "root")
			writeTree(t, root, tc.root)
			if tc.noRoot {
				root = ""
			}
			v := detectVirtualization(h, root)
			if v.system != tc.system || v.role != tc.role {
				t.Errorf("system %q role %q, want %q %q (evidence %q)", v.system, v.role, tc.system, tc.role, v.evidence)
			}
			if v.evidence == "" {
				t.Error("no evidence given")
			}
			for _, e := range tc.evidence {
				if !strings.Contains(v.evidence, e) {
					t.Errorf("evidence %q does not say %q", v.evidence, e)
				}
			}
			for _, e := range tc.not {
				if strings.Contains(v.evidence, e) {
					t.Errorf("evidence %q says %q", v.evidence, e)
				}
			}
		})
	}
}
