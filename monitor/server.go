package monitor

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/leviathan-net/leviathan/graph"
)

// Source is what the monitor reads state from.
type Source interface {
	// CINMembers returns a CIN's members with their addresses and the
	// bus sequence number that state is consistent with; an error when
	// there is no such CIN.
	CINMembers(cinID string) (members []Member, seq uint64, err error)
}

// Server serves the monitor protocol and the notification streams.
type Server struct {
	bus *Bus
	src Source
	log *slog.Logger
	// QueueLen bounds each client's queue of undelivered events.
	QueueLen int
	// PingEvery is how often idle streams get a ping and websockets a
	// ping frame.
	PingEvery time.Duration
	// WriteTimeout bounds one write to a client.
	WriteTimeout time.Duration
	nextID       atomic.Uint64
	streams      [numStreams]streamCounters
	compute      computeConns

	// done is closed by Close: every stream ends, websockets with 1001.
	done chan struct{}
	// mu guards closed and the adding to active once Close runs.
	mu     sync.Mutex
	closed bool
	// active counts the streams being served, for Close to wait on.
	active sync.WaitGroup
}

// NewServer returns a Server with default limits.
func NewServer(bus *Bus, src Source, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{bus: bus, src: src, log: log, QueueLen: 1024, PingEvery: 10 * time.Second, WriteTimeout: 10 * time.Second,
		done: make(chan struct{})}
}

// goingAway is the close reason of every websocket when the server stops.
const goingAway = "server shutting down"

// Close ends every stream, websockets with close status 1001 (going away)
// and the reason "server shutting down", refuses new ones (503), and
// waits for them to end: a websocket's closing handshake is bounded by
// the websocket library (5 seconds). Close may be called more than once.
func (s *Server) Close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.done)
	}
	s.mu.Unlock()
	s.active.Wait()
}

// track counts a stream that starts; false when the server is closing.
// The caller calls s.active.Done when the stream ends.
func (s *Server) track(w http.ResponseWriter) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		writeJSONError(w, http.StatusServiceUnavailable, goingAway)
		return false
	}
	s.active.Add(1)
	return true
}

// request is a client's message on /leviathan/monitor.
type request struct {
	Type       string          `json:"type"`
	Sequence   json.RawMessage `json:"sequence"`
	Monitor    string          `json:"monitor"`
	MonitorID  string          `json:"monitorID"`
	Parameters *struct {
		CINID        string  `json:"cinID"`
		ContainerTag *string `json:"container_tag"`
	} `json:"parameters"`
}

type reply struct {
	Type     string          `json:"type"`
	Sequence json.RawMessage `json:"sequence,omitempty"`
	Response any             `json:"response"`
}

type startResponse struct {
	MonitorID string   `json:"monitorID"`
	State     []Member `json:"state"`
}

type stopResponse struct {
	MonitorID string `json:"monitorID"`
}

type errorResponse struct {
	Message string `json:"message"`
}

type eventMessage struct {
	Type      string   `json:"type"`
	MonitorID string   `json:"monitorID"`
	Event     string   `json:"event"`
	Message   []Member `json:"message"`
}

// mon is one started monitor.
type mon struct {
	id    string
	cin   string
	tag   *string
	since uint64 // events up to this number are in the state it started with
}

func (m *mon) filter(ms []Member) []Member {
	if m.tag == nil {
		return ms
	}
	var out []Member
	for _, x := range ms {
		if x.Tag != nil && *x.Tag == *m.tag {
			out = append(out, x)
		}
	}
	return out
}

// accept upgrades to a websocket. The library checks the Origin: a
// browser page from another origin is refused; clients that send no
// Origin (not browsers) are let in. A refusal is answered in JSON.
// The caller calls s.active.Done when it accepted.
func (s *Server) accept(w http.ResponseWriter, r *http.Request) (*websocket.Conn, bool) {
	if !s.track(w) {
		return nil, false
	}
	jw := &jsonRefusal{ResponseWriter: w}
	c, err := websocket.Accept(jw, r, nil)
	if err != nil {
		s.active.Done()
		jw.finish()
		s.log.Debug("websocket refused", "err", err)
		return nil, false
	}
	c.SetReadLimit(1 << 16)
	return c, true
}

// keepalive pings the peer until ctx ends, closing the connection when a
// ping goes unanswered.
func (s *Server) keepalive(ctx context.Context, c *websocket.Conn) {
	t := time.NewTicker(s.PingEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			pctx, cancel := context.WithTimeout(ctx, s.PingEvery)
			err := c.Ping(pctx)
			cancel()
			if err != nil {
				c.Close(websocket.StatusGoingAway, "ping timeout")
				return
			}
		}
	}
}

// write sends one message. Writes carry no deadline of their own (a
// deadline costs a timer per message on the fan-out's hot path): a write
// stuck on a client that stopped reading is ended by guard, which closes
// the connection once the bus drops the client or the connection ends.
func (s *Server) write(c *websocket.Conn, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.writeRaw(c, b)
}

