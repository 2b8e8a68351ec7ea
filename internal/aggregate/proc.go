package aggregate

import (
	"github.com/porttrace/porttrace/internal/cgroup"
	"github.com/porttrace/porttrace/internal/summary"
	"github.com/porttrace/porttrace/internal/window"
)

// maxSpacesPerProc bounds the port spaces remembered per process.
const maxSpacesPerProc = 8

// proc is the state of one process.
type proc struct {
	key    ProcKey
	cgroup cgroup.Process
	conns  window.Counter
	fails  failures
	twIn   window.Counter
	spaces map[summary.SpaceKey]*window.Counter
	active int64
}

func newProc(k ProcKey, cg cgroup.Process) *proc {
	return &proc{key: k, cgroup: cg, fails: failures{}, spaces: map[summary.SpaceKey]*window.Counter{}}
}

func (p *proc) connect(sec int64, k summary.SpaceKey) {
	p.conns.Add(sec, 1)
	c := p.spaces[k]
	if c == nil {
		if len(p.spaces) >= maxSpacesPerProc {
			return
		}
		c = &window.Counter{}
		p.spaces[k] = c
	}
	c.Add(sec, 1)
}

func (p *proc) tick(sec int64) {
	for k, c := range p.spaces {
		if c.Sum(sec, window.Span) == 0 {
			delete(p.spaces, k)
		}
	}
}

func (p *proc) merge(o *proc, sec int64) {
	p.conns.Merge(&o.conns, sec)
	p.fails.merge(o.fails, sec)
	p.twIn.Merge(&o.twIn, sec)
	p.active = max(p.active, o.active)
}
