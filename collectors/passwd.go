package collectors

import (
	"bufio"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// userNames maps uids to user names from a passwd file (the host's, under
// HOST_ETC), loaded when first needed and again when an unknown uid shows
// up and the file has changed since.
type userNames struct {
	path    string
	names   map[uint32]string
	modTime time.Time
	size    int64
	loaded  bool
}

// lookup returns uid's name, or the uid in decimal if passwd lacks it.
func (u *userNames) lookup(uid uint32) string {
	if name, ok := u.names[uid]; ok {
		return name
	}
	if u.reloadIfChanged() {
		if name, ok := u.names[uid]; ok {
			return name
		}
	}
	return strconv.FormatUint(uint64(uid), 10)
}

// reloadIfChanged reloads the file if it changed (or was never loaded) and
// reports whether it did.
func (u *userNames) reloadIfChanged() bool {
	st, err := os.Stat(u.path)
	if err != nil {
		return false
	}
	if u.loaded && st.ModTime().Equal(u.modTime) && st.Size() == u.size {
		return false
	}
	f, err := os.Open(u.path)
	if err != nil {
		return false
	}
	defer f.Close()
	names, err := parsePasswd(f)
	if err != nil {
		return false
	}
	u.names, u.modTime, u.size, u.loaded = names, st.ModTime(), st.Size(), true
	return true
}

// parsePasswd reads name:password:uid:... lines into a uid → name map. The
// first name of a uid wins, as with getpwuid. Comments, blank and malformed
// lines and NIS "+"/"-" entries are skipped.
func parsePasswd(r io.Reader) (map[uint32]string, error) {
	names := make(map[uint32]string)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == '+' || line[0] == '-' {
			continue
		}
		parts := strings.SplitN(line, ":", 4)
		if len(parts) < 4 || parts[0] == "" {
			continue
		}
		uid, err := strconv.ParseUint(parts[2], 10, 32)
		if err != nil {
			continue
		}
		if _, dup := names[uint32(uid)]; !dup {
			names[uint32(uid)] = parts[0]
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return names, nil
}
