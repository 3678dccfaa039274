package link

import (
	"errors"
	"fmt"
	"syscall"
	"time"
)

// GoneError is the reason a session ends when its far end is taken to be
// gone for good: a redial was refused (no process listens any more, so a
// future peer starts a new session anyway), or the transport stayed down
// for longer than Config.ResumeTimeout. Until a new session is up, the
// upper layer should turn new streams away with it rather than wait.
type GoneError struct {
	// Reason says why, e.g. "connection refused".
	Reason string
}

func (e *GoneError) Error() string { return "far end is gone: " + e.Reason }

// refusedDial reports whether a driver's Open failed because nothing
// listens at the far end: proof that no process holds the old session.
// A timeout, a name that does not resolve or an unreachable network prove
// nothing of the kind.
func refusedDial(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

// linkLost starts the resume timeout when a session has just lost its
// transport, under l.mu. It does nothing when no session is established,
// when the timeout is off, or when it already runs.
func (l *Link) linkLost() {
	if !l.established || l.cfg.ResumeTimeout <= 0 || l.goneTimer != nil {
		return
	}
	gen := l.gen
	d := l.cfg.ResumeTimeout
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.goneTimer != t {
			return // stopped: the link came back
		}
		l.goneTimer = nil
		if l.gen == gen { // not ended otherwise meanwhile
			l.giveUp(&GoneError{Reason: fmt.Sprintf("no link for %v (the resume timeout)", d)})
		}
	})
	l.goneTimer = t
}

// linkBack stops the resume timeout once a handshake completed, under
// l.mu, and records when for UpSince. (Its other callers run while the
// link is not up, when UpSince reports nothing.)
func (l *Link) linkBack() {
	l.upSince = time.Now()
	if l.goneTimer != nil {
		l.goneTimer.Stop()
		l.goneTimer = nil
	}
}

// giveUp ends the session while no transport carries it, under l.mu: its
// streams are reset with reason, and the next handshake starts a new
// session under a new id, so that a peer that still holds the old one
// learns it is over (it sees a restart).
func (l *Link) giveUp(reason error) {
	if !l.established || (l.cur != nil && l.cur.complete) {
		return
	}
	l.linkBack()
	l.log.Warn("session given up; its streams are reset", "err", reason)
	l.resetSession(reason)
	l.peerID = 0
	l.localID = newSessionID()
	if c := l.cur; c != nil {
		c.newRound(time.Now()) // a handshake under way starts again with the new id
	}
	l.Notify()
}
