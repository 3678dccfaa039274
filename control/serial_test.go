package control

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sockmux/sockmux/serialport"
)

func TestSerialStatusShown(t *testing.T) {
	st := Status{Name: "a", State: "up", Line: "115200 baud 8N1, flow none", Serial: &serialport.LineStatus{
		Carrier: "dcd",
		Lines:   &serialport.ModemLines{DTR: false, RTS: true, DCD: true, CTS: true},
		Errors:  &serialport.ErrorCounts{Frame: 3, Parity: 1, Break: 2},
	}}
	var text strings.Builder
	require.NoError(t, Render(&text, &st))
	assert.Contains(t, text.String(), "lines      DTR off, RTS on, DCD on, DSR off, CTS on, RI off  (carrier DCD)\n")
	assert.Contains(t, text.String(), "rx errors  3 framing, 1 parity, 0 overrun, 0 buffer overrun, 2 breaks\n")

	var m strings.Builder
	require.NoError(t, WriteMetrics(&m, &st))
	assert.Contains(t, m.String(), "# TYPE sockmux_serial_line gauge\n")
	assert.Contains(t, m.String(), `sockmux_serial_line{name="a",line="dtr"} 0`+"\n")
	assert.Contains(t, m.String(), `sockmux_serial_line{name="a",line="dcd"} 1`+"\n")
	assert.Contains(t, m.String(), `sockmux_serial_receive_errors_total{name="a",kind="frame"} 3`+"\n")
	assert.Contains(t, m.String(), `sockmux_serial_receive_errors_total{name="a",kind="break"} 2`+"\n")
}

func TestSerialStatusNotAvailable(t *testing.T) {
	st := Status{Name: "a", Serial: &serialport.LineStatus{
		LinesNote:  "not available: modem-control lines are not available on this device (a pseudo-terminal has none)",
		ErrorsNote: "not available on this device (no TIOCGICOUNT)",
	}}
	var text strings.Builder
	require.NoError(t, Render(&text, &st))
	assert.Contains(t, text.String(), "lines      not available: modem-control lines are not available on this device (a pseudo-terminal has none)\n")
	assert.Contains(t, text.String(), "rx errors  not available on this device (no TIOCGICOUNT)\n")
	var m strings.Builder
	require.NoError(t, WriteMetrics(&m, &st))
	assert.NotContains(t, m.String(), "sockmux_serial_", "not available is no series, not zeros")

	// Other transports show nothing of it.
	text.Reset()
	require.NoError(t, Render(&text, &Status{Name: "b"}))
	assert.NotContains(t, text.String(), "lines ")
	assert.NotContains(t, text.String(), "rx errors")
}