func (s *Server) writeRaw(c *websocket.Conn, b []byte) error {
	return c.Write(context.Background(), websocket.MessageText, b)
}

// Close reasons.
const (
	// tooSlow is the close reason of a client the bus dropped.
	tooSlow      = "too slow: event queue full"
	closeBinary  = "binary messages are not part of the protocol: send JSON in text messages"
	closeNotUTF8 = "text message is not valid UTF-8"
)

// guard closes the connection when the bus drops its subscriber (with a
// close reason) or when ctx ends, so that no write stays blocked.
func guard(ctx context.Context, c *websocket.Conn, sub *Sub) {
	select {
	case <-sub.Done:
		c.Close(websocket.StatusPolicyViolation, tooSlow)
	case <-ctx.Done():
		c.CloseNow()
	}
}

// ServeMonitor serves /leviathan/monitor: the leviathan monitor protocol
// with several monitors per connection, delete events and stop.
func (s *Server) ServeMonitor(w http.ResponseWriter, r *http.Request) {
	c, ok := s.accept(w, r)
	if !ok {
		return
	}
	defer s.active.Done()
	defer c.CloseNow()
	defer s.opened(StreamMonitor)()
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	defer cancel()
	sub, _ := s.bus.Subscribe(s.QueueLen)
	defer sub.Close()
	go s.keepalive(ctx, c)
	go guard(ctx, c, sub)

	// The reader only parses; the writer loop below owns the monitors,
	// so a start's response always goes out before its first event.
	// The protocol is JSON in text messages: a binary message closes the
	// connection with 1003 (unsupported data), and a text message that
	// is not UTF-8 with 1007 (invalid frame payload data), as RFC 6455
	// (sections 7.4.1 and 8.1) has it; a client that sends either is not
	// speaking the protocol, so no error message could reach it usefully.
	reqs := make(chan request, 16)
	go func() {
		defer cancel()
		defer close(reqs)
		for {
			typ, b, err := c.Read(ctx)
			if err != nil {
				return
			}
			if typ != websocket.MessageText {
				c.Close(websocket.StatusUnsupportedData, closeBinary)
				return
			}
			if !utf8.Valid(b) {
				c.Close(websocket.StatusInvalidFramePayloadData, closeNotUTF8)
				return
			}
			var req request
			if err := json.Unmarshal(b, &req); err != nil {
				req = request{Type: "malformed", Monitor: err.Error()}
			}
			select {
			case reqs <- req:
			case <-ctx.Done():
				return
			}
		}
	}()

	mons := &monitors{byID: map[string]*mon{}}
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.done:
			c.Close(websocket.StatusGoingAway, goingAway)
			return
		case <-sub.Done:
			c.Close(websocket.StatusPolicyViolation, tooSlow)
			return
		case req, ok := <-reqs:
			if !ok {
				return
			}
			if err := s.write(c, s.handle(mons, req)); err != nil {
				return
			}
		case e := <-sub.C:
			ca, ok := e.Data.(CINAddresses)
			if !ok {
				continue
			}
			kind := "create"
			if e.Action == ActionCINAddressDelete {
				kind = "delete"
			}
			for _, m := range mons.order {
				if m.cin != ca.CIN || e.Seq <= m.since {
					continue
				}
				if ms := m.filter(ca.Members); len(ms) > 0 {
					if err := s.writeRaw(c, eventJSON(m.id, kind, ms)); err != nil {
						return
					}
					s.sent(StreamMonitor)
				}
			}
		}
	}
}

