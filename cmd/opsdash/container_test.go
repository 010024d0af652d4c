package main

import (
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// No Docker engine runs where these tests run. What can be checked without
// one is checked here: the Dockerfile says what the image must be, and the
// binary is built the way its builder stage builds it and run the way the
// image runs it (empty environment, non-root user, host /proc mounted).

// distrolessNonroot is the uid and gid of the "nonroot" user of
// gcr.io/distroless images (and of Kubernetes' runAsUser in docs/deploy.md).
const distrolessNonroot = 65532

// dockerStage is one FROM … stage of a parsed Dockerfile.
type dockerStage struct {
	base, name string
	cmds       []*parser.Node
}

// find returns the stage's instructions named instr (upper case).
func (s dockerStage) find(instr string) []*parser.Node {
	var out []*parser.Node
	for _, n := range s.cmds {
		if strings.EqualFold(n.Value, instr) {
			out = append(out, n)
		}
	}
	return out
}

// args returns an instruction's arguments.
func args(n *parser.Node) []string {
	var out []string
	for a := n.Next; a != nil; a = a.Next {
		out = append(out, a.Value)
	}
	return out
}

// parseDockerfile parses the repository's Dockerfile into stages.
func parseDockerfile(t *testing.T, path string) []dockerStage {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := parser.Parse(f)
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	for _, w := range res.Warnings {
		t.Errorf("Dockerfile warning: %s", w.Short)
	}
	var stages []dockerStage
	for _, n := range res.AST.Children {
		if strings.EqualFold(n.Value, "FROM") {
			a := args(n)
			st := dockerStage{base: a[0]}
			if len(a) == 3 && strings.EqualFold(a[1], "AS") {
				st.name = a[2]
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			continue // ARG before the first FROM
		}
		stages[len(stages)-1].cmds = append(stages[len(stages)-1].cmds, n)
	}
	return stages
}

// argDefaults returns a stage's ARG defaults as NAME=value.
func argDefaults(s dockerStage) []string {
	var env []string
	for _, n := range s.find("ARG") {
		for _, a := range args(n) {
			if strings.Contains(a, "=") {
				env = append(env, a)
			}
		}
	}
	return env
}

// goBuild is the `go build` command line of the builder stage's RUN.
type goBuild struct {
	env    []string // NAME=value assignments before `go`
	args   []string // after `go`: build, flags, package
	output string   // the -o path
}

// parseGoBuild finds the RUN that runs `go build` and splits it into words
// the way the shell would, with the stage's ARGs (overridden by buildArgs,
// as `docker build --build-arg` does) expanded.
func parseGoBuild(t *testing.T, s dockerStage, buildArgs map[string]string) goBuild {
	t.Helper()
	var env []string
	for _, kv := range argDefaults(s) {
		k, _, _ := strings.Cut(kv, "=")
		if v, ok := buildArgs[k]; ok {
			kv = k + "=" + v
		}
		env = append(env, kv)
	}
	var found []goBuild
	for _, n := range s.find("RUN") {
		a := args(n)
		if n.Attributes["json"] || len(a) != 1 || !strings.Contains(a[0], "go build") {
			continue
		}
		words, err := shell.NewLex('\\').ProcessWords(a[0], shell.EnvsFromSlice(env))
		if err != nil {
			t.Fatalf("RUN %s: %v", a[0], err)
		}
		var gb goBuild
		for len(words) > 0 && regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`).MatchString(words[0]) {
			gb.env, words = append(gb.env, words[0]), words[1:]
		}
		if len(words) < 2 || words[0] != "go" || words[1] != "build" {
			t.Fatalf("RUN %q is not a plain `[VAR=value...] go build ...` (no && chains): the test could not build the same way", a[0])
		}
		gb.args = words[1:]
		for i, w := range gb.args {
			if w == "-o" && i+1 < len(gb.args) {
				gb.output = gb.args[i+1]
			}
		}
		found = append(found, gb)
	}
	if len(found) != 1 {
		t.Fatalf("want exactly one RUN with `go build` in stage %q, found %d", s.name, len(found))
	}
	return found[0]
}

// repoRoot is the module root (where the Dockerfile and go.mod are).
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		t.Fatalf("no go.mod at %s: %v", dir, err)
	}
	return dir
}

func TestDockerfile(t *testing.T) {
	root := repoRoot(t)
	stages := parseDockerfile(t, filepath.Join(root, "Dockerfile"))
	if len(stages) < 2 {
		t.Fatalf("want a multi-stage build (a Go builder, then the image), got %d stage(s)", len(stages))
	}
	builder, final := stages[0], stages[len(stages)-1]

	t.Run("builder", func(t *testing.T) {
		if !strings.HasPrefix(builder.base, "golang:") || builder.name == "" {
			t.Fatalf("first stage = FROM %s AS %q, want a named golang:* builder", builder.base, builder.name)
		}
		// The builder's Go must be at least the one go.mod asks for, or
		// the build would need to download a toolchain.
		gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
		if err != nil {
			t.Fatal(err)
		}
		need := regexp.MustCompile(`(?m)^go (\d+)\.(\d+)`).FindStringSubmatch(string(gomod))
		have := regexp.MustCompile(`^golang:(\d+)\.(\d+)`).FindStringSubmatch(builder.base)
		if need == nil || have == nil {
			t.Fatalf("cannot compare Go versions: go.mod %v, builder %s", need, builder.base)
		}
		if atoi(have[1])*1000+atoi(have[2]) < atoi(need[1])*1000+atoi(need[2]) {
			t.Errorf("builder %s is older than go.mod's go %s.%s", builder.base, need[1], need[2])
		}
		gb := parseGoBuild(t, builder, nil)
		if !slices.Contains(gb.env, "CGO_ENABLED=0") {
			t.Errorf("go build runs with %v, want CGO_ENABLED=0 (a static binary for a distroless/scratch image)", gb.env)
		}
		if !slices.Contains(gb.args, "-trimpath") {
			t.Errorf("go build %v without -trimpath (reproducible, no build paths in the binary)", gb.args)
		}
		if i := slices.Index(gb.args, "-ldflags"); i < 0 || !strings.Contains(gb.args[i+1], "-X main.version=") {
			t.Errorf("go build %v does not set main.version with -ldflags", gb.args)
		}
		if gb.args[len(gb.args)-1] != "./cmd/opsdash" {
			t.Errorf("go build builds %q, want ./cmd/opsdash", gb.args[len(gb.args)-1])
		}
		// The package path is relative to WORKDIR, into which the whole
		// repository is copied.
		if w := builder.find("WORKDIR"); len(w) == 0 {
			t.Error("builder has no WORKDIR")
		}
		if !slices.ContainsFunc(builder.find("COPY"), func(n *parser.Node) bool { return slices.Equal(args(n), []string{".", "."}) }) {
			t.Error("builder does not COPY . . (the repository) into its WORKDIR")
		}
	})

	t.Run("image", func(t *testing.T) {
		if final.base != "scratch" && !strings.HasPrefix(final.base, "gcr.io/distroless/static") {
			t.Errorf("final stage FROM %s, want scratch or gcr.io/distroless/static*", final.base)
		}
		bin := ""
		for _, n := range final.find("COPY") {
			if slices.Contains(n.Flags, "--from="+builder.name) {
				a := args(n)
				if gb := parseGoBuild(t, builder, nil); a[0] != gb.output {
					t.Errorf("COPY --from=%s %s, but go build writes %s", builder.name, a[0], gb.output)
				}
				bin = a[len(a)-1]
			}
		}
		if bin == "" {
			t.Fatalf("final stage copies nothing from %s", builder.name)
		}

		if uid := imageUser(t, final); uid == 0 {
			t.Error("the image runs as root")
		}

		exposed := ""
		for _, n := range final.find("EXPOSE") {
			for _, p := range args(n) {
				if strings.TrimSuffix(p, "/tcp") == "8080" {
					exposed = "8080"
				}
			}
		}
		if exposed == "" {
			t.Error("no EXPOSE 8080")
		}

		hc := final.find("HEALTHCHECK")
		if len(hc) != 1 {
			t.Fatalf("want one HEALTHCHECK, got %d", len(hc))
		}
		a := args(hc[0])
		if !hc[0].Attributes["json"] || len(a) < 3 || a[0] != "CMD" || a[1] != bin || a[2] != "healthcheck" {
			t.Fatalf("HEALTHCHECK %v, want CMD [%q, \"healthcheck\", …] in exec form (the image has no shell)", a, bin)
		}
		if u := healthcheckURL(a[3:]); u == nil || u.Port() != exposed || u.Hostname() != "127.0.0.1" {
			t.Errorf("HEALTHCHECK asks %v, want http://127.0.0.1:%s (the exposed port)", u, exposed)
		}
		for _, want := range []string{"--interval=", "--timeout=", "--start-period="} {
			if !slices.ContainsFunc(hc[0].Flags, func(f string) bool { return strings.HasPrefix(f, want) }) {
				t.Errorf("HEALTHCHECK without %s…", want)
			}
		}

		ep := final.find("ENTRYPOINT")
		if len(ep) != 1 || !ep[0].Attributes["json"] || !slices.Equal(args(ep[0]), []string{bin}) {
			t.Errorf("ENTRYPOINT should be [%q] in exec form", bin)
		}

		labels := map[string]string{}
		for _, n := range final.find("LABEL") {
			// key, value, "=" triplets; values still carry their quotes.
			for a := args(n); len(a) >= 2; a = a[min(3, len(a)):] {
				v, _, err := shell.NewLex('\\').ProcessWord(a[1], shell.EnvsFromSlice(argDefaults(final)))
				if err != nil {
					t.Fatal(err)
				}
				labels[a[0]] = v
			}
		}
		for _, k := range []string{"title", "description", "version", "revision", "licenses"} {
			if labels["org.opencontainers.image."+k] == "" {
				t.Errorf("no OCI label org.opencontainers.image.%s (labels: %v)", k, labels)
			}
		}
	})
}

// imageUser resolves the final stage's USER to a uid.
func imageUser(t *testing.T, final dockerStage) int {
	t.Helper()
	users := final.find("USER")
	if len(users) == 0 {
		t.Fatal("no USER: the image would run as root")
	}
	user, _, _ := strings.Cut(args(users[len(users)-1])[0], ":")
	switch {
	case user == "root":
		return 0
	case user == "nonroot" && strings.HasPrefix(final.base, "gcr.io/distroless/"):
		return distrolessNonroot
	}
	uid, err := strconv.Atoi(user)
	if err != nil {
		t.Fatalf("USER %q: a name this test does not know; use a uid or distroless' nonroot", user)
	}
	return uid
}

// healthcheckURL returns the --server URL of healthcheck arguments.
func healthcheckURL(args []string) *url.URL {
	for i, a := range args {
		v, ok := strings.CutPrefix(a, "--server=")
		if !ok && a == "--server" && i+1 < len(args) {
			v, ok = args[i+1], true
		}
		if ok {
			u, err := url.Parse(v)
			if err != nil {
				return nil
			}
			return u
		}
	}
	return nil
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// TestContainerBinary builds the binary exactly as the Dockerfile's builder
// does (its `go build` line, parsed, with its environment) and runs it as
// the image does: ENTRYPOINT and CMD, an empty environment but HOST_PROC
// at the host's /proc and OPSDASH_LISTEN, as the image's non-root user.
// It must serve, become ready, pass the image's HEALTHCHECK command and
// drain on SIGTERM with exit code 0.
func TestContainerBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped with -short")
	}
	root := repoRoot(t)
	stages := parseDockerfile(t, filepath.Join(root, "Dockerfile"))
	if len(stages) < 2 {
		t.Fatal("not a multi-stage Dockerfile (TestDockerfile says more)")
	}
	builder, final := stages[0], stages[len(stages)-1]
	const version = "container-test"
	gb := parseGoBuild(t, builder, map[string]string{"VERSION": version})

	// A directory the image's user can enter and read, as the image's
	// /usr/local/bin is (t.TempDir makes it and its parent 0700).
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "opsdash")
	buildArgs := slices.Clone(gb.args)
	buildArgs[slices.Index(buildArgs, "-o")+1] = bin
	build := exec.Command("go", buildArgs...)
	build.Dir = root // WORKDIR, into which the repository was copied
	build.Env = append(os.Environ(), gb.env...)
	t.Logf("go %q (env %q)", buildArgs, gb.env)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	checkStatic(t, bin)
	if out, err := exec.Command(bin, "version").Output(); err != nil || !strings.Contains(string(out), version) {
		t.Errorf("`opsdash version` = %q, %v; want the VERSION build arg %q set through -ldflags", out, err, version)
	}

	// Run as the image does: ENTRYPOINT + CMD.
	var argv []string
	for _, instr := range []string{"ENTRYPOINT", "CMD"} {
		if n := final.find(instr); len(n) > 0 {
			argv = append(argv, args(n[len(n)-1])...)
		}
	}
	image := argv[0]
	argv[0] = bin
	addr := freeAddr(t)
	env := []string{"HOST_PROC=/proc", "OPSDASH_LISTEN=" + addr}
	uid := imageUser(t, final)
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}
	if os.Geteuid() != 0 {
		t.Logf("not root (uid %d): running as this user, which is not root either", os.Geteuid())
		cred = nil
	}
	if err := runsAs(bin, cred); err != nil {
		if !errors.Is(err, syscall.EPERM) {
			t.Fatal(err)
		}
		t.Logf("SKIP the non-root part: this machine does not permit switching to uid %d (%v); running as uid %d", uid, err, os.Geteuid())
		cred = nil
	}
	p := startProcess(t, serveCmd(argv, env, cred))
	if p.addr != addr {
		t.Errorf("serving on %s, want OPSDASH_LISTEN's %s", p.addr, addr)
	}
	if cred != nil {
		if ids := procIDs(t, p.cmd.Process.Pid); ids != fmt.Sprintf("%d %d", uid, uid) {
			t.Errorf("process runs as uid/gid %s, want %d", ids, uid)
		}
		t.Logf("serving as uid/gid %d (the image's USER)", uid)
	}
	base := "http://" + addr

	if code, body := get(t, base+"/healthz"); code != 200 {
		t.Fatalf("/healthz = %d %s", code, body)
	}
	eventually(t, "/readyz to say ready", func() bool {
		code, body := get(t, base+"/readyz")
		return code == 200 && body == "ready"
	})

	// The image's HEALTHCHECK command, pointed at this port, as the same user.
	hcArgs := args(final.find("HEALTHCHECK")[0])[1:]
	if hcArgs[0] != image {
		t.Fatalf("HEALTHCHECK runs %s, not the image's binary %s", hcArgs[0], image)
	}
	hcArgs = slices.Clone(hcArgs)
	hcArgs[0] = bin
	for i, a := range hcArgs {
		if strings.HasPrefix(a, "http://") {
			hcArgs[i] = base
		}
	}
	hc := exec.Command(hcArgs[0], hcArgs[1:]...)
	hc.Env = []string{}
	hc.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := hc.CombinedOutput(); err != nil {
		t.Errorf("HEALTHCHECK %v: %v\n%s", hcArgs, err, out)
	}

	// It serves the host's metrics read through HOST_PROC, to a
	// subscriber, and closes it with 1001 on SIGTERM.
	ws := subscribeWS(t, base, hostTopic(t, base, "cpu"))
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(15 * time.Second))
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			if !websocket.IsCloseError(err, websocket.CloseGoingAway) {
				t.Errorf("WebSocket ended with %v, want close 1001", err)
			}
			break
		}
	}
	if code := p.exitCode(t, 15*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0", code)
	}
	if !strings.Contains(p.logs.String(), `"HOST_PROC":"/proc"`) {
		t.Errorf("the startup log does not show HOST_PROC in effect:\n%s", p.logs.String())
	}
}

// serveCmd is the server command with exactly env as its environment.
func serveCmd(argv, env []string, cred *syscall.Credential) *exec.Cmd {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	return cmd
}

// runsAs checks that bin can be started with cred (nil: as this user):
// switching users needs a privilege a container runtime has but a test
// machine may not.
func runsAs(bin string, cred *syscall.Credential) error {
	cmd := exec.Command(bin, "version")
	cmd.Env = []string{}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s version: %w %s", bin, err, out)
	}
	return nil
}

// freeAddr returns a loopback address with a port nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// checkStatic fails unless bin is a statically linked ELF: no interpreter,
// no shared libraries, as a distroless/static or scratch image requires.
func checkStatic(t *testing.T, bin string) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has a dynamic loader (PT_INTERP): not static")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %v: not static", libs)
	}
	if st, err := os.Stat(bin); err == nil {
		t.Logf("binary: %.1f MiB", float64(st.Size())/(1<<20))
	}
}

// procIDs returns "uid gid" (effective) of a running process.
func procIDs(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	var uid, gid string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == "Uid:" {
			uid = f[2]
		}
		if len(f) >= 3 && f[0] == "Gid:" {
			gid = f[2]
		}
	}
	return uid + " " + gid
}

// hostTopic finds the server's topic <host id>.<metric>: with an empty
// environment the host id is this machine's hostname.
func hostTopic(t *testing.T, base, metric string) string {
	t.Helper()
	_, body := get(t, base+"/api/v1/topics")
	var topics []struct{ Name string }
	if err := json.Unmarshal([]byte(body), &topics); err != nil {
		t.Fatalf("/api/v1/topics: %v: %s", err, body)
	}
	for _, tp := range topics {
		if strings.Count(tp.Name, ".") == 1 && strings.HasSuffix(tp.Name, "."+metric) {
			return tp.Name
		}
	}
	t.Fatalf("no <host>.%s topic in %s", metric, body)
	return ""
}
