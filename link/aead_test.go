package link

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The AEAD is negotiated: each pair of offers links, with the AEAD the
// rule picks, at both ends, and the data arrives intact.
func TestAEADNegotiated(t *testing.T) {
	aes, cha := AESGCM, ChaCha20Poly1305
	for _, tc := range []struct {
		name             string
		a, b             []AEAD
		legacyA, legacyB bool
		want             AEAD
	}{
		{"both prefer AES-GCM", []AEAD{aes, cha}, []AEAD{aes, cha}, false, false, aes},
		{"both prefer ChaCha20-Poly1305", []AEAD{cha, aes}, []AEAD{cha, aes}, false, false, cha},
		{"they disagree: ChaCha20-Poly1305", []AEAD{aes, cha}, []AEAD{cha, aes}, false, false, cha},
		{"they disagree the other way", []AEAD{cha, aes}, []AEAD{aes, cha}, false, false, cha},
		{"a offers only AES-GCM", []AEAD{aes}, []AEAD{cha, aes}, false, false, aes},
		{"b offers only AES-GCM", []AEAD{cha, aes}, []AEAD{aes}, false, false, aes},
		{"a offers only ChaCha20-Poly1305", []AEAD{cha}, []AEAD{aes, cha}, false, false, cha},
		{"a predates negotiation", nil, []AEAD{aes, cha}, true, false, cha},
		{"b predates negotiation", []AEAD{aes, cha}, nil, false, true, cha},
		{"this CPU's defaults", nil, nil, false, false, DefaultAEADs()[0]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cable := newCable(Properties{Reliable: true}, 5)
				da, db := randomBytes(40<<10, 1), randomBytes(40<<10, 2)
				p := startPairConfigs(t, cable, da, db,
					Config{Secret: key(3), AEADs: tc.a, legacyAuth: tc.legacyA, HandshakeTimeout: 3 * time.Second},
					Config{Secret: key(3), AEADs: tc.b, legacyAuth: tc.legacyB, HandshakeTimeout: 3 * time.Second})
				p.waitFor(t, len(db), len(da), time.Minute)
				ga, oka := p.a.Sealing()
				gb, okb := p.b.Sealing()
				p.stop()
				p.checkGot(t, da, db)
				require.True(t, oka && okb, "both ends authenticated")
				assert.Equal(t, tc.want, ga, "a seals with")
				assert.Equal(t, tc.want, gb, "b seals with")
			})
		})
	}
}

func TestChooseAEAD(t *testing.T) {
	aes, cha := AESGCM, ChaCha20Poly1305
	_, err := chooseAEAD([]AEAD{aes}, []AEAD{cha})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no AEAD in common: the peer offers AES-128-GCM, this end ChaCha20-Poly1305")
	got, err := chooseAEAD([]AEAD{aes, cha}, []AEAD{aes, cha})
	require.NoError(t, err)
	assert.Equal(t, aes, got)
}

func TestParseOfferAndChoice(t *testing.T) {
	got, err := parseOffer(nil)
	require.NoError(t, err)
	assert.Equal(t, []AEAD{ChaCha20Poly1305}, got, "no offer: an end that predates negotiation")
	got, err = parseOffer([]byte{aeadOffer, 3, 9, byte(AESGCM), byte(AESGCM)})
	require.NoError(t, err)
	assert.Equal(t, []AEAD{AESGCM}, got, "unknown and repeated AEADs are skipped")
	for _, bad := range [][]byte{{aeadOffer}, {aeadOffer, 2, 1}, {7, 1, 1}} {
		_, err := parseOffer(bad)
		assert.Error(t, err, "%x", bad)
	}
	_, err = parseChoice([]byte{aeadChoice, byte(AESGCM)}, []AEAD{ChaCha20Poly1305})
	assert.ErrorContains(t, err, "did not offer")
	_, err = parseChoice(nil, []AEAD{AESGCM})
	assert.ErrorContains(t, err, "speaks only ChaCha20-Poly1305")
	a, err := parseChoice(nil, []AEAD{AESGCM, ChaCha20Poly1305})
	require.NoError(t, err)
	assert.Equal(t, ChaCha20Poly1305, a)
}

// A peer with no AEAD in common fails authentication at both ends, saying
// which each offers.
func TestAEADNoneInCommon(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cable := newCable(Properties{Reliable: true}, 6)
		p := startPairConfigs(t, cable, nil, nil,
			Config{Secret: key(3), AEADs: []AEAD{AESGCM}, HandshakeTimeout: 3 * time.Second},
			Config{Secret: key(3), AEADs: []AEAD{ChaCha20Poly1305}, HandshakeTimeout: 3 * time.Second})
		time.Sleep(10 * time.Second)
		_, oka := p.a.Sealing()
		_, okb := p.b.Sealing()
		p.stop()
		assert.False(t, oka || okb, "no AEAD in common: no session")
	})
}

func TestCheckAEADs(t *testing.T) {
	assert.NoError(t, checkAEADs(nil))
	assert.ErrorContains(t, checkAEADs([]AEAD{7}), "unknown AEAD 7")
	assert.ErrorContains(t, checkAEADs([]AEAD{AESGCM, AESGCM}), "listed twice")
}

// The AES-128-GCM frame cipher opens what it sealed, and nothing else:
// not under another counter, another key, or changed associated data.
func TestGCMCipher(t *testing.T) {
	var k, k2 [32]byte
	k[0], k2[0] = 1, 2
	c := AESGCM.newCipher(k)
	sealed := c.Encrypt(nil, 7, []byte("ad"), []byte("frame body"))
	require.Len(t, sealed, len("frame body")+16)
	pt, err := c.Decrypt(nil, 7, []byte("ad"), sealed)
	require.NoError(t, err)
	assert.Equal(t, "frame body", string(pt))
	_, err = c.Decrypt(nil, 8, []byte("ad"), sealed)
	assert.Error(t, err, "another counter")
	_, err = c.Decrypt(nil, 7, []byte("AD"), sealed)
	assert.Error(t, err, "other associated data")
	_, err = AESGCM.newCipher(k2).Decrypt(nil, 7, []byte("ad"), sealed)
	assert.Error(t, err, "another key")
	// The second half of the split key is not used: 128-bit AES.
	k3 := k
	k3[31] ^= 0xFF
	pt, err = AESGCM.newCipher(k3).Decrypt(nil, 7, []byte("ad"), sealed)
	require.NoError(t, err)
	assert.Equal(t, "frame body", string(pt))
}