// eventJSON encodes an event message. It is on the fan-out's hot path
// (once per event per monitor), so it is spliced by hand rather than
// built through reflection; TestEventJSON keeps it equal to eventMessage.
func eventJSON(id, kind string, ms []Member) []byte {
	b := make([]byte, 0, 64+len(ms)*64)
	b = append(b, `{"type":"event","monitorID":`...)
	b = appendJSONString(b, id)
	b = append(b, `,"event":"`...)
	b = append(b, kind...)
	b = append(b, `","message":[`...)
	for i, m := range ms {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"containerID":`...)
		b = appendJSONString(b, m.Container)
		b = append(b, `,"ipaddress":`...)
		b = appendJSONString(b, m.IP)
		b = append(b, `,"tag":`...)
		if m.Tag == nil {
			b = append(b, "null"...)
		} else {
			b = appendJSONString(b, *m.Tag)
		}
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

func errReply(seq json.RawMessage, format string, args ...any) reply {
	return reply{Type: "error", Sequence: seq, Response: errorResponse{Message: fmt.Sprintf(format, args...)}}
}

// monitors are a connection's monitors, in the order they started.
type monitors struct {
	byID  map[string]*mon
	order []*mon
}

func (ms *monitors) set(m *mon) {
	if old := ms.byID[m.id]; old != nil {
		ms.order[slices.Index(ms.order, old)] = m
	} else {
		ms.order = append(ms.order, m)
	}
	ms.byID[m.id] = m
}

func (ms *monitors) remove(id string) {
	ms.order = slices.DeleteFunc(ms.order, func(m *mon) bool { return m.id == id })
	delete(ms.byID, id)
}

// handle answers one request, starting or stopping monitors.
func (s *Server) handle(mons *monitors, req request) reply {
	switch req.Type {
	case "malformed":
		return errReply(nil, "malformed JSON: %s", req.Monitor)
	case "start":
		if req.Monitor != "CIN" {
			return errReply(req.Sequence, `unknown monitor %s: want "CIN"`, graph.Quote(req.Monitor))
		}
		if req.Parameters == nil || req.Parameters.CINID == "" {
			return errReply(req.Sequence, "start: parameters.cinID is missing")
		}
		id := req.MonitorID
		if id != "" && mons.byID[id] == nil {
			return errReply(req.Sequence, "no monitor %s to replace", graph.Quote(id))
		}
		if tag := req.Parameters.ContainerTag; tag != nil {
			if err := graph.ValidateID("tag", *tag); err != nil {
				return errReply(req.Sequence, "start: parameters.container_tag: %v", err)
			}
		}
		members, seq, err := s.src.CINMembers(req.Parameters.CINID)
		if err != nil {
			return errReply(req.Sequence, "%v", err)
		}
		if id == "" {
			id = strconv.FormatUint(s.nextID.Add(1), 10)
		}
		m := &mon{id: id, cin: req.Parameters.CINID, tag: req.Parameters.ContainerTag, since: seq}
		mons.set(m)
		state := m.filter(members)
		if state == nil {
			state = []Member{}
		}
		return reply{Type: "response", Sequence: req.Sequence, Response: startResponse{MonitorID: id, State: state}}
	case "stop":
		if req.MonitorID == "" {
			return errReply(req.Sequence, "stop: monitorID is missing")
		}
		if mons.byID[req.MonitorID] == nil {
			return errReply(req.Sequence, "no monitor %s", graph.Quote(req.MonitorID))
		}
		mons.remove(req.MonitorID)
		return reply{Type: "response", Sequence: req.Sequence, Response: stopResponse{MonitorID: req.MonitorID}}
	case "":
		return errReply(req.Sequence, "type is missing")
	}
	return errReply(req.Sequence, `unknown type %s: want "start" or "stop"`, graph.Quote(req.Type))
}

// notification is one object of the notification streams.
type notification struct {
	Action Action `json:"action"`
	Event  any    `json:"event"`
}

// ServeNotifications serves /v2/notifications: one JSON object per line
// per event, and a ping when idle, until the client goes away.
func (s *Server) ServeNotifications(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeJSONError(w, http.StatusInternalServerError, "streaming unsupported")
		return
	}
	if !s.track(w) {
		return
	}
	defer s.active.Done()
	defer s.opened(StreamNotifications)()
	sub, _ := s.bus.Subscribe(s.QueueLen)
	defer sub.Close()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	flusher.Flush()
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	send := func(n notification) bool {
		rc.SetWriteDeadline(time.Now().Add(s.WriteTimeout))
		if enc.Encode(n) != nil {
			return false
		}
		flusher.Flush()
		return true
	}
	idle := time.NewTimer(s.PingEvery)
	defer idle.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		case <-sub.Done:
			return
		case <-idle.C:
			if !send(notification{Action: ActionPing, Event: PingEvent{Time: time.Now().UTC()}}) {
				return
			}
		case e := <-sub.C:
			if !send(notification{Action: e.Action, Event: e.Data}) {
				return
			}
			s.sent(StreamNotifications)
		}
		idle.Reset(s.PingEvery)
	}
}

// ServeNotificationsWS serves /v2/notifications/ws: the same objects as
// websocket text messages.
func (s *Server) ServeNotificationsWS(w http.ResponseWriter, r *http.Request) {
	c, ok := s.accept(w, r)
	if !ok {
		return
	}
	defer s.active.Done()
	defer c.CloseNow()
	defer s.opened(StreamNotificationsWS)()
	ctx, cancel := context.WithCancel(c.CloseRead(context.WithoutCancel(r.Context()))) // the client only listens
	defer cancel()
	sub, _ := s.bus.Subscribe(s.QueueLen)
	defer sub.Close()
	go guard(ctx, c, sub)
	idle := time.NewTimer(s.PingEvery)
	defer idle.Stop()
	for {
		var n notification
		select {
		case <-ctx.Done():
			return
		case <-s.done:
			c.Close(websocket.StatusGoingAway, goingAway)
			return
		case <-sub.Done:
			c.Close(websocket.StatusPolicyViolation, tooSlow)
			return
		case <-idle.C:
			n = notification{Action: ActionPing, Event: PingEvent{Time: time.Now().UTC()}}
		case e := <-sub.C:
			n = notification{Action: e.Action, Event: e.Data}
		}
		if err := s.write(c, n); err != nil {
			return
		}
		if n.Action != ActionPing {
			s.sent(StreamNotificationsWS)
		}
		idle.Reset(s.PingEvery)
	}
}
