package collectors

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shirou/gopsutil/v3/disk"
	"golang.org/x/sys/unix"
)

func TestSelectMounts(t *testing.T) {
	mounts := func(es []mountEntry) []string {
		var s []string
		for _, e := range es {
			s = append(s, e.mountpoint+"="+e.device)
		}
		return s
	}
	tests := []struct {
		name string
		in   []mountEntry
		want []string // mountpoint=device, sorted by mount point
	}{
		{
			name: "this firecracker VM",
			in: mountTable(`
				proc /proc proc
				sysfs /sys sysfs
				devtmpfs /dev devtmpfs
				tmpfs /dev/shm tmpfs
				devpts /dev/pts devpts
				/dev/vda / ext4
				model_tools_unavailable /mnt/sandboxing/x tmpfs
				tmpfs /sys/fs/cgroup tmpfs
				cgroup /sys/fs/cgroup/cpu cgroup
				cgroup2 /sys/fs/cgroup/unified cgroup2
			`),
			want: []string{"/=/dev/vda"},
		},
		{
			name: "desktop with separate home, boot, efi, snaps and a tmpfs /tmp",
			in: mountTable(`
				/dev/nvme0n1p2 / ext4
				/dev/nvme0n1p1 /boot/efi vfat
				/dev/nvme0n1p3 /home xfs
				tmpfs /run tmpfs
				tmpfs /run/user/1000 tmpfs
				tmpfs /tmp tmpfs
				/dev/loop3 /snap/core22/1380 squashfs
				gvfsd-fuse /run/user/1000/gvfs fuse.gvfsd-fuse
				systemd-1 /proc/sys/fs/binfmt_misc autofs
				hugetlbfs /dev/hugepages hugetlbfs
			`),
			want: []string{"/=/dev/nvme0n1p2", "/boot/efi=/dev/nvme0n1p1", "/home=/dev/nvme0n1p3", "/tmp=tmpfs"},
		},
		{
			name: "bind mounts of one device keep the real mount",
			in: mountTable(`
				/dev/sdb1 /data ext4
				/dev/sdb1 /srv/www ext4 bind
				/dev/sdb1 /a ext4 bind  # shorter, but a bind mount
			`),
			want: []string{"/data=/dev/sdb1"},
		},
		{
			name: "bind mount listed before the real one",
			in: mountTable(`
				/dev/sdb1 /srv ext4 bind
				/dev/sdb1 /data/volume ext4
			`),
			want: []string{"/data/volume=/dev/sdb1"},
		},
		{
			name: "btrfs subvolumes share a device: the shortest mount point stays",
			in: mountTable(`
				/dev/sda2 / btrfs bind
				/dev/sda2 /home btrfs bind
				/dev/sda2 /var/log btrfs bind
			`),
			want: []string{"/=/dev/sda2"},
		},
		{
			name: "over-mounted mount point: the last mount is the visible one",
			in: mountTable(`
				/dev/sdc1 /mnt/backup ext4
				nas:/backup /mnt/backup nfs4
			`),
			want: []string{"/mnt/backup=nas:/backup"},
		},
		{
			name: "docker and kubernetes node: layers, netns, secrets and a PV mounted twice",
			in: mountTable(`
				/dev/sda1 / ext4
				overlay /var/lib/docker/overlay2/abc/merged overlay
				overlay /run/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs overlay
				nsfs /run/docker/netns/abc nsfs
				shm /var/lib/docker/containers/abc/mounts/shm tmpfs
				tmpfs /var/lib/kubelet/pods/uid/volumes/kubernetes.io~secret/token tmpfs
				/dev/sdd /var/lib/kubelet/plugins/kubernetes.io/csi/pv/globalmount ext4
				/dev/sdd /var/lib/kubelet/pods/uid/volumes/kubernetes.io~csi/pvc-1/mount ext4
				/dev/mapper/thin-1 /var/lib/docker/devicemapper/mnt/abc xfs
				lxcfs /var/lib/lxcfs fuse.lxcfs
			`),
			want: []string{"/=/dev/sda1", "/var/lib/kubelet/plugins/kubernetes.io/csi/pv/globalmount=/dev/sdd"},
		},
		{
			name: "inside a container without a host root: overlay root and the host disk behind /etc/hosts",
			in: mountTable(`
				overlay / overlay
				proc /proc proc
				/dev/sda1 /etc/resolv.conf ext4
				/dev/sda1 /etc/hostname ext4
				/dev/sda1 /etc/hosts ext4
			`),
			want: []string{"/=overlay", "/etc/hosts=/dev/sda1"},
		},
		{
			name: "network filesystems are kept, each export once",
			in: mountTable(`
				/dev/vda1 / xfs
				nas:/home /home nfs4
				nas:/scratch /scratch nfs
				//fs/share /mnt/share cifs
				user@host: /mnt/remote fuse.sshfs
			`),
			want: []string{"/=/dev/vda1", "/home=nas:/home", "/mnt/remote=user@host:", "/mnt/share=//fs/share", "/scratch=nas:/scratch"},
		},
		{
			name: "sources that name no device are never merged",
			in: mountTable(`
				none /a vboxsf
				none /b vboxsf
				- /c zfs
			`),
			want: []string{"/a=none", "/b=none", "/c="},
		},
		{
			name: "prefix match is per path element",
			in: mountTable(`
				/dev/sde1 /devdata ext4
				/dev/sde2 /system ext4
				/dev/sde3 /sys/kernel/foo ext4
			`),
			want: []string{"/devdata=/dev/sde1", "/system=/dev/sde2"},
		},
		{name: "empty table", in: nil, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mounts(selectMounts(tt.in))
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("selectMounts:\n got  %q\n want %q", got, tt.want)
			}
		})
	}
}

