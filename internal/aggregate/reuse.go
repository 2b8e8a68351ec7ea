package aggregate

import (
	"time"

	"github.com/porttrace/porttrace/internal/netns"
)

// TakeOver is what the kernel's tcp_twsk_unique (net/ipv4/tcp_ipv4.c)
// looks at when connect() meets a time-wait socket with the 4-tuple it
// wants.
type TakeOver struct {
	TWReuse    int  // tcp_tw_reuse of the connecting socket's namespace
	Timestamps bool // the old connection used TCP timestamps (tw_ts_recent_stamp set)
	// Loopback: the time-wait socket's source or destination address is
	// a loopback one (or it was bound to lo), what tcp_tw_reuse=2 asks.
	Loopback bool
	// FinWait2: the time-wait socket is in the FIN_WAIT2 substate, an
	// orphan whose peer never closed: the search treats tcp_tw_reuse as 0.
	FinWait2 bool
	Age      time.Duration // since the socket entered time-wait
	Delay    time.Duration // tcp_tw_reuse_delay
	// PortFixed: the connecting socket's port is already its own
	// (bind() before connect(): the kernel passes no twp), not one the
	// port search is trying.
	PortFixed bool
}

// Allowed reports whether connect() may take the time-wait socket over,
// freeing its port for the new connection, following tcp_twsk_unique:
//
//	if substate == FIN_WAIT2: reuse = 0
//	if reuse == 2 and not loopback: reuse = 0
//	ts_recent_stamp && (!twp || (reuse && now > entry + tcp_tw_reuse_delay))
func (t TakeOver) Allowed() bool {
	reuse := t.TWReuse
	if t.FinWait2 {
		reuse = 0
	}
	if reuse == 2 && !t.Loopback {
		reuse = 0
	}
	if !t.Timestamps {
		return false
	}
	return t.PortFixed || reuse != 0 && t.Age > t.Delay
}

// takeOver is the case of a port search in namespace settings st toward
// a space whose addresses are loopback or not.
func takeOver(st netns.Settings, loopback bool) TakeOver {
	return TakeOver{TWReuse: st.TWReuse, Timestamps: st.Timestamps != 0, Loopback: loopback,
		Delay: time.Duration(st.TWReuseDelay) * time.Millisecond}
}
