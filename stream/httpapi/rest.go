package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"

	"github.com/opsdash/opsdash/stream"
)

// handleTopics serves GET /api/v1/topics: every topic, entries as in the
// WebSocket "list" reply, sorted by name.
func (s *Server) handleTopics(c *fiber.Ctx) error {
	topics := s.reg.Topics()
	if topics == nil {
		topics = []stream.TopicState{}
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(topics)
}

// topicBody is GET /api/v1/topics/{topic}.
type topicBody struct {
	Topic       string                `json:"topic"`
	Seq         uint64                `json:"seq"`
	TS          int64                 `json:"ts"`
	Status      string                `json:"status"`
	Error       string                `json:"error,omitempty"`
	IntervalMS  int64                 `json:"interval_ms"`
	Description string                `json:"description"`
	Data        json.RawMessage       `json:"data"`
	History     []stream.HistoryEntry `json:"history,omitempty"`
}

// handleTopic serves GET /api/v1/topics/{topic}[?history=N]: the topic's
// latest value, status and, with history, up to N past values, oldest
// first. 400 invalid_topic for a malformed name, 404 not_found for a topic
// the registry does not know.
func (s *Server) handleTopic(c *fiber.Ctx) error {
	name := c.Params("topic")
	if !stream.ValidTopic(name) {
		return WriteError(c, fiber.StatusBadRequest, stream.CodeInvalidTopic,
			fmt.Sprintf("%q is not a topic: dot-separated tokens of [a-z0-9_-]", name))
	}
	history := 0
	if h := c.Query("history"); h != "" {
		n, err := strconv.Atoi(h)
		if err != nil || n < 0 {
			return WriteError(c, fiber.StatusBadRequest, stream.CodeBadRequest,
				`"history" must be a non-negative integer`)
		}
		history = min(n, s.cfg.MaxHistory)
	}
	t, ok := s.reg.Topic(name, history)
	if !ok {
		return WriteError(c, fiber.StatusNotFound, "not_found", "no topic "+name)
	}
	data := t.Data
	if len(data) == 0 {
		data = json.RawMessage("null") // pending: no value yet
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(topicBody{
		Topic: t.Name, Seq: t.Seq, TS: t.TS, Status: t.Status, Error: t.Error,
		IntervalMS: t.IntervalMS, Description: t.Description,
		Data: data, History: t.History,
	})
}

// publishItem is one entry of a publish request.
type publishItem struct {
	Topic string          `json:"topic"`
	Data  json.RawMessage `json:"data"`
	// TS is the sample's Unix time in milliseconds; absent means now.
	TS *int64 `json:"ts,omitempty"`
}

// publishReply is the 200 answer of POST /api/v1/publish.
type publishReply struct {
	Published int `json:"published"`
}

// handlePublish serves POST /api/v1/publish: one {"topic","data"[,"ts"]}
// or a JSON array of them. See docs/protocol.md for the status codes. The
// whole request is validated before anything is published, so a 400 or 403
// publishes nothing.
func (s *Server) handlePublish(c *fiber.Ctx) error {
	if s.cfg.PublishToken == "" {
		return WriteError(c, fiber.StatusNotFound, "not_found",
			"the publish API is off: start the server with --publish-token")
	}
	if !s.authorizePublish(c) {
		return nil // answered: 401, or 429 from Config.PublishAuth
	}
	body := c.Body()
	if len(body) > s.cfg.MaxPublishBytes {
		return WriteError(c, fiber.StatusRequestEntityTooLarge, "payload_too_large",
			fmt.Sprintf("the body is %d bytes, the limit is %d", len(body), s.cfg.MaxPublishBytes))
	}
	items, err := decodePublish(body, time.Now())
	if err != nil {
		return WriteError(c, fiber.StatusBadRequest, stream.CodeBadRequest, err.Error())
	}
	// The whole batch is checked before any of it is published.
	for i, it := range items {
		if err := s.reg.CheckPublishTopic(it.Topic); err != nil {
			status, code := publishErrorStatus(err)
			return WriteError(c, status, code, publishTopicMessage(i, it.Topic, s.reg.Host(), err))
		}
		// decodePublish compacted the data, as the registry will.
		if err := s.reg.CheckPublishSize(len(it.Data)); err != nil {
			status, code := publishErrorStatus(err)
			return WriteError(c, status, code, fmt.Sprintf("item %d (%s): %v", i, it.Topic, err))
		}
	}
	// One batch, so that a subscriber of several of these topics gets
	// them in one write instead of one write system call each.
	now := time.Now()
	batch := make([]stream.JSONItem, len(items))
	for i, it := range items {
		batch[i] = stream.JSONItem{Topic: it.Topic, TS: now, Data: it.Data}
		if it.TS != nil {
			batch[i].TS = time.UnixMilli(*it.TS)
		}
	}
	if n, err := s.reg.PublishJSONBatch(batch); err != nil {
		status, code := publishErrorStatus(err)
		return c.Status(status).JSON(publishError{
			Error:     errorDetail{code, fmt.Sprintf("item %d: %v", n, err)},
			Published: n,
		})
	}
	return c.JSON(publishReply{Published: len(items)})
}

// publishError is an error after some items were published: the count says
// how many (the items before the failing one).
type publishError struct {
	Error     errorDetail `json:"error"`
	Published int         `json:"published"`
}

// publishTopicMessage says why item i's topic was refused.
func publishTopicMessage(i int, topic, host string, err error) string {
	if errors.Is(err, stream.ErrReservedTopic) {
		return fmt.Sprintf("item %d: topics of source %q belong to this server's collectors", i, host)
	}
	return fmt.Sprintf("item %d: %q is not a topic: dot-separated tokens of [a-z0-9_-]", i, topic)
}

// publishErrorStatus maps a registry error to the HTTP status and code.
func publishErrorStatus(err error) (int, string) {
	switch {
	case errors.Is(err, stream.ErrTooManyTopics):
		// A quota, not a fault: existing topics still publish, new ones
		// wait until unused ones expire (PublishedTTL).
		return fiber.StatusTooManyRequests, "too_many_topics"
	case errors.Is(err, stream.ErrReservedTopic):
		return fiber.StatusForbidden, "reserved_topic"
	case errors.Is(err, stream.ErrInvalidTopic):
		return fiber.StatusBadRequest, stream.CodeInvalidTopic
	case errors.Is(err, stream.ErrValueTooLarge):
		return fiber.StatusRequestEntityTooLarge, "payload_too_large"
	case errors.Is(err, stream.ErrInvalidData):
		return fiber.StatusBadRequest, stream.CodeBadRequest
	case errors.Is(err, stream.ErrUnavailable):
		// A fleet replica whose NATS is away: the request was fine.
		return fiber.StatusServiceUnavailable, "unavailable"
	}
	return fiber.StatusBadRequest, stream.CodeBadRequest
}

// decodePublish decodes a publish body strictly: valid UTF-8, one object
// or a non-empty array of objects, each with a string "topic", an object
// "data" whose numbers fit a float64 and optionally an integer "ts" (Unix
// ms, a sample time near now: publishcheck.go); no other fields. Each
// item's data is returned compacted, as the registry stores it, so that
// size limits apply to what is kept. Errors name the item (its index in
// the array, 0 for a single object).
func decodePublish(body []byte, now time.Time) ([]publishItem, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, errors.New(`empty body: send {"topic":"app.metric","data":{…}} or an array of them`)
	}
	if !utf8.Valid(body) {
		return nil, errNotUTF8
	}
	var raws []json.RawMessage
	if body[0] == '[' {
		if err := json.Unmarshal(body, &raws); err != nil {
			return nil, fmt.Errorf("the body is not a JSON array: %v", err)
		}
		if len(raws) == 0 {
			return nil, errors.New("the array is empty")
		}
	} else {
		raws = []json.RawMessage{body}
	}
	items := make([]publishItem, len(raws))
	for i, raw := range raws {
		if err := decodePublishItem(raw, &items[i], now); err != nil {
			return nil, fmt.Errorf("item %d: %v", i, err)
		}
	}
	return items, nil
}

func decodePublishItem(raw json.RawMessage, it *publishItem, now time.Time) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return errors.New(`not a JSON object {"topic":…,"data":{…}}`)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return fmt.Errorf("invalid JSON: %v", err)
	}
	for k := range fields {
		if k != "topic" && k != "data" && k != "ts" {
			return fmt.Errorf("unknown field %q", k)
		}
	}
	t, ok := fields["topic"]
	if !ok || len(t) == 0 || t[0] != '"' || json.Unmarshal(t, &it.Topic) != nil {
		return errors.New(`"topic" must be a string`)
	}
	d, ok := fields["data"]
	if !ok || len(d) == 0 || d[0] != '{' {
		return errors.New(`"data" must be a JSON object`)
	}
	// Unmarshal above validated it. Compacted here, as the registry will
	// (one line per frame), so that --max-value-bytes counts what is kept,
	// not the sender's indentation.
	var compact bytes.Buffer
	compact.Grow(len(d))
	if err := json.Compact(&compact, d); err != nil {
		return fmt.Errorf("invalid JSON: %v", err)
	}
	if err := checkNumbers(compact.Bytes()); err != nil {
		return fmt.Errorf(`"data": %v`, err)
	}
	it.Data = compact.Bytes()
	if ts, ok := fields["ts"]; ok {
		var v int64
		if err := json.Unmarshal(ts, &v); err != nil {
			return errors.New(`"ts" must be an integer (Unix time in milliseconds)`)
		}
		if err := checkPublishTS(v, now); err != nil {
			return err
		}
		it.TS = &v
	}
	return nil
}
