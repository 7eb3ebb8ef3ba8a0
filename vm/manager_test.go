package vm

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/leviathan-net/leviathan/graph"
	"github.com/leviathan-net/leviathan/monitor"
)

// TestLeftoverVPCS checks what OpenManager does with the PIDs a previous
// run recorded: a vpcs with the recorded argv in the VM's directory is
// killed; any other process under a recorded PID is left alone.
func TestLeftoverVPCS(t *testing.T) {
	if _, err := exec.LookPath("vpcs"); err != nil {
		t.Skip("vpcs not installed (scripts/deps.sh installs it)")
	}
	state := t.TempDir()
	store, err := graph.OpenBolt(state)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	dir := filepath.Join(state, "projects")
	const pid = "42f9feee-3217-4104-981e-85d5f0a806ec"
	ports := testPorts(t)

	// A vpcs as a previous run left it: started in its VM's directory,
	// not stopped (the previous daemon "died" without ending it).
	ours := graph.VM{ID: "24d2e16b-fbef-4259-ae34-7bc21a41ee28", Project: pid, Name: "PC1", Type: VMTypeVPCS, Status: graph.VMStopped}
	vmDir := filepath.Join(dir, pid, "project-files", "vpcs", ours.ID)
	if err := os.MkdirAll(vmDir, 0o755); err != nil {
		t.Fatal(err)
	}
	lport, rport := vpcsPorts(t, ports)
	v, err := New(Config{Dir: vmDir, LocalPort: lport, RemotePort: rport})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Stop() })
	bin, _ := exec.LookPath("vpcs")
	bin, _ = filepath.Abs(bin)
	ours.PID, ours.Argv = v.PID(), append([]string{bin}, v.args()...)
	ours.LocalPort, ours.RelayPort, ours.Console = lport+100, lport+101, 5999

	// A process that is not ours, under a recorded PID and argv that
	// are not its own.
	other := exec.Command("sleep", "60")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Process.Kill(); other.Wait() })
	notOurs := graph.VM{ID: "daefc24a-103c-4717-8e01-6517d931c1ae", Project: pid, Name: "PC2", Type: VMTypeVPCS,
		Status: graph.VMStopped, PID: other.Process.Pid, Argv: ours.Argv,
		LocalPort: lport + 200, RelayPort: lport + 201, Console: 5998, MAC: 1}

	err = store.Update(func(tx graph.Tx) error {
		if err := graph.PutProject(tx, &graph.Project{ID: pid}); err != nil {
			return err
		}
		if err := graph.PutVM(tx, &ours); err != nil {
			return err
		}
		return graph.PutVM(tx, &notOurs)
	})
	if err != nil {
		t.Fatal(err)
	}
	m, err := OpenManager(context.Background(), ManagerConfig{Store: store, Bus: monitor.NewBus(), Ports: ports, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	t.Run("our leftover vpcs is killed", func(t *testing.T) {
		select {
		case <-v.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("the leftover vpcs still runs")
		}
		if e, _ := v.Exit(); e.Signal != syscall.SIGKILL {
			t.Errorf("it ended as %s, want killed by SIGKILL", e)
		}
	})
	t.Run("a process that is not ours is left alone", func(t *testing.T) {
		if err := other.Process.Signal(syscall.Signal(0)); err != nil {
			t.Errorf("sleep %d: %v", other.Process.Pid, err)
		}
	})
	t.Run("ports are held again", func(t *testing.T) {
		for _, p := range []Port{{UDP, ours.LocalPort}, {UDP, ours.LocalPort + RelayOffset}, {UDP, ours.RelayPort}, {TCP, ours.Console}} {
			if o, ok := ports.Owner(p); !ok || o != pid {
				t.Errorf("%s: owner %q %v, want %q", p, o, ok, pid)
			}
		}
	})
}
