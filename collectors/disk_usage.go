package collectors

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/shirou/gopsutil/v3/disk"
	"golang.org/x/sys/unix"
)

// DiskUsage is the payload of <host>.disk.usage: space and inodes of every
// real filesystem, sorted by mount point.
type DiskUsage struct {
	Mounts []MountUsage `json:"mounts"`
	// Unresponsive lists network (or FUSE) filesystems whose statfs did
	// not answer within the time allowed, typically a dead NFS server.
	// Omitted when empty.
	Unresponsive []UnresponsiveMount `json:"unresponsive,omitempty"`
}

// MountUsage is one mounted filesystem. Sizes follow df: FreeBytes is what
// unprivileged users can still write, UsedPct is used / (used + free), so
// blocks reserved for root make used + free less than total and a full
// filesystem reads 100 %.
type MountUsage struct {
	// Mount is the mount point as the host sees it ("/", "/var/lib/data"),
	// also when opsdash runs in a container and reads it under HOST_ROOT.
	Mount string `json:"mount"`
	// Device is the mounted source: "/dev/nvme0n1p2", "server:/export".
	Device        string  `json:"device"`
	FSType        string  `json:"fs_type"`
	TotalBytes    uint64  `json:"total_bytes"`
	UsedBytes     uint64  `json:"used_bytes"`
	FreeBytes     uint64  `json:"free_bytes"`
	UsedPct       float64 `json:"used_pct"`
	InodesTotal   uint64  `json:"inodes_total"`
	InodesUsed    uint64  `json:"inodes_used"`
	InodesFree    uint64  `json:"inodes_free"`
	InodesUsedPct float64 `json:"inodes_used_pct"`
}

// UnresponsiveMount is a mount whose statfs did not answer in time.
type UnresponsiveMount struct {
	Mount  string `json:"mount"`
	Device string `json:"device"`
	FSType string `json:"fs_type"`
	Error  string `json:"error"`
}

const (
	// remoteStatfsTimeout bounds a statfs of a network or FUSE filesystem.
	remoteStatfsTimeout = 2 * time.Second
)

// errStatfsBlocked reports a mount whose statfs from an earlier run has
// still not returned; no second one is started (see statfsBounded).
var errStatfsBlocked = errors.New("statfs from an earlier run has not returned")

// diskUsageCollector produces <host>.disk.usage.
type diskUsageCollector struct {
	spec
	topic    string
	hostRoot string
	log      *slog.Logger

	// partitions reads the mount table; statfs queries one path. Fields so
	// that tests can stand in for a host with a dead NFS server.
	partitions    func(ctx context.Context) ([]disk.PartitionStat, error)
	statfs        func(path string, st *unix.Statfs_t) error
	remoteTimeout time.Duration

	mu sync.Mutex
	// pending holds the paths whose bounded statfs is still running.
	pending map[string]bool
	// unresponsive holds the mount points reported unresponsive last run,
	// so that only changes are logged.
	unresponsive map[string]bool
}

// NewDiskUsage returns the collector of <host>.disk.usage: size, use and
// inodes of every real mounted filesystem.
//
// The mount table is the host's when HOST_PROC points at the host's /proc
// (gopsutil reads $HOST_PROC/1/mountinfo), and each mount point is statfs'd
// under cfg.HostRoot when set. Pseudo filesystems, container layers and bind
// mounts are left out (see selectMounts). Network and FUSE filesystems are
// statfs'd with a 2 s limit so that a dead server cannot stall the others;
// one that does not answer is listed as unresponsive.
func NewDiskUsage(cfg Config) Collector { return buildAlways("disk.usage", cfg) }

