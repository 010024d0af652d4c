package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/gofiber/fiber/v2"

	"github.com/opsdash/opsdash/collectors"
	"github.com/opsdash/opsdash/stream"
	"github.com/opsdash/opsdash/stream/httpapi"
)

// benchServerEnv makes the test binary run as a bare server (see TestMain),
// so a benchmark can measure the server's memory apart from its clients'.
const benchServerEnv = "OPSDASH_HTTPAPI_BENCH_SERVER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(benchServerEnv); mode != "" {
		runBenchServer(mode)
		return
	}
	os.Exit(m.Run())
}

// runBenchServer serves 10 topics on a loopback port, prints the address
// and serves until stdin closes. Mode "fiberconfig" uses FiberConfig as it
// is; "noreduce" turns Fiber's ReduceMemoryUsage back off, for comparison.
func runBenchServer(mode string) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := stream.NewRegistry(stream.RegistryConfig{Host: "web-1", Logger: log})
	for i := 0; i < 10; i++ {
		reg.Publish(collectors.Sample{Topic: fmt.Sprintf("bench.t%d", i), Time: time.Now(),
			Data: map[string]any{"usage_pct": 12.5, "used_bytes": 123456789}})
	}
	srv := httpapi.New(httpapi.Config{Registry: reg, Logger: log, MaxConns: stream.NoLimit, MaxConnsPerIP: stream.NoLimit})
	fcfg := srv.FiberConfig(fiber.Config{DisableStartupMessage: true})
	if mode == "noreduce" {
		fcfg.ReduceMemoryUsage = false
	}
	app := fiber.New(fcfg)
	srv.Register(app)
	ln, err := httpapi.Listen("tcp", "127.0.0.1:0", httpapi.DefaultSendBuffer)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	go app.Listener(ln)
	fmt.Println(ln.Addr().String())
	// Commands on stdin, one per line, until the benchmark closes it:
	// "stats" prints memory statistics on stdout, "profile PATH" writes a
	// heap profile (where an idle connection's bytes go).
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		cmd, arg, _ := strings.Cut(in.Text(), " ")
		switch cmd {
		case "stats":
			var ms runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&ms)
			st := []metrics.Sample{{Name: "/gc/stack/starting-size:bytes"}}
			metrics.Read(st)
			fmt.Printf("%d conns, %d goroutines, heap in use %d KiB (idle %d KiB, released %d KiB), stacks %d KiB (new ones start at %d B), sys %d KiB\n",
				srv.Conns(), runtime.NumGoroutine(), ms.HeapInuse>>10, ms.HeapIdle>>10, ms.HeapReleased>>10, ms.StackInuse>>10, st[0].Value.Uint64(), ms.Sys>>10)
		case "load":
			// "load HZ SECONDS": publish each of the 10 topics HZ times a
			// second, staggered, for SECONDS; data carries the send time.
			var hz, secs float64
			fmt.Sscan(arg, &hz, &secs)
			if path := os.Getenv("OPSDASH_BENCH_CPUPROFILE"); path != "" {
				if f, err := os.Create(path); err == nil {
					pprof.StartCPUProfile(f)
					defer f.Close()
				}
			}
			n := runLoad(reg, hz, time.Duration(secs*float64(time.Second)))
			pprof.StopCPUProfile()
			fmt.Println("done", n)
		case "profile":
			if f, err := os.Create(arg); err == nil {
				runtime.GC()
				pprof.WriteHeapProfile(f)
				f.Close()
			}
			fmt.Println("ok")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv.Drain(ctx)
	os.Exit(0)
}

// runLoad publishes the bench topics round-robin, 10*hz values a second in
// all, for d, and returns how many it published.
func runLoad(reg *stream.Registry, hz float64, d time.Duration) int {
	tick := time.NewTicker(time.Duration(float64(time.Second) / (10 * hz)))
	defer tick.Stop()
	end := time.Now().Add(d)
	n := 0
	for now := range tick.C {
		if now.After(end) {
			break
		}
		reg.Publish(collectors.Sample{Topic: fmt.Sprintf("bench.t%d", n%10), Time: now,
			Data: map[string]any{"sent_ns": time.Now().UnixNano(), "usage_pct": 12.5, "used_bytes": 123456789}})
		n++
	}
	return n
}

