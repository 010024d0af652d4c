package stream

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// ProtocolVersion is the WebSocket protocol version announced in hello.
const ProtocolVersion = 1

// Request types a client may send (protocol v1).
const (
	TypeSubscribe   = "subscribe"
	TypeUnsubscribe = "unsubscribe"
	TypeList        = "list"
	TypePing        = "ping"
)

// Error codes of the protocol's "error" frame.
const (
	CodeBadRequest           = "bad_request"
	CodeUnknownType          = "unknown_type"
	CodeInvalidTopic         = "invalid_topic"
	CodeTooManySubscriptions = "too_many_subscriptions"
	CodeRateLimited          = "rate_limited"
	CodeForbidden            = "forbidden"
)

// Request is one decoded client request of protocol v1. Topics is set for
// subscribe and unsubscribe only (non-empty, every entry a valid pattern);
// MaxHz for subscribe only (0: no max_hz).
// json.Marshal of a Request that DecodeRequest returned decodes to the same
// Request.
type Request struct {
	Type   string   `json:"type"`
	ID     string   `json:"id"`
	Topics []string `json:"topics,omitempty"`
	MaxHz  float64  `json:"max_hz,omitempty"`
}

// RequestError is a request the server refuses with an "error" frame. ID is
// the request's id when it could be read, else "".
type RequestError struct {
	ID      string
	Code    string // one of the Code* constants
	Message string
}

// Error implements error.
func (e *RequestError) Error() string { return e.Code + ": " + e.Message }

// CloseError is returned by Session.Handle when the client broke a limit and
// the connection must close with Code (a WebSocket close code) and Reason.
type CloseError struct {
	Code   int
	Reason string
}

// Error implements error.
func (e *CloseError) Error() string { return fmt.Sprintf("close %d: %s", e.Code, e.Reason) }

