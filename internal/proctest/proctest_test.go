package proctest

import (
	"os/exec"
	"testing"
)

func TestStopContinue(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	if stopped(cmd.Process.Pid) {
		t.Fatal("a running process is seen stopped")
	}
	if err := Stop(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if !stopped(cmd.Process.Pid) {
		t.Fatal("not stopped after Stop")
	}
	if err := Continue(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	for range 1000 {
		if !stopped(cmd.Process.Pid) {
			return
		}
	}
	t.Error("still stopped after Continue")
}
