package link

import (
	"fmt"
	"sync/atomic"
)

// Stats counts what a link did. All fields are safe to read at any time.
type Stats struct {
	BytesOut       atomic.Uint64 // bytes written to transports, framing included
	BytesIn        atomic.Uint64 // bytes read from transports
	PayloadOut     atomic.Uint64 // payload bytes sent for the first time, before compression
	PayloadIn      atomic.Uint64 // payload bytes delivered, after decompression
	CompressedOut  atomic.Uint64 // the same payloads as sent: after compression, codec bytes included
	CompressedIn   atomic.Uint64 // the same payloads as received: before decompression
	FramesOut      atomic.Uint64 // frames written
	FramesIn       atomic.Uint64 // good frames read
	FramesResent   atomic.Uint64 // data frames transmitted again
	FramesBad      atomic.Uint64 // frames dropped for CRC, COBS or length
	FramesDup      atomic.Uint64 // data frames received twice
	TransportOpens atomic.Uint64 // transports opened
	Resumes        atomic.Uint64 // sessions continued over a new transport
	Sessions       atomic.Uint64 // sessions started
	SessionsEnded  atomic.Uint64 // sessions ended (peer restarted, closed, error)
	AuthFailures   atomic.Uint64 // transports dropped because the peer failed authentication
	Preemptions    atomic.Uint64 // frames cut short for interactive data

	// Forward error correction (fec.go), on lines where both ends offer it.
	FECBlocksIn      atomic.Uint64 // FEC blocks read, decoded or lost
	FECCorrected     atomic.Uint64 // bytes the code corrected in them
	FECUncorrectable atomic.Uint64 // blocks with more wrong bytes than the code corrects: lost
	FECLevelIn       atomic.Int64  // the level of the blocks arriving now (0: off)
	FECErrorRateIn   atomic.Uint64 // the bit error rate measured on what arrives, as float64 bits
	FECErrorRateOut  atomic.Uint64 // the bit error rate the peer measures on what we send, as float64 bits
}

// String summarises the counters for logs and test failures.
func (s *Stats) String() string {
	return fmt.Sprintf("out %d B/%d frames (%d resent), in %d B/%d frames (%d bad, %d dup), payload out %d (%d compressed) in %d (%d compressed), sessions %d ended %d resumes %d opens %d",
		s.BytesOut.Load(), s.FramesOut.Load(), s.FramesResent.Load(), s.BytesIn.Load(), s.FramesIn.Load(),
		s.FramesBad.Load(), s.FramesDup.Load(), s.PayloadOut.Load(), s.CompressedOut.Load(), s.PayloadIn.Load(), s.CompressedIn.Load(),
		s.Sessions.Load(), s.SessionsEnded.Load(), s.Resumes.Load(), s.TransportOpens.Load())
}
