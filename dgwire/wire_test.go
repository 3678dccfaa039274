package dgwire

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseCapturePackets(t *testing.T) {
	r := NewReader(bytes.NewReader(hexBytes(t, capCHello+capCHelloOK+capPackSize+capConnData+capConnect+capClosed)), PackSize)
	p, err := r.Read()
	require.NoError(t, err)
	assert.Equal(t, TypeHELLO, p.Type)
	assert.Equal(t, uint16(0x315d), p.Said) // stale bytes, as DeleGate sends them
	txt, rest := Text(p.Data)
	assert.Equal(t, "20261203-112539.884930 vm", txt)
	assert.Empty(t, rest)
	p, _ = r.Read()
	assert.Equal(t, TypeHELLOOK, p.Type)
	p, _ = r.Read()
	assert.Equal(t, []byte{OptPACKSIZE, 0x40, 0x00}, p.Data)
	assert.Equal(t, PackSizeOpt(16384).Append(nil), hexBytes(t, capPackSize))
	p, _ = r.Read()
	assert.Equal(t, ConnDataOpt().Append(nil), hexBytes(t, capConnData))
	p, err = r.Read()
	require.NoError(t, err)
	assert.Equal(t, TypeCONNECT, p.Type)
	assert.Equal(t, uint16(3), p.Said)
	assert.Equal(t, NoAgent, p.Raid)
	txt, initial := Text(p.Data)
	ct, err := ParseConnectText(txt)
	require.NoError(t, err)
	assert.Equal(t, ConnectText{BufSize: 98304, From: "127.0.0.1:57286", To: "127.0.0.1:17512"}, ct)
	assert.Equal(t, 17512, Port(ct.To))
	assert.Equal(t, "GET 1000 1\n", string(initial))
	assert.Equal(t, hexBytes(t, capConnect), Packet{Type: TypeCONNECT, Said: 3, Raid: NoAgent, Data: append(withNUL(ct.String()), initial...)}.Append(nil))
	p, _ = r.Read()
	assert.Equal(t, TypeCLOSED, p.Type)
	assert.Equal(t, hexBytes(t, capClosed), Packet{Type: TypeCLOSED, Said: 3, Raid: 2, Data: withNUL(closedText)}.Append(nil))
	_, err = r.Read()
	assert.Equal(t, io.EOF, err)
}

func TestSentCount(t *testing.T) {
	// SENT @528 and @556 of the capture.
	assert.Equal(t, hexBytes(t, "03 46 00 05 00 04 00 06 31 36 33 37 36 00"), Packet{Type: TypeSENT, Said: 5, Raid: 4, Data: CountData(16376)}.Append(nil))
	assert.Equal(t, hexBytes(t, "03 46 00 05 00 04 00 05 37 32 34 38 00"), Packet{Type: TypeSENT, Said: 5, Raid: 4, Data: CountData(7248)}.Append(nil))
	n, err := ParseCount([]byte("7248\x00"))
	require.NoError(t, err)
	assert.Equal(t, 7248, n)
	_, err = ParseCount([]byte("x\x00"))
	assert.Error(t, err)
}

func TestHeaderErrors(t *testing.T) {
	_, _, err := ParseHeader([]byte("GET / HTTP/1.0\r\n"), PackSize)
	assert.ErrorIs(t, err, ErrNotSockMux)
	assert.Contains(t, err.Error(), "version byte 0x47")
	_, _, err = ParseHeader(hexBytes(t, "03 06 00 04 00 05 3f f9"), PackSize) // 16377 + 8 > 16384
	assert.ErrorIs(t, err, ErrTooLong)
	_, n, err := ParseHeader(hexBytes(t, "03 06 00 04 00 05 3f f8"), PackSize) // the capture's longest
	require.NoError(t, err)
	assert.Equal(t, 16376, n)
	_, _, err = ParseHeader(hexBytes(t, "83 06 00 04 00 05 00 10"), PackSize)
	assert.ErrorIs(t, err, ErrCrypt)
	assert.Contains(t, err.Error(), "SOXCONF=crypt:no")
}

func TestHelloText(t *testing.T) {
	assert.Equal(t, "20261203-112539.902885 vm", HelloText(captureTime, "vm"))
	assert.True(t, strings.HasSuffix(HelloText(time.Now(), "h"), " h"))
}

// FuzzReader: the decoder never panics, never returns a packet longer
// than PACKSIZE, and what it returns encodes back to the bytes it read.
func FuzzReader(f *testing.F) {
	f.Add(hexBytes(f, capCHello+capConnect+capClosed))
	f.Add(hexBytes(f, capPackSize+"03 06 00 04 00 05 3f f9"))
	f.Add([]byte("GET / HTTP/1.0\r\n\r\n"))
	f.Add(hexBytes(f, "83 0c 00 ff 00 ff 00 00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewReader(bytes.NewReader(b), 1024)
		off := 0
		for {
			p, err := r.Read()
			if err != nil {
				return
			}
			enc := p.Append(nil)
			require.LessOrEqual(t, len(enc), 1024)
			require.Equal(t, b[off:off+len(enc)], enc)
			off += len(enc)
			txt, _ := Text(p.Data)
			_, _ = ParseConnectText(txt)
			_, _ = ParseCount(p.Data)
			_ = Port(txt)
		}
	})
}
