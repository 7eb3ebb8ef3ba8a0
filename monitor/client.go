package monitor

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/coder/websocket"
)

// Client is one connection to a /leviathan/monitor websocket, as the
// command-line client uses it: start monitors, then read what the server
// sends, message by message.
//
// Threading: one goroutine at a time may call its methods.
type Client struct {
	c   *websocket.Conn
	seq int
}

// DialOptions configure Dial.
type DialOptions struct {
	// HTTPClient carries the handshake (a unix socket's transport, TLS
	// roots); http.DefaultClient when nil. Its Timeout must be 0.
	HTTPClient *http.Client
	// Header is sent with the handshake (Authorization).
	Header http.Header
}

// Dial opens a monitor connection to url (ws://, wss://, http:// or
// https://, ending in /leviathan/monitor). When the server refuses the
// handshake, the response is returned with the error: its status and the
// first KiB of its body say why.
func Dial(ctx context.Context, url string, o DialOptions) (*Client, *http.Response, error) {
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: o.HTTPClient, HTTPHeader: o.Header})
	if err != nil {
		return nil, resp, err
	}
	c.SetReadLimit(1 << 24)
	return &Client{c: c}, resp, nil
}

// Start starts a CIN monitor, of the members tagged tag when tag is not
// nil, and returns the server's response (the monitor's ID and the
// current state) as it came.
func (c *Client) Start(ctx context.Context, cinID string, tag *string) (json.RawMessage, error) {
	c.seq++
	seq := json.RawMessage(strconv.Itoa(c.seq))
	req := request{Type: "start", Sequence: seq, Monitor: "CIN"}
	req.Parameters = &struct {
		CINID        string  `json:"cinID"`
		ContainerTag *string `json:"container_tag"`
	}{cinID, tag}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if err := c.c.Write(ctx, websocket.MessageText, b); err != nil {
		return nil, err
	}
	for {
		msg, err := c.Next(ctx)
		if err != nil {
			return nil, err
		}
		var r struct {
			Type     string          `json:"type"`
			Sequence json.RawMessage `json:"sequence"`
			Response errorResponse   `json:"response"`
		}
		if err := json.Unmarshal(msg, &r); err != nil {
			return nil, fmt.Errorf("monitor: malformed message %q: %w", msg, err)
		}
		if string(r.Sequence) != string(seq) {
			continue // an event of a monitor started before
		}
		if r.Type == "error" {
			return nil, fmt.Errorf("monitor %s: %s", cinID, r.Response.Message)
		}
		return msg, nil
	}
}

// Next returns the next message the server sends, as it came.
func (c *Client) Next(ctx context.Context) (json.RawMessage, error) {
	_, b, err := c.c.Read(ctx)
	return b, err
}

// Close closes the connection.
func (c *Client) Close() error { return c.c.Close(websocket.StatusNormalClosure, "") }