// cpuTicks returns a process's user+system CPU time in clock ticks.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the ")" of the command name: state is field 3, utime 14, stime 15.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st, nil
}

// rssKiB reads VmRSS of a process.
func rssKiB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			return strconv.ParseInt(f[1], 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS")
}

// BenchmarkIdleConnMemory measures the server process's memory per idle
// WebSocket subscribed to 10 topics (snapshot received, nothing flowing):
// (RSS with N connections − RSS before) / N, the DESIGN.md budget being
// 20 KiB. The server runs in a child process so the clients' memory is not
// counted. N is OPSDASH_BENCH_CONNS (default 2000). Run with -benchtime 1x:
//
//	go test -run '^$' -bench IdleConnMemory -benchtime 1x ./stream/httpapi/
func BenchmarkIdleConnMemory(b *testing.B) {
	n := envInt("OPSDASH_BENCH_CONNS", 2000)
	for _, mode := range []string{"fiberconfig", "noreduce"} {
		b.Run(mode, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				perConn, total := measureIdleConns(b, mode, n)
				b.ReportMetric(perConn, "B/conn")
				b.ReportMetric(float64(total)/(1<<20), "MiB-total")
			}
		})
	}
}

// benchServer is the child process of runBenchServer.
type benchServer struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
	url   string // ws://…/ws
}

func startBenchServer(b *testing.B, mode string) *benchServer {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), benchServerEnv+"="+mode)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	bs := &benchServer{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	addr, err := bs.out.ReadString('\n')
	if err != nil {
		b.Fatal(err)
	}
	bs.url = "ws://" + strings.TrimSpace(addr) + "/ws"
	return bs
}

// do sends a command and returns the server's one-line answer.
func (bs *benchServer) do(line string) string {
	fmt.Fprintln(bs.stdin, line)
	ans, _ := bs.out.ReadString('\n')
	return strings.TrimSpace(ans)
}

func (bs *benchServer) stop() { bs.stdin.Close(); bs.cmd.Wait() }

func measureIdleConns(b *testing.B, mode string, n int) (float64, int64) {
	b.Helper()
	bs := startBenchServer(b, mode)
	defer bs.stop()
	url, pid := bs.url, bs.cmd.Process.Pid

	// Warm up (pools, first goroutines), then take the baseline.
	dialSubscribed(b, url)
	before := settledRSS(b, pid)
	conns := make([]*websocket.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < n; i++ {
		conns = append(conns, dialSubscribed(b, url))
	}
	after := settledRSS(b, pid)
	b.Logf("server (%s): %s", mode, bs.do("stats"))
	if path := os.Getenv("OPSDASH_BENCH_HEAPPROFILE"); path != "" {
		bs.do("profile " + path + "." + mode)
	}
	return float64(after-before) * 1024 / float64(n), after * 1024
}

// dialSubscribed opens a WebSocket, subscribes to the 10 bench topics and
// reads hello, subscribed and the snapshot.
func dialSubscribed(b *testing.B, url string) *websocket.Conn {
	d := websocket.Dialer{ReadBufferSize: 1024, WriteBufferSize: 512, HandshakeTimeout: wait}
	c, _, err := d.Dial(url, nil)
	if err != nil {
		b.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wait))
	c.WriteMessage(websocket.TextMessage, []byte(`{"type":"subscribe","id":"1","topics":["bench.>"]}`))
	for i := 0; i < 12; i++ { // hello, subscribed, 10 updates
		if _, _, err := c.ReadMessage(); err != nil {
			b.Fatal(err)
		}
	}
	return c
}

// settledRSS waits until the child's RSS stops changing (GC and writer
// goroutines done), at most a few seconds, and returns it in KiB.
func settledRSS(b *testing.B, pid int) int64 {
	var last int64 = -1
	for i := 0; i < 30; i++ {
		v, err := rssKiB(pid)
		if err != nil {
			b.Fatal(err)
		}
		if v == last {
			return v
		}
		last = v
		time.Sleep(200 * time.Millisecond) // sampling interval of a measurement, not synchronization
	}
	return last
}

