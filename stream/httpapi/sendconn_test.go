package httpapi

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// hangBound bounds a wait that only a bug makes long.
const hangBound = 30 * time.Second

// loopbackPair returns an accepted server socket (send buffer capped small)
// and the client's end, whose receive buffer is small too, so a client
// that does not read fills them quickly.
func loopbackPair(t *testing.T) (server *net.TCPConn, client *net.TCPConn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cc, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	_ = sc.(*net.TCPConn).SetWriteBuffer(16 << 10)
	_ = cc.(*net.TCPConn).SetReadBuffer(4 << 10)
	t.Cleanup(func() { sc.Close(); cc.Close() })
	return sc.(*net.TCPConn), cc.(*net.TCPConn)
}

// writeUntilBacklogged writes chunks through w until the sendConn keeps
// bytes back, in a goroutine bounded by a hang timeout: a Write that
// waited for the client would never return, since the client does not
// read yet. It returns everything written.
func writeUntilBacklogged(t *testing.T, w io.Writer, sc *sendConn) []byte {
	t.Helper()
	var all []byte
	done := make(chan error, 1)
	go func() {
		chunk := bytes.Repeat([]byte("0123456789abcdef"), 256) // 4 KiB
		for i := 0; !sc.backlogged(); i++ {
			chunk[0] = byte('A' + i%26)
			if _, err := w.Write(chunk); err != nil {
				done <- err
				return
			}
			all = append(all, chunk...)
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(hangBound):
		t.Fatal("a write waited for a client that does not read")
	}
	return all
}

// TestSendConnKeepsWhatTheSocketDoesNotTake: writes to a client that does
// not read return at once, keeping the rest; flush times out while the
// client still does not read, and the connection stays failed.
func TestSendConnKeepsWhatTheSocketDoesNotTake(t *testing.T) {
	server, client := loopbackPair(t)
	sc := newSendConn(server)
	if !sc.setNonBlocking() {
		t.Fatal("a TCP connection could not be made non-blocking")
	}
	writeUntilBacklogged(t, sc, sc)
	_ = client // never reads

	err := sc.flush(time.Now().Add(50 * time.Millisecond))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("flush to a client that does not read: %v, want a deadline error", err)
	}
	if _, err := sc.Write([]byte("x")); err == nil {
		t.Fatal("write after a timed-out flush succeeded; the connection must stay failed")
	}
}

// TestSendConnUnderTLSNeverBlocks: with the non-blocking socket under
// crypto/tls (as WrapTLSListener builds it), TLS writes to a client that
// does not read return at once; when the client reads, flush sends the
// rest and the client decrypts every byte in order: TLS never saw a
// timed-out write.
func TestSendConnUnderTLSNeverBlocks(t *testing.T) {
	cert, pool := testCert(t)
	server, client := loopbackPair(t)
	sc := newSendConn(server)
	srvTLS := tls.Server(sc, &tls.Config{Certificates: []tls.Certificate{cert}})
	cliTLS := tls.Client(client, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	hs := make(chan error, 1)
	go func() { hs <- cliTLS.Handshake() }()
	if err := srvTLS.Handshake(); err != nil { // blocking mode: the handshake needs it
		t.Fatal(err)
	}
	if err := <-hs; err != nil {
		t.Fatal(err)
	}
	sc.setNonBlocking()
	sent := writeUntilBacklogged(t, srvTLS, sc)

	got := make(chan []byte, 1)
	go func() {
		b := make([]byte, len(sent))
		_ = cliTLS.SetReadDeadline(time.Now().Add(hangBound))
		n, _ := io.ReadFull(cliTLS, b)
		got <- b[:n]
	}()
	if err := sc.flush(time.Now().Add(hangBound)); err != nil {
		t.Fatalf("flush while the client reads: %v", err)
	}
	if b := <-got; !bytes.Equal(b, sent) {
		t.Fatalf("client decrypted %d of %d bytes, or out of order", len(b), len(sent))
	}
}
