package main

import (
	"bufio"
	"context"
	"flag"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The peers scenario's publisher runs in a process of its own, on the load
// tool's core at a higher priority (nice -10), with GOMAXPROCS=1: inside
// the tool its goroutine would wait behind thousands of runnable client
// goroutines for every tick, and the publish rate would measure the tool.
// It reports each request on stdout, which the tool reads:
//
//	S <pub_seq> <unix ns>   the request of pub_seq starts
//	C <pub_seq> <ns>        the server accepted it; the request took ns
//	E <pub_seq> <message>   it failed

// peersPublisherMain is the hidden `opsdash-load peers-publisher` command.
func peersPublisherMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("opsdash-load peers-publisher", flag.ContinueOnError)
	fs.SetOutput(stderr)
	kind := fs.String("kind", "", "opsdash, centrifugo or node")
	addr := fs.String("addr", "", "the server's host:port")
	rate := fs.Float64("rate", 100, "publishes per second")
	d := fs.Duration("duration", 20*time.Second, "how long")
	payload := fs.Int("payload-bytes", 200, "value size")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	p := newPeerPublisher(&peerServer{kind: &peerKind{name: *kind}, addr: *addr}, *payload)
	w := bufio.NewWriter(stdout)
	p.report = func(line string) { w.WriteString(line); w.WriteByte('\n'); w.Flush() }
	period := time.Duration(float64(time.Second) / *rate)
	p.run(ctx, time.Now(), period, *d)
	return 0
}

// runExternal runs the publisher process for d at rate against s and
// keeps p's bookkeeping from its reports. It returns the values accepted.
func (p *peerPublisher) runExternal(ctx context.Context, s *peerServer, rate float64, d time.Duration, payload int) (uint64, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, err
	}
	cmd := exec.CommandContext(ctx, "nice", "-n", "-10", exe, "peers-publisher",
		"--kind", s.kind.name, "--addr", s.addr, "--rate", strconv.FormatFloat(rate, 'g', -1, 64),
		"--duration", d.String(), "--payload-bytes", strconv.Itoa(payload))
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	var n uint64
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), " ", 3)
		if len(f) < 2 {
			continue
		}
		seq, _ := strconv.ParseUint(f[1], 10, 64)
		switch f[0] {
		case "S":
			if len(f) == 3 {
				ns, _ := strconv.ParseInt(f[2], 10, 64)
				p.noteStart(seq, ns)
			}
		case "C":
			p.completed.Store(seq)
			if len(f) == 3 {
				ns, _ := strconv.ParseInt(f[2], 10, 64)
				p.postNanos.Add(ns)
			}
			n++
		case "E":
			p.errors.Add(1)
			if len(f) == 3 {
				p.lastErr.Store(f[2])
			}
		}
	}
	return n, cmd.Wait()
}

// noteStart records that pub_seq seq's request started at ns.
func (p *peerPublisher) noteStart(seq uint64, ns int64) {
	p.record(seq, ns)
	p.posts.Add(1)
}
