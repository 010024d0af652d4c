package main

import (
	"bytes"
)

// update is what a client needs from one server frame. Filling it must cost
// far less than the server spent producing the frame, or a 10,000-client run
// measures the load tool instead of the server; so scanFrame looks for the
// few keys it needs with bytes.Index rather than decoding JSON.
type update struct {
	isUpdate bool   // "type":"update"
	topic    int    // index n of topic "<prefix>n", -1 if not one of ours
	seq      uint64 // the server's per-topic seq
	pubSeq   uint64 // the publisher's sequence, from data.pub_seq
	sentNS   int64  // data.sent_unix_ns, the publisher's clock before the POST
	hasPub   bool   // pubSeq and sentNS were found
}

var (
	keyTypeUpdate = []byte(`"type":"update"`)
	keyTopic      = []byte(`"topic":"`)
	keySeq        = []byte(`"seq":`)
	keyPubSeq     = []byte(`"pub_seq":`)
	keySent       = []byte(`"sent_unix_ns":`)
)

// scanFrame extracts an update's topic index, seq, pub_seq and sent_unix_ns
// from one frame. prefix is the topic name up to the index ("bench.t").
// Frames that are not updates come back with isUpdate false.
//
// Each key is looked for after the previous one (the order the server and
// the publisher write them in), so a frame is scanned about once and the
// padding at its end not at all; a key not found there is looked for in the
// whole frame, so another key order still parses.
func scanFrame(frame, prefix []byte) update {
	u := update{topic: -1}
	pos := 0
	find := func(key []byte) int {
		if i := bytes.Index(frame[pos:], key); i >= 0 {
			pos += i + len(key)
			return pos
		}
		if i := bytes.Index(frame, key); i >= 0 {
			pos = i + len(key)
			return pos
		}
		return -1
	}
	if find(keyTypeUpdate) < 0 {
		return u
	}
	u.isUpdate = true
	if i := find(keyTopic); i >= 0 {
		name := frame[i:]
		if bytes.HasPrefix(name, prefix) {
			if n, ok := leadingUint(name[len(prefix):]); ok && n < 1<<20 {
				// Only a name that ends right after the digits is ours
				// ("bench.t1" but not "bench.t1x").
				rest := name[len(prefix)+digits(name[len(prefix):]):]
				if len(rest) > 0 && rest[0] == '"' {
					u.topic = int(n)
				}
			}
		}
	}
	if i := find(keySeq); i >= 0 {
		u.seq, _ = leadingUint(frame[i:])
	}
	var okSent, okPub bool
	if i := find(keySent); i >= 0 {
		var sent uint64
		sent, okSent = leadingUint(frame[i:])
		u.sentNS = int64(sent)
	}
	if i := find(keyPubSeq); i >= 0 {
		u.pubSeq, okPub = leadingUint(frame[i:])
	}
	u.hasPub = okSent && okPub
	return u
}

// leadingUint parses the decimal digits at the start of b.
func leadingUint(b []byte) (uint64, bool) {
	var n uint64
	k := 0
	for k < len(b) && b[k] >= '0' && b[k] <= '9' && k < 20 {
		n = n*10 + uint64(b[k]-'0')
		k++
	}
	return n, k > 0
}

// digits counts the decimal digits at the start of b.
func digits(b []byte) int {
	k := 0
	for k < len(b) && b[k] >= '0' && b[k] <= '9' {
		k++
	}
	return k
}

// frameType returns the value of a frame's "type" key ("hello", "subscribed",
// "error"...), or "" when there is none. Used only outside the hot path.
func frameType(frame []byte) string {
	const key = `"type":"`
	i := bytes.Index(frame, []byte(key))
	if i < 0 {
		return ""
	}
	rest := frame[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return string(rest[:j])
}
