package vm

import (
	"context"
	"net"
	"os"
	"sync"
)

// scrollback is how much recent output a console client gets when it
// joins, so that it sees the prompt.
const scrollback = 2048

// clientQueue is how many chunks of output may wait for a console
// client before it counts as slow and is dropped.
const clientQueue = 256

// term owns the pseudo-terminal of one vpcs: one goroutine (pump) reads
// its output and fans it out to subscribers; input is written under
// inLock, through the guard unless it comes from leviathan itself.
type term struct {
	pty *os.File

	inLock chan struct{} // a mutex that a ctx can abandon; holds guard
	guard  guard         // guarded by inLock

	mu     sync.Mutex
	subs   map[*sub]struct{} // guarded by mu
	back   []byte            // the last scrollback bytes of output; guarded by mu
	closed bool              // the pty gave EOF or an error; guarded by mu
	done   chan struct{}     // closed with closed set
}

// sub is one reader of the output.
type sub struct {
	ch   chan []byte // closed when the sub is dropped or the output ends
	drop func()      // called (under term.mu) when the sub is dropped for being slow
}

func newTerm(pty *os.File) *term {
	t := &term{
		pty:    pty,
		inLock: make(chan struct{}, 1),
		subs:   map[*sub]struct{}{},
		done:   make(chan struct{}),
	}
	t.guard.refused = func(line string, err error) {
		t.publish([]byte("\r\n" + err.Error() + "\r\n"))
	}
	return t
}

// pump copies the pty's output to the subscribers until the pty fails
// (EIO once vpcs has exited), then closes the pty and every sub.
func (t *term) pump() {
	buf := make([]byte, 4096)
	for {
		n, err := t.pty.Read(buf)
		if n > 0 {
			t.publish(append([]byte(nil), buf[:n]...))
		}
		if err != nil {
			break
		}
	}
	t.pty.Close()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	close(t.done)
	for s := range t.subs {
		close(s.ch)
	}
	clear(t.subs)
}

func (t *term) publish(b []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.back = append(t.back, b...)
	if over := len(t.back) - scrollback; over > 0 {
		t.back = append(t.back[:0], t.back[over:]...)
	}
	for s := range t.subs {
		select {
		case s.ch <- b:
		default: // slow: dropped, never waited for
			delete(t.subs, s)
			close(s.ch)
			if s.drop != nil {
				s.drop()
			}
		}
	}
}

// subscribe returns a sub that receives the output from now on and,
// with replay, the scrollback first (from its first line start). Its
// channel is closed at once if the output has ended.
func (t *term) subscribe(queue int, replay bool, drop func()) *sub {
	s := &sub{ch: make(chan []byte, queue+1), drop: drop}
	t.mu.Lock()
	defer t.mu.Unlock()
	if replay && len(t.back) > 0 {
		b := t.back
		if len(b) == scrollback {
			for i, c := range b {
				if c == '\n' {
					b = b[i+1:]
					break
				}
			}
		}
		s.ch <- append([]byte(nil), b...)
	}
	if t.closed {
		close(s.ch)
		return s
	}
	t.subs[s] = struct{}{}
	return s
}

func (t *term) unsubscribe(s *sub) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.subs[s]; ok {
		delete(t.subs, s)
		close(s.ch)
	}
}

// lock takes inLock, or gives up with ctx.
func (t *term) lock(ctx context.Context) error {
	select {
	case t.inLock <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (t *term) unlock() { <-t.inLock }

// typed writes what a console client typed, through the guard; bye
// says the client typed disconnect.
func (t *term) typed(ctx context.Context, b []byte) (bye bool, err error) {
	if err := t.lock(ctx); err != nil {
		return false, err
	}
	defer t.unlock()
	out := t.guard.filter(b)
	bye, t.guard.bye = t.guard.bye, false
	if len(out) == 0 {
		return bye, nil
	}
	_, err = t.pty.Write(out)
	return bye, err
}

// write writes b to vpcs as is; inLock must be held. It leaves the
// guard's shadow line empty, which holds as long as b ends with Enter
// or Ctrl-C.
func (t *term) write(b []byte) error {
	t.guard.reset()
	_, err := t.pty.Write(b)
	return err
}

// serve runs the console on ln until ln fails or the output ends
// (vpcs exited); either way it closes ln and every client.
func (t *term) serve(ln net.Listener) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{} // guarded by mu
	)
	stop := make(chan struct{})
	go func() {
		select {
		case <-t.done:
		case <-stop:
		}
		ln.Close()
	}()
	var err error
	for {
		c, aerr := ln.Accept()
		if aerr != nil {
			err = aerr
			break
		}
		mu.Lock()
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Go(func() {
			t.client(c)
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
		})
	}
	close(stop)
	ln.Close()
	mu.Lock()
	for c := range conns {
		c.Close()
	}
	mu.Unlock()
	wg.Wait()
	select {
	case <-t.done:
		return nil // vpcs is gone
	default:
		return err
	}
}

// client serves one console connection: one goroutine writes output to
// it, this one reads what it types.
func (t *term) client(c net.Conn) {
	defer c.Close()
	var once sync.Once
	hangup := func() { once.Do(func() { c.Close() }) }
	s := t.subscribe(clientQueue, true, hangup)
	defer t.unsubscribe(s)

	replies := make(chan []byte, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer hangup()
		if _, err := c.Write(telnetHello); err != nil {
			return
		}
		for {
			select {
			case b, ok := <-s.ch:
				if !ok {
					return
				}
				if _, err := c.Write(telnetEscape(b)); err != nil {
					return
				}
			case r := <-replies:
				if _, err := c.Write(r); err != nil {
					return
				}
			}
		}
	}()

	var tn telnetReader
	buf := make([]byte, 1024)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-done
		cancel()
	}()
	for {
		n, err := c.Read(buf)
		if n > 0 {
			data, reply := tn.decode(buf[:n])
			if len(reply) > 0 {
				select {
				case replies <- reply:
				default: // a client flooding negotiations gets no answers
				}
			}
			if len(data) > 0 {
				bye, werr := t.typed(ctx, data)
				if bye {
					c.Write([]byte("\r\nGood-bye\r\n"))
				}
				if werr != nil || bye {
					break
				}
			}
		}
		if err != nil { // EOF, reset or hung up: the client is gone
			break
		}
	}
	hangup()
	<-done
}
