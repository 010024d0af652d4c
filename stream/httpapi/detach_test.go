package httpapi_test

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// maskedText is a client's masked text frame (RFC 6455 §5.3) of payload.
func maskedText(payload string) []byte {
	key := [4]byte{1, 2, 3, 4}
	b := []byte{0x81, 0x80 | byte(len(payload))}
	b = append(b, key[:]...)
	for i := 0; i < len(payload); i++ {
		b = append(b, payload[i]^key[i%4])
	}
	return b
}

// readServerFrame reads one unmasked server frame's payload.
func readServerFrame(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		t.Fatal(err)
	}
	n := int(h[1] & 0x7f)
	if n == 126 {
		var ext [2]byte
		if _, err := io.ReadFull(r, ext[:]); err != nil {
			t.Fatal(err)
		}
		n = int(binary.BigEndian.Uint16(ext[:]))
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		t.Fatal(err)
	}
	return string(p)
}

// TestPipelinedFrameAfterHandshake: a client that sends a frame in the same
// packet as its upgrade request (fasthttp then hands the connection its
// request reader) keeps a working connection, also after other connections
// have come and gone: such a connection stays on its upgrade handler's
// goroutine, so fasthttp never takes that reader back for reuse while the
// connection reads from it.
func TestPipelinedFrameAfterHandshake(t *testing.T) {
	e := newEnv(t)
	conn, err := net.DialTimeout("tcp", e.addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := "GET /ws HTTP/1.1\r\nHost: " + e.addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := conn.Write(append([]byte(req), maskedText(`{"type":"ping","id":"a"}`)...)); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(wait))
	r := bufio.NewReader(conn)
	resp, err := http.ReadResponse(r, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	if f := readServerFrame(t, r); !strings.Contains(f, `"hello"`) {
		t.Fatalf("first frame %s", f)
	}
	if f := readServerFrame(t, r); !strings.Contains(f, `"pong","id":"a"`) {
		t.Fatalf("pipelined ping answered with %s", f)
	}
	for i := 0; i < 20; i++ { // other connections take and return pooled readers
		c := e.dialHello(t)
		c.send(`{"type":"ping","id":"x"}`)
		c.nextOf("pong", nil)
		c.c.Close()
	}
	if _, err := conn.Write(maskedText(`{"type":"ping","id":"b"}`)); err != nil {
		t.Fatal(err)
	}
	if f := readServerFrame(t, r); !strings.Contains(f, `"pong","id":"b"`) {
		t.Fatalf("second ping answered with %s", f)
	}
}
