package vm

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
)

// Config says how to run one VPCS.
type Config struct {
	// Binary is the vpcs executable; "" means vpcs on PATH.
	Binary string
	// Dir is the VM's working directory, where vpcs reads startup.vpc
	// and keeps vpcs.hist. It must exist.
	Dir string
	// LocalPort is the UDP port vpcs binds (-s), on all addresses; it
	// also binds LocalPort+RelayOffset. RemotePort and RemoteHost (-c,
	// -t) are where it sends its frames. Both ports are required: vpcs
	// would otherwise take 20000 and 30000.
	LocalPort, RemotePort int
	// RemoteHost defaults to 127.0.0.1.
	RemoteHost netip.Addr
	// MAC is the last byte of the VPCS's MAC address 00:50:79:66:68:MAC (-m).
	MAC uint8
	// OnExit, when set, is called once from its own goroutine when vpcs
	// has exited and been reaped, whether Stop ended it or not.
	OnExit func(Exit)
	// Log gets what a console client was refused; nil discards it.
	Log *slog.Logger
}

// Exit is how a vpcs ended.
type Exit struct {
	PID     int
	Code    int            // exit code, or -1 when a signal ended it
	Signal  syscall.Signal // the signal that ended it, or 0
	Stopped bool           // Stop ended it: an expected exit
}

func (e Exit) String() string {
	if e.Signal != 0 {
		return "vpcs " + strconv.Itoa(e.PID) + " killed by " + e.Signal.String()
	}
	return "vpcs " + strconv.Itoa(e.PID) + " exited with status " + strconv.Itoa(e.Code)
}

// ErrNotRunning is returned for a VPCS that is not (or no longer) running.
var ErrNotRunning = errors.New("vpcs not running")

// Bounds of Start and Stop.
const (
	startTimeout = 10 * time.Second // Start's wait for the first prompt, within ctx
	stopGrace    = 2 * time.Second  // Stop's wait after quit and after SIGTERM
	reapTimeout  = 5 * time.Second  // Stop's wait after SIGKILL
)

// VPCS is one vpcs process with its terminal. A VPCS runs once: after it
// has exited, make a new one to run the VM again.
type VPCS struct {
	cfg  Config
	log  *slog.Logger
	exec chan struct{} // serializes Exec

	mu       sync.Mutex
	started  bool        // guarded by mu
	stopping bool        // guarded by mu
	term     *term       // set once Start has the terminal; guarded by mu
	proc     *os.Process // guarded by mu
	exit     Exit        // guarded by mu; set before done is closed
	done     chan struct{}
}

// New checks cfg and returns a VPCS that is not yet running.
func New(cfg Config) (*VPCS, error) {
	if cfg.Binary == "" {
		cfg.Binary = "vpcs"
	}
	if !cfg.RemoteHost.IsValid() {
		cfg.RemoteHost = localhost
	}
	if cfg.LocalPort < 1024 || cfg.LocalPort+RelayOffset > 65000 {
		return nil, fmt.Errorf("vpcs local port %d: want 1024-%d", cfg.LocalPort, 65000-RelayOffset)
	}
	if cfg.RemotePort < 1024 || cfg.RemotePort > 65000 {
		return nil, fmt.Errorf("vpcs remote port %d: want 1024-65000", cfg.RemotePort)
	}
	if fi, err := os.Stat(cfg.Dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("vpcs directory %q: not a directory", cfg.Dir)
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &VPCS{cfg: cfg, log: log, exec: make(chan struct{}, 1), done: make(chan struct{})}, nil
}

// args is vpcs's argv after the program name: one instance (so its
// prompt is "VPCS> "), UDP mode, no -p (vpcs would fork into the
// background and serve its own console on all addresses).
func (v *VPCS) args() []string {
	return []string{
		"-i", "1",
		"-m", strconv.Itoa(int(v.cfg.MAC)),
		"-s", strconv.Itoa(v.cfg.LocalPort),
		"-c", strconv.Itoa(v.cfg.RemotePort),
		"-t", v.cfg.RemoteHost.String(),
	}
}

// Start runs vpcs and returns once its prompt is seen. On failure no
// process is left.
func (v *VPCS) Start(ctx context.Context) error {
	v.mu.Lock()
	if v.started {
		v.mu.Unlock()
		return errors.New("vpcs already started")
	}
	v.started = true
	v.mu.Unlock()

	if err := checkScripts(v.cfg.Dir); err != nil {
		v.finish(Exit{Code: -1})
		return err
	}
	bin, err := exec.LookPath(v.cfg.Binary)
	if err != nil {
		v.finish(Exit{Code: -1})
		return fmt.Errorf("start vpcs: %w", err)
	}
	cmd := exec.Command(bin, v.args()...)
	cmd.Dir = v.cfg.Dir
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "TERM=vt100"}
	// pty makes vpcs a session leader with the terminal as its
	// controlling tty (Setsid, Setctty); Pdeathsig kills it if the
	// thread that forked it ends, i.e. if the daemon dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}

	type started struct {
		t   *term
		err error
	}
	ready := make(chan started, 1)
	go func() {
		// Locked for good: the thread must live as long as vpcs does,
		// and is thrown away when this goroutine ends.
		runtime.LockOSThread()
		f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: 80})
		if err != nil {
			ready <- started{err: err}
			v.finish(Exit{Code: -1})
			return
		}
		t := newTerm(f)
		v.mu.Lock()
		v.term, v.proc = t, cmd.Process
		v.mu.Unlock()
		ready <- started{t: t}
		go t.pump()
		e := Exit{PID: cmd.Process.Pid, Code: -1}
		_ = cmd.Wait() // the status is in ProcessState
		if st := cmd.ProcessState; st != nil {
			e.Code = st.ExitCode()
			if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				e.Signal = ws.Signal()
			}
		}
		v.finish(e)
	}()

	s := <-ready
	if s.err != nil {
		return fmt.Errorf("start vpcs: %w", s.err)
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	sub := s.t.subscribe(clientQueue, true, nil)
	defer s.t.unsubscribe(sub)
	var out []byte
	for {
		select {
		case b, ok := <-sub.ch:
			if !ok {
				<-v.done
				return fmt.Errorf("start vpcs: %s before its prompt: %q", v.exitState(), clean(out))
			}
			out = append(out, b...)
			if _, ok := promptAtEnd(clean(out)); ok {
				return nil
			}
		case <-ctx.Done():
			v.Stop()
			return fmt.Errorf("start vpcs: no prompt (%w): %q", ctx.Err(), clean(out))
		}
	}
}