func TestIsRemoteFS(t *testing.T) {
	tests := []struct {
		fsType string
		want   bool
	}{
		{"nfs", true}, {"nfs4", true}, {"cifs", true}, {"fuse.sshfs", true}, {"fuse", true},
		{"ceph", true}, {"ext4", false}, {"xfs", false}, {"tmpfs", false}, {"fuseblk", false},
	}
	for _, tt := range tests {
		if got := isRemoteFS(tt.fsType); got != tt.want {
			t.Errorf("isRemoteFS(%q) = %v, want %v", tt.fsType, got, tt.want)
		}
	}
}

func TestUsageFromStatfs(t *testing.T) {
	e := mountEntry{device: "/dev/sda1", mountpoint: "/", fsType: "ext4"}
	tests := []struct {
		name string
		st   unix.Statfs_t
		want MountUsage
	}{
		{
			name: "df arithmetic with reserved blocks",
			// 1000 blocks of 4 KiB, 300 free of which 250 available to users.
			st: unix.Statfs_t{Bsize: 4096, Frsize: 4096, Blocks: 1000, Bfree: 300, Bavail: 250, Files: 100, Ffree: 75},
			want: MountUsage{
				Mount: "/", Device: "/dev/sda1", FSType: "ext4",
				TotalBytes: 4096000, UsedBytes: 700 * 4096, FreeBytes: 250 * 4096,
				UsedPct:     73.68, // 700 / (700 + 250)
				InodesTotal: 100, InodesUsed: 25, InodesFree: 75, InodesUsedPct: 25,
			},
		},
		{
			name: "fragment size is the unit of block counts",
			st:   unix.Statfs_t{Bsize: 1 << 20, Frsize: 4096, Blocks: 10, Bfree: 5, Bavail: 5},
			want: MountUsage{Mount: "/", Device: "/dev/sda1", FSType: "ext4",
				TotalBytes: 40960, UsedBytes: 20480, FreeBytes: 20480, UsedPct: 50},
		},
		{
			name: "no fragment size falls back to block size",
			st:   unix.Statfs_t{Bsize: 512, Blocks: 4, Bfree: 0, Bavail: 0},
			want: MountUsage{Mount: "/", Device: "/dev/sda1", FSType: "ext4",
				TotalBytes: 2048, UsedBytes: 2048, UsedPct: 100},
		},
		{
			name: "no inode table (btrfs) leaves inodes at zero",
			st:   unix.Statfs_t{Frsize: 4096, Blocks: 10, Bfree: 10, Bavail: 10},
			want: MountUsage{Mount: "/", Device: "/dev/sda1", FSType: "ext4",
				TotalBytes: 40960, FreeBytes: 40960},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := usageFromStatfs(e, &tt.st); got != tt.want {
				t.Fatalf("usageFromStatfs:\n got  %+v\n want %+v", got, tt.want)
			}
		})
	}
}

