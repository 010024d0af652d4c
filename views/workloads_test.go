package views_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"github.com/opsdash/opsdash/collectors"
	"github.com/opsdash/opsdash/stream"
	"github.com/opsdash/opsdash/views"
)

// publishWorkloads gives the fixture host n workloads: a pod with a CPU and
// a memory limit (web-1.workload.pod-0d8c1a8e2b43, with hist values of
// history), an OOM-killed container, a busy service without limits, and
// n-3 quiet containers with names as long as Kubernetes makes them.
func publishWorkloads(reg *stream.Registry, n, hist int) {
	if n == 0 {
		return
	}
	lim := 2.0
	mem := uint64(1 << 30)
	rows := []collectors.WorkloadRow{
		{ID: "pod-0d8c1a8e2b43", Kind: "pod", Name: "web-5d9c7b6f4-x2k8q", Namespace: "shop", State: "running",
			CPUCores: 0.5, CPULimitCores: &lim, CPUUsedPct: f64(25), MemBytes: 200 << 20, MemLimitBytes: &mem, MemUsedPct: f64(15.5)},
		{ID: "docker-9b8c7d6e5f40", Kind: "docker", Name: "9b8c7d6e5f40", State: "oom_killed", OOMKills: 1, MemBytes: 900 << 20, MemLimitBytes: &mem, MemUsedPct: f64(99.9)},
		{ID: "svc-nginx", Kind: "service", Name: "nginx.service", State: "running", CPUCores: 1.25, MemBytes: 64 << 20},
	}
	for i := 3; i < n; i++ {
		rows = append(rows, collectors.WorkloadRow{
			ID: fmt.Sprintf("pod-%012x", i), Kind: "pod", Name: fmt.Sprintf("checkout-service-canary-7f9d8c6b5-%05d", i),
			Namespace: "payments-production", State: "running", CPUCores: 0.01, MemBytes: uint64(i) << 20,
		})
	}
	reg.Declare(collectors.TopicInfo{Name: "web-1.workloads", Interval: 5 * time.Second, Description: "workloads"})
	reg.Publish(collectors.Sample{Topic: "web-1.workloads", Time: now, Data: collectors.WorkloadsData{
		CgroupVersion: 2, Running: n - 1, Stopped: 1, StoppedRetentionS: 600, Workloads: rows}})

	pod := "web-1.workload.pod-0d8c1a8e2b43"
	reg.DeclareRuntime(collectors.TopicInfo{Name: pod, Interval: 5 * time.Second, Description: "a pod"}, collectors.WorkloadHistory)
	for i := min(hist, collectors.WorkloadHistory) - 1; i >= 0; i-- {
		d := collectors.WorkloadData{WorkloadRow: rows[0], NameSource: "kubelet logs", CPUThrottledPct: f64(3), Pids: u64(7),
			IOReadBytesPerS: f64(1024), IOWriteBytesPerS: f64(0), NetRxBytesPerS: f64(2000), NetTxBytesPerS: f64(100), CgroupPath: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0d8c1a8e_2b43_4c57_9d16_3f3e0b7c8c11.slice",
			CgroupVersion: 2, PodUID: "0d8c1a8e-2b43-4c57-9d16-3f3e0b7c8c11", MemAnonBytes: 150 << 20, MemFileBytes: 50 << 20, MemWorkingSetBytes: 170 << 20,
			NetNamespace: "own", Containers: []collectors.WorkloadContainer{
				{ID: strings.Repeat("c1", 32), Name: "app", Image: "registry.example.com/shop/web:2.3", CPUCores: 0.4},
				{ID: strings.Repeat("c2", 32), Name: "sidecar", CPUCores: 0.1},
			}}
		d.CPUCores = 0.5 + float64(i%5)/10
		reg.Publish(collectors.Sample{Topic: pod, Time: now.Add(-time.Duration(5*i) * time.Second), Data: d})
	}
}

func workloadRows(doc *goquery.Document) []string {
	var out []string
	doc.Find(`[data-testid=workload-rows] > tr[data-key]`).Each(func(_ int, s *goquery.Selection) {
		out = append(out, s.AttrOr("data-key", ""))
	})
	return out
}

