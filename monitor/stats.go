package monitor

import "sync/atomic"

// Stream is a kind of client connection a Server serves.
type Stream int

// The streams.
const (
	StreamMonitor         Stream = iota // /leviathan/monitor
	StreamNotifications                 // /v2/notifications
	StreamNotificationsWS               // /v2/notifications/ws
	numStreams
)

// String is the stream's name in metrics.
func (s Stream) String() string {
	switch s {
	case StreamMonitor:
		return "monitor"
	case StreamNotifications:
		return "notifications"
	case StreamNotificationsWS:
		return "notifications_ws"
	}
	return "unknown"
}

// streamCounters are one kind of stream's counters. They are atomics,
// not under a lock: the writer loops touch them once per message.
type streamCounters struct {
	open atomic.Int64  // connections open now
	sent atomic.Uint64 // event messages written
}

// StreamStats are one kind of stream's numbers.
type StreamStats struct {
	Stream Stream
	Open   int64  // connections open now
	Sent   uint64 // event messages written to clients (pings and replies left out)
}

// Stats are a Server's numbers since it started, with its bus's.
type Stats struct {
	Streams []StreamStats // one per Stream, in order
	// Published is how many events the bus has published; Dropped how
	// many clients it dropped because they fell behind (their queue
	// filled). Both count the whole bus, which every Server on it
	// shares.
	Published uint64
	Dropped   uint64
}

// Stats returns the server's numbers now.
func (s *Server) Stats() Stats {
	st := Stats{Published: s.bus.Seq(), Dropped: s.bus.Dropped()}
	for k := range numStreams {
		c := &s.streams[k]
		st.Streams = append(st.Streams, StreamStats{Stream: k, Open: c.open.Load(), Sent: c.sent.Load()})
	}
	return st
}

// opened counts a connection of kind k as open until the returned
// function is called.
func (s *Server) opened(k Stream) (closed func()) {
	c := &s.streams[k]
	c.open.Add(1)
	return func() { c.open.Add(-1) }
}

// sent counts an event message written to a client of kind k.
func (s *Server) sent(k Stream) { s.streams[k].sent.Add(1) }