// fakeMountHost stands in for a host's mount table and statfs.
type fakeMountHost struct {
	parts []disk.PartitionStat
	// block, when not nil, makes statfs of these paths wait for release.
	block   map[string]bool
	release chan struct{}
	calls   sync.Map // path -> *atomic.Int32
	stats   map[string]unix.Statfs_t
}

func (f *fakeMountHost) statfs(path string, st *unix.Statfs_t) error {
	n, _ := f.calls.LoadOrStore(path, new(atomic.Int32))
	n.(*atomic.Int32).Add(1)
	if f.block[path] {
		<-f.release
	}
	s, ok := f.stats[path]
	if !ok {
		return unix.ENOENT
	}
	*st = s
	return nil
}

func (f *fakeMountHost) callCount(path string) int32 {
	n, ok := f.calls.Load(path)
	if !ok {
		return 0
	}
	return n.(*atomic.Int32).Load()
}

func newFakeDiskUsage(f *fakeMountHost, hostRoot string) *diskUsageCollector {
	c := NewDiskUsage(Config{HostID: "h", HostRoot: hostRoot}).(*diskUsageCollector)
	c.partitions = func(context.Context) ([]disk.PartitionStat, error) { return f.parts, nil }
	c.statfs = f.statfs
	c.remoteTimeout = 50 * time.Millisecond
	return c
}

func collectDiskUsage(t *testing.T, c Collector) DiskUsage {
	t.Helper()
	samples, err := c.Collect(context.Background())
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	if len(samples) != 1 || samples[0].Topic != "h.disk.usage" {
		t.Fatalf("Collect returned %+v, want one h.disk.usage sample", samples)
	}
	return samples[0].Data.(DiskUsage)
}

func TestDiskUsageDeadNFSDoesNotStallOrPileUp(t *testing.T) {
	ok := unix.Statfs_t{Frsize: 4096, Blocks: 100, Bfree: 50, Bavail: 50}
	f := &fakeMountHost{
		parts: []disk.PartitionStat{
			{Device: "/dev/sda1", Mountpoint: "/", Fstype: "ext4"},
			{Device: "nas:/export", Mountpoint: "/mnt/nas", Fstype: "nfs4"},
			{Device: "/dev/sdb1", Mountpoint: "/srv", Fstype: "xfs"},
		},
		block:   map[string]bool{"/mnt/nas": true},
		release: make(chan struct{}),
		stats:   map[string]unix.Statfs_t{"/": ok, "/mnt/nas": ok, "/srv": ok},
	}
	released := false
	release := func() {
		if !released {
			released = true
			close(f.release)
		}
	}
	t.Cleanup(release) // let the blocked statfs goroutine end
	c := newFakeDiskUsage(f, "")

	for run := 1; run <= 3; run++ {
		d := collectDiskUsage(t, c)
		var got []string
		for _, m := range d.Mounts {
			got = append(got, m.Mount)
		}
		if !reflect.DeepEqual(got, []string{"/", "/srv"}) {
			t.Fatalf("run %d: mounts %q, want the two local ones", run, got)
		}
		if len(d.Unresponsive) != 1 || d.Unresponsive[0].Mount != "/mnt/nas" || d.Unresponsive[0].FSType != "nfs4" {
			t.Fatalf("run %d: unresponsive = %+v, want /mnt/nas", run, d.Unresponsive)
		}
	}
	if n := f.callCount("/mnt/nas"); n != 1 {
		t.Fatalf("statfs of the dead mount started %d times over 3 runs, want 1 (no pile-up)", n)
	}

	// The server comes back: once the stuck call returns, the mount is
	// reported again.
	release()
	deadline := time.Now().Add(10 * time.Second)
	for {
		d := collectDiskUsage(t, c)
		if len(d.Unresponsive) == 0 && len(d.Mounts) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mount never reported again after the server answered: %+v", d)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, not synchronising
	}
}

