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
	// event. It returns an error if the transport failed or the write
	// deadline passed. The session calls it from one goroutine at a time and
	// does not touch frames until it returns.
	WriteFrames(frames []Frame) error
	// Close ends the transport with a WebSocket close code and reason; SSE
	// ends the stream. Safe to call more than once and concurrently with
	// WriteFrames.
	Close(code int, reason string) error
}

// CloseWriteTimeout is the application close code of a session whose writes
// failed or stayed stuck past the write deadline.
const CloseWriteTimeout = 4008

// CloseRateLimit is the close code Handle asks for when a client keeps
// sending past rate_limited (policy violation).
const CloseRateLimit = 1008
