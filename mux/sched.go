package mux

import (
	"encoding/binary"
	"slices"
	"time"

	"github.com/sockmux/sockmux/link"
)

// interactiveMax is the largest write that counts as interactive: a stream
// that becomes ready with no more than this goes to the head of the line.
const interactiveMax = 512

// A small write counts as interactive while its stream's recent volume
// is low. Each stream has a bucket of interactiveBucket bytes, refilled at
// interactiveRate bytes a second, from which every write takes its size. An
// echo or a shell session (a few bytes every few milliseconds) never
// empties it, however close together its writes come. A stream that
// empties it, or writes more than interactiveMax at once, is bulk (batched
// with the rest) until its bucket is full again: half a second of
// writing less than the refill rate.
const (
	interactiveBucket = 1024
	interactiveRate   = 2048
)

// takeInteractive reports whether a write of n bytes on s counts as
// interactive, and takes n from s's bucket, under m.mu.
func (s *Stream) takeInteractive(n int, now time.Time) bool {
	if s.bucketAt.IsZero() {
		s.bucket = interactiveBucket
	} else {
		s.bucket = min(interactiveBucket, s.bucket+now.Sub(s.bucketAt).Seconds()*interactiveRate)
	}
	s.bucketAt = now
	if s.bulk && s.bucket >= interactiveBucket {
		s.bulk = false
	}
	ok := n <= interactiveMax && !s.bulk && s.bucket >= float64(n)
	s.bucket = max(0, s.bucket-float64(n))
	if !ok {
		s.bulk = true
	}
	return ok
}

// queue appends a control message and wakes the link, under m.mu.
func (m *Mux) queue(msg []byte) {
	m.ctrl = append(m.ctrl, ctrlMsg{b: msg})
	m.notify()
}

// queueReply queues an answer to the far end's request, under m.mu.
func (m *Mux) queueReply(msg []byte) {
	m.ctrl = append(m.ctrl, ctrlMsg{b: msg, reply: true})
	m.replyBytes += len(msg)
	m.notify()
}

// makeReady puts s in the send rotation, under m.mu: an interactive
// stream at the head, others at the tail.
func (m *Mux) makeReady(s *Stream, interactive bool) {
	if s.inReady || s.credit <= 0 || len(s.wbuf) == 0 {
		return
	}
	s.inReady = true
	s.interactive = interactive
	if interactive {
		m.ready = append(m.ready, nil)
		copy(m.ready[1:], m.ready)
		m.ready[0] = s
	} else {
		m.ready = append(m.ready, s)
	}
	m.notify()
}

func (m *Mux) unready(s *Stream) {
	if !s.inReady {
		return
	}
	s.inReady = false
	for i, r := range m.ready {
		if r == s {
			m.ready = append(m.ready[:i], m.ready[i+1:]...)
			return
		}
	}
}

// maybeGrant returns read bytes to the far end as credit, under m.mu, in
// batches so that credit messages stay a small part of the traffic.
func (m *Mux) maybeGrant(s *Stream) {
	if s.err != nil || s.remoteFin || s.unreported == 0 {
		return
	}
	if s.unreported >= s.target/4 || (len(s.rbuf) == s.roff && s.unreported >= s.target/16) {
		grant := s.unreported
		s.unreported = 0
		if s.starved && len(s.rbuf) == s.roff {
			// The window, not the reader, holds the stream back.
			grant += m.grow(s)
			s.starved = false
		}
		s.recvLeft += grant
		m.queue(binary.AppendUvarint(header(nil, msgWindow, s.id), uint64(grant)))
	}
}

// Fill implements link.Upper: control messages first, whole, as many as
// fit p, then streams in turn, each up to a quantum, until budget is used.
// The payload is of class interactive when it carries interactive data,
// control when it carries control messages only.
func (m *Mux) Fill(p []byte, budget int) (int, link.Class) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.up {
		return 0, link.ClassBulk
	}
	n := 0
	// What FillUrgent may send ahead of this payload depends on what it
	// carries: no stream it carries data of or opens.
	m.fills++
	m.inflight = m.inflight[:0]
	sent := 0
	for _, msg := range m.ctrl {
		if len(msg.b) > len(p)-n {
			break // the next payload takes it, whole
		}
		n += copy(p[n:], msg.b)
		if msg.reply {
			m.replyBytes -= len(msg.b)
		}
		if msg.open != nil {
			msg.open.openFill = m.fills
		}
		sent++
	}
	clear(m.ctrl[:sent])
	m.ctrl = m.ctrl[sent:]
	if len(m.ctrl) == 0 {
		m.ctrl = nil
	}
	// A payload that starts with interactive data carries only that (and
	// control): it goes out as a short frame of its own instead of
	// waiting, inside a full one, for bulk data to cross the line.
	interactiveOnly := len(m.ready) > 0 && m.ready[0].interactive
	ctrl, interactive := n, false
	if n < budget {
		n, interactive = m.fillData(p[:budget], n, interactiveOnly, false)
	}
	switch {
	case interactive:
		return n, link.ClassInteractive
	case n == ctrl && n > 0:
		return n, link.ClassControl
	case n > 0 && !m.talking():
		return n, link.ClassBulkQuiet
	}
	return n, link.ClassBulk
}

