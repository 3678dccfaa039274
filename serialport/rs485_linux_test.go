package serialport

import (
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRS485KernelStruct: what --rs485 asks of the kernel, in the layout
// of struct serial_rs485.
func TestRS485KernelStruct(t *testing.T) {
	assert.EqualValues(t, 32, unsafe.Sizeof(serialRS485{}))
	k := kernelRS485(RS485{DelayBefore: 2 * time.Millisecond, DelayAfter: 3 * time.Millisecond})
	assert.Equal(t, uint32(serRS485Enabled|serRS485RTSOnSend), k.Flags)
	assert.EqualValues(t, 2, k.DelayRTSBeforeSend)
	assert.EqualValues(t, 3, k.DelayRTSAfterSend)
	k = kernelRS485(RS485{RTSLowOnSend: true, RxDuringTx: true})
	assert.Equal(t, uint32(serRS485Enabled|serRS485RTSAfterSend|serRS485RxDuringTx), k.Flags)
}

// TestRS485Validate: delays beyond what the kernel takes are refused.
func TestRS485Validate(t *testing.T) {
	assert.NoError(t, RS485{DelayBefore: 100 * time.Millisecond}.Validate())
	assert.ErrorContains(t, RS485{DelayAfter: 101 * time.Millisecond}.Validate(), "between 0 and 100ms")
	assert.Error(t, Options{RS485: &RS485{DelayBefore: -time.Millisecond}}.Validate())
}

// TestRS485OnAPty: a pseudo-terminal has no RS-485 mode: the port is not
// opened, and the error says why and what to do instead.
func TestRS485OnAPty(t *testing.T) {
	_, a, _ := startCable(t, 0)
	_, err := OpenPortWith(a, DefaultMode(), Options{RS485: &RS485{}})
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrUnsupported)
	assert.Contains(t, err.Error(), "no RS-485 mode")
	assert.Contains(t, err.Error(), "--half-duplex")
	// The port is usable without it.
	p, err := OpenPortWith(a, DefaultMode(), Options{})
	require.NoError(t, err)
	require.NoError(t, p.Close())
}
