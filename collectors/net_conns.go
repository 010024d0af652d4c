package collectors

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// NetConns is the payload of <host>.net.conns: the number of TCP sockets
// (IPv4 and IPv6) in each state. Every field is a count of sockets.
type NetConns struct {
	Established int `json:"established"`
	SynSent     int `json:"syn_sent"`
	SynRecv     int `json:"syn_recv"`
	FinWait1    int `json:"fin_wait1"`
	FinWait2    int `json:"fin_wait2"`
	TimeWait    int `json:"time_wait"`
	Close       int `json:"close"`
	CloseWait   int `json:"close_wait"`
	LastAck     int `json:"last_ack"`
	Listen      int `json:"listen"`
	Closing     int `json:"closing"`
	// Total counts every socket listed, listening ones included.
	Total int `json:"total"`
}

// netConnsCollector produces <host>.net.conns.
type netConnsCollector struct {
	spec
	topic string
	dir   string // the /proc/net directory to read tcp and tcp6 from

	mu  sync.Mutex
	buf *bufio.Reader // reused: a busy server's tcp table is megabytes
}

// NewNetConns returns the collector of <host>.net.conns: TCP sockets by
// state, counted from the st column of /proc/net/tcp and tcp6 (of
// the host's network namespace when HOST_PROC is set, see
// hostPaths.procNetDir). This costs one read of those tables, not a walk of
// every process's file descriptors.
func NewNetConns(cfg Config) Collector { return buildAlways("net.conns", cfg) }

func newNetConns(cfg Config, s spec) *netConnsCollector {
	return &netConnsCollector{
		spec:  s,
		topic: cfg.HostID + ".net.conns",
		dir:   hostPathsFromEnv().procNetDir(),
		buf:   bufio.NewReaderSize(nil, 64<<10),
	}
}

func (c *netConnsCollector) Topics() []TopicInfo {
	return []TopicInfo{c.declare(c.topic, "TCP sockets (IPv4 and IPv6) by state: established, time_wait, listen, ...")}
}

// Collect counts the sockets of tcp and tcp6. A missing tcp6 (IPv6 disabled)
// is not an error; a missing tcp is.
func (c *netConnsCollector) Collect(ctx context.Context) ([]Sample, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n NetConns
	for _, name := range []string{"tcp", "tcp6"} {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		err := c.countFile(filepath.Join(c.dir, name), &n)
		if errors.Is(err, fs.ErrNotExist) && name == "tcp6" {
			continue
		}
		if err != nil {
			return nil, err
		}
	}
	return []Sample{{Topic: c.topic, Time: time.Now(), Data: n}}, nil
}

func (c *netConnsCollector) countFile(name string, n *NetConns) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	c.buf.Reset(f)
	defer c.buf.Reset(nil) // do not keep the file reachable
	if err := countTCPStates(c.buf, n); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// TCP states as the kernel numbers them (include/net/tcp_states.h).
const (
	tcpEstablished = 0x01
	tcpSynSent     = 0x02
	tcpSynRecv     = 0x03
	tcpFinWait1    = 0x04
	tcpFinWait2    = 0x05
	tcpTimeWait    = 0x06
	tcpClose       = 0x07
	tcpCloseWait   = 0x08
	tcpLastAck     = 0x09
	tcpListen      = 0x0A
	tcpClosing     = 0x0B
	tcpNewSynRecv  = 0x0C
)

// countTCPStates adds the sockets of one /proc/net/tcp or tcp6 table to n,
// by the st column (the fourth, in hex):
//
//	sl  local_address rem_address   st tx_queue ...
//	 0: 00000000:1F90 00000000:0000 0A 00000000:00000000 ...
//
// The header line is skipped. A line too short to hold the column or with a
// state that is not hex is an error: the table's format is not the one
// this parser knows.
func countTCPStates(r io.Reader, n *NetConns) error {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReader(r)
	}
	first := true
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return errors.New("line longer than the read buffer")
		}
		if len(line) > 0 {
			if first {
				first = false // the header
			} else if err := countTCPLine(line, n); err != nil {
				return err
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// countTCPLine counts one socket line.
func countTCPLine(line []byte, n *NetConns) error {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return nil
	}
	st := tcpField(line, 3)
	if len(st) != 2 {
		return fmt.Errorf("no state column in %q", line)
	}
	hi, ok1 := tcpUnhex(st[0])
	lo, ok2 := tcpUnhex(st[1])
	if !ok1 || !ok2 {
		return fmt.Errorf("state %q is not hex", st)
	}
	switch hi<<4 | lo {
	case tcpEstablished:
		n.Established++
	case tcpSynSent:
		n.SynSent++
	case tcpSynRecv, tcpNewSynRecv:
		// Requests not yet accepted are listed as SYN_RECV; count
		// NEW_SYN_RECV the same should a kernel ever show it.
		n.SynRecv++
	case tcpFinWait1:
		n.FinWait1++
	case tcpFinWait2:
		n.FinWait2++
	case tcpTimeWait:
		n.TimeWait++
	case tcpClose:
		n.Close++
	case tcpCloseWait:
		n.CloseWait++
	case tcpLastAck:
		n.LastAck++
	case tcpListen:
		n.Listen++
	case tcpClosing:
		n.Closing++
	}
	n.Total++
	return nil
}

// tcpField returns the i-th (from 0) space-separated field of line, or nil.
func tcpField(line []byte, i int) []byte {
	for {
		for len(line) > 0 && line[0] == ' ' {
			line = line[1:]
		}
		if len(line) == 0 {
			return nil
		}
		end := bytes.IndexByte(line, ' ')
		if end < 0 {
			end = len(line)
		}
		if i == 0 {
			return line[:end]
		}
		i--
		line = line[end:]
	}
}

func tcpUnhex(b byte) (byte, bool) {
	switch {
	case '0' <= b && b <= '9':
		return b - '0', true
	case 'a' <= b && b <= 'f':
		return b - 'a' + 10, true
	case 'A' <= b && b <= 'F':
		return b - 'A' + 10, true
	}
	return 0, false
}
