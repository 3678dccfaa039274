// Package link is sockmux's reliable framing layer: it turns any byte
// channel (a TCP connection, a serial port, a pair of named pipes) into a
// reliable, ordered, resumable channel of frames.
//
// A Driver opens the channel. The link frames bytes with COBS and CRC-32C,
// numbers the frames, acknowledges and retransmits them, keeps the line
// alive, and when the channel breaks it asks the driver to open it again and
// resumes the same session without losing or duplicating a frame.
package link
