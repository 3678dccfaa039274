// Package keyfile reads the pre-shared keys sockmux authenticates peers
// with: 32 bytes written by "sockmux keygen" as 64 hex digits (or given in
// base64), '#' comment lines ignored, in ASCII, UTF-8 or UTF-16 as Windows
// tools save text. A key file others may read is refused on POSIX systems.
package keyfile
