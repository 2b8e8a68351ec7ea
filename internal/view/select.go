package view

import (
	"net/netip"
	"slices"

	"github.com/porttrace/porttrace/internal/frame"

	"github.com/porttrace/porttrace/internal/diagnose"
	"github.com/porttrace/porttrace/internal/nat"
	"github.com/porttrace/porttrace/internal/summary"
)

// Select is what the --pid, --comm, --netns, --dport and --dst flags keep of
// a summary. The zero value keeps everything. A port space is kept when its
// namespace and destination match and, if processes are named, one of its
// processes matches; a process when it matches and one of its port spaces
// is kept; a finding when its port space is kept.
type Select struct {
	PIDs  []uint32   // process ids; none for any
	Comm  string     // exact task name; "" for any
	Netns uint32     // namespace inode; 0 for any
	DPort uint16     // destination port; 0 for any
	Dst   netip.Addr // destination address; invalid for any
	Pod   string     // Kubernetes pod, by name or UID; "" for any
	K8sNS string     // Kubernetes namespace of the pod; "" for any
}

// Empty reports whether s keeps everything.
func (s Select) Empty() bool {
	return len(s.PIDs) == 0 && s.Comm == "" && s.Netns == 0 && s.DPort == 0 && !s.Dst.IsValid() && s.Pod == "" && s.K8sNS == ""
}

func (s Select) byProcess() bool {
	return len(s.PIDs) > 0 || s.Comm != "" || s.Pod != "" || s.K8sNS != ""
}

// who is what a process filter looks at.
type who struct {
	pid                uint32
	comm               string
	podUID, pod, k8sNS string
}

func refWho(p summary.ProcRef) who {
	return who{p.PID, p.Comm, p.PodUID, p.PodName, p.PodNamespace}
}

func summaryWho(p summary.ProcessSummary) who {
	return who{p.PID, p.Comm, p.PodUID, p.PodName, p.PodNamespace}
}
func (s Select) bySpace() bool { return s.Netns != 0 || s.DPort != 0 || s.Dst.IsValid() }

// process matches a process by id, name and pod.
func (s Select) process(w who) bool {
	return (len(s.PIDs) == 0 || slices.Contains(s.PIDs, w.pid)) && (s.Comm == "" || w.comm == s.Comm) &&
		(s.Pod == "" || s.Pod == w.pod || s.Pod == w.podUID) && (s.K8sNS == "" || s.K8sNS == w.k8sNS)
}

func (s Select) space(r *summary.SpaceSummary) bool {
	if s.Netns != 0 && r.Netns != s.Netns {
		return false
	}
	if s.DPort != 0 || s.Dst.IsValid() {
		dst, err := netip.ParseAddrPort(r.Dst)
		if err != nil { // a bind() pool has no destination
			return false
		}
		if (s.DPort != 0 && dst.Port() != s.DPort) || (s.Dst.IsValid() && dst.Addr().Unmap() != s.Dst.Unmap()) {
			return false
		}
	}
	return !s.byProcess() || slices.ContainsFunc(r.Processes, func(p summary.ProcRef) bool { return s.process(refWho(p)) })
}

// Filter is a copy of r with only what s keeps, and the findings about the
// port spaces kept. Totals (events, lost events) stay those of the whole.
func (s Select) Filter(r *summary.Summary, findings []diagnose.Finding) (*summary.Summary, []diagnose.Finding) {
	if r == nil || s.Empty() {
		return r, findings
	}
	out := *r
	out.Spaces, out.Processes = []summary.SpaceSummary{}, []summary.ProcessSummary{}
	kept := map[string]bool{}
	for i := range r.Spaces {
		if s.space(&r.Spaces[i]) {
			out.Spaces = append(out.Spaces, r.Spaces[i])
			kept[r.Spaces[i].Name], kept[r.Spaces[i].Where()] = true, true
		}
	}
	for _, p := range r.Processes {
		if !s.process(summaryWho(p)) || (p.Other && s.byProcess()) {
			continue
		}
		if s.bySpace() && !slices.ContainsFunc(p.Spaces, func(n string) bool { return kept[n] }) {
			continue
		}
		out.Processes = append(out.Processes, p)
	}
	fs := []diagnose.Finding{}
	for _, f := range findings {
		if kept[f.Space] {
			fs = append(fs, f)
		}
	}
	return &out, fs
}

