package collectors

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

const tcpHeader = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"

func tcpLine(st string) string {
	return "   0: 0100007F:1F90 0100007F:B2C4 " + st + " 00000000:00000000 00:00000000 00000000     0        0 1002 1 000000000756b4ac 100 0 0 10 0\n"
}

func TestCountTCPStates(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    NetConns
		wantErr bool
	}{
		{name: "header only", in: tcpHeader, want: NetConns{}},
		{name: "empty file", in: "", want: NetConns{}},
		{
			name: "every state",
			in: tcpHeader + tcpLine("01") + tcpLine("02") + tcpLine("03") + tcpLine("04") + tcpLine("05") +
				tcpLine("06") + tcpLine("07") + tcpLine("08") + tcpLine("09") + tcpLine("0A") + tcpLine("0B"),
			want: NetConns{Established: 1, SynSent: 1, SynRecv: 1, FinWait1: 1, FinWait2: 1, TimeWait: 1,
				Close: 1, CloseWait: 1, LastAck: 1, Listen: 1, Closing: 1, Total: 11},
		},
		{
			name: "lower-case hex and NEW_SYN_RECV",
			in:   tcpHeader + tcpLine("0a") + tcpLine("0c"),
			want: NetConns{Listen: 1, SynRecv: 1, Total: 2},
		},
		{
			name: "last line without newline",
			in:   tcpHeader + tcpLine("01") + strings.TrimSuffix(tcpLine("01"), "\n"),
			want: NetConns{Established: 2, Total: 2},
		},
		{
			name: "blank lines are ignored",
			in:   tcpHeader + tcpLine("06") + "\n   \n",
			want: NetConns{TimeWait: 1, Total: 1},
		},
		{
			name: "unknown state counts in total only",
			in:   tcpHeader + tcpLine("0F"),
			want: NetConns{Total: 1},
		},
		{name: "state not hex", in: tcpHeader + tcpLine("ZZ"), wantErr: true},
		{name: "line too short", in: tcpHeader + "   0: 0100007F:1F90\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got NetConns
			err := countTCPStates(strings.NewReader(tt.in), &got)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if !tt.wantErr && got != tt.want {
				t.Fatalf("counts = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func collectNetConns(t *testing.T, c Collector) NetConns {
	t.Helper()
	samples, err := c.Collect(context.Background())
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	if len(samples) != 1 || samples[0].Topic != "h.net.conns" {
		t.Fatalf("Collect returned %+v, want one h.net.conns sample", samples)
	}
	return samples[0].Data.(NetConns)
}

func TestNetConnsReadsTCPAndTCP6UnderHostProc(t *testing.T) {
	t.Setenv("HOST_PROC", filepath.Join("testdata", "io", "proc"))
	got := collectNetConns(t, NewNetConns(Config{HostID: "h"}))
	// testdata/io/proc/net/tcp + tcp6.
	want := NetConns{Established: 3 + 2, SynSent: 1, SynRecv: 1, FinWait1: 1, FinWait2: 1, TimeWait: 2,
		Close: 1, CloseWait: 1, LastAck: 1, Listen: 2 + 1, Closing: 1, Total: 14 + 4}
	if got != want {
		t.Fatalf("counts = %+v, want %+v", got, want)
	}
}

func TestNetConnsPrefersHostInitNetworkNamespace(t *testing.T) {
	// $HOST_PROC/1/net is the host's namespace; $HOST_PROC/net would be
	// the container's own. tcp6 is absent there (IPv6 disabled).
	t.Setenv("HOST_PROC", filepath.Join("testdata", "io", "hostproc"))
	got := collectNetConns(t, NewNetConns(Config{HostID: "h"}))
	want := NetConns{Listen: 1, Established: 5, Total: 6}
	if got != want {
		t.Fatalf("counts = %+v, want %+v from hostproc/1/net/tcp", got, want)
	}
}

func TestNetConnsFailsWithoutTCPTable(t *testing.T) {
	t.Setenv("HOST_PROC", t.TempDir())
	if _, err := NewNetConns(Config{HostID: "h"}).Collect(context.Background()); err == nil {
		t.Fatal("Collect without a tcp table succeeded, want an error")
	}
}
