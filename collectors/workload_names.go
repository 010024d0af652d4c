package collectors

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Naming workloads. The cgroup path gives a container's id, a pod's uid and
// a service's unit name; people know containers and pods by name. Names
// come from the runtimes' own files under HOST_ROOT (the host's / mounted
// read-only), and what an unprivileged opsdash (uid 65532, no capability)
// can read decides what it shows:
//
//   - services: the unit name, from the path itself: always;
//   - Kubernetes pods: namespace and pod name from the kubelet's log
//     directories /var/log/pods/<namespace>_<pod>_<uid>, container names
//     from /var/log/containers/<pod>_<namespace>_<container>-<id>.log
//     (both world-readable): always; images and the pause container from
//     containerd's or CRI-O's state (config.json annotations), root only;
//   - Docker: /var/lib/docker/containers/<id>/config.v2.json (name, image)
//     is root-only (0600): without root, only the optional Docker socket
//     (WorkloadsConfig.DockerSocket) names them, otherwise the short id;
//   - Podman: /var/lib/containers/storage/overlay-containers/containers.json,
//     root-only for rootful Podman; the socket works as for Docker;
//   - containerd without Kubernetes (nerdctl): the nerdctl/name annotation
//     of the task's config.json, root only.
//
// A name found is kept while the workload lives; a lookup that finds
// nothing is retried after namesRetry (a pod's log directory can appear
// after its cgroup).

// Where a workload's name came from ("name_source" in the payloads).
const (
	nameFromPath       = "cgroup path"
	nameFromKubelet    = "kubelet logs"
	nameFromDocker     = "docker state"
	nameFromSocket     = "docker socket"
	nameFromPodman     = "podman state"
	nameFromContainerd = "containerd state"
	nameFromCRIO       = "cri-o state"
)

const (
	// namesRetry is how long a workload without a name waits before its
	// runtime's files are looked at again.
	namesRetry = 30 * time.Second
	// listingRefresh is the shortest time between two readings of a
	// directory listing or state file shared by every workload (the
	// kubelet's log directories, Podman's containers.json).
	listingRefresh = 10 * time.Second
	// maxNameBytes cuts names and images: they are shown, not parsed.
	maxNameBytes = 253
)

// workloadNames is what is known of a workload beyond its cgroup path.
type workloadNames struct {
	name, image, namespace, source string
	// containers names a pod's containers by id.
	containers map[string]containerNames
	complete   bool // nothing more to look for
}

// containerNames is one container of a pod.
type containerNames struct {
	name, image string
	sandbox     bool // the pod's pause container
}

// workloadNamer finds and remembers workload names. Not safe for
// concurrent use: each collector has its own.
type workloadNamer struct {
	root   string     // the host's / as mounted here
	docker *dockerAPI // nil: no socket
	now    func() time.Time

	known  map[workloadKey]workloadNames
	missed map[workloadKey]time.Time

	// The kubelet's log directories, listed at most every listingRefresh.
	k8sListed time.Time
	pods      map[string][2]string // pod uid → namespace, pod name
	ctrs      map[string]string    // container id → container name

	podmanRead time.Time
	podman     map[string][2]string // container id → name, image
}

func newWorkloadNamer(root string, docker *dockerAPI) *workloadNamer {
	if root == "" {
		root = "/"
	}
	return &workloadNamer{
		root: root, docker: docker, now: time.Now,
		known: map[workloadKey]workloadNames{}, missed: map[workloadKey]time.Time{},
	}
}

// hostFile is name (an absolute path on the host) under the host root.
func (n *workloadNamer) hostFile(name string) string { return filepath.Join(n.root, name) }

// names returns what is known of ref, looking again when it was incomplete
// and namesRetry has passed.
func (n *workloadNamer) names(ctx context.Context, ref workloadRef) workloadNames {
	if w, ok := n.known[ref.key]; ok && (w.complete || n.now().Sub(n.missed[ref.key]) < namesRetry) {
		return w
	}
	w := n.lookup(ctx, ref)
	n.known[ref.key] = w
	if w.complete {
		delete(n.missed, ref.key)
	} else {
		n.missed[ref.key] = n.now()
	}
	return w
}