func TestWorkloadsCard(t *testing.T) {
	reg := newHost(t, hostOpts{cores: 2, procs: 2, workloads: 40})
	doc, _ := render(t, views.DashboardPage(views.NewDashboard(reg, nil, "", now)))
	rows := workloadRows(doc)
	if len(rows) != views.WorkloadRowsShown || rows[0] != "svc-nginx" || rows[1] != "pod-0d8c1a8e2b43" {
		t.Fatalf("by CPU: %d rows starting %v; want %d, the busiest first", len(rows), rows[:2], views.WorkloadRowsShown)
	}
	if got := strings.Join(strings.Fields(doc.Find(".card-workloads .toolbar p").Text()), " "); got != "39 running · 1 stopped · 0 over the cap" {
		// the last part is there for the script, hidden by the stylesheet while 0
		t.Errorf("counts %q", got)
	}
	pod := doc.Find(`tr[data-key="pod-0d8c1a8e2b43"]`)
	if href := pod.Find("a").AttrOr("href", ""); href != "/workloads/pod-0d8c1a8e2b43" {
		t.Errorf("link %q", href)
	}
	if n := pod.Find("meter:not([hidden])").Length(); n != 2 {
		t.Errorf("pod with CPU and memory limits shows %d bars", n)
	}
	if got := strings.Join(strings.Fields(pod.Find("td.r").First().Text()), " "); got != "0.50 2" {
		t.Errorf("pod CPU cell %q (the stylesheet writes \"of\" before a limit)", got)
	}
	svc := doc.Find(`tr[data-key="svc-nginx"]`)
	if n := svc.Find("meter:not([hidden])").Length(); n != 0 {
		t.Errorf("a service without limits shows %d bars", n)
	}
	if v := svc.Find(`.lim`).First().Text(); v != "" {
		t.Errorf("no limit, but %q", v)
	}

	// By memory the OOM-killed container (last seen at 900 MiB) is first,
	// marked in words and for the stylesheet.
	doc, _ = render(t, views.DashboardPage(views.NewDashboard(reg, nil, "", now).WithWorkloadsSort("mem")))
	rows = workloadRows(doc)
	if rows[0] != "docker-9b8c7d6e5f40" || doc.Find(`[data-testid=workload-rows]`).AttrOr("data-sort", "") != "mem_bytes" {
		t.Fatalf("by memory: %v", rows[:3])
	}
	if st := doc.Find(`tr[data-key="docker-9b8c7d6e5f40"] td`).Last(); st.AttrOr("data-v", "") != "oom_killed" || st.Text() != "oom_killed" {
		t.Errorf("OOM-killed row: %q", st.Text())
	}
	if doc.Find(`[data-testid=workloads-by-mem]`).AttrOr("aria-current", "") != "true" {
		t.Error("the memory tab is not current")
	}
}

func TestWorkloadPage(t *testing.T) {
	reg := newHost(t, hostOpts{cores: 2, workloads: 3, history: 300})
	p := views.NewWorkloadPage(reg, nil, "pod-0d8c1a8e2b43", now)
	if !p.Found || len(p.Subscribe) != 1 || p.Subscribe[0] != "web-1.workload.pod-0d8c1a8e2b43" {
		t.Fatalf("page %+v", p.Meta)
	}
	doc, _ := render(t, views.WorkloadPageView(p))
	if got := text(t, doc, "workload-name"); got != "web-5d9c7b6f4-x2k8q pod in shop" {
		t.Errorf("heading %q", got)
	}
	if got := text(t, doc, "workload-cpu"); got != "0.50" {
		t.Errorf("CPU %q", got)
	}
	if got := doc.Find(`[data-testid=workload-containers] > tr[data-key]`).Length(); got != 2 {
		t.Errorf("%d containers", got)
	}
	// The CPU chart is drawn from the topic's short history: at most
	// WorkloadHistory points.
	pts := strings.Fields(doc.Find(`[data-chart=cpu] polyline`).AttrOr("points", ""))
	if len(pts) < 2 || len(pts) > collectors.WorkloadHistory {
		t.Errorf("CPU chart has %d points", len(pts))
	}

	missing := views.NewWorkloadPage(reg, nil, "docker-000000000000", now)
	doc, _ = render(t, views.WorkloadPageView(missing))
	if missing.Found || doc.Find(`[data-testid=workload-missing]`).Length() != 1 || len(missing.Subscribe) != 0 {
		t.Errorf("a workload that is not there: found %v", missing.Found)
	}
	if bad := views.NewWorkloadPage(reg, nil, "Not.A.Token", now); bad.Found {
		t.Error("an id that is no topic token was found")
	}
}