func newDiskUsage(cfg Config, s spec) *diskUsageCollector {
	if cfg.HostRoot != "" && !hostPathsFromEnv().procFromEnv {
		cfg.logger().Warn("disk.usage: HOST_ROOT is set but HOST_PROC is not: the mount table read is this process's own, not the host's; set HOST_PROC to the host's /proc too",
			"host_root", cfg.HostRoot)
	}
	return &diskUsageCollector{
		spec:     s,
		topic:    cfg.HostID + ".disk.usage",
		hostRoot: cfg.HostRoot,
		log:      cfg.logger(),
		partitions: func(ctx context.Context) ([]disk.PartitionStat, error) {
			return disk.PartitionsWithContext(ctx, true)
		},
		statfs:        unix.Statfs,
		remoteTimeout: remoteStatfsTimeout,
		pending:       make(map[string]bool),
		unresponsive:  make(map[string]bool),
	}
}

func (c *diskUsageCollector) Topics() []TopicInfo {
	return []TopicInfo{c.declare(c.topic, "Space and inodes per mounted filesystem (bytes, pct); pseudo and bind mounts left out")}
}

// Collect statfs's every selected mount.
func (c *diskUsageCollector) Collect(ctx context.Context) ([]Sample, error) {
	parts, err := c.partitions(ctx)
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	entries := make([]mountEntry, len(parts))
	for i, p := range parts {
		entries[i] = mountEntry{
			device:     p.Device,
			mountpoint: p.Mountpoint,
			fsType:     p.Fstype,
			bind:       slices.Contains(p.Opts, "bind"),
		}
	}
	entries = selectMounts(entries)

	root := c.hostRoot
	if root == "" {
		root = "/"
	}
	data := DiskUsage{Mounts: make([]MountUsage, 0, len(entries))}
	var firstErr error
	nowUnresponsive := make(map[string]bool)
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		path := filepath.Join(root, e.mountpoint)
		var st unix.Statfs_t
		if isRemoteFS(e.fsType) {
			st, err = c.statfsBounded(ctx, path)
		} else {
			err = c.statfs(path, &st)
		}
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return nil, ctxErr
			}
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errStatfsBlocked) {
				nowUnresponsive[e.mountpoint] = true
				data.Unresponsive = append(data.Unresponsive, UnresponsiveMount{
					Mount: e.mountpoint, Device: e.device, FSType: e.fsType, Error: err.Error(),
				})
				continue
			}
			// Permission denied (another user's FUSE mount), a mount
			// that vanished since the table was read, or, in a
			// container, a mount not visible under HOST_ROOT: leave
			// it out, and fail only if nothing could be read at all.
			if firstErr == nil {
				firstErr = fmt.Errorf("statfs %s: %w", path, err)
			}
			continue
		}
		if st.Blocks == 0 {
			continue // a pseudo filesystem this list does not know by name
		}
		data.Mounts = append(data.Mounts, usageFromStatfs(e, &st))
	}
	c.logUnresponsive(nowUnresponsive)
	if len(data.Mounts) == 0 && len(data.Unresponsive) == 0 && firstErr != nil {
		return nil, firstErr
	}
	return []Sample{{Topic: c.topic, Time: time.Now(), Data: data}}, nil
}

// usageFromStatfs turns a statfs result into a MountUsage, computed as df
// does.
func usageFromStatfs(e mountEntry, st *unix.Statfs_t) MountUsage {
	// Block counts are in units of the fragment size; f_bsize is only the
	// preferred I/O size, which differs on some filesystems.
	bs := uint64(st.Frsize)
	if bs == 0 {
		bs = uint64(st.Bsize)
	}
	u := MountUsage{
		Mount:      e.mountpoint,
		Device:     e.device,
		FSType:     e.fsType,
		TotalBytes: st.Blocks * bs,
		FreeBytes:  st.Bavail * bs,
	}
	if st.Blocks >= st.Bfree {
		u.UsedBytes = (st.Blocks - st.Bfree) * bs
	}
	if sum := u.UsedBytes + u.FreeBytes; sum > 0 {
		u.UsedPct = round2dp(clampPct(float64(u.UsedBytes) / float64(sum) * 100))
	}
	// Some filesystems (btrfs, many network ones) have no fixed inode
	// table and report zeros; they stay zero here.
	if st.Files > 0 && st.Files >= st.Ffree {
		u.InodesTotal = st.Files
		u.InodesFree = st.Ffree
		u.InodesUsed = st.Files - st.Ffree
		u.InodesUsedPct = round2dp(clampPct(float64(u.InodesUsed) / float64(st.Files) * 100))
	}
	return u
}

