package collectors

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParsePasswd(t *testing.T) {
	in := `# comment
root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin

toor:x:0:0:second root:/root:/bin/sh
alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash
+@netgroup::::::
broken line
bad:x:notanumber:1::/:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
`
	got, err := parsePasswd(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint32]string{0: "root", 1: "daemon", 1000: "alice", 65534: "nobody"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("parsePasswd = %v, want %v", got, want)
	}
}

func TestUserNamesReloadsOnUnknownUID(t *testing.T) {
	path := filepath.Join(t.TempDir(), "passwd")
	write := func(s string, mod time.Time) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mod, mod); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Now().Add(-time.Hour)
	write("root:x:0:0::/root:/bin/sh\n", t0)
	u := &userNames{path: path}
	if got := u.lookup(0); got != "root" {
		t.Fatalf("lookup(0) = %q, want root", got)
	}
	if got := u.lookup(1001); got != "1001" {
		t.Fatalf("lookup(1001) = %q, want the number", got)
	}
	write("root:x:0:0::/root:/bin/sh\nbob:x:1001:1001::/home/bob:/bin/sh\n", t0.Add(time.Minute))
	if got := u.lookup(1001); got != "bob" {
		t.Fatalf("lookup(1001) after useradd = %q, want bob", got)
	}
	u2 := &userNames{path: filepath.Join(t.TempDir(), "missing")}
	if got := u2.lookup(0); got != "0" {
		t.Fatalf("lookup without a passwd file = %q, want 0", got)
	}
}