// finish records how vpcs ended and tells whoever waits.
func (v *VPCS) finish(e Exit) {
	v.mu.Lock()
	e.Stopped = v.stopping
	v.exit = e
	v.mu.Unlock()
	close(v.done)
	if v.cfg.OnExit != nil && e.PID != 0 {
		go v.cfg.OnExit(e)
	}
}

// PID is vpcs's process ID, or 0 before Start.
func (v *VPCS) PID() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.proc == nil {
		return 0
	}
	return v.proc.Pid
}

// Done is closed once vpcs has exited and been reaped (or Start failed).
func (v *VPCS) Done() <-chan struct{} { return v.done }

// Exit says how vpcs ended; ok is false while it runs.
func (v *VPCS) Exit() (e Exit, ok bool) {
	select {
	case <-v.done:
	default:
		return Exit{}, false
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.exit, true
}

func (v *VPCS) exitState() string {
	e, _ := v.Exit()
	return e.String()
}

// Stop ends vpcs and reaps it: quit on its console, then SIGTERM, then
// SIGKILL, each given a bounded time. It returns once the process is
// gone; stopping a VPCS that is not running does nothing.
func (v *VPCS) Stop() error {
	v.mu.Lock()
	t, proc := v.term, v.proc
	if !v.started || proc == nil {
		v.mu.Unlock()
		return nil
	}
	v.stopping = true
	v.mu.Unlock()

	wait := func(d time.Duration) bool {
		select {
		case <-v.done:
			return true
		case <-time.After(d):
			return false
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopGrace/4)
	if t.lock(ctx) == nil {
		// Ctrl-C ends a running command first; the pause lets the
		// terminal flush its input before quit is typed.
		if t.write([]byte{ctrlC}) == nil && !wait(100*time.Millisecond) {
			_ = t.write([]byte("quit\r"))
		}
		t.unlock()
	}
	cancel()
	if wait(stopGrace) {
		return nil
	}
	_ = proc.Signal(syscall.SIGTERM)
	if wait(stopGrace) {
		return nil
	}
	_ = proc.Kill()
	if wait(reapTimeout) {
		return nil
	}
	return fmt.Errorf("stop vpcs %d: not reaped %s after SIGKILL", proc.Pid, reapTimeout)
}

// ServeConsole serves the VPCS console, telnet-compatible, to any
// number of clients on ln (the caller binds it, on 127.0.0.1), until ln
// is closed or vpcs exits. It closes ln and every client when it
// returns, and returns nil when vpcs exited.
func (v *VPCS) ServeConsole(ln net.Listener) error {
	v.mu.Lock()
	t := v.term
	v.mu.Unlock()
	if t == nil {
		ln.Close()
		return ErrNotRunning
	}
	return t.serve(ln)
}

// checkScripts refuses a startup.vpc in dir that the console would
// refuse (vpcs runs it at start, `!` lines included), and drops such
// lines from vpcs.hist, which vpcs loads into the history that console
// clients can recall.
func checkScripts(dir string) error {
	if f, err := os.Open(filepath.Join(dir, "startup.vpc")); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for n := 1; sc.Scan(); n++ {
			if err := allowedLine(sc.Text()); err != nil {
				return fmt.Errorf("startup.vpc line %d: %w", n, err)
			}
		}
		if err := sc.Err(); err != nil {
			return fmt.Errorf("read startup.vpc: %w", err)
		}
	}
	hist := filepath.Join(dir, "vpcs.hist")
	b, err := os.ReadFile(hist)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("read vpcs.hist: %w", err)
	}
	var keep []string
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	for _, l := range lines {
		if allowedLine(l) == nil {
			keep = append(keep, l)
		}
	}
	if len(keep) == len(lines) {
		return nil
	}
	if err := os.WriteFile(hist, []byte(strings.Join(keep, "\n")+"\n"), 0o644); err != nil {
		return fmt.Errorf("clean vpcs.hist: %w", err)
	}
	return nil
}
