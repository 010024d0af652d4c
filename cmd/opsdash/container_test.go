package main

import (
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"net"
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
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	"go.yaml.in/yaml/v3"
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

		if uid := imageUser(t, final); uid != distrolessNonroot {
			t.Errorf("USER uid %d, want distroless' nonroot %d", uid, distrolessNonroot)
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
		// An explicit --server would be asked as given, whatever port or
		// TLS the container's server was started with.
		if slices.ContainsFunc(a[3:], func(s string) bool { return strings.HasPrefix(strings.TrimLeft(s, "-"), "server") }) {
			t.Errorf("HEALTHCHECK %v passes --server: it would beat the address file and OPSDASH_LISTEN", a)
		}
		// serve writes its address where healthcheck reads it: a path
		// the image's user can write, in a directory the image has.
		addrFile := envValue(imageEnv(t, final), "OPSDASH_ADDR_FILE")
		if filepath.Dir(addrFile) != "/tmp" {
			t.Errorf("ENV OPSDASH_ADDR_FILE=%q, want a file in /tmp (distroless' only directory every user may write)", addrFile)
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
		checkLicense(t, root, labels["org.opencontainers.image.licenses"])
	})
}

// checkLicense: the repository's LICENSE is the full text of the license
// the image's label names (only Apache-2.0 is known here).
func checkLicense(t *testing.T, root, spdx string) {
	t.Helper()
	if spdx != "Apache-2.0" {
		t.Fatalf("the image's license label says %q; this test knows how to check Apache-2.0 only", spdx)
	}
	b, err := os.ReadFile(filepath.Join(root, "LICENSE"))
	if err != nil {
		t.Fatalf("the image says %s but the repository has no LICENSE: %v", spdx, err)
	}
	text := string(b)
	for _, want := range []string{
		"Apache License\n                           Version 2.0, January 2004\n",
		"TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION",
		"9. Accepting Warranty or Additional Liability.",
		"END OF TERMS AND CONDITIONS",
		"Copyright 2026 The opsdash authors\n",
		"limitations under the License.\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("LICENSE is not the full Apache-2.0 text with the project's copyright: no %q", want)
		}
	}
	if n := strings.Count(text, "\n"); n != 201 {
		t.Errorf("LICENSE has %d lines, the standard Apache-2.0 text 201", n)
	}
}

// imageEnv returns the ENV of a stage as NAME=value, values expanded with
// the stage's ARG defaults.
func imageEnv(t *testing.T, s dockerStage) []string {
	t.Helper()
	var env []string
	for _, n := range s.find("ENV") {
		// key, value, "=" triplets, as for LABEL.
		for a := args(n); len(a) >= 2; a = a[min(3, len(a)):] {
			v, _, err := shell.NewLex('\\').ProcessWord(a[1], shell.EnvsFromSlice(argDefaults(s)))
			if err != nil {
				t.Fatal(err)
			}
			env = append(env, a[0]+"="+v)
		}
	}
	return env
}

// envValue is NAME's value in env (NAME=value entries; the last wins).
func envValue(env []string, name string) string {
	v := ""
	for _, kv := range env {
		if k, val, _ := strings.Cut(kv, "="); k == name {
			v = val
		}
	}
	return v
}

