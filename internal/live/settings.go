package live

import "github.com/porttrace/porttrace/internal/netns"

// WatchedNamespaces bounds how many namespaces have their settings read
// again every second (aggregate.Watched): each read enters the namespace
// and reads a few files (not timed here).
const WatchedNamespaces = 8

// RereadSettings has the monitor read again, every second, the settings of
// the namespaces with a space at least half full, with read (netns.Read,
// given the path a namespace was read from): a change that no event
// contradicts (ip_local_port_range widened while the clients are idle,
// tcp_tw_reuse turned on) then shows at the next refresh, not at the
// namespace's next idle read (a minute). Call it before Run.
func (m *Monitor) RereadSettings(read func(path string) (netns.Settings, error)) {
	m.reread = read
}

// rereadSettings reads the watched namespaces' settings again, and has the
// table reader read a namespace whose settings changed at its next round,
// so that its older copy does not come back.
func (m *Monitor) rereadSettings() {
	if m.reread == nil {
		return
	}
	m.mu.Lock()
	watched := m.agg.Watched(WatchedNamespaces)
	m.mu.Unlock()
	for _, w := range watched {
		if w.Path == "" {
			continue
		}
		s, err := m.reread(w.Path)
		if err != nil || s.Inode != w.Inode {
			continue // gone, or another namespace now: the next round says
		}
		m.mu.Lock()
		if m.agg.UpdateSettings(s) {
			m.touched[s.Inode] = true
		}
		m.mu.Unlock()
	}
}
