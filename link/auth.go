package link

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/flynn/noise"
)

// Authentication and encryption.
//
// With a pre-shared key, each transport runs a Noise handshake
// (Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s) after the hellos, with both
// hellos bound in as the prologue. Both ends contribute a fresh ephemeral
// key, so a recorded handshake replayed gets nowhere, and each transport
// gets its own keys, so nonces never repeat across transports. A session
// that resumes proves it is the same peer: its handshake mixes a secret
// derived from the handshake that created the session into the PSK.
//
// After the handshake every frame but HELLO is sealed:
//
//	type:1 nonce:2 ciphertext tag:16   (then CRC-32C, then COBS)
//
// type and nonce are authenticated as associated data; nonce is the low 16
// bits of a per-direction frame counter that the receiver extends (frames
// are never reordered, so the counter only grows; anything not above the
// last accepted counter is a replay and is dropped).

// KeySize is the length of a pre-shared key.
const KeySize = 32

// sealOverhead is what sealing adds to a frame.
const sealOverhead = 2 + 16

// Auth message steps, the first byte of an AUTH frame's body.
const (
	authInit    = 1 // initiator → responder: Noise message 1 (cleartext frame)
	authReply   = 2 // responder → initiator: Noise message 2 (cleartext frame)
	authConfirm = 3 // initiator → responder: sealed, empty: key confirmation
	authFail    = 4 // either way, in the clear: why authentication failed
)

// Hello flag: the sender requires authentication.
const helloAuth = 0x02

var cipherSuite = noise.NewCipherSuite(noise.DH25519, noise.CipherChaChaPoly, noise.HashBLAKE2s)

// AuthError is a peer that failed authentication: a wrong key, no key, a
// replayed or tampered handshake.
type AuthError struct{ Err error }

func (e *AuthError) Error() string { return "peer failed authentication: " + e.Err.Error() }
func (e *AuthError) Unwrap() error { return e.Err }

// errTampered is a sealed frame whose tag does not verify although its CRC
// does: someone changed it on purpose.
var errTampered = errors.New("a sealed frame failed authentication (altered or forged in transit)")

// authState is one transport's authentication, guarded by l.mu.
type authState struct {
	initiator bool
	hs        *noise.HandshakeState
	mode      sessionMode // the session decision taken at the hellos
	peer      hello       // the peer's hello that completed the round
	done      bool        // keys established and confirmed
	send      noise.Cipher
	recv      noise.Cipher
	sendN     uint64
	recvN     uint64 // last accepted counter + 1 (0: none yet)
	binding   []byte // handshake hash, for the session secret
}

// prologue binds both hellos (without the fields that change within a
// round) into the handshake, so a man in the middle cannot alter them.
func prologue(initiator, responder []byte) []byte {
	p := append([]byte("sockmux link v1 NNpsk0\x00"), initiator...)
	return append(p, responder...)
}

// canonicalHello is a hello as bound into the prologue.
func canonicalHello(h hello) []byte {
	h.Echo = 0
	h.Flags &^= helloDone
	return h.marshal(nil)
}

// resumeKey derives the PSK for resuming a session from the base key and
// the secret of the handshake that created the session.
func resumeKey(psk, sessionSecret []byte) []byte {
	m := hmac.New(sha256.New, psk)
	m.Write([]byte("sockmux resume"))
	m.Write(sessionSecret)
	return m.Sum(nil)
}

// startAuth begins authentication on this transport once the hello round
// completed, under l.mu. The initiator (larger session id) speaks first.
func (c *conn) startAuth(h *hello, mode sessionMode) error {
	l := c.l
	ours := canonicalHello(c.ourHello())
	theirs := canonicalHello(*h)
	a := &authState{initiator: l.localID > h.Session, mode: mode, peer: *h}
	pro := prologue(ours, theirs)
	if !a.initiator {
		pro = prologue(theirs, ours)
	}
	psk := l.cfg.Secret
	if mode == sessionResume {
		psk = resumeKey(psk, l.sessionSecret)
	}
	hs, err := noise.NewHandshakeState(noise.Config{
		CipherSuite:           cipherSuite,
		Pattern:               noise.HandshakeNN,
		Initiator:             a.initiator,
		Prologue:              pro,
		PresharedKey:          psk,
		PresharedKeyPlacement: 0,
	})
	if err != nil {
		return err
	}
	a.hs = hs
	c.auth = a
	if a.initiator {
		msg, _, _, err := hs.WriteMessage(nil, nil)
		if err != nil {
			return err
		}
		c.authMsg = append([]byte{frameAuth, authInit}, msg...)
		c.authOut = c.authMsg
		l.Notify()
	}
	return nil
}