// Apply is f with only what s keeps: of the NAT, the spaces FilterNAT
// keeps, their namespaces' conntrack tables and their findings.
func (s Select) Apply(f frame.Frame) frame.Frame {
	all := f.Findings
	f.Summary, f.Findings = s.Filter(f.Summary, f.Findings)
	if f.NAT != nil && !s.Empty() {
		f.NAT = s.FilterNAT(f.NAT, f.Summary)
		f.Findings = append(f.Findings, NATFindings(f.NAT, all)...)
	}
	return f
}

// FilterNAT is a copy of n with the NAT spaces s keeps, given the host
// figures it kept (kept): those toward the destination asked for that
// translate in the namespace asked for, or for a client there (a pod
// behind the node); with processes asked for, those with a client in the
// namespace of a kept port space or a client process that matches. The
// conntrack tables kept are those of the namespace asked for and of the
// spaces kept.
func (s Select) FilterNAT(n *nat.Summary, kept *summary.Summary) *nat.Summary {
	nets := map[uint32]bool{}
	if s.byProcess() && kept != nil {
		for i := range kept.Spaces {
			nets[kept.Spaces[i].Netns] = true
		}
	}
	out := &nat.Summary{Time: n.Time, Spaces: []nat.Space{}, Tables: []nat.Conntrack{}}
	tables := map[uint32]bool{s.Netns: s.Netns != 0 && !s.byProcess()}
	for i := range n.Spaces {
		if sp := &n.Spaces[i]; s.natSpace(sp, nets) {
			out.Spaces, tables[sp.Netns] = append(out.Spaces, *sp), true
		}
	}
	for _, t := range n.Tables {
		if tables[t.Netns] {
			out.Tables = append(out.Tables, t)
		}
	}
	return out
}

func (s Select) natSpace(sp *nat.Space, nets map[uint32]bool) bool {
	if (s.DPort != 0 && sp.Dst.Port() != s.DPort) || (s.Dst.IsValid() && sp.Dst.Addr().Unmap() != s.Dst.Unmap()) {
		return false
	}
	if s.Netns != 0 && sp.Netns != s.Netns && !slices.ContainsFunc(sp.Clients, func(c nat.Client) bool { return c.Netns == s.Netns }) {
		return false
	}
	return !s.byProcess() || slices.ContainsFunc(sp.Clients, func(c nat.Client) bool {
		return nets[c.Netns] || c.PID != 0 && s.process(who{pid: c.PID, comm: c.Comm})
	})
}

// NATFindings are the findings of all about the NAT spaces and conntrack
// tables of n (as FilterNAT kept them).
func NATFindings(n *nat.Summary, all []diagnose.Finding) []diagnose.Finding {
	kept, tables := map[string]bool{}, map[uint32]bool{}
	for i := range n.Spaces {
		kept[diagnose.NATWhere(&n.Spaces[i])] = true
	}
	for _, t := range n.Tables {
		tables[t.Netns] = true
	}
	var out []diagnose.Finding
	for _, f := range all {
		if kept[f.Space] || (f.Rule == diagnose.RuleTableFull || f.Rule == diagnose.RuleCollisions) && tables[f.Netns] {
			out = append(out, f)
		}
	}
	return out
}

// Selected is a Source that shows only what Select keeps.
type Selected struct {
	Source
	Select Select
}

// Frame is the source's frame, selected.
func (s Selected) Frame() frame.Frame { return s.Select.Apply(s.Source.Frame()) }