// DecodeRequest decodes one client text frame strictly:
//   - not a JSON object → bad_request;
//   - "id" present but not a string, "type" missing or not a string → bad_request;
//   - a type other than subscribe, unsubscribe, list, ping → unknown_type;
//   - subscribe/unsubscribe without "topics" as a non-empty array of strings → bad_request;
//   - an id longer than MaxRequestIDLen, more than MaxRequestTopics patterns → bad_request;
//   - any pattern in "topics" invalid → invalid_topic (the whole request is refused);
//   - subscribe with "max_hz" other than a positive number → bad_request.
//
// "id" may be absent (the reply then carries ""). Unknown fields are ignored,
// so clients of later protocol versions can add fields. The error is always
// a *RequestError carrying the id when it could be read.
func DecodeRequest(msg []byte) (Request, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(msg, &fields); err != nil || fields == nil {
		return Request{}, &RequestError{Code: CodeBadRequest, Message: "a request is one JSON object"}
	}
	var req Request
	if raw, ok := fields["id"]; ok {
		if !isJSONString(raw) {
			return Request{}, &RequestError{Code: CodeBadRequest, Message: `"id" must be a string`}
		}
		if err := json.Unmarshal(raw, &req.ID); err != nil {
			return Request{}, &RequestError{Code: CodeBadRequest, Message: `"id" must be a string`}
		}
		if rerr := checkRequestID(req.ID); rerr != nil {
			return Request{}, rerr
		}
	}
	raw, ok := fields["type"]
	if !ok || !isJSONString(raw) || json.Unmarshal(raw, &req.Type) != nil {
		return Request{}, &RequestError{ID: req.ID, Code: CodeBadRequest, Message: `"type" must be a string`}
	}
	switch req.Type {
	case TypeList, TypePing:
		return req, nil
	case TypeSubscribe, TypeUnsubscribe:
	default:
		return Request{}, &RequestError{ID: req.ID, Code: CodeUnknownType,
			Message: "unknown request type " + strconv.Quote(req.Type)}
	}
	badTopics := &RequestError{ID: req.ID, Code: CodeBadRequest, Message: `"topics" must be a non-empty array of strings`}
	raw, ok = fields["topics"]
	if !ok || len(raw) == 0 || raw[0] != '[' {
		return Request{}, badTopics
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil || len(elems) == 0 {
		return Request{}, badTopics
	}
	if rerr := checkRequestTopics(req.ID, len(elems)); rerr != nil {
		return Request{}, rerr
	}
	req.Topics = make([]string, len(elems))
	for i, e := range elems {
		// json.Unmarshal leaves a string unchanged for null, so check the kind first.
		if !isJSONString(e) || json.Unmarshal(e, &req.Topics[i]) != nil {
			return Request{}, badTopics
		}
	}
	for _, p := range req.Topics {
		if _, err := ParsePattern(p); err != nil {
			return Request{}, &RequestError{ID: req.ID, Code: CodeInvalidTopic, Message: err.Error()}
		}
	}
	if req.Type == TypeSubscribe {
		var ok bool
		if req.MaxHz, ok = decodeMaxHz(fields); !ok {
			return Request{}, &RequestError{ID: req.ID, Code: CodeBadRequest, Message: `"max_hz" must be a positive number`}
		}
	}
	return req, nil
}

// isJSONString reports whether raw (a json.RawMessage of one value, no
// surrounding space) is a JSON string.
func isJSONString(raw json.RawMessage) bool { return len(raw) > 0 && raw[0] == '"' }

// ---- server frames ----

type helloFrame struct {
	Type        string `json:"type"`
	Protocol    int    `json:"protocol"`
	Session     string `json:"session"`
	Instance    string `json:"instance"`
	Host        string `json:"host"`
	Replica     string `json:"replica,omitempty"` // fleet mode: the serving process
	HeartbeatMS int64  `json:"heartbeat_ms"`
}

type topicsReply struct {
	Type   string   `json:"type"`
	ID     string   `json:"id"`
	Topics []string `json:"topics"`
}

type listReply struct {
	Type   string       `json:"type"`
	ID     string       `json:"id"`
	Topics []TopicState `json:"topics"`
}

type idReply struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

type errorReply struct {
	Type    string `json:"type"`
	ID      string `json:"id"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

type statusFrame struct {
	Type   string `json:"type"`
	Topic  string `json:"topic"`
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

// mustJSON marshals v, which is one of the frame structs above and cannot fail.
// HTML escaping is off: frames are not embedded in HTML, and escaping would
// turn the pattern "web-1.>" into the unreadable "web-1.\u003e".
func mustJSON(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic("stream: encoding a frame: " + err.Error())
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func encodeHello(session, instance, host, replica string, heartbeatMS int64) []byte {
	return mustJSON(helloFrame{"hello", ProtocolVersion, session, instance, host, replica, heartbeatMS})
}

// encodeTopicsReply encodes "subscribed" or "unsubscribed" with the patterns as sent.
func encodeTopicsReply(typ, id string, patterns []string) []byte {
	return mustJSON(topicsReply{typ, id, patterns})
}

func encodeList(id string, topics []TopicState) []byte {
	if topics == nil {
		topics = []TopicState{}
	}
	return mustJSON(listReply{"topics", id, topics})
}

func encodePong(id string) []byte { return mustJSON(idReply{"pong", id}) }

func encodeError(id, code, message string) []byte {
	return mustJSON(errorReply{"error", id, code, message})
}

func encodeStatus(topic, status, errMsg string) []byte {
	return mustJSON(statusFrame{"status", topic, status, errMsg})
}

// appendUpdate appends the update frame
// {"type":"update","topic":"…","seq":N,"ts":MS,"data":…} to dst. topic is a
// valid topic (no characters to escape) and data compact JSON, so the frame
// is built by concatenation: one publish, one encoding, shared by every
// subscriber.
func appendUpdate(dst []byte, topic string, seq uint64, tsMS int64, data []byte) []byte {
	dst = append(dst, `{"type":"update","topic":"`...)
	dst = append(dst, topic...)
	dst = append(dst, `","seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, tsMS, 10)
	dst = append(dst, `,"data":`...)
	dst = append(dst, data...)
	return append(dst, '}')
}

// ServerMessage is any frame the server sends, decoded loosely into one
// struct: the fields a frame's type does not carry stay zero. It is what a
// client of protocol v1 reads (opsdash watch, the tests); the server itself
// encodes each frame by hand, once per publish.
type ServerMessage struct {
	Type        string          `json:"type"`
	ID          string          `json:"id"`
	Protocol    int             `json:"protocol"`
	Session     string          `json:"session"`
	Instance    string          `json:"instance"`
	Host        string          `json:"host"`
	Replica     string          `json:"replica"`
	HeartbeatMS int64           `json:"heartbeat_ms"`
	Topic       string          `json:"topic"`
	Seq         uint64          `json:"seq"`
	TS          int64           `json:"ts"`
	Data        json.RawMessage `json:"data"`
	Topics      json.RawMessage `json:"topics"` // patterns (subscribed) or entries (topics)
	Status      string          `json:"status"`
	Error       string          `json:"error"`
	Code        string          `json:"code"`
	Message     string          `json:"message"`
}