func TestDiskUsageRespectsContext(t *testing.T) {
	f := &fakeMountHost{
		parts:   []disk.PartitionStat{{Device: "nas:/x", Mountpoint: "/mnt/nas", Fstype: "nfs"}},
		block:   map[string]bool{"/mnt/nas": true},
		release: make(chan struct{}),
	}
	t.Cleanup(func() { close(f.release) })
	c := newFakeDiskUsage(f, "")
	c.remoteTimeout = time.Hour
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Collect(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Collect with an expiring context = %v, want DeadlineExceeded", err)
	}
}

func TestDiskUsageResolvesMountsUnderHostRoot(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	var hostRootStat unix.Statfs_t
	if err := unix.Statfs(root, &hostRootStat); err != nil {
		t.Fatal(err)
	}
	// The host's mount table names "/", "/data" and "/gone"; only the first
	// two exist under the host root.
	c := NewDiskUsage(Config{HostID: "h", HostRoot: root}).(*diskUsageCollector)
	c.partitions = func(context.Context) ([]disk.PartitionStat, error) {
		return []disk.PartitionStat{
			{Device: "/dev/sda1", Mountpoint: "/", Fstype: "ext4"},
			{Device: "/dev/sdb1", Mountpoint: "/data", Fstype: "ext4"},
			{Device: "/dev/sdc1", Mountpoint: "/gone", Fstype: "ext4"},
		}, nil
	}
	var statted []string
	c.statfs = func(path string, st *unix.Statfs_t) error {
		statted = append(statted, path)
		return unix.Statfs(path, st)
	}
	d := collectDiskUsage(t, c)
	want := []string{root, filepath.Join(root, "data"), filepath.Join(root, "gone")}
	if !reflect.DeepEqual(statted, want) {
		t.Fatalf("statfs'd %q, want %q", statted, want)
	}
	if len(d.Mounts) != 2 || d.Mounts[0].Mount != "/" || d.Mounts[1].Mount != "/data" {
		t.Fatalf("mounts = %+v, want the host's mount points / and /data", d.Mounts)
	}
	if got, want := d.Mounts[0].TotalBytes, hostRootStat.Blocks*uint64(hostRootStat.Frsize); got != want {
		t.Fatalf("/ total_bytes = %d, want %d from the filesystem under the host root", got, want)
	}
}

func TestDiskUsageFailsWhenNothingCanBeRead(t *testing.T) {
	c := NewDiskUsage(Config{HostID: "h", HostRoot: filepath.Join(t.TempDir(), "not-mounted")}).(*diskUsageCollector)
	c.partitions = func(context.Context) ([]disk.PartitionStat, error) {
		return []disk.PartitionStat{{Device: "/dev/sda1", Mountpoint: "/", Fstype: "ext4"}}, nil
	}
	_, err := c.Collect(context.Background())
	if err == nil || !strings.Contains(err.Error(), "not-mounted") {
		t.Fatalf("Collect with a wrong host root = %v, want an error naming the path", err)
	}
}

// mountTable reads test mount tables written one mount a line: device,
// mount point, filesystem type and "bind" for a bind mount; "-" is an empty
// device and "#" starts a comment.
func mountTable(text string) []mountEntry {
	var es []mountEntry
	for _, line := range strings.Split(text, "\n") {
		line, _, _ = strings.Cut(line, "#")
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		e := mountEntry{device: f[0], mountpoint: f[1], fsType: f[2], bind: len(f) > 3 && f[3] == "bind"}
		if e.device == "-" {
			e.device = ""
		}
		es = append(es, e)
	}
	return es
}
