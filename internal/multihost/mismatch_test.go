package multihost_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/leviathan-net/leviathan/internal/mhtest"
)

// TestHostMismatchReported runs hC with another VXLAN port than hA and
// hB: GET /host reports the difference, naming the VXLAN port, on both
// sides, and hC logs it as it starts.
func TestHostMismatchReported(t *testing.T) {
	lab := mhtest.New(t, 3)
	hA, hC := lab.Host("hA"), lab.Host("hC")
	hC.Stop()
	hC.StartWith("--vxlan-port", "4790")

	// hC's record is rewritten as it starts again: wait for it.
	var got mhtest.HostInfo
	for deadline := time.Now().Add(10 * time.Second); ; {
		hosts, err := hA.HostList()
		if err != nil {
			t.Fatal(err)
		}
		got = hosts["hC"]
		if got.VXLANPort == 4790 && got.State == "running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /host on hA: hC is %+v, want it running on VXLAN port 4790", got)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("GET /host on hA: hC: %q", got.Error)
	if !strings.Contains(got.Error, "VXLAN port") || !strings.Contains(got.Error, "4790") {
		t.Errorf("GET /host on hA: hC's error %q, want one naming its VXLAN port 4790", got.Error)
	}

	hosts, err := hA.HostList()
	if err != nil {
		t.Fatal(err)
	}
	if e := hosts["hB"].Error; e != "" {
		t.Errorf("GET /host on hA: hB, of the same settings, has an error: %q", e)
	}
	// From hC, the others differ.
	if hosts, err = hC.HostList(); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"hA", "hB"} {
		if e := hosts[id].Error; !strings.Contains(e, "VXLAN port") || !strings.Contains(e, "4789") {
			t.Errorf("GET /host on hC: %s's error %q, want one naming its VXLAN port 4789", id, e)
		}
	}
	log, err := os.ReadFile(hC.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "settings differ") || !strings.Contains(string(log), "VXLAN port 4789") {
		t.Errorf("hC's log does not report that the others' VXLAN port differs (see %s)", hC.LogPath)
	}
}
