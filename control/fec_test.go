package control

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The FEC stage shows in status and metrics, per direction; without it
// (TCP, --fec off) neither mentions FEC.
func TestFECStatusShown(t *testing.T) {
	st := Status{Name: "cable0", State: "up", FEC: &FEC{Peer: true, Block: 255, TOut: 16, TIn: 32,
		BEROut: 2.9e-3, BERIn: 1.1e-2, BlocksIn: 7000, Corrected: 123456, Uncorrectable: 5}}
	var text bytes.Buffer
	require.NoError(t, Render(&text, &st))
	assert.Contains(t, text.String(), "fec        sending corrects 16 bytes a block (BER 2.9e-03 measured by the peer); receiving corrects 32 bytes a block (BER 1.1e-02 measured by this end); 123456 bytes corrected, 5 of 7000 blocks lost")
	var m bytes.Buffer
	require.NoError(t, WriteMetrics(&m, &st))
	for _, line := range []string{
		`sockmux_fec_correctable_bytes{name="cable0",direction="out"} 16`,
		`sockmux_fec_correctable_bytes{name="cable0",direction="in"} 32`,
		`sockmux_fec_bit_error_rate{name="cable0",direction="in"} 0.011`,
		`sockmux_fec_corrected_bytes_total{name="cable0"} 123456`,
		`sockmux_fec_uncorrectable_blocks_total{name="cable0"} 5`,
		`sockmux_fec_blocks_received_total{name="cable0"} 7000`,
	} {
		assert.Contains(t, m.String(), line)
	}

	st.FEC = &FEC{Peer: true, Block: 255}
	text.Reset()
	require.NoError(t, Render(&text, &st))
	assert.Contains(t, text.String(), "fec        sending off; receiving off; 0 bytes corrected, 0 of 0 blocks lost")

	st.FEC = &FEC{Block: 255}
	text.Reset()
	require.NoError(t, Render(&text, &st))
	assert.Contains(t, text.String(), "the peer reads no FEC blocks")

	st.FEC = nil
	text.Reset()
	m.Reset()
	require.NoError(t, Render(&text, &st))
	require.NoError(t, WriteMetrics(&m, &st))
	assert.NotContains(t, text.String(), "fec")
	assert.NotContains(t, m.String(), "fec")
}
