package collectors

import (
	"fmt"
	"strings"
	"testing"
)

// statLine builds a /proc/<pid>/stat line with the fields proc.top reads.
func statLine(pid int, comm string, state byte, utime, stime, threads, start, rss uint64) string {
	// Fields 3..24 of proc(5); the ones not read are plausible constants.
	return fmt.Sprintf("%d (%s) %c 1 %d %d 0 -1 4194560 1500 0 3 0 %d %d 0 0 20 0 %d 0 %d 123456789 %d 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n",
		pid, comm, state, pid, pid, utime, stime, threads, start, rss)
}

func TestParseProcStat(t *testing.T) {
	tests := []struct {
		name   string
		line   string
		want   procStat
		wantOK bool
	}{
		{
			name:   "ordinary process",
			line:   statLine(1234, "nginx", 'S', 150, 50, 4, 98765, 2560),
			want:   procStat{state: 'S', ticks: 200, threads: 4, start: 98765, rssPages: 2560},
			wantOK: true,
		},
		{
			name:   "comm with spaces and parentheses",
			line:   statLine(7, "a) (b c)", 'R', 1, 2, 1, 5, 10),
			want:   procStat{state: 'R', ticks: 3, threads: 1, start: 5, rssPages: 10},
			wantOK: true,
		},
		{
			name:   "kernel worker with a long comm",
			line:   statLine(9, "kworker/u4:1-events_unbound", 'I', 0, 0, 1, 3, 0),
			want:   procStat{state: 'I', threads: 1, start: 3},
			wantOK: true,
		},
		{name: "no comm", line: "1234 S 1 2 3\n"},
		{name: "truncated", line: "1234 (x) S 1 2 3 4 5\n"},
		{name: "non-numeric utime", line: strings.Replace(statLine(1, "x", 'S', 1, 2, 1, 5, 10), " 1 2 0 0 20", " x 2 0 0 20", 1)},
		{name: "empty", line: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseProcStat([]byte(tt.line))
			if ok != tt.wantOK {
				t.Fatalf("ok = %v, want %v", ok, tt.wantOK)
			}
			if !ok {
				return
			}
			comm := tt.line[strings.IndexByte(tt.line, '(')+1 : strings.LastIndexByte(tt.line, ')')]
			if got.name() != comm {
				t.Fatalf("comm = %q, want %q", got.name(), comm)
			}
			got.comm, got.commLen = [64]byte{}, 0
			if got != tt.want {
				t.Fatalf("parseProcStat = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseStatusUID(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		want   uint32
		wantOK bool
	}{
		{"effective uid is the second", "Name:\tsudo\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t1000\t0\t0\t0\nGid:\t1000\t0\t0\t0\n", 0, true},
		{"plain", "Name:\tbash\nUid:\t1000\t1000\t1000\t1000\n", 1000, true},
		{"no Uid line", "Name:\tbash\n", 0, false},
		{"malformed", "Uid:\t1000\n", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseStatusUID([]byte(tt.in))
			if ok != tt.wantOK || got != tt.want {
				t.Fatalf("parseStatusUID = %d, %v; want %d, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestFullProcName(t *testing.T) {
	tests := []struct {
		comm, cmdline, want string
	}{
		{"containerd-shim", "/usr/bin/containerd-shim-runc-v2\x00-namespace\x00k8s.io\x00", "containerd-shim-runc-v2"},
		{"kube-controller", "kube-controller-manager\x00--v=2\x00", "kube-controller-manager"},
		{"systemd-journal", "/lib/systemd/systemd-journald\x00", "systemd-journald"},
		{"nginx: worker p", "nginx: worker process\x00", "nginx: worker p"},
		{"kworker/0:1-eve", "", "kworker/0:1-eve"},
		{"python3.12-conf", "/usr/bin/python3\x00/usr/bin/x\x00", "python3.12-conf"},
	}
	for _, tt := range tests {
		if got := fullProcName(tt.comm, []byte(tt.cmdline)); got != tt.want {
			t.Errorf("fullProcName(%q, %q) = %q, want %q", tt.comm, tt.cmdline, got, tt.want)
		}
	}
}

func TestCountCPULines(t *testing.T) {
	in := "cpu  1 2 3 4\ncpu0 1 2 3 4\ncpu1 1 2 3 4\ncpu12 1 2 3\nintr 5\nctxt 6\ncpufreq x\n"
	if got := countCPULines(strings.NewReader(in)); got != 3 {
		t.Fatalf("countCPULines = %d, want 3", got)
	}
}

func TestProcStateName(t *testing.T) {
	for s, want := range map[byte]string{'R': "running", 'S': "sleeping", 'D': "disk_sleep", 'Z': "zombie",
		'T': "stopped", 't': "tracing_stop", 'I': "idle", 'X': "dead", '?': "unknown"} {
		if got := procStateName(s); got != want {
			t.Errorf("procStateName(%q) = %q, want %q", s, got, want)
		}
	}
}
