package export

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"

	"github.com/porttrace/porttrace/internal/summary"
)

// TestSumsRenamed: a series whose members all move to a new series is
// renamed, not restarted: the new one starts at the old one's count and
// the old one ends. A member that leaves a series others stay in only
// counts in the new one what it adds from then on, so no count is in
// two series and no series goes down.
func TestSumsRenamed(t *testing.T) {
	set := func(k string) attribute.Set { return attribute.NewSet(attribute.String("k", k)) }
	s := newSums()
	collect := func(at time.Duration) map[string]uint64 {
		got := map[string]uint64{}
		s.end(time.Unix(1000, 0).Add(at), time.Minute, func(set attribute.Set, v uint64) {
			k, _ := set.Value("k")
			got[k.AsString()] = v
		})
		return got
	}
	a, b, c := member{pid: 1}, member{pid: 2}, member{pid: 3}
	s.add(a, set("other"), 15) // folded at the first export
	s.add(b, set("shared"), 4)
	s.add(c, set("shared"), 6)
	checkSums(t, "start", collect(0), map[string]uint64{"other": 15, "shared": 10})
	s.add(a, set("own"), 15) // its own series, alone in other before
	s.add(b, set("shared"), 4)
	s.add(c, set("shared+pod"), 7) // a new series, b stays behind
	checkSums(t, "a renamed, c split", collect(time.Second), map[string]uint64{"own": 15, "shared": 10, "shared+pod": 1})
	s.add(a, set("own+pod"), 16) // its pod's labels appear
	s.add(b, set("shared+pod"), 5)
	s.add(c, set("shared+pod"), 8)
	checkSums(t, "a renamed again, b joins", collect(2*time.Second), map[string]uint64{"own+pod": 16, "shared": 10, "shared+pod": 3})
	// Members that leave (evicted) stay counted where they were, and a
	// rename takes their counts along.
	s.add(c, set("all"), 9)
	checkSums(t, "b evicted, c renamed", collect(3*time.Second), map[string]uint64{"own+pod": 16, "shared": 10, "all": 4})
	// b comes back, its count started again from 0: its series counts on.
	s.add(b, set("all"), 2)
	s.add(c, set("all"), 9)
	checkSums(t, "b back", collect(4*time.Second), map[string]uint64{"own+pod": 16, "shared": 10, "all": 6})
}

func checkSums(t *testing.T, step string, got, want map[string]uint64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %v, want %v", step, got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("%s: %v, want %v", step, got, want)
		}
	}
}

// TestSeriesKeepCountsWhenRelabelled: the CI's flaky TestCollectorPipeline,
// from plain values. The agent sees every port space of the machine; with
// other tests' exhausted spaces ranking higher, a pod's space was folded
// into its namespace's "other" series at the first export and got its own
// at the next, which started at 0 while the client had failed 15 times.
// Whatever relabels a space's series between exports (its own series,
// its pod's names arriving late), the series that names it must hold all
// it counted, and every series the namespace ever had must never go down.
func TestSeriesKeepCountsWhenRelabelled(t *testing.T) {
	const pod = 4026532888
	busy := netip.MustParseAddrPort("10.0.0.1:443")
	space := func(netns uint32, dst netip.AddrPort, conns uint64, failures uint64) summary.SpaceSummary {
		s := summary.SpaceSummary{Key: summary.SpaceKey{Netns: netns, Src: upstream.Addr(), Dst: dst},
			Netns: netns, UsedPct: 100, TotalConns: conns, TotalFailures: failures,
			Failures: []summary.Failure{{Errno: "EADDRNOTAVAIL", Exhaustion: true, Last: failures, Total: failures}}}
		s.Conns.S60 = float64(conns) / 60
		return s
	}
	client := space(pod, upstream, 25, 15)
	uid := summary.ProcRef{PID: 7, Comm: "churn", PodUID: "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d"}
	named := uid
	named.PodName, named.PodNamespace = "api-7d9f", "shop"
	steps := []struct {
		name   string
		spaces []summary.SpaceSummary
		proc   summary.ProcRef // the client's, in its space's row
		own    bool            // the client's space has series of its own
	}{
		// Two busier exhausted spaces of other tests take the one place
		// (Spaces: 1) and the one kept for the active.
		{"folded", []summary.SpaceSummary{space(ino, busy, 900, 800), space(ino+1, busy, 600, 500), client}, uid, false},
		{"its own series", []summary.SpaceSummary{client}, uid, true},
		{"its pod named", []summary.SpaceSummary{client}, named, true},
	}
	var cur *summary.Summary
	reg := prometheus.NewRegistry()
	x, err := New(context.Background(), Options{Prometheus: reg, NoOTLP: true, Spaces: 100, Cardinality: Cardinality{Spaces: 1}},
		func() *summary.Summary { return cur })
	if err != nil {
		t.Fatal(err)
	}
	defer x.Shutdown(context.Background())
	seen := map[string]float64{} // every failure series of the pod's namespace, by labels
	for _, st := range steps {
		cur = &summary.Summary{Spaces: st.spaces}
		for i := range cur.Spaces {
			if cur.Spaces[i].Netns == pod {
				cur.Spaces[i].Processes = []summary.ProcRef{st.proc}
				cur.Spaces[i].Pod = st.proc.Pod()
			}
		}
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, mf := range mfs {
			if mf.GetName() != "porttrace_connect_failures_total" {
				continue
			}
			for _, m := range mf.Metric {
				l := map[string]string{}
				for _, lp := range m.Label {
					l[lp.GetName()] = lp.GetValue()
				}
				if l["porttrace_netns"] != "4026532888" {
					continue
				}
				key := m.String()
				v := m.GetCounter().GetValue()
				if v < seen[key] {
					t.Errorf("%s: %v went down from %v to %v", st.name, l, seen[key], v)
				}
				seen[key] = v
				own := l["server_port"] == "8080"
				if own != st.own || l["k8s_pod_name"] != st.proc.PodName || l["k8s_pod_uid"] != st.proc.PodUID {
					t.Errorf("%s: series %v, want own %v and the pod %q", st.name, l, st.own, st.proc.Pod())
					continue
				}
				found = true
				if v != 15 {
					t.Errorf("%s: %v = %v, want the client's 15", st.name, l, v)
				}
			}
		}
		if !found {
			t.Errorf("%s: no failure series names the client's space", st.name)
		}
	}
}
