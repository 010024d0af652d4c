// Package envflag lets every flag of a flag.FlagSet also be set by an
// environment variable (--listen ↔ OPSDASH_LISTEN), the way containers and
// systemd units configure a process, and holds the list and map flag
// values opsdash's commands share.
//
// Precedence: a flag on the command line beats its variable, which beats
// the default; an empty variable counts as unset. A bad value in a
// variable is reported with the variable's name, since the flag package
// would name only the flag.
package envflag

import (
	"errors"
	"flag"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Name returns the environment variable that sets flag name: prefix and
// the name in upper case with '-' turned into '_' (Name("OPSDASH_",
// "max-conns") is OPSDASH_MAX_CONNS).
func Name(prefix, name string) string {
	return prefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// Parse sets every flag of fs whose variable (Name(prefix, flag)) getenv
// returns non-empty, then parses args. The variables' errors are all
// reported at once, and then nothing is parsed.
func Parse(fs *flag.FlagSet, prefix string, args []string, getenv func(string) string) error {
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if v := getenv(Name(prefix, f.Name)); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %v", Name(prefix, f.Name), v, err))
			}
		}
	})
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return fs.Parse(args)
}

// List is a flag of comma-separated values ("a, b,c"); blanks around them
// and empty ones are dropped.
type List []string

func (l *List) String() string { return strings.Join(*l, ",") }

// Set replaces the list, so that a command line overrides a variable's
// list rather than extending it.
func (l *List) Set(s string) error {
	*l = nil
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*l = append(*l, part)
		}
	}
	return nil
}

// DurationMap is a flag of comma-separated name=duration pairs, e.g.
// "cpu=2s,disk.usage=30s".
type DurationMap map[string]time.Duration

func (m *DurationMap) String() string {
	parts := make([]string, 0, len(*m))
	for k, v := range *m {
		parts = append(parts, k+"="+v.String())
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// Set replaces the map with the pairs in s.
func (m *DurationMap) Set(s string) error {
	out := DurationMap{}
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		name, dur, ok := strings.Cut(part, "=")
		if !ok {
			return fmt.Errorf("%q: want collector=duration, e.g. cpu=2s", part)
		}
		d, err := time.ParseDuration(strings.TrimSpace(dur))
		if err != nil {
			return fmt.Errorf("%q: %v", part, err)
		}
		out[strings.TrimSpace(name)] = d
	}
	*m = out
	return nil
}
