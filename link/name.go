package link

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Names: an end that connects to a hub says who it is in its hello
// (Config.Name, the extName extension), and the hub's end for that peer
// requires it (Config.PeerName). The name travels in the clear, like an
// ssh user name, so that the hub can pick the peer's key before any key
// is used (ReadHello); it is bound into the key proof with the rest of
// the hello (the Noise prologue, auth.go), so a name swapped on the way
// makes the handshake fail.

// MaxName is the longest name a hello carries: one DNS label, so that
// HOST.NAME.sockmux is a host name.
const MaxName = 63

// CheckName says what is wrong with a name for a hello, if anything: 1 to
// MaxName letters, digits, '-' and '_', not starting with '-'.
func CheckName(name string) error {
	switch {
	case name == "":
		return errors.New("empty peer name")
	case len(name) > MaxName:
		return fmt.Errorf("peer name %.20q... is longer than %d characters", name, MaxName)
	case name[0] == '-':
		return fmt.Errorf("peer name %q starts with '-'", name)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return fmt.Errorf("peer name %q has %q: use letters, digits, '-' and '_'", name, r)
		}
	}
	return nil
}

// helloName is the name in a hello's extensions, "" if none or malformed.
func helloName(ext []byte) string {
	val, ok := helloExt(ext, extName)
	if !ok || CheckName(string(val)) != nil {
		return ""
	}
	return string(val)
}

// NameError is a peer whose hello does not carry the name this end
// requires (Config.PeerName).
type NameError struct{ Want, Got string }

func (e *NameError) Error() string {
	if e.Got == "" {
		return fmt.Sprintf("the peer gives no name; this end serves the peer %q (give the connecting end --name %s)", e.Want, e.Want)
	}
	return fmt.Sprintf("the peer calls itself %q; this end serves the peer %q", e.Got, e.Want)
}

// checkName refuses a peer without the required name, under l.mu.
func (c *conn) checkName(h *hello) error {
	want := c.l.cfg.PeerName
	if want == "" {
		return nil
	}
	if got := helloName(h.Ext); !strings.EqualFold(got, want) {
		return &AuthError{&NameError{Want: want, Got: got}}
	}
	return nil
}

// PeerName is the name the peer of the current (or last) session gave in
// its hello; "" before the first session and for a peer that gave none.
func (l *Link) PeerName() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.peerName
}

// SetSecret replaces the shared key (Config.Secret) for the handshakes
// that start from now on: a hub's peer whose key changed in the peers
// file. The transport in use, if any, carries on; the session resumes
// with the new key only if the peer has it too. A nil key is refused: a
// link cannot stop authenticating while it runs.
func (l *Link) SetSecret(key []byte) error {
	if len(key) != KeySize {
		return fmt.Errorf("link: secret of %d bytes: want %d", len(key), KeySize)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cfg.Secret == nil {
		return errors.New("link: SetSecret on a link without authentication")
	}
	l.cfg.Secret = bytes.Clone(key)
	return nil
}

// Hello is what a hub reads of a connecting end's first hello before it
// chooses the end that serves it (ReadHello).
type Hello struct {
	Name string // the name the peer gives (Config.Name), "" if none
	Auth bool   // the peer requires authentication
}

// maxFirstHello bounds what ReadHello reads: a hello is a few dozen bytes
// and its extensions at most a few hundred.
const maxFirstHello = 2048

// ReadHello reads from r up to the end of the first hello frame, and
// returns what the hello says and every byte read, for the link that
// serves the peer to read again (it will see the same hello). A stream
// that holds no hello within its first 2 KiB, or is not sockmux, is an
// error; the caller bounds the time (a read deadline).
func ReadHello(r io.Reader) (Hello, []byte, error) {
	buf := make([]byte, 0, 256)
	start := 0 // where the frame being read begins
	var tmp [256]byte
	for {
		if i := bytes.IndexByte(buf[start:], 0); i >= 0 {
			enc := buf[start : start+i]
			start += i + 1
			if len(enc) == 0 {
				continue
			}
			if h, err := decodeHello(enc); err == nil {
				return Hello{Name: helloName(h.Ext), Auth: h.Flags&helloAuth != 0}, buf, nil
			} else if !errors.Is(err, errCRC) && !errors.Is(err, errShortFrame) {
				return Hello{}, buf, err
			}
			continue
		}
		if len(buf) >= maxFirstHello {
			return Hello{}, buf, fmt.Errorf("no sockmux hello in the first %d bytes", maxFirstHello)
		}
		n, err := r.Read(tmp[:min(len(tmp), maxFirstHello-len(buf))])
		buf = append(buf, tmp[:n]...)
		if err != nil && n == 0 {
			if errors.Is(err, io.EOF) {
				err = errors.New("closed before its hello (EOF)")
			}
			return Hello{}, buf, err
		}
	}
}

// errNotHello is a good frame that is not a hello where the first hello
// was due.
var errNotHello = errors.New("its first frame is not a hello")

// decodeHello decodes one COBS-encoded frame that should be a hello.
func decodeHello(enc []byte) (*hello, error) {
	dec, err := cobsDecode(nil, enc)
	if err != nil {
		return nil, errCRC
	}
	body, err := openFrame(dec)
	if err != nil {
		return nil, err
	}
	if body[0] != frameHello {
		return nil, errNotHello
	}
	return parseHello(body)
}

// Refusal is what a hub writes to a connecting end it refuses before any
// link serves it (an unknown name): an AUTH failure frame in the clear,
// which the connecting end logs with reason and retries later, as it does
// a wrong key.
func Refusal(reason string) []byte {
	if len(reason) > 400 {
		reason = reason[:400]
	}
	return encodeFrame(nil, append([]byte{frameAuth, authFail}, reason...))
}
