package event

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// JSON is an event as `porttrace trace --json` prints it, one per line.
type JSON struct {
	Time          time.Time `json:"time"`
	Event         string    `json:"event"`
	PID           uint32    `json:"pid"`
	TID           uint32    `json:"tid"`
	Comm          string    `json:"comm"` // the process's name
	ThreadComm    string    `json:"thread_comm,omitempty"`
	CgroupID      uint64    `json:"cgroup_id"`
	Netns         uint32    `json:"netns"`
	Src           string    `json:"src"`
	Dst           string    `json:"dst"`
	Errno         string    `json:"errno,omitempty"`
	LatencyNS     int64     `json:"latency_ns,omitempty"`
	LatencyApprox bool      `json:"latency_approx,omitempty"`
	OldState      string    `json:"old_state,omitempty"`
	NewState      string    `json:"new_state,omitempty"`
	Cookie        uint64    `json:"socket_cookie,omitempty"`
	// PortRange is the socket's IP_LOCAL_PORT_RANGE, "low-high" (0 for
	// a bound left unset), where it set one.
	PortRange string `json:"ip_local_port_range,omitempty"`
	// NATSrc is a NAT event's translated source; InsertFailed that
	// conntrack refused it.
	NATSrc       string `json:"nat_src,omitempty"`
	InsertFailed bool   `json:"insert_failed,omitempty"`
}

// MarshalJSON writes the event as JSON.
func (e *Event) MarshalJSON() ([]byte, error) {
	j := JSON{
		Time: e.Time.UTC(), Event: e.Kind.String(), PID: e.PID, TID: e.TID, Comm: e.Comm.String(), ThreadComm: e.ThreadComm.String(),
		CgroupID: e.CgroupID, Netns: e.Netns, Src: e.Src.String(), Dst: e.Dst.String(),
		Errno: ErrnoName(e.Errno), Cookie: e.Cookie,
	}
	if e.Kind == NAT {
		j.NATSrc, j.InsertFailed = e.NATSrc.String(), e.Flags&InsertFailed != 0
	}
	if e.Kind == Alloc || e.Kind == Bind || e.Kind == Connect || e.Kind == NAT {
		j.LatencyNS = int64(e.Latency)
		j.LatencyApprox = e.Flags&LatencyApprox != 0
	}
	if e.Kind == State {
		j.OldState, j.NewState = e.OldState.String(), e.NewState.String()
	}
	if e.PortRange != [2]uint16{} {
		j.PortRange = fmt.Sprintf("%d-%d", e.PortRange[0], e.PortRange[1])
	}
	return json.Marshal(j)
}

// TextHeader is the column header for Text.
const TextHeader = "TIME          EVENT      PID     COMM             SRC                     DST                     RESULT"

// Text formats the event as one line under TextHeader.
func (e *Event) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-13s %-10s %-7d %-16s %-23s %-23s ", e.Time.Local().Format("15:04:05.000"),
		e.Kind, e.PID, e.Comm, addrPort(e.Src), addrPort(e.Dst))
	switch e.Kind {
	case State:
		fmt.Fprintf(&b, "%s -> %s", e.OldState, e.NewState)
		if e.Errno != 0 {
			b.WriteString(" " + ErrnoName(e.Errno))
		}
	case TimeWait:
		b.WriteString("TIME_WAIT")
	case NAT:
		result := "as " + addrPort(e.NATSrc)
		if e.Flags&InsertFailed != 0 {
			result = "insert_failed " + addrPort(e.NATSrc)
		}
		fmt.Fprintf(&b, "%s %s", result, e.Latency.Round(100*time.Nanosecond))
	default:
		if e.Errno == 0 {
			b.WriteString("ok")
		} else {
			b.WriteString(ErrnoName(e.Errno))
		}
		approx := ""
		if e.Flags&LatencyApprox != 0 && e.Kind != Connect {
			approx = " (approx)"
		}
		fmt.Fprintf(&b, " %s%s", e.Latency.Round(100*time.Nanosecond), approx)
	}
	return b.String()
}

func addrPort(ap netip.AddrPort) string {
	if !ap.Addr().IsValid() {
		return "-"
	}
	return ap.String()
}

// Filter selects events by what an operator knows of an incident.
type Filter struct {
	PID          uint32 // process id; 0 for any
	Comm         string // exact task name; "" for any
	DPort        uint16 // destination port; 0 for any
	FailuresOnly bool
}

// Match reports whether the event passes the filter.
func (f Filter) Match(e *Event) bool {
	switch {
	case f.PID != 0 && e.PID != f.PID:
		return false
	case f.Comm != "" && e.Comm != MakeComm(f.Comm): // no allocation per event
		return false
	case f.DPort != 0 && e.Dst.Port() != f.DPort:
		return false
	case f.FailuresOnly && !e.Failed():
		return false
	}
	return true
}
