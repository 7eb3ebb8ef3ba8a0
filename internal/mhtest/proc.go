package mhtest

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// proc is one started process: etcd or a daemon, run through nsenter,
// which execs it (for --net alone nsenter does not fork), so its PID is
// the process's own.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once it has exited and been waited for
	err  error         // its exit, once done is closed
}

// startProc runs nsenter --net=netns name args... with its output
// appended to the file at logPath (a file, not a pipe: nothing keeps the
// test's output open, and Wait waits for nothing but the process).
func startProc(netns, logPath, name string, args ...string) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own copy
	fmt.Fprintf(logf, "=== %s: nsenter --net=%s %s %q\n", time.Now().Format(time.TimeOnly), netns, name, args)
	cmd := exec.Command("nsenter", append([]string{"--net=" + netns, name}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "LEVIATHAN_AUTH=")
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL to the process by its PID and waits for it.
func (p *proc) kill() {
	if !p.exited() {
		syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL)
	}
	<-p.done
}

// stop sends SIGTERM and waits up to grace for the process to exit, then
// kills it. It returns the exit's error, or says it had to be killed.
func (p *proc) stop(grace time.Duration) error {
	if p.exited() {
		return p.err
	}
	syscall.Kill(p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(grace):
		p.kill()
		return fmt.Errorf("still running %s after SIGTERM: killed", grace)
	}
}
