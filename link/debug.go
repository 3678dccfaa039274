package link

import (
	"fmt"
	"strings"
	"time"
)

// DebugState describes the link's session and ARQ state: sequence numbers,
// the frames awaiting an ack and what is owed to the peer. It is for a
// test that failed and a bug report, not for parsing.
func (l *Link) DebugState() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	var b strings.Builder
	fmt.Fprintf(&b, "link: state %s established %v gen %d peerMax %d\n", l.state, l.established, l.gen, l.peerMax)
	fmt.Fprintf(&b, "  send: nextSeq %d unacked %d held %v rto %v srtt %v sizeCap %d peerWindow %d\n",
		l.nextSeq, len(l.unacked), l.held != nil, l.rto, l.srtt, l.sizeCap, l.peerWindow)
	for _, f := range l.unacked {
		fmt.Fprintf(&b, "    frame %d len %d tx %d sent %v ago resent %v sacked %v pending %v fragOff %d held %v\n",
			f.seq, len(f.raw), f.tx, now.Sub(f.sentAt), f.resent, f.sacked, f.pending, f.fragOff, f.held)
	}
	fmt.Fprintf(&b, "  recv: rxNext %d lastAckSent %d ooo %d partials %d\n", l.rxNext, l.lastAckSent, len(l.ooo), len(l.partials))
	for seq, p := range l.partials {
		fmt.Fprintf(&b, "    partial %d len %d left %d\n", seq, len(p.buf), p.left)
	}
	if c := l.cur; c != nil {
		fmt.Fprintf(&b, "  conn: ackDue %v piecesDue %v pongDue %v closeDue %q urgentDue %v drainDue %v"+
			" lastRecv %v ago lastSend %v ago good %d bad %d\n",
			c.ackDue, c.piecesDue, c.pongDue, c.closeDue, c.urgentDue, c.drainDue,
			now.Sub(c.lastRecv), now.Sub(c.lastSend), c.framesGood.Load(), c.framesBad.Load())
	} else {
		b.WriteString("  conn: none\n")
	}
	return b.String()
}
