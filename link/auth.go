package link

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"

	"github.com/flynn/noise"
	"golang.org/x/sys/cpu"
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
// The AEAD that seals the frames is negotiated in the handshake: the
// initiator's first message carries the AEADs it offers, best first for
// its CPU (AES-GCM first where the CPU has AES instructions, else
// ChaCha20-Poly1305 first), and the responder's reply names the one it
// chose (see chooseAEAD). Both payloads are authenticated by the
// handshake, so a man in the middle cannot force another choice. The
// handshake itself always runs with ChaChaPoly (its name is unchanged, so
// an end that knows nothing of negotiation still completes it); the frame
// keys are the handshake's split keys, used with the chosen AEAD. An end
// that sends no offer (or no choice) speaks ChaCha20-Poly1305 only.
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

// AEAD is an authenticated cipher that can seal a link's frames.
type AEAD byte

// The AEADs a link can seal frames with; the values go on the wire.
const (
	ChaCha20Poly1305 AEAD = 1 // ChaCha20-Poly1305 (RFC 8439): fast everywhere in software
	AESGCM           AEAD = 2 // AES-128-GCM: fastest where the CPU has AES instructions
)

func (a AEAD) String() string {
	switch a {
	case ChaCha20Poly1305:
		return "ChaCha20-Poly1305"
	case AESGCM:
		return "AES-128-GCM"
	}
	return fmt.Sprintf("AEAD %d", byte(a))
}

// newCipher makes a frame cipher from a 32-byte split key.
func (a AEAD) newCipher(k [32]byte) noise.Cipher {
	if a == AESGCM {
		// AES-128 with the key's first half: 10 rounds instead of 14,
		// what ssh's aes128-gcm uses; 128 bits are ample for a session key.
		b, err := aes.NewCipher(k[:16])
		if err != nil {
			panic(err) // a 16-byte key is always valid
		}
		g, err := cipher.NewGCM(b)
		if err != nil {
			panic(err) // the standard nonce and tag sizes are always valid
		}
		return gcmCipher{g}
	}
	return noise.CipherChaChaPoly.Cipher(k)
}

// gcmCipher is AES-GCM as a noise.Cipher, with Noise's nonce layout (32
// zero bits, then the 64-bit counter big-endian).
type gcmCipher struct{ aead cipher.AEAD }

func gcmNonce(n uint64) []byte {
	var nonce [12]byte
	binary.BigEndian.PutUint64(nonce[4:], n)
	return nonce[:]
}

func (c gcmCipher) Encrypt(out []byte, n uint64, ad, plaintext []byte) []byte {
	return c.aead.Seal(out, gcmNonce(n), plaintext, ad)
}

func (c gcmCipher) Decrypt(out []byte, n uint64, ad, ciphertext []byte) ([]byte, error) {
	return c.aead.Open(out, gcmNonce(n), ciphertext, ad)
}

// hasAESHardware reports whether this CPU has AES (and carry-less
// multiply) instructions, so AES-GCM outruns ChaCha20-Poly1305.
func hasAESHardware() bool {
	switch runtime.GOARCH {
	case "amd64", "386":
		return cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ
	case "arm64":
		return cpu.ARM64.HasAES && cpu.ARM64.HasPMULL
	case "s390x":
		return cpu.S390X.HasAES && cpu.S390X.HasGHASH
	case "ppc64le", "ppc64":
		return true // POWER8 and later have AES and GHASH instructions
	}
	return false
}

// DefaultAEADs are the AEADs a link offers when Config.AEADs is empty,
// best first for this CPU.
func DefaultAEADs() []AEAD {
	if hasAESHardware() {
		return []AEAD{AESGCM, ChaCha20Poly1305}
	}
	return []AEAD{ChaCha20Poly1305, AESGCM}
}

// checkAEADs validates an AEAD list from the configuration.
func checkAEADs(list []AEAD) error {
	for i, a := range list {
		if a != ChaCha20Poly1305 && a != AESGCM {
			return fmt.Errorf("link.Config.AEADs: unknown AEAD %d (want ChaCha20Poly1305 or AESGCM)", byte(a))
		}
		if slices.Contains(list[:i], a) {
			return fmt.Errorf("link.Config.AEADs: %v listed twice", a)
		}
	}
	return nil
}

// offeredAEADs is what this end offers.
func (l *Link) offeredAEADs() []AEAD {
	if len(l.cfg.AEADs) > 0 {
		return l.cfg.AEADs
	}
	return DefaultAEADs()
}

// chooseAEAD is the responder's choice from the initiator's offer and its
// own, each best first: what both put first if they agree; otherwise
// ChaCha20-Poly1305 if both have it (an end without AES instructions is
// slow at AES-GCM, while ChaCha20-Poly1305 is fast in software on both);
// otherwise the first of ours the initiator has too.
func chooseAEAD(theirs, ours []AEAD) (AEAD, error) {
	if len(theirs) > 0 && len(ours) > 0 && theirs[0] == ours[0] {
		return ours[0], nil
	}
	if slices.Contains(theirs, ChaCha20Poly1305) && slices.Contains(ours, ChaCha20Poly1305) {
		return ChaCha20Poly1305, nil
	}
	for _, a := range ours {
		if slices.Contains(theirs, a) {
			return a, nil
		}
	}
	return 0, fmt.Errorf("no AEAD in common: the peer offers %s, this end %s", aeadNames(theirs), aeadNames(ours))
}