// forget drops what is remembered of workloads not in keep.
func (n *workloadNamer) forget(keep func(workloadKey) bool) {
	for k := range n.known {
		if !keep(k) {
			delete(n.known, k)
			delete(n.missed, k)
		}
	}
}

func (n *workloadNamer) lookup(ctx context.Context, ref workloadRef) workloadNames {
	k := ref.key
	switch k.kind {
	case kindService:
		return workloadNames{name: unescapeUnit(k.ident), source: nameFromPath, complete: true}
	case kindPod:
		return n.podNames(ref)
	case kindDocker:
		if name, image, ok := n.dockerState(k.ident); ok {
			return workloadNames{name: name, image: image, source: nameFromDocker, complete: true}
		}
	case kindPodman:
		if name, image, ok := n.podmanState(k.ident); ok {
			return workloadNames{name: name, image: image, source: nameFromPodman, complete: true}
		}
	case kindContainerd:
		if a, ok := n.containerdState("default", k.ident); ok && a["nerdctl/name"] != "" {
			return workloadNames{name: clip(a["nerdctl/name"]), source: nameFromContainerd, complete: true}
		}
	}
	if n.docker != nil && (k.kind == kindDocker || k.kind == kindPodman) {
		if name, image, ok := n.docker.lookup(ctx, k.ident); ok {
			return workloadNames{name: name, image: image, source: nameFromSocket, complete: true}
		}
	}
	return workloadNames{name: k.ident[:12], source: nameFromPath}
}

// podNames names a pod and its containers.
func (n *workloadNamer) podNames(ref workloadRef) workloadNames {
	n.listKubelet(false)
	w := workloadNames{name: ref.key.ident, source: nameFromPath, containers: map[string]containerNames{}}
	nsPod, ok := n.pods[ref.key.ident]
	if !ok {
		n.listKubelet(true)
		nsPod, ok = n.pods[ref.key.ident]
	}
	if ok {
		w.namespace, w.name, w.source = nsPod[0], nsPod[1], nameFromKubelet
	}
	complete := ok
	for _, c := range ref.containers {
		cn := containerNames{name: n.ctrs[c.id]}
		// The runtime's state says more (image, which one is the pause
		// container) when it can be read: as root.
		if a, ok := n.containerdState("k8s.io", c.id); ok {
			cn = criAnnotations(cn, a, "io.kubernetes.cri.container-name", "io.kubernetes.cri.image-name", "io.kubernetes.cri.container-type")
			n.fillPod(&w, a["io.kubernetes.cri.sandbox-namespace"], a["io.kubernetes.cri.sandbox-name"], nameFromContainerd)
		} else if a, ok := n.crioState(c.id); ok {
			cn = criAnnotations(cn, a, "io.kubernetes.container.name", "io.kubernetes.cri-o.ImageName", "io.kubernetes.cri-o.ContainerType")
			n.fillPod(&w, a["io.kubernetes.pod.namespace"], a["io.kubernetes.pod.name"], nameFromCRIO)
		}
		if cn.name == "" && !cn.sandbox {
			complete = false
		}
		w.containers[c.id] = cn
	}
	w.complete = complete && w.source != nameFromPath
	return w
}

// fillPod names the pod from a container's annotations when the kubelet's
// logs did not.
func (n *workloadNamer) fillPod(w *workloadNames, namespace, pod, source string) {
	if w.source == nameFromPath && pod != "" {
		w.namespace, w.name, w.source = clip(namespace), clip(pod), source
	}
}

// criAnnotations completes a container's names from its runtime's
// annotations (name, image and type keys).
func criAnnotations(cn containerNames, a map[string]string, nameKey, imageKey, typeKey string) containerNames {
	if v := a[nameKey]; v != "" {
		cn.name = clip(v)
	}
	if v := a[imageKey]; v != "" {
		cn.image = clip(v)
	}
	cn.sandbox = a[typeKey] == "sandbox"
	return cn
}

