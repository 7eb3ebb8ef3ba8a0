package mhtest

// StartWith starts the daemon again, as Start does, with extra flags
// after its usual command line (Args): a later flag wins, so this sets
// one host apart from the others ("--vxlan-port", "4790"). The extra
// flags hold for this run only; Start runs it as the others again.
func (h *Host) StartWith(extra ...string) {
	t := h.lab.t
	t.Helper()
	if h.Running() {
		t.Fatalf("mhtest: %s: StartWith while the daemon runs (PID %d)", h.ID, h.PID())
	}
	args := append(append([]string{"serve"}, h.Args()...), extra...)
	p, err := startProc(h.Netns, h.LogPath, h.lab.bin, args...)
	if err != nil {
		t.Fatalf("mhtest: %s: %v", h.ID, err)
	}
	h.proc, h.ready = p, false
	h.waitReady()
}