// statfsBounded runs statfs in its own goroutine and waits at most
// remoteTimeout (or until ctx ends). statfs of a hard-mounted NFS share
// whose server is gone blocks in the kernel and cannot be interrupted: the
// goroutine (and its thread) stays blocked until the server answers. So at
// most one statfs per path is ever outstanding: while one is, later runs
// report errStatfsBlocked at once instead of piling up more stuck threads.
func (c *diskUsageCollector) statfsBounded(ctx context.Context, path string) (unix.Statfs_t, error) {
	c.mu.Lock()
	if c.pending[path] {
		c.mu.Unlock()
		return unix.Statfs_t{}, errStatfsBlocked
	}
	c.pending[path] = true
	c.mu.Unlock()

	type result struct {
		st  unix.Statfs_t
		err error
	}
	done := make(chan result, 1) // buffered: the goroutine never waits for a reader
	go func() {
		var r result
		r.err = c.statfs(path, &r.st)
		c.mu.Lock()
		delete(c.pending, path)
		c.mu.Unlock()
		done <- r
	}()
	timer := time.NewTimer(c.remoteTimeout)
	defer timer.Stop()
	select {
	case r := <-done:
		return r.st, r.err
	case <-timer.C:
		return unix.Statfs_t{}, fmt.Errorf("statfs did not answer within %v: %w", c.remoteTimeout, context.DeadlineExceeded)
	case <-ctx.Done():
		return unix.Statfs_t{}, ctx.Err()
	}
}

// logUnresponsive logs mounts that became unresponsive or answered again.
func (c *diskUsageCollector) logUnresponsive(now map[string]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for m := range now {
		if !c.unresponsive[m] {
			c.log.Warn("disk.usage: mount not answering statfs, reported as unresponsive", "mount", m)
		}
	}
	for m := range c.unresponsive {
		if !now[m] {
			c.log.Info("disk.usage: mount answers statfs again", "mount", m)
		}
	}
	c.unresponsive = now
}

// mountEntry is one line of the mount table, as far as selectMounts needs.
type mountEntry struct {
	device, mountpoint, fsType string
	// bind is true when the mount shows a subdirectory of its filesystem
	// (mountinfo's root field is not "/"): a bind mount or a btrfs
	// subvolume.
	bind bool
}

// pseudoFS are filesystem types that hold no user data on a device of their
// own: kernel interfaces, memory-backed or read-only images. Their space
// figures are meaningless (0, or always 100 % full for squashfs snaps).
var pseudoFS = map[string]bool{
	"anon_inodefs": true, "autofs": true, "binfmt_misc": true, "bpf": true,
	"cgroup": true, "cgroup2": true, "configfs": true, "debugfs": true,
	"devfs": true, "devpts": true, "devtmpfs": true, "efivarfs": true,
	"erofs": true, "fusectl": true, "fuse.gvfsd-fuse": true, "fuse.lxcfs": true,
	"fuse.portal": true, "fuse.snapfuse": true, "hugetlbfs": true, "iso9660": true,
	"mqueue": true, "nfsd": true, "nsfs": true, "pipefs": true, "proc": true,
	"pstore": true, "ramfs": true, "rootfs": true, "rpc_pipefs": true,
	"securityfs": true, "selinuxfs": true, "sockfs": true, "squashfs": true,
	"sysfs": true, "tracefs": true, "xenfs": true,
}

