// Package peers reads a hub's peers file: who may connect to it and with
// which key, one line a peer, like ssh's authorized_keys:
//
//	# NAME       KEY (64 hex digits or base64, or @FILE written by sockmux keygen)
//	cabinet-17   3f9a0c...e1
//	lab-board-2  @keys/lab-board-2.key
//
// A name is what a connecting end gives with --name and what forwards on
// the hub address it by (-L ...@NAME, HOST.NAME.sockmux): 1 to 63 letters,
// digits, '-' and '_', not starting with '-'; names are matched without
// regard to case. Each peer needs its own key: a key listed twice would let
// one peer pass for the other, so it is refused. @FILE is read relative to
// the peers file's folder. The file holds secrets, so one that others may
// read is refused, as a key file is.
package peers
