package export

import (
	"context"
	"net/netip"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/porttrace/porttrace/internal/cgroup"
	"github.com/porttrace/porttrace/internal/cri"
	"github.com/porttrace/porttrace/internal/event"
	"github.com/porttrace/porttrace/internal/live"
	"github.com/porttrace/porttrace/internal/summary"
)

// TestPodLabelsAgree: the live view (live.NamePods, on a summary) and
// the metrics (netnsPods, from events) label a namespace by its pod by the
// one rule, cgroup.NetnsPods: given the same processes in a namespace and
// the same answers of the container runtime, both name the same pod, or
// both none.
func TestPodLabelsAgree(t *testing.T) {
	a := cgroup.Process{Container: "aaaaaaaaaaaa", PodUID: "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"}
	a2 := cgroup.Process{Container: "a2a2a2a2a2a2", PodUID: a.PodUID} // a's other container
	b := cgroup.Process{Container: "bbbbbbbbbbbb", PodUID: "9a8b7c6d-5e4f-4321-8fed-cba987654321"}
	// No pod UID in their cgroup paths (the cgroupfs driver without
	// per-QoS cgroups): the runtime names their pods.
	c := cgroup.Process{Container: "cccccccccccc"}
	c2 := cgroup.Process{Container: "c2c2c2c2c2c2"}
	c3 := cgroup.Process{Container: "c3c3c3c3c3c3"}
	d := cgroup.Process{Container: "dddddddddddd"}
	runtime := map[string]live.PodNames{
		c.Container:  {Pod: "api-1", Namespace: "shop", UID: "11111111-2222-4333-8444-555555555555"},
		c2.Container: {Pod: "api-1", Namespace: "shop"},                                              // no UID label: one pod, or two of one name?
		c3.Container: {Pod: "api-1", Namespace: "shop", UID: "11111111-2222-4333-8444-555555555555"}, // c's sidecar
		d.Container:  {Pod: "api-2", Namespace: "shop", UID: "66666666-7777-4888-8999-aaaaaaaaaaaa"},
	}
	host := cgroup.Process{}
	for _, tc := range []struct {
		name  string
		procs []cgroup.Process
		want  string // the pod as the live view names it; "" for none
	}{
		{"one pod", []cgroup.Process{a}, "pod " + a.PodUID},
		{"a pod's two containers", []cgroup.Process{a, a2}, "pod " + a.PodUID},
		{"two pods", []cgroup.Process{a, b}, ""},
		{"a pod and the host", []cgroup.Process{host, a}, ""},
		{"the host", []cgroup.Process{host}, ""},
		{"a container without a pod UID", []cgroup.Process{c}, "shop/api-1"},
		{"a pod's two containers, UIDs from the runtime", []cgroup.Process{c, c3}, "shop/api-1"},
		{"two pods, UIDs from the runtime", []cgroup.Process{c, d}, ""},
		{"two containers, one without a UID anywhere", []cgroup.Process{c, c2}, ""},
		{"a pod's container with and one without a UID in its path", []cgroup.Process{a, c}, ""},
	} {
		const ino = 4026531840
		r := &summary.Summary{Netns: []summary.NetnsSummary{{}}, Spaces: []summary.SpaceSummary{{Netns: ino}}}
		r.Netns[0].Inode = ino
		pods := newNetnsPods(nil, cgroup.NewResolver())
		pods.named = func(short string) (cri.Names, bool) {
			n, ok := runtime[short]
			return cri.Names{Pod: n.Pod, Namespace: n.Namespace, PodUID: n.UID}, ok
		}
		for _, p := range tc.procs {
			r.Spaces[0].Processes = append(r.Spaces[0].Processes, summary.ProcRef{Container: p.Container, PodUID: p.PodUID})
			pods.pods.Note(ino, p)
		}
		live.NamePods(r, func(short string) (live.PodNames, bool) {
			n, ok := runtime[short]
			return n, ok
		})
		want := tc.want
		if r.Spaces[0].Pod != want || r.Netns[0].Pod != want {
			t.Errorf("%s: the live view labels the space %q and the namespace %q, want %q", tc.name, r.Spaces[0].Pod, r.Netns[0].Pod, want)
		}
		// The metrics: from events alone (a space the summary labels
		// with nothing), and from the summary's label alone.
		fromEvents := &summary.SpaceSummary{Key: summary.SpaceKey{Netns: ino}, Netns: ino}
		for _, p := range []*netnsPods{pods, nil} {
			s := &r.Spaces[0]
			if p != nil {
				s = fromEvents
			}
			var got summary.ProcRef
			for _, kv := range spacePod(s, p) {
				switch kv.Key {
				case semconv.K8SPodUIDKey:
					got.PodUID = kv.Value.AsString()
				case semconv.K8SPodNameKey:
					got.PodName = kv.Value.AsString()
				case semconv.K8SNamespaceNameKey:
					got.PodNamespace = kv.Value.AsString()
				}
			}
			if got.Pod() != want {
				t.Errorf("%s: metrics label the space %q (events seen: %v), the live view %q", tc.name, got.Pod(), p != nil, want)
			}
		}
	}
}

// TestLatencyPodLabelsArriveLate: the port search histogram of a pod's
// space carries the pod's names once the runtime gives them, though the
// space's first searches were recorded before it did (a two-container
// pod on a node whose cgroup paths carry no pod UID is the pod's only
// from then on).
func TestLatencyPodLabelsArriveLate(t *testing.T) {
	const netns = 4026532999
	rd := sdkmetric.NewManualReader()
	h, err := sdkmetric.NewMeterProvider(sdkmetric.WithReader(rd)).Meter("t").Float64Histogram(latencyName)
	if err != nil {
		t.Fatal(err)
	}
	answers := false
	pods := newNetnsPods(nil, cgroup.NewResolver())
	pods.named = func(short string) (cri.Names, bool) {
		return cri.Names{Pod: "client", Namespace: "shop", PodUID: "11111111-2222-4333-8444-555555555555"}, answers
	}
	pods.pods.Note(netns, cgroup.Process{Container: "aaaaaaaaaaaa"})
	pods.pods.Note(netns, cgroup.Process{Container: "a2a2a2a2a2a2"})
	rec := newLatencyRecorder(h, 10, pods)
	e := event.Event{Kind: event.Alloc, Netns: netns, Latency: time.Microsecond,
		Src: netip.MustParseAddrPort("10.0.0.2:40000"), Dst: upstream}
	rec.record(&e)
	answers = true
	rec.keep(map[summary.SpaceKey]bool{summary.SpaceOf(&e): true}) // the next collection
	rec.record(&e)
	var rm metricdata.ResourceMetrics
	if err := rd.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	named := uint64(0)
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			for _, p := range m.Data.(metricdata.Histogram[float64]).DataPoints {
				if v, ok := p.Attributes.Value(semconv.K8SPodNameKey); ok && v.AsString() == "client" {
					named += p.Count
				}
			}
		}
	}
	if named != 1 {
		t.Errorf("%d searches recorded under the pod's name, want the 1 made after the runtime answered", named)
	}
}