// talking reports whether a stream whose data went out as interactive
// may still send more, under m.mu: it is open for writing and has not
// turned bulk. It looks at the last talker only, dropping those that
// cannot send more until one can, so that a bulk Fill costs O(1)
// amortized however many streams talked; a stream that stopped talking
// further down stays until it reaches the end or leaves the table
// (forget), which is an answer kept correct, not a cost.
func (m *Mux) talking() bool {
	for n := len(m.talkers); n > 0; n = len(m.talkers) {
		s := m.talkers[n-1]
		if !(s.bulk || s.closed || s.state == stateReset || s.state.localDone() || m.streams[s.id] != s) {
			return true
		}
		m.dropTalker(s)
	}
	m.talkers = nil
	return false
}

// addTalker notes that data of s went out as interactive, under m.mu.
func (m *Mux) addTalker(s *Stream) {
	if !s.talker {
		s.talker, s.talkerAt = true, len(m.talkers)
		m.talkers = append(m.talkers, s)
	}
}

// dropTalker takes s out of m.talkers in O(1), under m.mu: the last
// talker takes its place.
func (m *Mux) dropTalker(s *Stream) {
	if !s.talker {
		return
	}
	last := len(m.talkers) - 1
	moved := m.talkers[last]
	m.talkers[s.talkerAt], moved.talkerAt = moved, s.talkerAt
	m.talkers[last] = nil
	m.talkers = m.talkers[:last]
	s.talker = false
}

// mayOvertake reports whether data of s may go ahead of the payload Fill
// returned last, under m.mu: the far end must know the stream by then
// (its OPEN went out in an earlier payload), and that payload must carry
// none of its data, so that its bytes stay in order.
func (m *Mux) mayOvertake(s *Stream) bool {
	if !s.inbound && (s.openFill == 0 || s.openFill >= m.fills) {
		return false
	}
	return !slices.Contains(m.inflight, s.id)
}

// fillData adds DATA messages to p[:n] from the streams in turn, each up
// to a quantum, and returns the new length and whether it added data of
// an interactive stream, under m.mu. interactiveOnly serves interactive
// streams only; ahead serves only those not in the payload in flight (see
// FillUrgent), and records none.
func (m *Mux) fillData(p []byte, n int, interactiveOnly, ahead bool) (_ int, interactive bool) {
	quantum := max(1024, len(p)/4)
	for i := 0; i < len(m.ready) && n < len(p); {
		s := m.ready[i]
		if interactiveOnly && !s.interactive {
			break
		}
		if ahead && !m.mayOvertake(s) || !s.inbound && s.openFill == 0 {
			// Not ahead of the payload in flight; not before its own
			// OPEN, which waits for a payload it fits whole.
			i++
			continue
		}
		take := min(len(s.wbuf), s.credit, quantum)
		hdr := 1 + uvarintLen(uint64(s.id))
		room := len(p) - n - hdr - uvarintLen(uint64(take))
		if room <= 0 || (n > 0 && room < min(take, 32)) {
			break // a sliver would cost more in header than it carries
		}
		take = min(take, room)
		h := header(p[n:n], msgData, s.id)
		h = binary.AppendUvarint(h, uint64(take))
		n += len(h)
		n += copy(p[n:], s.wbuf[:take])
		s.wbuf = s.wbuf[take:]
		s.credit -= take
		s.bytesOut += uint64(take)
		if !ahead {
			m.inflight = append(m.inflight, s.id)
		}
		m.ready = slices.Delete(m.ready, i, i+1)
		s.inReady = false
		if s.interactive {
			interactive = true
			m.addTalker(s)
		}
		s.interactive = false
		if len(s.wbuf) == 0 {
			s.wbuf = nil
			signal(s.writeCh)
		} else if s.credit > 0 {
			s.inReady = true
			m.ready = append(m.ready, s)
		}
	}
	if len(m.ready) == 0 {
		m.ready = nil
	}
	return n, interactive
}

// Urgent implements link.Preempter: an interactive stream waits that
// FillUrgent could send ahead of the payload in flight.
func (m *Mux) Urgent() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.up {
		return false
	}
	for _, s := range m.ready {
		if !s.interactive {
			return false
		}
		if m.mayOvertake(s) {
			return true
		}
	}
	return false
}

// FillUrgent implements link.Preempter: it fills p with interactive data
// that may overtake the payload most recently returned by Fill (the link
// sends that one again right after). Only whole DATA messages qualify, of
// streams the far end already knows and that payload carries no data of,
// so every stream's bytes stay in order.
func (m *Mux) FillUrgent(p []byte) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.up {
		return 0
	}
	n, _ := m.fillData(p, 0, true, true)
	return n
}