// imageUser is the final stage's USER, which must be numeric uid:gid with
// both equal: a name needs the image's /etc/passwd and makes Kubernetes'
// runAsNonRoot ask for runAsUser.
func imageUser(t *testing.T, final dockerStage) int {
	t.Helper()
	users := final.find("USER")
	if len(users) == 0 {
		t.Fatal("no USER: the image would run as root")
	}
	u := args(users[len(users)-1])[0]
	user, group, _ := strings.Cut(u, ":")
	uid, err := strconv.Atoi(user)
	if err != nil || group != user {
		t.Fatalf("USER %q: want a numeric uid:gid such as %d:%d, not a name", u, distrolessNonroot, distrolessNonroot)
	}
	return uid
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// TestContainerBinary builds the binary exactly as the Dockerfile's builder
// does (its `go build` line, parsed, with its environment and the VERSION
// and DATE build args) and runs it as `docker run IMAGE serve --listen ADDR`
// would: the ENTRYPOINT, the image's ENV and HOST_PROC at the host's /proc,
// as the image's non-root user. It must serve on ADDR, become ready, pass
// the image's HEALTHCHECK command run with the same environment (which
// cannot see the --listen flag) and drain on SIGTERM with exit code 0.
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
	const version, date = "container-test", "2026-01-02T03:04:05Z"
	gb := parseGoBuild(t, builder, map[string]string{"VERSION": version, "DATE": date})

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
	if out, err := exec.Command(bin, "version").Output(); err != nil || !strings.Contains(string(out), version) || !strings.Contains(string(out), "built "+date) {
		t.Errorf("`opsdash version` = %q, %v; want the VERSION and DATE build args %q, %q set through -ldflags", out, err, version, date)
	}

	// Run as `docker run IMAGE serve --listen ADDR` does: the ENTRYPOINT,
	// the port as a flag, which the healthcheck process cannot see. The
	// environment is the image's ENV, HOST_PROC at the host's /proc, and an
	// OPSDASH_LISTEN on a port where nothing listens (this machine may run
	// another server on the default :8080): the healthcheck must follow
	// the running server, not the variable.
	ep := final.find("ENTRYPOINT")
	if len(ep) == 0 {
		t.Fatal("no ENTRYPOINT")
	}
	image := args(ep[len(ep)-1])[0]
	addr := freeAddr(t)
	argv := []string{bin, "serve", "--listen", addr}
	// The address file where the image puts it, under a directory of this
	// test (every user may write it, as /tmp): parallel tests must not
	// share /tmp/opsdash.addr.
	tmp := t.TempDir()
	if err := os.Chmod(tmp, 0o1777); err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, kv := range imageEnv(t, final) {
		if k, v, _ := strings.Cut(kv, "="); k == "OPSDASH_ADDR_FILE" {
			kv = k + "=" + filepath.Join(tmp, strings.TrimPrefix(v, "/tmp/"))
		}
		env = append(env, kv)
	}
	env = append(env, "HOST_PROC=/proc", "OPSDASH_LISTEN="+freeAddr(t))
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
		t.Errorf("serving on %s, want --listen's %s", p.addr, addr)
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

	// The image's HEALTHCHECK command as it is, with the container's
	// environment (docker runs it like docker exec), as the same user.
	hcArgs := args(final.find("HEALTHCHECK")[0])[1:]
	if hcArgs[0] != image {
		t.Fatalf("HEALTHCHECK runs %s, not the image's binary %s", hcArgs[0], image)
	}
	hcArgs = slices.Clone(hcArgs)
	hcArgs[0] = bin
	hc := exec.Command(hcArgs[0], hcArgs[1:]...)
	hc.Env = env
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

// TestDockerContext: .dockerignore lets in every file `go build
// ./cmd/opsdash` reads (the packages' Go and embedded files, go.mod,
// go.sum) and keeps out what the build must not see: .git (a worktree's
// .git file points outside the context, and VCS stamping then fails),
// screenshots and local binaries. It uses BuildKit's own pattern matcher.
func TestDockerContext(t *testing.T) {
	root := repoRoot(t)
	f, err := os.Open(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatal(err)
	}
	excluded := func(path string) bool {
		ex, err := pm.MatchesOrParentMatches(path)
		if err != nil {
			t.Fatal(err)
		}
		return ex
	}

	list := exec.Command("go", "list", "-deps", "-f", `{{if .Module}}{{if .Module.Main}}{{.Dir}}|{{join .GoFiles ","}},{{join .EmbedFiles ","}}{{end}}{{end}}`, "./cmd/opsdash")
	list.Dir = root
	out, err := list.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	needed := []string{"go.mod", "go.sum"}
	for _, line := range strings.Fields(string(out)) {
		dir, files, _ := strings.Cut(line, "|")
		rel, err := filepath.Rel(root, dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range strings.Split(files, ",") {
			if f != "" {
				needed = append(needed, filepath.ToSlash(filepath.Join(rel, f)))
			}
		}
	}
	if len(needed) < 20 {
		t.Fatalf("go list found only %v", needed)
	}
	for _, p := range needed {
		if excluded(p) {
			t.Errorf(".dockerignore leaves out %s, which the build needs", p)
		}
	}
	for _, p := range []string{".git", ".git/HEAD", "docs/screenshots/dashboard.png", "README.md", "opsdash",
		"cmd/opsdash/opsdash", "cmd/opsdash-load/opsdash-load", "cmd/opsdash/opsdash.test", "stream/cpu.prof"} {
		if !excluded(p) {
			t.Errorf(".dockerignore lets %s into the build context", p)
		}
	}
}

// TestComposeFile: deploy/compose.yaml builds the repository with every
// build arg the Dockerfile takes (so `opsdash version` can say when it was
// built), gives opsdash longer than its drain timeout to stop, and gives
// the read-only container a writable place for the image's address file.
// docs/deploy.md's build line sets every build arg too.
func TestComposeFile(t *testing.T) {
	root := repoRoot(t)
	stages := parseDockerfile(t, filepath.Join(root, "Dockerfile"))
	builder, final := stages[0], stages[len(stages)-1]
	var buildArgs []string
	for _, kv := range argDefaults(builder) {
		k, _, _ := strings.Cut(kv, "=")
		buildArgs = append(buildArgs, k)
	}
	if !slices.Contains(buildArgs, "DATE") {
		t.Errorf("the builder takes the build args %v, no DATE", buildArgs)
	}

	raw, err := os.ReadFile(filepath.Join(root, "deploy", "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Build struct {
				Context string            `yaml:"context"`
				Args    map[string]string `yaml:"args"`
			} `yaml:"build"`
			StopGracePeriod string            `yaml:"stop_grace_period"`
			ReadOnly        bool              `yaml:"read_only"`
			Tmpfs           []string          `yaml:"tmpfs"`
			Environment     map[string]string `yaml:"environment"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &compose); err != nil {
		t.Fatalf("deploy/compose.yaml: %v", err)
	}
	svc, ok := compose.Services["opsdash"]
	if !ok {
		t.Fatal("deploy/compose.yaml has no opsdash service")
	}
	if filepath.Clean(filepath.Join(root, "deploy", svc.Build.Context)) != root {
		t.Errorf("build context %q is not the repository", svc.Build.Context)
	}
	for _, a := range buildArgs {
		if v, ok := svc.Build.Args[a]; !ok || !strings.HasPrefix(v, "${") {
			t.Errorf("compose build args %v: %s is not taken from the shell (${…})", svc.Build.Args, a)
		}
	}

	drain := defaultDrainTimeout
	if v := svc.Environment[envName("drain-timeout")]; v != "" {
		if drain, err = time.ParseDuration(v); err != nil {
			t.Fatal(err)
		}
	}
	if grace, err := time.ParseDuration(svc.StopGracePeriod); err != nil || grace <= drain {
		t.Errorf("stop_grace_period %q, want more than the drain timeout %v (%v)", svc.StopGracePeriod, drain, err)
	}

	if addrFile := envValue(imageEnv(t, final), "OPSDASH_ADDR_FILE"); svc.ReadOnly && !slices.Contains(svc.Tmpfs, filepath.Dir(addrFile)) {
		t.Errorf("read_only: true without a tmpfs on %s, where the image's OPSDASH_ADDR_FILE %s lives (tmpfs: %v)", filepath.Dir(addrFile), addrFile, svc.Tmpfs)
	}

	deploy, err := os.ReadFile(filepath.Join(root, "docs", "deploy.md"))
	if err != nil {
		t.Fatal(err)
	}
	build := regexp.MustCompile(`(?m)^docker build (?:.*\\\n)*.*`).FindString(string(deploy))
	for _, a := range buildArgs {
		if !strings.Contains(build, "--build-arg "+a+"=") {
			t.Errorf("docs/deploy.md's build line %q does not set %s", build, a)
		}
	}
}
