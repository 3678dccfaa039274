package mux

import (
	"fmt"
	"slices"
	"strings"
)

// DebugState describes the mux and every stream in it, one line each:
// states, buffers, credit and the scheduler's marks. It is for a test that
// failed and a bug report, not for parsing.
func (m *Mux) DebugState() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "mux: up %v closed %v streams %d ready %d ctrl %d inflight %v fills %d reserved %d\n",
		m.up, m.closed, len(m.streams), len(m.ready), len(m.ctrl), m.inflight, m.fills, m.reserved)
	ids := make([]uint32, 0, len(m.streams))
	for id := range m.streams {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		s := m.streams[id]
		fmt.Fprintf(&b, "  stream %d in %v %s hold %d accepted %v unread %d recvLeft %d unreported %d target %d"+
			" wbuf %d credit %d ready %v interactive %v bulk %v openFill %d starved %v in %d out %d err %v\n",
			id, s.inbound, s.state, s.hold, s.accepted, len(s.rbuf)-s.roff, s.recvLeft, s.unreported, s.target,
			len(s.wbuf), s.credit, s.inReady, s.interactive, s.bulk, s.openFill, s.starved, s.bytesIn, s.bytesOut, s.err)
	}
	return b.String()
}
