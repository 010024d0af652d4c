package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/opencontainers/go-digest"
)

// lintDockerfile runs BuildKit's Dockerfile checks on dt, the ones `docker
// build --check` runs (every stage, every rule not turned off by a
// `# check=` directive) plus the experimental ones, and returns each
// warning as "line N: Rule: message", and a build error if the Dockerfile
// would not build at all.
func lintDockerfile(t *testing.T, dt []byte) (warnings []string, buildErr string) {
	t.Helper()
	// A `# check=` directive is the linter's configuration when there is
	// no BuildKit client: add experimental=all to it. Directives are the
	// top comment lines, so one more is line 1 and the rest move down one.
	check, _, _, _ := parser.ParseDirective("check", dt)
	if check != "" {
		t.Fatalf("the Dockerfile has a '# check=%s' directive: keep it clean rather than configure the checks", check)
	}
	withDirective := append([]byte("# check=experimental=all\n"), dt...)
	res, err := dockerfile2llb.DockerfileLint(context.Background(), withDirective, dockerfile2llb.ConvertOpt{
		// The results name their source by a map of an LLB definition,
		// which a lint that builds nothing does not have: an empty one.
		SourceMap:    &llb.SourceMap{Filename: "Dockerfile", Language: "Dockerfile", Data: withDirective, Definition: &llb.Definition{}},
		MetaResolver: baseImages{},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range res.Warnings {
		line := 0
		if w.Location != nil && len(w.Location.Ranges) > 0 {
			line = int(w.Location.Ranges[0].Start.Line) - 1
		}
		warnings = append(warnings, fmt.Sprintf("line %d: %s: %s", line, w.RuleName, w.Detail))
	}
	if res.Error != nil {
		buildErr = res.Error.Message
	}
	return warnings, buildErr
}

// baseImages answers BuildKit's questions about a base image (its platform
// and environment, for InvalidBaseImagePlatform and UndefinedVar) without
// a registry, which these tests cannot reach: an image of the platform
// asked for, with only PATH set. A variable the real base image sets would
// be reported undefined, so the check errs on the strict side.
type baseImages struct{}

func (baseImages) ResolveImageConfig(_ context.Context, ref string, opt sourceresolver.Opt) (string, digest.Digest, []byte, error) {
	os, arch := "linux", runtime.GOARCH
	if p := opt.Platform; p != nil {
		os, arch = p.OS, p.Architecture
	}
	cfg, err := json.Marshal(map[string]any{
		"os": os, "architecture": arch,
		"config": map[string]any{"Env": []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}},
	})
	return ref, digest.FromBytes(cfg), cfg, err
}

// TestDockerfileLint: the Dockerfile passes BuildKit's own checks (what
// `docker build --check` reports, experimental rules included) without a
// warning, and builds as far as BuildKit can tell without running it.
func TestDockerfileLint(t *testing.T) {
	dt, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	warnings, buildErr := lintDockerfile(t, dt)
	for _, w := range warnings {
		t.Errorf("Dockerfile %s", w)
	}
	if buildErr != "" {
		t.Errorf("Dockerfile does not build: %s", buildErr)
	}
}

// TestDockerfileLintFindsMistakes: the checks run and see the kinds of
// mistake they are for, so TestDockerfileLint passing means something.
func TestDockerfileLintFindsMistakes(t *testing.T) {
	bad := []byte(`# syntax=docker/dockerfile:1
# the builder
FROM golang:1.26 as Build
ENV GOFLAGS -trimpath
ARG GITHUB_TOKEN=none
WORKDIR src
copy $NOT_DEFINED /x
CMD echo hello
`)
	warnings, buildErr := lintDockerfile(t, bad)
	if buildErr != "" {
		t.Fatalf("build error %s", buildErr)
	}
	var rules []string
	for _, w := range warnings {
		rules = append(rules, strings.SplitN(w, ": ", 3)[1])
	}
	for _, want := range []string{"InvalidDefinitionDescription", "FromAsCasing", "StageNameCasing", "LegacyKeyValueFormat",
		"SecretsUsedInArgOrEnv", "WorkdirRelativePath", "ConsistentInstructionCasing", "UndefinedVar", "JSONArgsRecommended"} {
		if !slices.Contains(rules, want) {
			t.Errorf("no %s warning among:\n%s", want, strings.Join(warnings, "\n"))
		}
	}
	// Line numbers are the Dockerfile's own, not shifted by the directive
	// the test adds.
	if i := slices.Index(rules, "JSONArgsRecommended"); i >= 0 && !strings.HasPrefix(warnings[i], "line 8:") {
		t.Errorf("JSONArgsRecommended reported as %q, want line 8", warnings[i])
	}
}
