package stream

import "fmt"

// Limits on one request of protocol v1, beyond the edge's frame size. A
// request past them is refused with bad_request, which keeps what a reply
// echoes small: a pong repeats the id, "subscribed" the pattern list, and
// replies wait in the session's reply FIFO (ReplyQueueBytes).
const (
	// MaxRequestIDLen is the longest "id" a request may carry, in bytes.
	// The error refusing a longer one carries the id "", not the id.
	MaxRequestIDLen = 128
	// MaxRequestTopics is the most patterns one subscribe or unsubscribe
	// may list, repeated ones included.
	MaxRequestTopics = 100
)

// checkRequestID refuses an id longer than MaxRequestIDLen.
func checkRequestID(id string) *RequestError {
	if len(id) <= MaxRequestIDLen {
		return nil
	}
	return &RequestError{Code: CodeBadRequest,
		Message: fmt.Sprintf(`"id" has %d bytes, at most %d are allowed`, len(id), MaxRequestIDLen)}
}

// checkRequestTopics refuses a pattern list longer than MaxRequestTopics.
func checkRequestTopics(id string, n int) *RequestError {
	if n <= MaxRequestTopics {
		return nil
	}
	return &RequestError{ID: id, Code: CodeBadRequest,
		Message: fmt.Sprintf(`"topics" lists %d patterns, at most %d are allowed in one request`, n, MaxRequestTopics)}
}
