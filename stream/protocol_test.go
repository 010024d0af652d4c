package stream_test

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"testing"

	"github.com/opsdash/opsdash/stream"
)

func TestDecodeRequest(t *testing.T) {
	tests := []struct {
		name     string
		msg      string
		want     stream.Request
		wantCode string
		wantID   string
	}{
		{"subscribe", `{"type":"subscribe","id":"1","topics":["web-1.cpu","*.mem"]}`,
			stream.Request{Type: "subscribe", ID: "1", Topics: []string{"web-1.cpu", "*.mem"}}, "", ""},
		{"unsubscribe", `{"type":"unsubscribe","id":"2","topics":["web-1.>"]}`,
			stream.Request{Type: "unsubscribe", ID: "2", Topics: []string{"web-1.>"}}, "", ""},
		{"list", `{"type":"list","id":"3"}`, stream.Request{Type: "list", ID: "3"}, "", ""},
		{"ping", `{"type":"ping","id":"4"}`, stream.Request{Type: "ping", ID: "4"}, "", ""},
		{"ping without id", `{"type":"ping"}`, stream.Request{Type: "ping"}, "", ""},
		{"unknown fields ignored", `{"type":"ping","id":"5","x":[1,2]}`, stream.Request{Type: "ping", ID: "5"}, "", ""},
		{"list ignores topics", `{"type":"list","id":"6","topics":5}`, stream.Request{Type: "list", ID: "6"}, "", ""},
		{"escaped id", `{"type":"ping","id":"a\"b\u00e9"}`, stream.Request{Type: "ping", ID: "a\"bé"}, "", ""},

		{"not json", `hello`, stream.Request{}, stream.CodeBadRequest, ""},
		{"truncated", `{"type":"ping"`, stream.Request{}, stream.CodeBadRequest, ""},
		{"array", `[{"type":"ping"}]`, stream.Request{}, stream.CodeBadRequest, ""},
		{"null", `null`, stream.Request{}, stream.CodeBadRequest, ""},
		{"string", `"ping"`, stream.Request{}, stream.CodeBadRequest, ""},
		{"empty", ``, stream.Request{}, stream.CodeBadRequest, ""},
		{"numeric id", `{"type":"ping","id":4}`, stream.Request{}, stream.CodeBadRequest, ""},
		{"null id", `{"type":"ping","id":null}`, stream.Request{}, stream.CodeBadRequest, ""},
		{"missing type", `{"id":"7"}`, stream.Request{}, stream.CodeBadRequest, "7"},
		{"numeric type", `{"type":1,"id":"8"}`, stream.Request{}, stream.CodeBadRequest, "8"},
		{"unknown type", `{"type":"publish","id":"9"}`, stream.Request{}, stream.CodeUnknownType, "9"},
		{"type case matters", `{"type":"PING","id":"10"}`, stream.Request{}, stream.CodeUnknownType, "10"},
		{"missing topics", `{"type":"subscribe","id":"11"}`, stream.Request{}, stream.CodeBadRequest, "11"},
		{"topics string", `{"type":"subscribe","id":"12","topics":"web-1.cpu"}`, stream.Request{}, stream.CodeBadRequest, "12"},
		{"topics numbers", `{"type":"subscribe","id":"13","topics":[1]}`, stream.Request{}, stream.CodeBadRequest, "13"},
		{"topics null entry", `{"type":"subscribe","id":"14","topics":["a",null]}`, stream.Request{}, stream.CodeBadRequest, "14"},
		{"topics empty", `{"type":"unsubscribe","id":"15","topics":[]}`, stream.Request{}, stream.CodeBadRequest, "15"},
		{"topics null", `{"type":"subscribe","id":"16","topics":null}`, stream.Request{}, stream.CodeBadRequest, "16"},
		{"invalid pattern", `{"type":"subscribe","id":"17","topics":["web-1.cpu","Web.*"]}`, stream.Request{}, stream.CodeInvalidTopic, "17"},
		{"misplaced >", `{"type":"unsubscribe","id":"18","topics":[">.cpu"]}`, stream.Request{}, stream.CodeInvalidTopic, "18"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := stream.DecodeRequest([]byte(tt.msg))
			if tt.wantCode == "" {
				if err != nil {
					t.Fatalf("DecodeRequest: %v", err)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("DecodeRequest = %+v, want %+v", got, tt.want)
				}
				return
			}
			var rerr *stream.RequestError
			if !errors.As(err, &rerr) {
				t.Fatalf("DecodeRequest error = %v, want a *RequestError", err)
			}
			if rerr.Code != tt.wantCode || rerr.ID != tt.wantID || rerr.Message == "" {
				t.Fatalf("error = %+v, want code %q id %q and a message", rerr, tt.wantCode, tt.wantID)
			}
		})
	}
}

func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"type":"subscribe","id":"1","topics":["web-1.cpu","*.mem"]}`,
		`{"type":"unsubscribe","id":"2","topics":["web-1.>"]}`,
		`{"type":"list","id":"3"}`, `{"type":"ping"}`, `{"type":"ping","id":4}`,
		`{"type":"subscribe","topics":[null]}`, `[]`, `null`, `{"id":"\ud800"}`, "{\"type\":\"ping\",\"id\":\"\xff\"}",
		`{"type":"subscribe","id":"5","topics":["a.b"],"max_hz":0.5}`, `{"type":"subscribe","topics":["a.b"],"max_hz":0}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		req, err := stream.DecodeRequest(msg)
		if err != nil {
			var rerr *stream.RequestError
			if !errors.As(err, &rerr) || rerr.Code == "" {
				t.Fatalf("error %v is not a *RequestError with a code", err)
			}
			return
		}
		switch req.Type {
		case stream.TypeSubscribe, stream.TypeUnsubscribe:
			if len(req.Topics) == 0 {
				t.Fatalf("accepted %s without topics", req.Type)
			}
			for _, p := range req.Topics {
				if _, err := stream.ParsePattern(p); err != nil {
					t.Fatalf("accepted invalid pattern %q", p)
				}
			}
		case stream.TypeList, stream.TypePing:
			if req.Topics != nil {
				t.Fatalf("%s carries topics", req.Type)
			}
		}
		if req.MaxHz < 0 || math.IsInf(req.MaxHz, 0) || math.IsNaN(req.MaxHz) || req.MaxHz != 0 && req.Type != stream.TypeSubscribe {
			t.Fatalf("accepted max_hz %v on %s", req.MaxHz, req.Type)
		}
		switch req.Type {
		case stream.TypeSubscribe, stream.TypeUnsubscribe, stream.TypeList, stream.TypePing:
		default:
			t.Fatalf("accepted type %q", req.Type)
		}
		// Round trip: what it accepts, re-encoded, decodes to the same request.
		b, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		again, err := stream.DecodeRequest(b)
		if err != nil {
			t.Fatalf("re-encoded %s rejected: %v", b, err)
		}
		if !reflect.DeepEqual(again, req) {
			t.Fatalf("round trip: %+v became %+v", req, again)
		}
	})
}
