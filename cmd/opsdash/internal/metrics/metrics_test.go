package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/opsdash/opsdash/stream"
	"github.com/opsdash/opsdash/stream/httpapi"
)

// fakeConn is a stream.Conn that accepts every write.
type fakeConn struct{ writes atomic.Int64 }

func (c *fakeConn) WriteFrames(frames []stream.Frame) error { c.writes.Add(1); return nil }
func (c *fakeConn) Close(code int, reason string) error     { return nil }

// TestMetricsWriteObserver wires ObserveWrite into a registry the way
// serve does and checks that a session's writes show in the histograms.
func TestMetricsWriteObserver(t *testing.T) {
	met := New(Build{})
	observed := make(chan int, 16) // frames per write, once each write is recorded
	reg := stream.NewRegistry(stream.RegistryConfig{
		Host: "testhost",
		WriteObserver: func(d time.Duration, frames int) {
			met.ObserveWrite(d, frames)
			observed <- frames
		},
	})

	conn := &fakeConn{}
	sess := reg.Open(conn, stream.DefaultSessionConfig())
	defer sess.Close(1000, "")
	sess.Hello()
	if err := sess.Handle([]byte(`{"type":"ping","id":"1"}`)); err != nil {
		t.Fatal(err)
	}
	// Hello and pong, in one write or two.
	for frames := 0; frames < 2; {
		select {
		case n := <-observed:
			frames += n
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of 2 frames observed", frames)
		}
	}
	fams, err := met.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var count uint64
	var sum float64
	for _, f := range fams {
		switch f.GetName() {
		case "opsdash_write_duration_seconds":
			count = f.GetMetric()[0].GetHistogram().GetSampleCount()
		case "opsdash_write_batch_frames":
			sum = f.GetMetric()[0].GetHistogram().GetSampleSum()
		}
	}
	if sum != 2 {
		t.Errorf("opsdash_write_batch_frames sums to %v frames, want 2", sum)
	}
	if n := conn.writes.Load(); count != uint64(n) {
		t.Errorf("opsdash_write_duration_seconds has %d samples for %d writes", count, n)
	}
}

// TestObserveWriteDoesNotAllocate: ObserveWrite runs on every write of
// every connection.
func TestObserveWriteDoesNotAllocate(t *testing.T) {
	obs := New(Build{}).ObserveWrite // as serve hands it to the registry
	if n := testing.AllocsPerRun(1000, func() { obs(300*time.Microsecond, 3) }); n != 0 {
		t.Errorf("ObserveWrite allocates %v times per write, want 0", n)
	}
}

func BenchmarkObserveWrite(b *testing.B) {
	met := New(Build{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			met.ObserveWrite(300*time.Microsecond, 3)
		}
	})
}

// TestHandlerExportsStreamAndEdge: a scrape of Handler shows the stream
// and edge counters as ExportStream's sources report them at that moment,
// with every refusal reason present (at 0 until it happens), and the build.
func TestHandlerExportsStreamAndEdge(t *testing.T) {
	met := New(Build{Version: "v1.2.3", Commit: "abc"})
	rs := stream.Stats{Sessions: 3, Published: 42}
	as := httpapi.Stats{WebSockets: 2, SSEStreams: 1, Refused: map[string]uint64{"per_ip": 5, "later": 1}, Closes: map[int]uint64{1001: 4}}
	met.ExportStream(func() stream.Stats { return rs }, func() httpapi.Stats { return as })
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.Get("/metrics", met.Handler())
	scrape := func() string {
		resp, err := app.Test(httptest.NewRequest("GET", "/metrics", nil), -1)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	body := scrape()
	for _, want := range []string{
		"opsdash_sessions 3\n", "opsdash_published_total 42\n",
		`opsdash_connections_open{kind="ws"} 2`, `opsdash_connections_open{kind="sse"} 1`,
		`opsdash_connections_refused_total{reason="per_ip"} 5`, `opsdash_connections_refused_total{reason="origin"} 0`,
		`opsdash_connections_refused_total{reason="later"} 1`, `opsdash_connections_closed_total{code="1001"} 4`,
		`opsdash_build_info{commit="abc",goversion="`, `version="v1.2.3"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	rs.Sessions = 7 // read again at the next scrape
	if body := scrape(); !strings.Contains(body, "opsdash_sessions 7\n") {
		t.Error("a second scrape does not show the sessions as they are now")
	}
}

// Accept headers scrapers send. Prometheus builds its header from its
// scrape_protocols (scrape.acceptHeader): these are the defaults of 3.x
// (UTF-8 names allowed) and of 2.x.
const (
	acceptPrometheus3 = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6," +
		"application/openmetrics-text;version=0.0.1;q=0.5," +
		"text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4," +
		"text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
	acceptPrometheus2 = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75," +
		"text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)

// TestHandlerNegotiatesOpenMetrics: Prometheus's own Accept header gets
// OpenMetrics 1.0.0 (counter families without _total in TYPE, # EOF at the
// end); curl, a browser and a request without Accept get the text format.
func TestHandlerNegotiatesOpenMetrics(t *testing.T) {
	met := New(Build{Version: "v1", Commit: "c"})
	met.ExportStream(func() stream.Stats { return stream.Stats{Published: 42} }, func() httpapi.Stats { return httpapi.Stats{} })
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.Get("/metrics", met.Handler())
	for _, tc := range []struct {
		name, accept string
		openMetrics  bool
	}{
		{"Prometheus 3", acceptPrometheus3, true},
		{"Prometheus 2", acceptPrometheus2, true},
		{"curl", "*/*", false},
		{"a browser", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", false},
		{"no Accept", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/metrics", nil)
			if tc.accept != "" {
				req.Header.Set("Accept", tc.accept)
			}
			resp, err := app.Test(req, -1)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			body, ct := string(b), resp.Header.Get("Content-Type")
			if tc.openMetrics {
				if !strings.HasPrefix(ct, "application/openmetrics-text; version=1.0.0") {
					t.Errorf("Content-Type %q, want OpenMetrics 1.0.0", ct)
				}
				if !strings.HasSuffix(body, "# EOF\n") || !strings.Contains(body, "# TYPE opsdash_published counter\nopsdash_published_total 42.0\n") {
					t.Errorf("not an OpenMetrics exposition:\n%.2000s", body)
				}
				return
			}
			if !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
				t.Errorf("Content-Type %q, want text/plain; version=0.0.4", ct)
			}
			if strings.Contains(body, "# EOF") || !strings.Contains(body, "# TYPE opsdash_published_total counter\nopsdash_published_total 42\n") {
				t.Errorf("not the text format:\n%.600s", body)
			}
		})
	}
}