// listKubelet reads the kubelet's log directories: /var/log/pods holds
// <namespace>_<pod>_<uid> per pod, /var/log/containers a link
// <pod>_<namespace>_<container>-<container id>.log per container. Neither
// namespaces nor pod and container names may contain '_'. force lists
// again if listingRefresh has passed; otherwise only the first call lists.
func (n *workloadNamer) listKubelet(force bool) {
	if n.pods != nil && (!force || n.now().Sub(n.k8sListed) < listingRefresh) {
		return
	}
	n.k8sListed = n.now()
	n.pods, n.ctrs = map[string][2]string{}, map[string]string{}
	if names, err := readDirNames(n.hostFile("/var/log/pods")); err == nil {
		for _, d := range names {
			parts := strings.Split(d, "_")
			if len(parts) == 3 && isPodUID(parts[2]) {
				n.pods[parts[2]] = [2]string{clip(parts[0]), clip(parts[1])}
			}
		}
	}
	if names, err := readDirNames(n.hostFile("/var/log/containers")); err == nil {
		for _, f := range names {
			base, ok := strings.CutSuffix(f, ".log")
			if !ok || len(base) < 66 || base[len(base)-65] != '-' || !isHex64(base[len(base)-64:]) {
				continue
			}
			parts := strings.Split(base[:len(base)-65], "_")
			if len(parts) == 3 {
				n.ctrs[base[len(base)-64:]] = clip(parts[2])
			}
		}
	}
}

// dockerState reads a Docker container's name and image from its
// config.v2.json (root-only).
func (n *workloadNamer) dockerState(id string) (name, image string, ok bool) {
	b, err := os.ReadFile(n.hostFile(filepath.Join("/var/lib/docker/containers", id, "config.v2.json")))
	if err != nil {
		return "", "", false
	}
	var c struct {
		Name   string
		Config struct{ Image string }
	}
	if json.Unmarshal(b, &c) != nil || c.Name == "" {
		return "", "", false
	}
	return clip(strings.TrimPrefix(c.Name, "/")), clip(c.Config.Image), true
}

// podmanState reads a Podman container's name and image from the storage's
// containers.json (root-only for rootful Podman), read again at most every
// listingRefresh.
func (n *workloadNamer) podmanState(id string) (name, image string, ok bool) {
	if v, ok := n.podman[id]; ok {
		return v[0], v[1], true
	}
	if n.podman != nil && n.now().Sub(n.podmanRead) < listingRefresh {
		return "", "", false
	}
	n.podmanRead = n.now()
	n.podman = map[string][2]string{}
	b, err := os.ReadFile(n.hostFile("/var/lib/containers/storage/overlay-containers/containers.json"))
	if err != nil {
		return "", "", false
	}
	var list []struct {
		ID       string   `json:"id"`
		Names    []string `json:"names"`
		Metadata string   `json:"metadata"`
	}
	if json.Unmarshal(b, &list) != nil {
		return "", "", false
	}
	for _, c := range list {
		var meta struct {
			ImageName string `json:"image-name"`
		}
		_ = json.Unmarshal([]byte(c.Metadata), &meta)
		if len(c.Names) > 0 {
			n.podman[c.ID] = [2]string{clip(c.Names[0]), clip(meta.ImageName)}
		}
	}
	v, ok := n.podman[id]
	return v[0], v[1], ok
}

// containerdState reads the annotations of a containerd task's OCI spec in
// namespace ns (root-only).
func (n *workloadNamer) containerdState(ns, id string) (map[string]string, bool) {
	return readAnnotations(n.hostFile(filepath.Join("/run/containerd/io.containerd.runtime.v2.task", ns, id, "config.json")))
}

// crioState reads the annotations of a CRI-O container's OCI spec
// (root-only).
func (n *workloadNamer) crioState(id string) (map[string]string, bool) {
	for _, dir := range []string{"/run/containers/storage/overlay-containers", "/var/lib/containers/storage/overlay-containers"} {
		if a, ok := readAnnotations(n.hostFile(filepath.Join(dir, id, "userdata", "config.json"))); ok {
			return a, true
		}
	}
	return nil, false
}

// readAnnotations reads the annotations of an OCI runtime spec.
func readAnnotations(name string) (map[string]string, bool) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, false
	}
	var spec struct {
		Annotations map[string]string `json:"annotations"`
	}
	if json.Unmarshal(b, &spec) != nil {
		return nil, false
	}
	return spec.Annotations, true
}

// clip cuts s to maxNameBytes.
func clip(s string) string {
	if len(s) > maxNameBytes {
		return s[:maxNameBytes]
	}
	return s
}