// keepOnlyAt are types that are usually noise but matter at one place:
// tmpfs is everywhere (/run, /dev/shm, every Kubernetes secret volume) but
// a full tmpfs /tmp breaks programs; overlay is every container's layers,
// but at "/" it is the root filesystem of the container opsdash runs in
// when no host root is mounted.
var keepOnlyAt = map[string]string{
	"tmpfs":          "/tmp",
	"overlay":        "/",
	"aufs":           "/",
	"fuse-overlayfs": "/",
}

// hiddenMountPrefixes are trees whose mounts are kernel interfaces or the
// private storage of container runtimes (each container's root filesystem,
// a copy of the host disk's figures).
var hiddenMountPrefixes = []string{
	"/proc", "/sys", "/dev",
	"/var/lib/docker", "/var/lib/containers/storage",
	"/run/containerd", "/run/k3s/containerd", "/run/docker",
}

// remoteFS are network filesystems, whose statfs can block for as long as
// their server does not answer.
var remoteFS = map[string]bool{
	"9p": true, "afs": true, "beegfs": true, "ceph": true, "cifs": true,
	"davfs": true, "gfs2": true, "glusterfs": true, "gpfs": true, "lustre": true,
	"ncpfs": true, "nfs": true, "nfs4": true, "ocfs2": true, "smb3": true,
	"smbfs": true,
}

// isRemoteFS reports whether statfs of this type may hang on a server:
// network filesystems and any FUSE filesystem (sshfs, s3fs, rclone, ...).
func isRemoteFS(fsType string) bool {
	return remoteFS[fsType] || fsType == "fuse" || strings.HasPrefix(fsType, "fuse.")
}

// underPrefix reports whether p is prefix or inside it.
func underPrefix(p, prefix string) bool {
	return p == prefix || strings.HasPrefix(p, prefix+"/")
}

// selectMounts picks the mounts worth reporting from a mount table, in table
// order, and returns them sorted by mount point:
//
//  1. Pseudo filesystems (pseudoFS) are left out; tmpfs only counts at /tmp
//     and overlay only at "/" (keepOnlyAt).
//  2. Mounts under /proc, /sys, /dev and container runtimes' storage are left
//     out (hiddenMountPrefixes).
//  3. When several mounts share a mount point, only the last one is visible
//     (it covers the others), so only it is kept.
//  4. Mounts of the same device (bind mounts, btrfs subvolumes, a disk a
//     container runtime mounted twice) report the same space: one is kept,
//     preferring a mount of the filesystem's root over a bind mount of a
//     subdirectory, then the shortest mount point.
func selectMounts(all []mountEntry) []mountEntry {
	// Rules 1 and 2.
	candidates := make([]mountEntry, 0, len(all))
	for _, m := range all {
		if pseudoFS[m.fsType] {
			continue
		}
		if at, ok := keepOnlyAt[m.fsType]; ok && m.mountpoint != at {
			continue
		}
		hidden := false
		for _, p := range hiddenMountPrefixes {
			if underPrefix(m.mountpoint, p) {
				hidden = true
				break
			}
		}
		if !hidden {
			candidates = append(candidates, m)
		}
	}

	// Rule 3: the last mount at a mount point wins.
	lastAt := make(map[string]int, len(candidates))
	for i, m := range candidates {
		lastAt[m.mountpoint] = i
	}

	// Rule 4: one mount per device.
	better := func(a, b mountEntry) bool { // a preferred over b
		if a.bind != b.bind {
			return !a.bind
		}
		return len(a.mountpoint) < len(b.mountpoint)
	}
	byDevice := make(map[string]int) // device -> index into out
	out := make([]mountEntry, 0, len(candidates))
	for i, m := range candidates {
		if lastAt[m.mountpoint] != i {
			continue
		}
		// "none" and "" name no device, so they prove nothing shared.
		if m.device == "" || m.device == "none" {
			out = append(out, m)
			continue
		}
		if j, ok := byDevice[m.device]; ok {
			if better(m, out[j]) {
				out[j] = m
			}
			continue
		}
		byDevice[m.device] = len(out)
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b mountEntry) int { return cmp.Compare(a.mountpoint, b.mountpoint) })
	return out
}
