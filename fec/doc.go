// Package fec is forward error correction for noisy byte streams (a serial
// line, a radio modem): a stage between the link's frame encoder and the
// driver that lets the receiver repair damage instead of asking for the
// frame again (issue 19).
//
// Three parts:
//
//   - Code: a systematic Reed–Solomon code over GF(256), RS(n, n−2t) for
//     any n ≤ 255, that corrects up to t wrong bytes anywhere in a block
//     (Berlekamp–Massey, Chien search, Forney) and reports blocks it
//     cannot correct.
//   - Writer and Decoder (Reader): a byte stream cut into fixed-size
//     blocks, each behind a 32-bit sync marker and a 16-bit header that
//     carries the level (the t) in a code that corrects 3 flipped bits.
//     The decoder finds markers by correlation, tolerating flipped bits,
//     follows a block stream across bytes dropped or inserted (a byte or
//     two: the next marker is looked for nearby, and a block that lost or
//     gained one byte is decoded again with it put back or taken out),
//     and finds it again after garbage. Level 0 is off: the bytes go as they are, and the
//     decoder passes bytes outside blocks on unchanged.
//   - Chooser: picks the level for one direction from what the decoder
//     measured there (symbols corrected per block, blocks lost), or from
//     the frames the link lost while the code was off.
//
// The code is a coset of Reed–Solomon (a fixed pattern added to the
// parity), so that a block shifted by a lost byte is not taken for a
// rotated codeword. What the decoder passes on is not checked: above it,
// the link's CRC-32C decides what is a frame, as it does without the code.
package fec
