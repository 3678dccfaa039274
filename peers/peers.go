package peers

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/sockmux/sockmux/keyfile"
	"github.com/sockmux/sockmux/link"
)

// MaxName is the longest peer name: one DNS label, so that HOST.NAME.sockmux
// is a host name.
const MaxName = link.MaxName

// Peer is one line of a peers file.
type Peer struct {
	Name string // as written in the file
	Key  []byte // keyfile.Size bytes
	Line int    // where in the file, for messages
}

// Table is a peers file read: the peers by name.
type Table struct {
	source string
	peers  map[string]Peer // by lower-case name
	order  []string        // lower-case names in file order
}

// Load reads the peers file at path.
func Load(path string) (*Table, error) {
	b, err := keyfile.ReadPrivate("peers file", path)
	if err != nil {
		return nil, err
	}
	return Parse(keyfile.Text(b), path, filepath.Dir(path))
}

// Parse reads the text of a peers file; source names it in errors and dir
// is the folder @FILE keys are read relative to.
func Parse(text, source, dir string) (*Table, error) {
	t := &Table{source: source, peers: map[string]Peer{}}
	for i, line := range strings.Split(text, "\n") {
		n := i + 1
		if k := strings.Index(line, "#"); k >= 0 {
			line = line[:k]
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		at := func(format string, a ...any) error {
			return fmt.Errorf("%s line %d: %s", source, n, fmt.Sprintf(format, a...))
		}
		if len(fields) == 1 {
			return nil, at("peer %q has no key (want: NAME KEY, the key as 64 hex digits, base64 or @FILE)", fields[0])
		}
		if len(fields) > 2 {
			return nil, at("unexpected %q after the key (want: NAME KEY)", fields[2])
		}
		name, word := fields[0], fields[1]
		if err := ValidName(name); err != nil {
			return nil, at("%v", err)
		}
		key, err := readKey(word, dir)
		if err != nil {
			return nil, at("peer %s: key %v", name, err)
		}
		low := strings.ToLower(name)
		if p, ok := t.peers[low]; ok {
			return nil, at("peer %s is listed already on line %d", name, p.Line)
		}
		for _, q := range t.peers {
			if subtle.ConstantTimeCompare(q.Key, key) == 1 {
				return nil, at("peer %s has the key of peer %s (line %d); each peer needs a key of its own (sockmux keygen FILE)", name, q.Name, q.Line)
			}
		}
		t.peers[low] = Peer{Name: name, Key: key, Line: n}
		t.order = append(t.order, low)
	}
	return t, nil
}

func readKey(word, dir string) ([]byte, error) {
	path, isFile := strings.CutPrefix(word, "@")
	if !isFile {
		return keyfile.ParseWord(word)
	}
	if path == "" {
		return nil, errors.New("@ names no file")
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(dir, path)
	}
	key, err := keyfile.Read("key file", path)
	if err != nil {
		return nil, fmt.Errorf("from %s: %w", word, err)
	}
	return key, nil
}

// ValidName says what is wrong with a peer name, if anything.
func ValidName(name string) error { return link.CheckName(name) }

// Source is the file the table was read from.
func (t *Table) Source() string { return t.source }

// Len is the number of peers.
func (t *Table) Len() int { return len(t.order) }

// Lookup returns the peer called name (in any case).
func (t *Table) Lookup(name string) (Peer, bool) {
	p, ok := t.peers[strings.ToLower(name)]
	return p, ok
}

// Peers returns the peers in file order.
func (t *Table) Peers() []Peer {
	out := make([]Peer, 0, len(t.order))
	for _, low := range t.order {
		out = append(out, t.peers[low])
	}
	return out
}

// Changes is what a re-read peers file changed, by name.
type Changes struct {
	Added   []string // new names
	Removed []string // names no longer listed: disconnect them
	Rekeyed []string // names with another key: disconnect them too
}

// Diff returns what changed from old to t.
func (t *Table) Diff(old *Table) Changes {
	var c Changes
	for _, low := range t.order {
		p := t.peers[low]
		switch q, ok := old.peers[low]; {
		case !ok:
			c.Added = append(c.Added, p.Name)
		case subtle.ConstantTimeCompare(p.Key, q.Key) != 1:
			c.Rekeyed = append(c.Rekeyed, p.Name)
		}
	}
	for _, low := range old.order {
		if _, ok := t.peers[low]; !ok {
			c.Removed = append(c.Removed, old.peers[low].Name)
		}
	}
	slices.Sort(c.Added)
	slices.Sort(c.Removed)
	slices.Sort(c.Rekeyed)
	return c
}
