package httpapi

import (
	"bytes"
	"io"
	"net"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

// countingConn records each Write call, standing in for the socket.
type countingConn struct {
	net.Conn // nil: only Write and Close are used
	mu       sync.Mutex
	writes   [][]byte
	closed   bool
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes = append(c.writes, append([]byte(nil), p...))
	return len(p), nil
}

func (c *countingConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

func TestCorkSendsHeldWritesInOneWrite(t *testing.T) {
	under := &countingConn{}
	c := &corkConn{Conn: under}

	c.Write([]byte("direct"))
	c.Cork()
	for _, s := range []string{"one ", "two ", "three"} {
		if n, err := c.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("corked Write = %d, %v", n, err)
		}
	}
	if got := len(under.writes); got != 1 {
		t.Fatalf("%d writes reached the socket while corked, want only the uncorked one", got)
	}
	if err := c.Uncork(); err != nil {
		t.Fatal(err)
	}
	if len(under.writes) != 2 || string(under.writes[1]) != "one two three" {
		t.Fatalf("writes = %q, want [direct, one two three]", under.writes)
	}
	if err := c.Uncork(); err != nil || len(under.writes) != 2 {
		t.Fatalf("an empty uncork wrote something: %q", under.writes)
	}
	c.Write([]byte("after"))
	if len(under.writes) != 3 {
		t.Fatalf("uncorked write held back: %q", under.writes)
	}
}

func TestCorkFlushesEarlyWhenLarge(t *testing.T) {
	under := &countingConn{}
	c := &corkConn{Conn: under}
	c.Cork()
	chunk := bytes.Repeat([]byte("x"), 16<<10)
	for i := 0; i < 5; i++ { // 80 KiB > corkFlushAt
		c.Write(chunk)
	}
	if len(under.writes) != 1 || len(under.writes[0]) != corkFlushAt {
		t.Fatalf("got %d writes, want one early flush of %d bytes", len(under.writes), corkFlushAt)
	}
	c.Uncork()
	total := 0
	for _, w := range under.writes {
		total += len(w)
	}
	if total != 5*len(chunk) {
		t.Fatalf("%d bytes written, want %d", total, 5*len(chunk))
	}
}

func TestCorkCloseFlushesHeldWrites(t *testing.T) {
	under := &countingConn{}
	c := &corkConn{Conn: under}
	c.Cork()
	c.Write([]byte("close frame"))
	c.Close()
	if !under.closed || len(under.writes) != 1 || string(under.writes[0]) != "close frame" {
		t.Fatalf("closed=%v writes=%q: held bytes must go out before the close", under.closed, under.writes)
	}
}

func TestWrapListenerCapsSendBuffer(t *testing.T) {
	for _, tt := range []struct {
		sndbuf, wantMax int
	}{
		{DefaultSendBuffer, 2 * DefaultSendBuffer}, // Linux doubles the value set
		{16 << 10, 2 * (16 << 10)},
	} {
		raw, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l := WrapListener(raw, tt.sndbuf)
		done := make(chan int, 1)
		go func() {
			c, err := l.Accept()
			if err != nil {
				done <- -1
				return
			}
			defer c.Close()
			if _, ok := c.(*corkConn); !ok {
				done <- -2
				return
			}
			done <- sendBufferOf(t, c.(*corkConn).Conn)
		}()
		cc, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		got := <-done
		cc.Close()
		l.Close()
		if got <= 0 || got > tt.wantMax {
			t.Errorf("sndbuf %d: SO_SNDBUF = %d, want 1..%d", tt.sndbuf, got, tt.wantMax)
		}
	}
}

func sendBufferOf(t *testing.T, c net.Conn) int {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -3
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -4
	}
	v := -5
	rc.Control(func(fd uintptr) {
		v, err = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF)
	})
	if err != nil {
		t.Errorf("getsockopt: %v", err)
	}
	return v
}

