package collectors

import (
	"os"
	"path/filepath"
)

// hostPaths locates the host's /proc, /sys and /etc the way gopsutil does:
// the HOST_PROC, HOST_SYS and HOST_ETC environment variables when set (a
// container watching its host, e.g. HOST_PROC=/host/proc), else /proc, /sys
// and /etc. Collectors that read files themselves use it so that they follow
// the same bind mounts as the gopsutil calls beside them, and tests point it
// at fixtures.
type hostPaths struct {
	proc, sys, etc string
	// procFromEnv is true when HOST_PROC was set, i.e. proc is (probably)
	// the host's procfs seen from a container; see procNetDir.
	procFromEnv bool
}

// hostPathsFromEnv reads HOST_PROC, HOST_SYS and HOST_ETC.
func hostPathsFromEnv() hostPaths {
	h := hostPaths{
		proc: os.Getenv("HOST_PROC"),
		sys:  os.Getenv("HOST_SYS"),
		etc:  os.Getenv("HOST_ETC"),
	}
	h.procFromEnv = h.proc != ""
	if h.proc == "" {
		h.proc = "/proc"
	}
	if h.sys == "" {
		h.sys = "/sys"
	}
	if h.etc == "" {
		h.etc = "/etc"
	}
	return h
}

func (h hostPaths) procPath(elem ...string) string {
	return filepath.Join(append([]string{h.proc}, elem...)...)
}

func (h hostPaths) sysPath(elem ...string) string {
	return filepath.Join(append([]string{h.sys}, elem...)...)
}

func (h hostPaths) etcPath(elem ...string) string {
	return filepath.Join(append([]string{h.etc}, elem...)...)
}

// procNetDir returns the /proc/net directory whose counters net.io and
// net.conns read.
//
// /proc/net is a link to /proc/self/net: it shows the network namespace of
// the process that reads it, whatever procfs it is found in. A container
// with its own network namespace therefore sees its own eth0 in
// $HOST_PROC/net/dev, not the host's interfaces. When HOST_PROC is set, the
// host's init process is visible as $HOST_PROC/1 and $HOST_PROC/1/net shows
// the host's network namespace, so that is preferred: the host's traffic is
// then reported without host networking. If it cannot be read (procfs
// mounted with hidepid, or HOST_PROC is not the host's procfs), the reader's
// own namespace is used, which is the host's only with host networking.
func (h hostPaths) procNetDir() string {
	if h.procFromEnv {
		dir := h.procPath("1", "net")
		if _, err := os.Stat(filepath.Join(dir, "dev")); err == nil {
			return dir
		}
	}
	return h.procPath("net")
}
