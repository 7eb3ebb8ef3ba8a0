package rest

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestMonitorFrames checks what the monitor does with messages outside
// its protocol: a binary message closes with 1003, text that is not
// UTF-8 with 1007; an invalid container_tag is an error of the protocol
// and the connection stays open.
func TestMonitorFrames(t *testing.T) {
	e := cinEnv(t, Options{})
	closes := []struct {
		name   string
		typ    websocket.MessageType
		msg    string
		status websocket.StatusCode
	}{
		{"binary", websocket.MessageBinary, `{"type":"start","monitor":"CIN","parameters":{"cinID":"cin1"}}`, websocket.StatusUnsupportedData},
		{"binary garbage", websocket.MessageBinary, "\x00\x01\x02", websocket.StatusUnsupportedData},
		{"invalid UTF-8", websocket.MessageText, "{\"type\":\"start\xff\xfe\"}", websocket.StatusInvalidFramePayloadData},
		{"truncated UTF-8", websocket.MessageText, "{\"type\":\"\xe2\x82\"}", websocket.StatusInvalidFramePayloadData},
	}
	for _, c := range closes {
		t.Run(c.name, func(t *testing.T) {
			w := e.in(t).monitor()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := w.c.Write(ctx, c.typ, []byte(c.msg)); err != nil {
				t.Fatal(err)
			}
			_, b, err := w.c.Read(ctx)
			if got := websocket.CloseStatus(err); got != c.status {
				t.Fatalf("read: %q, %v (close status %d), want close status %d", b, err, got, c.status)
			}
		})
	}

	tags := []struct {
		name, tag string
		says      string // empty: accepted
	}{
		{"valid", `"web"`, ""},
		{"empty", `""`, "container_tag"},
		{"with a slash", `"a/b"`, "container_tag"},
		{"too long", `"` + strings.Repeat("t", 65) + `"`, "container_tag"},
		{"not a string", `5`, "malformed JSON"},
	}
	w := e.monitor()
	for i, tt := range tags {
		t.Run("tag "+tt.name, func(t *testing.T) {
			w.t = t
			w.send(`{"type":"start","sequence":` + strconv.Itoa(i+1) + `,"monitor":"CIN","parameters":{"cinID":"cin1","container_tag":` + tt.tag + `}}`)
			m := w.recvMsg()
			if tt.says == "" {
				if m.Type != "response" {
					t.Fatalf("got %+v, want a response", m)
				}
				return
			}
			if m.Type != "error" || !strings.Contains(m.Response.Message, tt.says) {
				t.Fatalf("got %+v, want an error mentioning %q", m, tt.says)
			}
		})
	}
	// The connection is still open and serving.
	w.t = t
	w.send(`{"type":"start","sequence":99,"monitor":"CIN","parameters":{"cinID":"cin2"}}`)
	if m := w.recvMsg(); m.Type != "response" {
		t.Fatalf("after the errors: %+v, want a response", m)
	}
}
