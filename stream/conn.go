package stream

// Frame is one frame handed to a Conn.
type Frame struct {
	// Type is "update", "status" or "reply" (hello, subscribed,
	// unsubscribed, topics, pong, error).
	Type string
	// Topic is set for update and status frames.
	Topic string
	// Seq is set for update frames.
	Seq uint64
	// JSON is the complete JSON object of the WebSocket frame, on one line.
	// It is shared between sessions: read-only, and not to be kept after
	// WriteFrames returns unless copied.
	JSON []byte
}

// Conn is the write side of one client's transport (WebSocket or SSE),
// implemented at the edge.
type Conn interface {
	// WriteFrames sends frames in order with as few write syscalls as it can
	// (one flush per call), each frame its own WebSocket text message / SSE
	// event. It returns an error if the transport failed. It is called by
	// a flush loop that serves many sessions (flush.go), one call at a time
	// per session, and frames are not touched after it returns. It should
	// not wait for the client: a Conn over a socket implements
	// NonBlockingConn, keeping what the socket cannot take at once.
	WriteFrames(frames []Frame) error
	// Close ends the transport with a WebSocket close code and reason; SSE
	// ends the stream. Safe to call more than once and concurrently with
	// WriteFrames.
	Close(code int, reason string) error
}

// NonBlockingConn is a Conn whose WriteFrames never waits for the client:
// bytes the socket does not take at once are kept by the Conn (bounded: one
// WriteFrames call's worth, whose size the session bounds, plus control
// frames) and sent as the client reads. While it holds such bytes the
// session is parked: no flush loop writes to it, and newer values conflate
// in its mailbox, until WaitWritable returns.
type NonBlockingConn interface {
	Conn
	// Backlogged reports whether bytes of earlier writes still wait for
	// the socket.
	Backlogged() bool
	// WaitWritable blocks until those bytes are sent (nil), the write
	// timeout passes or the transport fails (an error: the session closes
	// with CloseWriteTimeout), or the conn is closed. It runs on a
	// goroutine of the parked session's own, never on a flush loop.
	WaitWritable() error
}

// CloseWriteTimeout is the application close code of a session whose writes
// failed or stayed stuck past the write deadline.
const CloseWriteTimeout = 4008

// CloseRateLimit is the close code Handle asks for when a client keeps
// sending past rate_limited (policy violation).
const CloseRateLimit = 1008