// sealed reports whether frame goes out sealed: everything once keys
// exist, but hellos and the handshake messages themselves.
func (a *authState) sealed(frame []byte) bool {
	if a == nil || a.send == nil || frame[0] == frameHello {
		return false
	}
	return frame[0] != frameAuth || frame[1] == authConfirm
}

// onAuth handles an AUTH frame, under l.mu. body is the frame after its
// type byte, already unsealed for the confirmation step. tell is false for
// an error the peer already knows (its own refusal).
func (c *conn) onAuth(body []byte, sealed bool) (err error, tell bool) {
	a := c.auth
	if len(body) > 0 && body[0] == authFail && !sealed {
		return &AuthError{fmt.Errorf("the peer refused us: %s", body[1:])}, false
	}
	if a == nil || a.done || len(body) == 0 {
		return nil, false // a late duplicate, or before our round completed
	}
	l := c.l
	switch {
	case body[0] == authInit && !a.initiator && !sealed && a.send != nil:
		if string(body[1:]) == string(c.authPeer) {
			c.authOut = c.authMsg // our reply was lost: say it again
			l.Notify()
		}
	case body[0] == authInit && !a.initiator && !sealed:
		c.authPeer = append([]byte(nil), body[1:]...)
		if _, _, _, err := a.hs.ReadMessage(nil, body[1:]); err != nil {
			return &AuthError{fmt.Errorf("its handshake did not verify (a different key, or a replay)")}, true
		}
		msg, cs1, cs2, err := a.hs.WriteMessage(nil, nil)
		if err != nil {
			return &AuthError{err}, true
		}
		a.recv, a.send = cs1.Cipher(), cs2.Cipher()
		a.binding = a.hs.ChannelBinding()
		c.authMsg = append([]byte{frameAuth, authReply}, msg...)
		c.authOut = c.authMsg
		l.Notify()
	case body[0] == authReply && a.initiator && !sealed && a.send == nil:
		_, cs1, cs2, err := a.hs.ReadMessage(nil, body[1:])
		if err != nil {
			return &AuthError{fmt.Errorf("its handshake reply did not verify (a different key?)")}, true
		}
		a.send, a.recv = cs1.Cipher(), cs2.Cipher()
		a.binding = a.hs.ChannelBinding()
		c.authOut = []byte{frameAuth, authConfirm}
		l.Notify()
	}
	return nil, false
}

// authenticated applies the session decision once the peer proved itself,
// under l.mu.
func (c *conn) authenticated() {
	a := c.auth
	a.done = true
	c.l.log.Debug("peer authenticated", "initiator", a.initiator)
	c.completeHandshake(&a.peer, a.mode)
	if a.mode != sessionResume {
		c.l.sessionSecret = a.binding
	}
}

// seal encrypts frame (type + body) for the wire, under l.mu.
func (a *authState) seal(frame []byte) []byte {
	return a.sealTo(make([]byte, 0, len(frame)+sealOverhead+crcSize), frame)
}

// sealTo appends frame, sealed, to dst.
func (a *authState) sealTo(dst, frame []byte) []byte {
	n := a.sendN
	a.sendN++
	start := len(dst)
	dst = append(dst, frame[0])
	dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	return a.send.Encrypt(dst, n, dst[start:start+3], frame[1:])
}

// open decrypts a sealed frame, under l.mu. It returns errReplay for a
// frame whose counter is not above the last accepted one.
func (a *authState) open(frame []byte) ([]byte, error) {
	if len(frame) < 1+sealOverhead {
		return nil, errShortFrame
	}
	n := extendCounter(a.recvN, binary.BigEndian.Uint16(frame[1:]))
	if n < a.recvN {
		return nil, errReplay
	}
	// Decrypt in place, then put the type byte just before the
	// plaintext: the frame is the reader's, and used up before its next.
	var ad [3]byte
	copy(ad[:], frame)
	pt, err := a.recv.Decrypt(frame[3:3], n, ad[:], frame[3:])
	if err != nil {
		return nil, errTampered
	}
	a.recvN = n + 1
	frame[2] = ad[0]
	return frame[2 : 3+len(pt)], nil
}

var errReplay = errors.New("replayed frame")

// extendCounter returns the 64-bit counter whose low 16 bits are low and
// which is nearest to next (the counter expected).
func extendCounter(next uint64, low uint16) uint64 {
	c := next&^0xFFFF | uint64(low)
	switch {
	case c+0x8000 < next:
		c += 0x10000
	case c > next+0x8000 && c >= 0x10000:
		c -= 0x10000
	}
	return c
}
