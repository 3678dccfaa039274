// Package mux carries many streams over one link: it opens, accepts,
// half-closes and resets streams, gives each its own credit-based flow
// control, and schedules what goes out so that control messages come
// first and streams take turns, a newly active stream ahead of bulk ones.
//
// A Mux is the link's upper layer (link.Upper): the link pulls outgoing
// bytes with Fill when the line can take a frame, and pushes received
// payloads with Deliver.
//
// The package's files, one job each:
//
//   - mux.go: the Mux, its lifecycle (New, Open, Accept, Close) and the
//     session's start and end as the link reports them.
//   - config.go: Config, its defaults and the limits against a hostile peer.
//   - sched.go: the sender's side: control messages first, then streams in
//     turn, interactive writes ahead of bulk (Fill, FillUrgent).
//   - deliver.go: the receiver's side: parsing what the link delivers and
//     dispatching each message to its stream (Deliver, OPEN handling).
//   - listen.go: the remote-listen request plane (-R): LISTEN, UNLISTEN and
//     their results.
//   - stream.go: a Stream, a net.Conn over the mux.
//   - wire.go: the messages' encoding (docs/protocol.md, part 3).
package mux