// BenchmarkFanOut measures end-to-end delivery over loopback WebSockets: N
// clients (OPSDASH_BENCH_CONNS, default 1000) each subscribed to the 10
// bench topics, the server (a child process) publishing every topic at HZ
// (OPSDASH_BENCH_HZ, default 1) for OPSDASH_BENCH_SECONDS (default 10).
// Reported: messages/s delivered, publish-to-receive latency p50/p99/max
// (the value's send time, carried in its data, to the client's read),
// and server CPU per delivered message. Clients run in this process on the
// same 2 cores, so the numbers include their cost. Run with -benchtime 1x.
func BenchmarkFanOut(b *testing.B) {
	n, hz, secs := envInt("OPSDASH_BENCH_CONNS", 1000), envFloat("OPSDASH_BENCH_HZ", 1), envFloat("OPSDASH_BENCH_SECONDS", 10)
	for i := 0; i < b.N; i++ {
		bs := startBenchServer(b, "fiberconfig")
		conns := make([]*websocket.Conn, 0, n)
		for j := 0; j < n; j++ {
			conns = append(conns, dialSubscribed(b, bs.url))
		}
		lat := make([][]time.Duration, n)
		var wg sync.WaitGroup
		for j, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, 512)
				for {
					c.SetReadDeadline(time.Time{})
					_, r, err := c.NextReader()
					if err != nil {
						return
					}
					m, _ := io.ReadFull(r, buf)
					now := time.Now().UnixNano()
					if sent := sentNS(buf[:m]); sent > 0 {
						lat[j] = append(lat[j], time.Duration(now-sent))
					}
				}
			}()
		}
		pid := bs.cmd.Process.Pid
		cpu0, _ := cpuTicks(pid)
		start := time.Now()
		published := bs.do(fmt.Sprintf("load %g %g", hz, secs))
		elapsed := time.Since(start)
		cpu1, _ := cpuTicks(pid)
		// Let the last values arrive, then stop the readers.
		time.Sleep(500 * time.Millisecond) // tail of the measurement window, not synchronization
		for _, c := range conns {
			c.Close()
		}
		wg.Wait()
		bs.stop()

		var all []time.Duration
		for _, l := range lat {
			all = append(all, l...)
		}
		slices.Sort(all)
		if len(all) == 0 {
			b.Fatal("nothing received")
		}
		pct := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))]) / 1e6 }
		b.ReportMetric(float64(len(all))/elapsed.Seconds(), "msgs/s")
		b.ReportMetric(pct(0.50), "p50-ms")
		b.ReportMetric(pct(0.99), "p99-ms")
		b.ReportMetric(float64(all[len(all)-1])/1e6, "max-ms")
		cpuSec := float64(cpu1-cpu0) / 100 // clock ticks: USER_HZ is 100 on Linux
		b.ReportMetric(cpuSec/elapsed.Seconds(), "server-cores")
		b.ReportMetric(cpuSec*1e9/float64(len(all)), "server-ns/msg")
		b.Logf("%d conns, %s published (%g Hz × 10 topics), %d delivered (%.0f%% of %d offered)", n, published, hz, len(all),
			100*float64(len(all))/(float64(n)*10*hz*secs), int(float64(n)*10*hz*secs))
	}
}

// sentNS extracts "sent_ns":N from an update frame without decoding it.
func sentNS(msg []byte) int64 {
	const key = `"sent_ns":`
	i := bytes.Index(msg, []byte(key))
	if i < 0 {
		return 0
	}
	var v int64
	for _, c := range msg[i+len(key):] {
		if c < '0' || c > '9' {
			break
		}
		v = v*10 + int64(c-'0')
	}
	return v
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func envFloat(name string, def float64) float64 {
	if v, err := strconv.ParseFloat(os.Getenv(name), 64); err == nil && v > 0 {
		return v
	}
	return def
}