func aeadNames(list []AEAD) string {
	var n []string
	for _, a := range list {
		n = append(n, a.String())
	}
	if len(n) == 0 {
		return "none"
	}
	return strings.Join(n, ", ")
}

// The handshake payloads that negotiate the AEAD: the initiator's offer
// (aeadOffer, a count, then the AEADs best first) and the responder's
// choice (aeadChoice, then the AEAD). An empty payload is an end that
// does not negotiate: it offers, and chooses, ChaCha20-Poly1305 only.
const (
	aeadOffer  = 1
	aeadChoice = 2
)

func offerPayload(list []AEAD) []byte {
	p := []byte{aeadOffer, byte(len(list))}
	for _, a := range list {
		p = append(p, byte(a))
	}
	return p
}

// parseOffer reads the initiator's offer; AEADs this end does not know
// are skipped (a newer peer may offer more).
func parseOffer(p []byte) ([]AEAD, error) {
	if len(p) == 0 {
		return []AEAD{ChaCha20Poly1305}, nil
	}
	if p[0] != aeadOffer || len(p) < 2 || len(p) != 2+int(p[1]) {
		return nil, fmt.Errorf("malformed AEAD offer in its handshake")
	}
	var list []AEAD
	for _, b := range p[2:] {
		if a := AEAD(b); checkAEADs([]AEAD{a}) == nil && !slices.Contains(list, a) {
			list = append(list, a)
		}
	}
	return list, nil
}

// parseChoice reads the responder's choice, which must be one we offered.
func parseChoice(p []byte, offered []AEAD) (AEAD, error) {
	if len(p) == 0 {
		if slices.Contains(offered, ChaCha20Poly1305) {
			return ChaCha20Poly1305, nil
		}
		return 0, fmt.Errorf("the peer speaks only ChaCha20-Poly1305, which this end does not offer (link.Config.AEADs)")
	}
	if len(p) != 2 || p[0] != aeadChoice || !slices.Contains(offered, AEAD(p[1])) {
		return 0, fmt.Errorf("its handshake reply chose an AEAD this end did not offer")
	}
	return AEAD(p[1]), nil
}

// frameCiphers makes the frame ciphers from the handshake's split.
func frameCiphers(a AEAD, c1, c2 *noise.CipherState) (noise.Cipher, noise.Cipher) {
	return a.newCipher(c1.UnsafeKey()), a.newCipher(c2.UnsafeKey())
}

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
	aead      AEAD        // the one negotiated, once keys exist
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
	if err := checkAEADs(l.cfg.AEADs); err != nil {
		return err
	}
	if a.initiator {
		var offer []byte
		if !l.cfg.legacyAuth {
			offer = offerPayload(l.offeredAEADs())
		}
		msg, _, _, err := hs.WriteMessage(nil, offer)
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
		offer, _, _, err := a.hs.ReadMessage(nil, body[1:])
		if err != nil {
			return &AuthError{fmt.Errorf("its handshake did not verify (a different key, or a replay)")}, true
		}
		if l.cfg.legacyAuth {
			offer = nil
		}
		theirs, err := parseOffer(offer)
		if err != nil {
			return &AuthError{err}, true
		}
		aead, err := chooseAEAD(theirs, l.offeredAEADs())
		if err != nil {
			return &AuthError{err}, true
		}
		var choice []byte
		if len(offer) > 0 {
			choice = []byte{aeadChoice, byte(aead)}
		}
		msg, cs1, cs2, err := a.hs.WriteMessage(nil, choice)
		if err != nil {
			return &AuthError{err}, true
		}
		a.aead = aead
		a.recv, a.send = frameCiphers(aead, cs1, cs2)
		a.binding = a.hs.ChannelBinding()
		c.authMsg = append([]byte{frameAuth, authReply}, msg...)
		c.authOut = c.authMsg
		l.Notify()
	case body[0] == authReply && a.initiator && !sealed && a.send == nil:
		choice, cs1, cs2, err := a.hs.ReadMessage(nil, body[1:])
		if err != nil {
			return &AuthError{fmt.Errorf("its handshake reply did not verify (a different key?)")}, true
		}
		if l.cfg.legacyAuth {
			choice = nil
		}
		aead, err := parseChoice(choice, l.offeredAEADs())
		if err != nil {
			return &AuthError{err}, true
		}
		a.aead = aead
		a.send, a.recv = frameCiphers(aead, cs1, cs2)
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
	c.l.log.Debug("peer authenticated", "initiator", a.initiator, "aead", a.aead)
	c.completeHandshake(&a.peer, a.mode)
	if a.mode != sessionResume {
		c.l.sessionSecret = a.binding
	}
}

// Sealing reports the AEAD that seals the frames of the transport in use,
// and false while there is no authenticated transport.
func (l *Link) Sealing() (AEAD, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cur == nil || l.cur.auth == nil || !l.cur.auth.done {
		return 0, false
	}
	return l.cur.auth.aead, true
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