// TestCorkConcurrentWritesKeepWholeFrames: a write from another goroutine
// while corked (a ping) lands between whole writes, never inside one.
func TestCorkConcurrentWritesKeepWholeFrames(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	c := &corkConn{Conn: a}
	got := make(chan []byte, 1)
	go func() {
		all, _ := io.ReadAll(b)
		got <- all
	}()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; i < 100; i++ {
			c.Cork()
			c.Write([]byte("[AAAA]"))
			c.Write([]byte("[BBBB]"))
			c.Uncork()
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < 100; i++ {
			c.Write([]byte("[PP]"))
		}
	}()
	wg.Wait()
	a.SetWriteDeadline(time.Now().Add(time.Second))
	a.Close()
	all := <-got
	// Every byte belongs to a whole "[...]" unit.
	for i := 0; i < len(all); {
		j := bytes.IndexByte(all[i:], ']')
		if all[i] != '[' || j < 0 {
			t.Fatalf("torn write at %d: %q", i, all[i:min(len(all), i+20)])
		}
		unit := string(all[i : i+j+1])
		if unit != "[AAAA]" && unit != "[BBBB]" && unit != "[PP]" {
			t.Fatalf("torn write at %d: %q", i, unit)
		}
		i += j + 1
	}
	if len(all) != 100*(6+6+4) {
		t.Fatalf("%d bytes arrived, want %d", len(all), 100*16)
	}
}

// deadlineConn records the deadlines set on it, standing in for the socket.
type deadlineConn struct {
	net.Conn // nil: only the deadline setters are used
	mu       sync.Mutex
	write    []time.Time // SetWriteDeadline calls
	both     []time.Time // SetDeadline calls
}

func (c *deadlineConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.write = append(c.write, t)
	return nil
}

func (c *deadlineConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.both = append(c.both, t)
	return nil
}

// The corking connection passes a write deadline on only when it differs
// from the one in force, counting one set through SetDeadline.
func TestCorkSkipsUnchangedWriteDeadline(t *testing.T) {
	under := &deadlineConn{}
	c := &corkConn{Conn: under}
	t1 := time.Now().Add(10 * time.Second)
	t2 := t1.Add(time.Second)
	steps := []struct {
		name      string
		set       func() error
		wantWrite int // SetWriteDeadline calls that reached the socket so far
	}{
		{"no deadline on a new connection", func() error { return c.SetWriteDeadline(time.Time{}) }, 0},
		{"first deadline", func() error { return c.SetWriteDeadline(t1) }, 1},
		{"same again (next frame of a batch)", func() error { return c.SetWriteDeadline(t1) }, 1},
		{"same instant, other Location", func() error { return c.SetWriteDeadline(t1.UTC()) }, 1},
		{"moved", func() error { return c.SetWriteDeadline(t2) }, 2},
		{"both deadlines set to t1", func() error { return c.SetDeadline(t1) }, 2},
		{"t1 again after SetDeadline", func() error { return c.SetWriteDeadline(t1) }, 2},
		{"back to t2", func() error { return c.SetWriteDeadline(t2) }, 3},
		{"cleared", func() error { return c.SetWriteDeadline(time.Time{}) }, 4},
	}
	for _, st := range steps {
		if err := st.set(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got := len(under.write); got != st.wantWrite {
			t.Fatalf("%s: %d write deadlines reached the socket, want %d", st.name, got, st.wantWrite)
		}
	}
	wantWrite, wantBoth := []time.Time{t1, t2, t2, {}}, []time.Time{t1}
	if !slices.EqualFunc(under.write, wantWrite, time.Time.Equal) || !slices.EqualFunc(under.both, wantBoth, time.Time.Equal) {
		t.Fatalf("socket saw write deadlines %v and deadlines %v, want %v and %v", under.write, under.both, wantWrite, wantBoth)
	}
}

// A deadline set while a write is blocked (a close frame's short deadline,
// while the writer is stuck on a client that stopped reading) reaches the
// socket at once and cuts that write.
func TestCorkDeadlineCutsABlockedWrite(t *testing.T) {
	a, b := net.Pipe() // nobody reads b: writes to a block
	defer b.Close()
	defer a.Close()
	c := &corkConn{Conn: a}
	if err := c.SetWriteDeadline(time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	c.Cork()
	c.Write([]byte("frame"))
	res := make(chan error, 1)
	go func() { res <- c.Uncork() }()
	// Wait until the flush holds the connection's write lock.
	deadline := time.Now().Add(10 * time.Second)
	for c.mu.TryLock() {
		c.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatal("the flush never started")
		}
		time.Sleep(time.Millisecond) // polling interval
	}
	set := make(chan error, 1)
	go func() { set <- c.SetWriteDeadline(time.Now()) }()
	select {
	case err := <-set:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("SetWriteDeadline waited for the blocked write")
	}
	select {
	case err := <-res:
		if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
			t.Fatalf("blocked write ended with %v, want a timeout", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the blocked write was not cut by the new deadline")
	}
}
