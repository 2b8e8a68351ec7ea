package export

import (
	"testing"

	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/porttrace/porttrace/internal/cgroup"
	"github.com/porttrace/porttrace/internal/live"
	"github.com/porttrace/porttrace/internal/summary"
)

// TestPodLabelsAgree: the live view (live.LabelByPod, on a summary) and
// the metrics (netnsPods, from events) label a namespace by its pod by the
// one rule, cgroup.NetnsPods: given the same processes in a namespace,
// both name the same pod, or both none.
func TestPodLabelsAgree(t *testing.T) {
	a := cgroup.Process{Container: "aaaaaaaaaaaa", PodUID: "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"}
	a2 := cgroup.Process{Container: "a2a2a2a2a2a2", PodUID: a.PodUID} // a's other container
	b := cgroup.Process{Container: "bbbbbbbbbbbb", PodUID: "9a8b7c6d-5e4f-4321-8fed-cba987654321"}
	c := cgroup.Process{Container: "cccccccccccc"} // no pod in its cgroup path
	c2 := cgroup.Process{Container: "c2c2c2c2c2c2"}
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
		{"two containers without pod UIDs", []cgroup.Process{c, c2}, ""},
	} {
		const ino = 4026531840
		r := &summary.Summary{Netns: []summary.NetnsSummary{{}}, Spaces: []summary.SpaceSummary{{Netns: ino}}}
		r.Netns[0].Inode = ino
		pods := newNetnsPods(nil, cgroup.NewResolver())
		for _, p := range tc.procs {
			ref := summary.ProcRef{Container: p.Container, PodUID: p.PodUID}
			if p.PodUID == "" && p.Container != "" {
				// The runtime names c's and c2's pod although their
				// cgroup paths do not: one pod, or two of one name?
				ref.PodName, ref.PodNamespace = "api-1", "shop"
			}
			r.Spaces[0].Processes = append(r.Spaces[0].Processes, ref)
			pods.pods.Note(ino, p)
		}
		live.LabelByPod(r)
		want := tc.want
		if r.Spaces[0].Pod != want || r.Netns[0].Pod != want {
			t.Errorf("%s: the live view labels the space %q and the namespace %q, want %q", tc.name, r.Spaces[0].Pod, r.Netns[0].Pod, want)
		}
		// The metrics: from events, and from the summary's label.
		for _, p := range []*netnsPods{pods, nil} {
			var got summary.ProcRef
			for _, kv := range spacePod(&r.Spaces[0], p) {
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
