package collectors

import (
	"os"
	"path/filepath"
	"testing"
)

// writeTree writes files (path relative to root -> content) under root,
// creating directories: a fake /proc, /sys or /etc for a test.
func writeTree(t testing.TB, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// WriteTree is writeTree for the tests of package collectors_test.
var WriteTree = writeTree
